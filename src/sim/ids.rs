//! Identifiers that look like OpenAI's: a prefix, an underscore and a sortable ULID
//! (`resp_01jd…`, `msg_…`, `evt_…`, `wh_…`).

/// A fresh id with `prefix` (given without the underscore).
pub(crate) fn new(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A fresh `x-request-id` value (`req_` and 32 hex digits).
pub(crate) fn request_id() -> String {
    format!("req_{:032x}", u128::from(ulid::Ulid::new()))
}
