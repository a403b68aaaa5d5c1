//! OpenAI's cursor lists for files and vector stores: `limit`, `order` (`asc`|`desc`, newest
//! first by default), `after` and `before` (object ids), answered as
//! `{"object": "list", "data", "first_id", "last_id", "has_more"}`.

use serde_json::{Value, json};

use super::error::ApiError;

/// The paging part of a list query, plus every other parameter for the caller.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub limit: usize,
    pub ascending: bool,
    pub after: Option<String>,
    pub before: Option<String>,
    /// Parameters other than the paging ones, in order.
    pub rest: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses a raw query; `limit` must be in `1..=max_limit`.
    pub fn parse(
        raw: Option<&str>,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<Self, ApiError> {
        let mut q = Self {
            limit: default_limit,
            ascending: false,
            after: None,
            before: None,
            rest: Vec::new(),
        };
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=max_limit).contains(&n) => q.limit = n,
                    _ => {
                        return Err(ApiError::invalid(
                            format!(
                                "Invalid 'limit': expected an integer between 1 and {max_limit}, but got '{value}'."
                            ),
                            Some("limit"),
                            Some("invalid_value"),
                        ));
                    }
                },
                "order" => match value.as_ref() {
                    "asc" => q.ascending = true,
                    "desc" => q.ascending = false,
                    other => {
                        return Err(ApiError::invalid(
                            format!(
                                "Invalid value: '{other}'. Supported values are: 'asc' and 'desc'."
                            ),
                            Some("order"),
                            Some("invalid_value"),
                        ));
                    }
                },
                "after" => q.after = Some(value.into_owned()),
                "before" => q.before = Some(value.into_owned()),
                _ => q.rest.push((key.into_owned(), value.into_owned())),
            }
        }
        Ok(q)
    }

    /// The value of a non-paging parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.rest
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// One page of `items` (given oldest first, each with its id) as a list object.
    pub fn page(&self, mut items: Vec<(String, Value)>) -> Value {
        if !self.ascending {
            items.reverse();
        }
        let position =
            |items: &[(String, Value)], id: &str| items.iter().position(|(i, _)| i == id);
        if let Some(after) = &self.after {
            items = match position(&items, after) {
                Some(p) => items.split_off(p + 1),
                None => Vec::new(),
            };
        }
        let mut has_more;
        if let Some(before) = &self.before {
            items.truncate(position(&items, before).unwrap_or(0));
            // The page nearest the cursor.
            has_more = items.len() > self.limit;
            let skip = items.len().saturating_sub(self.limit);
            items.drain(..skip);
        } else {
            has_more = items.len() > self.limit;
            items.truncate(self.limit);
        }
        if items.is_empty() {
            has_more = false;
        }
        let first_id = items.first().map(|(id, _)| id.clone());
        let last_id = items.last().map(|(id, _)| id.clone());
        let data: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
        json!({
            "object": "list",
            "data": data,
            "first_id": first_id,
            "last_id": last_id,
            "has_more": has_more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(String, Value)> {
        (0..n).map(|i| (format!("id{i}"), json!(i))).collect()
    }

    fn ids(page: &Value) -> Vec<i64> {
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(Value::as_i64)
            .collect()
    }

    #[test]
    fn pages_newest_first_by_default() {
        let q = ListQuery::parse(Some("limit=2"), 20, 100).expect("query");
        let page = q.page(items(5));
        assert_eq!(ids(&page), [4, 3]);
        assert_eq!(page["has_more"], true);
        let q = ListQuery::parse(Some("limit=2&after=id3"), 20, 100).expect("query");
        assert_eq!(ids(&q.page(items(5))), [2, 1]);
        let q = ListQuery::parse(Some("limit=10&order=asc&after=id2"), 20, 100).expect("query");
        let page = q.page(items(5));
        assert_eq!(ids(&page), [3, 4]);
        assert_eq!(page["has_more"], false);
        let q = ListQuery::parse(Some("limit=2&order=asc&before=id4"), 20, 100).expect("query");
        assert_eq!(ids(&q.page(items(5))), [2, 3]);
    }

    #[test]
    fn refuses_bad_limits_and_orders() {
        assert!(ListQuery::parse(Some("limit=0"), 20, 100).is_err());
        assert!(ListQuery::parse(Some("limit=101"), 20, 100).is_err());
        assert!(ListQuery::parse(Some("limit=x"), 20, 100).is_err());
        assert!(ListQuery::parse(Some("order=up"), 20, 100).is_err());
        let q = ListQuery::parse(Some("purpose=batch&filter=failed"), 20, 100).expect("query");
        assert_eq!(q.get("purpose"), Some("batch"));
        assert_eq!(q.get("filter"), Some("failed"));
    }
}
