//! Credentials in a Responses body's `tools`, hidden wherever a spec or a response is served.
//!
//! A remote tool (an MCP server, a connector) can carry credentials: an `authorization`
//! token, `headers` values, and a `server_url` with a password in its userinfo or a token in
//! its query. The spec a user submitted keeps them (a retry needs them), and the upstream
//! Response echoes its `tools` back, so the stored response holds them too. The store hands
//! out responses through [`redact_response`] (`Store::get_response`: every reader serves it
//! onwards), and the API shows a spec through [`redact_spec`]; the stored data stays intact.

use serde_json::Value;

/// What stands in for a credential.
pub const REDACTED: &str = "[redacted]";

/// Redacts the credentials of every tool in `value`'s `tools` array. Anything that is not an
/// object with a `tools` array, and any tool that is not an object, is left alone.
pub fn redact_tools(value: &mut Value) {
    let Some(tools) = value.get_mut("tools").and_then(Value::as_array_mut) else {
        return;
    };
    for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(a) = tool.get_mut("authorization") {
            *a = Value::String(REDACTED.into());
        }
        if let Some(headers) = tool.get_mut("headers") {
            match headers {
                Value::Object(map) => {
                    for h in map.values_mut() {
                        *h = Value::String(REDACTED.into());
                    }
                }
                Value::Null => {}
                other => *other = Value::String(REDACTED.into()),
            }
        }
        if let Some(url) = tool.get_mut("server_url") {
            let shown = match url.as_str() {
                Some(s) => shown_url(s),
                None if url.is_null() => continue,
                None => REDACTED.to_string(),
            };
            *url = Value::String(shown);
        }
    }
}

/// Redacts a job spec as serialized (`{..., "request": {"tools": [...]}}`).
pub fn redact_spec(spec: &mut Value) {
    if let Some(request) = spec.get_mut("request") {
        redact_tools(request);
    }
    // A job's own handlers: their environment and URLs may carry credentials.
    for handler in spec
        .get_mut("handlers")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|m| m.values_mut())
        .filter_map(Value::as_object_mut)
    {
        if let Some(env) = handler.get_mut("env").and_then(Value::as_object_mut) {
            for v in env.values_mut() {
                *v = Value::String(REDACTED.into());
            }
        }
        if let Some(url) = handler.get_mut("http")
            && let Some(s) = url.as_str()
        {
            *url = Value::String(shown_url(s));
        }
    }
}

/// Redacts a stored upstream Response (`{..., "tools": [...]}`).
pub fn redact_response(response: &mut Value) {
    redact_tools(response);
}

/// A tool's URL as shown: no userinfo, the query (and fragment) replaced by [`REDACTED`];
/// [`REDACTED`] whole when it does not parse, since then nothing in it can be placed.
fn shown_url(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else {
        return REDACTED.to_string();
    };
    // Both fail only for URLs that cannot have userinfo (`mailto:` and the like): nothing to drop.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        url.set_query(Some(REDACTED));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(REDACTED));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn authorization_and_headers() {
        let mut v = json!({"tools": [
            {"type": "mcp", "authorization": "sk-secret", "headers": {"X-Key": "k-secret", "X-Other": 3}},
            {"type": "web_search_preview"}
        ]});
        redact_tools(&mut v);
        assert_eq!(v["tools"][0]["authorization"], REDACTED);
        assert_eq!(v["tools"][0]["headers"]["X-Key"], REDACTED);
        assert_eq!(v["tools"][0]["headers"]["X-Other"], REDACTED);
        assert_eq!(v["tools"][0]["type"], "mcp");
        assert_eq!(v["tools"][1], json!({"type": "web_search_preview"}));
    }

    #[test]
    fn headers_not_an_object_are_replaced_whole() {
        let mut v = json!({"tools": [{"type": "mcp", "headers": "X-Key: k-secret"}]});
        redact_tools(&mut v);
        assert_eq!(v["tools"][0]["headers"], REDACTED);
    }

    #[test]
    fn server_url_loses_userinfo_query_and_fragment() {
        let mut v = json!({"tools": [
            {"type": "mcp", "server_url": "https://user:p4ss@mcp.example.com/sse?token=SECRET123&x=1#frag"},
            {"type": "mcp", "server_url": "https://mcp.example.com/sse"}
        ]});
        redact_tools(&mut v);
        let shown = v["tools"][0]["server_url"].as_str().unwrap();
        assert!(!shown.contains("SECRET123"), "{shown}");
        assert!(
            !shown.contains("p4ss") && !shown.contains("user"),
            "{shown}"
        );
        assert!(!shown.contains("frag"), "{shown}");
        assert!(shown.starts_with("https://mcp.example.com/sse?"), "{shown}");
        assert_eq!(v["tools"][1]["server_url"], "https://mcp.example.com/sse");
    }

    #[test]
    fn unparseable_url_is_redacted_whole() {
        let mut v = json!({"tools": [
            {"type": "mcp", "server_url": "not a url ?token=SECRET123"},
            {"type": "mcp", "server_url": 42}
        ]});
        redact_tools(&mut v);
        assert_eq!(v["tools"][0]["server_url"], REDACTED);
        assert_eq!(v["tools"][1]["server_url"], REDACTED);
    }

    #[test]
    fn no_tools_or_tools_not_an_array_are_left_alone() {
        let mut none = json!({"model": "m", "input": "i"});
        let before = none.clone();
        redact_tools(&mut none);
        assert_eq!(none, before);

        let mut odd = json!({"tools": {"authorization": "sk-secret"}});
        let before = odd.clone();
        redact_tools(&mut odd);
        assert_eq!(odd, before);

        let mut scalar = json!("tools");
        redact_tools(&mut scalar);
        assert_eq!(scalar, json!("tools"));

        let mut items = json!({"tools": ["mcp", null, {"type": "mcp", "server_url": null}]});
        let before = items.clone();
        redact_tools(&mut items);
        assert_eq!(items, before);
    }

    #[test]
    fn spec_and_response_places() {
        let mut spec = json!({"name": "n", "request": {"tools": [{"authorization": "sk-secret"}]}});
        redact_spec(&mut spec);
        assert_eq!(spec["request"]["tools"][0]["authorization"], REDACTED);

        let mut resp = json!({"id": "resp_1", "tools": [{"authorization": "sk-secret"}]});
        redact_response(&mut resp);
        assert_eq!(resp["tools"][0]["authorization"], REDACTED);

        // A spec without `request` is left alone.
        let mut bare = json!({"tools": [{"authorization": "sk-secret"}]});
        redact_spec(&mut bare);
        assert_eq!(bare["tools"][0]["authorization"], "sk-secret");
    }
}
