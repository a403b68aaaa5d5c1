//! The HTTP composition root: owns the application state (store, live config, clock,
//! orchestrator handle, the receiver's keys, the reloader), gives each leaf the part it needs,
//! merges their routers and serves.
//!
//! The leaves — [`crate::api`] (the REST API and its OpenAPI document), [`crate::web`] (the
//! pages) and [`crate::inbound`] (the webhook receiver) — import nothing from each other or
//! from here. What is the process's own lives here: `/healthz`, `/readyz`, `/metrics`, the
//! fallback, and request tracing.

mod envelope;
mod health;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tower_http::trace::TraceLayer;

use crate::api::{self, ApiError};
use crate::clock::Clock;
use crate::config;
use crate::inbound::{self, Verifier};
use crate::orchestrator::Orchestrator;
use crate::reload::Reloader;
use crate::store::Store;
use crate::web;

/// Everything the handlers reach, built once by `app::Application`.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: config::Live,
    pub clock: Clock,
    pub orchestrator: Orchestrator,
    pub verifier: Arc<Verifier>,
    pub reloader: Reloader,
}

/// The whole HTTP app: the API, the pages and the webhook receiver, with health and metrics.
pub fn router(state: AppState) -> Router {
    let config = state.config.get();
    let api = api::router(api::ApiState {
        store: state.store.clone(),
        config: state.config.clone(),
        clock: state.clock.clone(),
        orchestrator: state.orchestrator.clone(),
        verifier: state.verifier.clone(),
        reloader: state.reloader.clone(),
    });
    let pages = web::router(web::WebState {
        store: state.store.clone(),
        config: state.config.clone(),
        clock: state.clock.clone(),
        orchestrator: state.orchestrator.clone(),
    });
    let receiver = inbound::router(
        inbound::ReceiverState {
            verifier: state.verifier.clone(),
            recorder: inbound::Recorder::start(state.store.clone()),
            clock: state.clock.clone(),
            orchestrator: state.orchestrator.clone(),
        },
        &config.webhook.path,
        config.webhook.max_body_bytes,
    );
    Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .route("/metrics", axum::routing::get(health::metrics))
        .with_state(state)
        .merge(api)
        .merge(receiver)
        .merge(pages)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn(envelope::envelope))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path only: query strings and headers can carry tokens.
                tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
}

/// Serves `app` on `listener` until `shutdown`, with peer addresses for the loopback rule.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let stopping = shutdown.clone();
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await });
    // Requests in flight get a moment to finish; connections that never end by themselves
    // (a followed timeline, `events?follow=true`, the job page's live view) are then dropped:
    // their clients reconnect with `Last-Event-ID` to the next daemon.
    tokio::select! {
        r = serve => r,
        () = async move {
            stopping.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("connections still open after the shutdown grace are dropped");
            Ok(())
        }
    }
}

/// How long requests in flight may take to finish once the daemon stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
