//! A structured answer (`output_json`) as HTML: objects as key/value tables, lists of flat
//! objects as one table with a column per key, other lists as numbered lists, so that a
//! person reads a JSON answer as a page rather than as code. Every value is escaped: the
//! output is model text, untrusted.

use serde_json::Value;

/// Nesting shown as tables before the rest is shown as JSON text.
const MAX_DEPTH: usize = 12;

/// `value` as escaped HTML.
pub fn to_html(value: &Value) -> String {
    let mut out = String::new();
    node(value, 0, &mut out);
    out
}

fn node(v: &Value, depth: usize, out: &mut String) {
    if depth >= MAX_DEPTH {
        out.push_str("<code class=\"json-raw\">");
        escape(&v.to_string(), out);
        out.push_str("</code>");
        return;
    }
    match v {
        Value::Object(map) if map.is_empty() => out.push_str("<span class=\"muted\">{}</span>"),
        Value::Object(map) => {
            out.push_str("<table class=\"json-obj\"><tbody>");
            for (k, v) in map {
                out.push_str("<tr><th scope=\"row\">");
                escape(k, out);
                out.push_str("</th><td>");
                node(v, depth + 1, out);
                out.push_str("</td></tr>");
            }
            out.push_str("</tbody></table>");
        }
        Value::Array(items) if items.is_empty() => {
            out.push_str("<span class=\"muted\">(none)</span>");
        }
        Value::Array(items) => match columns(items) {
            Some(keys) => {
                out.push_str("<table class=\"json-rows\"><thead><tr>");
                for k in &keys {
                    out.push_str("<th scope=\"col\">");
                    escape(k, out);
                    out.push_str("</th>");
                }
                out.push_str("</tr></thead><tbody>");
                for item in items {
                    out.push_str("<tr>");
                    for k in &keys {
                        out.push_str("<td>");
                        match item.get(k) {
                            Some(v) => node(v, depth + 1, out),
                            None => out.push_str("<span class=\"muted\">—</span>"),
                        }
                        out.push_str("</td>");
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table>");
            }
            None => {
                out.push_str("<ol class=\"json-list\">");
                for item in items {
                    out.push_str("<li>");
                    node(item, depth + 1, out);
                    out.push_str("</li>");
                }
                out.push_str("</ol>");
            }
        },
        Value::String(s) => {
            out.push_str("<span class=\"json-str\">");
            escape(s, out);
            out.push_str("</span>");
        }
        Value::Null => out.push_str("<span class=\"muted\">null</span>"),
        other => {
            out.push_str("<span class=\"json-num\">");
            escape(&other.to_string(), out);
            out.push_str("</span>");
        }
    }
}

/// The columns of a list shown as one table: every item an object of scalars, keys in order
/// of first appearance, at most 12 of them; `None` when the list is not like that.
fn columns(items: &[Value]) -> Option<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for item in items {
        let obj = item.as_object()?;
        for (k, v) in obj {
            if v.is_object() || v.is_array() {
                return None;
            }
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    (!keys.is_empty() && keys.len() <= 12).then_some(keys)
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_are_tables_and_lists_of_flat_objects_one_table() {
        let html = to_html(&json!({
            "title": "Dune",
            "books": [{"name": "Dune", "year": 1965}, {"name": "Messiah", "pages": 256}],
            "tags": ["sf", "classic"],
            "empty": [],
            "author": null,
        }));
        assert!(html.starts_with("<table class=\"json-obj\">"), "{html}");
        // One header per key, in order of first appearance; a missing cell shows a dash.
        assert!(html.contains("<thead><tr><th scope=\"col\">name</th><th scope=\"col\">year</th><th scope=\"col\">pages</th></tr></thead>"), "{html}");
        assert!(
            html.contains("<td><span class=\"muted\">—</span></td>"),
            "{html}"
        );
        assert!(
            html.contains("<ol class=\"json-list\"><li><span class=\"json-str\">sf</span></li>"),
            "{html}"
        );
        assert!(html.contains("(none)"));
        assert!(html.contains("<span class=\"muted\">null</span>"));
    }

    #[test]
    fn model_text_is_escaped_everywhere() {
        let evil = "<script>alert('x')</script>&\"";
        let html = to_html(&json!({evil: [evil, {evil: evil}], "k": [{evil: 1}]}));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("alert('x')"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    }

    #[test]
    fn deep_nesting_ends_as_text() {
        let mut v = json!("leaf");
        for _ in 0..40 {
            v = json!({"d": v});
        }
        let html = to_html(&v);
        assert_eq!(html.matches("<table").count(), MAX_DEPTH);
        assert!(html.contains("<code class=\"json-raw\">"), "{html}");
        assert!(html.contains("&quot;leaf&quot;"), "{html}");
    }
}
