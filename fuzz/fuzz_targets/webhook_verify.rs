//! The inbound webhook verification (`signing`): fuzzed headers and bodies, and correctly signed
//! fuzzed bodies so the event parser behind the signature is reached. Never panics; a
//! correctly signed, fresh delivery is refused only for its body.
//!
//! Input, so that seeds are readable: three lines then the body:
//! `webhook-id`, `webhook-timestamp` (`@N`: now + N seconds, else the header as is) and
//! `webhook-signature` (`!sign REST`: a valid signature of the body, then REST as more
//! entries; else the header as is).
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use respool::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Keys, VerifyError};
use secrecy::SecretString;

const SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";

fn line<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (head, rest) = data.split_at(end);
    *data = rest.get(1..).unwrap_or(&[]);
    head
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let id = String::from_utf8_lossy(line(&mut data)).into_owned();
    let ts = line(&mut data);
    let sig = line(&mut data);
    let body = data;

    let verifier = Keys::new(&[SecretString::from(SECRET)]);
    let now = chrono::Utc::now().timestamp();
    let (ts_text, fresh) = match ts
        .strip_prefix(b"@")
        .map(|o| String::from_utf8_lossy(o).parse::<i16>())
    {
        Some(Ok(o)) => ((now + i64::from(o)).to_string(), i64::from(o).abs() < 240),
        _ => (String::from_utf8_lossy(ts).into_owned(), false),
    };
    let mut signature = String::from_utf8_lossy(sig).into_owned();
    let mut signed = false;
    if let Some(extra) = signature.strip_prefix("!sign") {
        if let Ok(ts) = ts_text.parse::<i64>() {
            let hook = standardwebhooks::Webhook::new(SECRET).expect("a valid secret");
            if let Ok(valid) = hook.sign(&id, ts, body) {
                // The rest rides along as more entries when it is visible ASCII, as Standard
                // Webhooks headers are (`standardwebhooks` refuses a header that is not, valid
                // entry or not, which respool reports as "no signature matches").
                let both = format!("{valid} {}", extra.trim());
                let ascii = both.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
                signature = if ascii { both } else { valid };
                signed = true;
            }
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (HEADER_ID, id.as_str()),
        (HEADER_TIMESTAMP, ts_text.as_str()),
        (HEADER_SIGNATURE, signature.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    let result = verifier.verify(body, &headers);

    if let Ok(v) = &result {
        assert_eq!(v.webhook_id(), id);
        assert_eq!(v.body().as_bytes(), body);
        let event: serde_json::Value = serde_json::from_slice(body).expect("verified JSON");
        assert_eq!(event["type"].as_str(), Some(v.event_type()));
    }
    let clean_id = !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic());
    if signed && fresh && clean_id {
        match &result {
            Ok(_) | Err(VerifyError::BadBody(_)) => {}
            Err(e) => panic!("a correctly signed fresh delivery was refused: {e}"),
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(body);
        let has_type = parsed.is_ok_and(|v| v.get("type").is_some_and(|t| t.is_string()));
        assert_eq!(result.is_ok(), has_type, "{result:?}");
    }
});
