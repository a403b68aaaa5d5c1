//! Who may use the API and the pages: the configured bearer tokens, compared in constant
//! time, and the rule when none is configured (only loopback peers). The API's middleware and
//! the pages' session both decide with these.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// Compares two strings in time independent of where they differ (hashing first makes the
/// lengths equal too).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The rule when no tokens are configured: only loopback peers are served (the web pages use
/// it too).
pub fn is_loopback_peer(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback())
}

/// Whether `given` is one of the configured API tokens.
pub fn is_valid_token(tokens: &[secrecy::SecretString], given: &str) -> bool {
    tokens
        .iter()
        .any(|k| constant_time_eq(k.expose_secret(), given))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq() {
        assert!(super::constant_time_eq("abc", "abc"));
        assert!(!super::constant_time_eq("abc", "abd"));
        assert!(!super::constant_time_eq("abc", "abcd"));
    }
}
