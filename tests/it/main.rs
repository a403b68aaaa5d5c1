//! respool's integration tests: one binary, one module per area. Every module starts the real
//! thing (the app in-process on port 0, or the `respool` binary as a process) and talks to it
//! over loopback HTTP; faults come from the simulator. What the modules share is in
//! [`helpers`].
//!
//! One binary rather than one per file: each test binary links the whole daemon, and linking
//! ~40 of them was most of `cargo test`'s build. All tests run in one process, on parallel
//! threads, so nothing here may depend on per-process state: no `std::env::set_var`, no
//! `set_current_dir`, ports from the OS (port 0), files in temp dirs, and metrics asserted on
//! the daemon's own state (`respool_jobs`, read from its database) or on labels no other test
//! moves.
//!
//! Run one area with `cargo test --test it MODULE::`, e.g. `cargo test --test it chaos::`.
// A test panics on the unexpected: that is its assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod acting;
mod api_contract;
mod api_faults;
mod api_happy;
mod api_jobs;
mod api_notifications;
mod api_redaction;
mod api_retry;
mod api_search;
mod api_stats;
mod api_webhooks;
mod artifacts;
mod attachments;
mod budget;
mod chains;
mod chaos;
mod cli_check;
mod cli_manual;
mod cli_snapshots;
mod cli_submit;
mod cost;
mod create_evidence;
mod knowledge;
mod ledger_rules;
mod limits;
mod observability;
mod outbox;
mod postgres;
mod process;
mod process_acting;
mod process_attachments;
mod process_chains;
mod process_multi;
mod process_notify;
mod process_schedule;
mod process_webhook;
mod progress;
mod reload;
mod retention;
mod schedules;
mod sim_api;
mod sim_containers;
mod sim_conversations;
mod sim_endpoints;
mod sim_faults;
mod sim_files;
mod sim_functions;
mod sim_images;
mod sim_mcp;
mod sim_stream;
mod sim_webhooks;
mod sink_discord_ntfy;
mod sink_slack;
mod sink_webhook_file_command;
mod status_props;
mod structured;
mod systemd_notify;
mod systemd_unit;
mod turns;
mod web;
mod web_stats;
mod webhook_endpoints;
