//! Files in `POST /v1/responses` (`docs/upstream-api.md` §5.3): the `input_file` and
//! `input_image` content parts of the input and the `file_search` tool, checked without the
//! store by [`parse_parts`] and [`parse_file_search`] (called from `validate.rs`), then
//! resolved against the stored files and vector stores by [`Storage::ground`] when the
//! response is created. What they resolve to, a [`Grounding`], shapes the generated answer
//! (`output.rs`, `grounding.rs`).

use base64::Engine;
use serde_json::Value;

use super::error::ApiError;
use super::files::Storage;
use super::validate::invalid_type;
use super::vector_stores::Hit;

/// A file named in a create's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilePart {
    /// `file_id` of an `input_file` or `input_image`: must name a live file.
    Stored { file_id: String },
    /// `file_data` (with its `filename`) or `file_url`: nothing to look up.
    Inline { filename: String },
}

/// The `file_search` tools of a create, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSearch {
    pub vector_store_ids: Vec<String>,
    pub max_num_results: usize,
}

/// One file the answer mentions: cited (`file_citation`) when it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mention {
    pub file_id: Option<String>,
    pub filename: String,
}

/// A `file_search` that ran: its queries and what it found.
#[derive(Debug, Clone)]
pub(crate) struct Searched {
    pub queries: Vec<String>,
    pub hits: Vec<Hit>,
}

/// What a response's answer draws on besides its text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grounding {
    /// Files named in the input, in order, each once.
    pub mentions: Vec<Mention>,
    /// The file search, when the request has a `file_search` tool.
    pub search: Option<Searched>,
    /// A searched vector store was still ingesting at create: the response fails with
    /// `vector_store_timeout`.
    pub store_busy: bool,
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::invalid(message, Some(param), Some("invalid_value"))
}

/// A non-null string field of a part.
fn string_field<'a>(part: &'a Value, key: &str, param: &str) -> Result<Option<&'a str>, ApiError> {
    match part.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid_type(&format!("{param}.{key}"), "a string", other)),
    }
}

/// `data:<media type>;base64,<payload>` with a payload that decodes; returns the media type.
fn data_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:")?;
    let (media, payload) = rest.split_once(";base64,")?;
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .ok()?;
    Some(media)
}

fn is_https(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host().is_some())
}

/// The last path segment of a URL, as a file name.
fn url_filename(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "file".to_owned())
}

fn input_file(part: &Value, param: &str) -> Result<FilePart, ApiError> {
    let filename = string_field(part, "filename", param)?;
    if let Some(id) = string_field(part, "file_id", param)? {
        return Ok(FilePart::Stored {
            file_id: id.to_owned(),
        });
    }
    if let Some(data) = string_field(part, "file_data", param)? {
        if data_url(data).is_none() {
            return Err(bad(
                &format!("{param}.file_data"),
                format!(
                    "Invalid '{param}.file_data': expected a base64-encoded data URL (data:<media type>;base64,<data>)."
                ),
            ));
        }
        let Some(filename) = filename.filter(|f| !f.is_empty()) else {
            return Err(ApiError::invalid(
                format!(
                    "Missing required parameter: '{param}.filename'. A 'filename' is required when 'file_data' is given."
                ),
                Some(&format!("{param}.filename")),
                Some("missing_required_parameter"),
            ));
        };
        return Ok(FilePart::Inline {
            filename: filename.to_owned(),
        });
    }
    if let Some(url) = string_field(part, "file_url", param)? {
        if !is_https(url) && !url.starts_with("http://") {
            return Err(bad(
                &format!("{param}.file_url"),
                format!("Invalid '{param}.file_url': expected an http(s) URL."),
            ));
        }
        return Ok(FilePart::Inline {
            filename: filename.map_or_else(|| url_filename(url), str::to_owned),
        });
    }
    Err(ApiError::invalid(
        format!("Invalid '{param}': one of 'file_id', 'file_data' or 'file_url' is required."),
        Some(param),
        Some("missing_required_parameter"),
    ))
}

fn input_image(part: &Value, param: &str) -> Result<Option<FilePart>, ApiError> {
    if let Some(id) = string_field(part, "file_id", param)? {
        return Ok(Some(FilePart::Stored {
            file_id: id.to_owned(),
        }));
    }
    match string_field(part, "image_url", param)? {
        Some(url) if is_https(url) => Ok(None),
        Some(url) if data_url(url).is_some_and(|m| m.starts_with("image/")) => Ok(None),
        Some(_) => Err(bad(
            &format!("{param}.image_url"),
            format!(
                "Invalid '{param}.image_url': expected an https URL or a base64-encoded image data URL (data:image/<type>;base64,<data>)."
            ),
        )),
        None => Err(ApiError::invalid(
            format!("Invalid '{param}': one of 'image_url' or 'file_id' is required."),
            Some(param),
            Some("missing_required_parameter"),
        )),
    }
}

/// The files named by the `input_file` / `input_image` parts of `input` (a string names none),
/// checked for shape: `file_data` must be a base64 data URL with a `filename`, `image_url` an
/// https URL or an image data URL.
pub(crate) fn parse_parts(input: &Value) -> Result<Vec<FilePart>, ApiError> {
    let Value::Array(items) = input else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(Value::Array(parts)) = item.get("content") else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            let param = format!("input[{i}].content[{j}]");
            match part.get("type").and_then(Value::as_str) {
                Some("input_file") => out.push(input_file(part, &param)?),
                Some("input_image") => out.extend(input_image(part, &param)?),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The `file_search` tools of `tools`, merged; `vector_store_ids` must be a non-empty list of
/// strings and `max_num_results` within 1–50.
pub(crate) fn parse_file_search(tools: &[Value]) -> Result<Option<FileSearch>, ApiError> {
    let mut found: Option<FileSearch> = None;
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("file_search") {
            continue;
        }
        let param = format!("tools[{i}].vector_store_ids");
        let ids = match tool.get("vector_store_ids") {
            Some(Value::Array(ids)) if !ids.is_empty() => ids,
            Some(Value::Array(_)) => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid '{param}': empty array. Expected an array with minimum length 1."
                    ),
                    Some(&param),
                    Some("empty_array"),
                ));
            }
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: '{param}'."),
                    Some(&param),
                    Some("missing_required_parameter"),
                ));
            }
            Some(other) => return Err(invalid_type(&param, "an array", other)),
        };
        let max_param = format!("tools[{i}].max_num_results");
        let max = match tool.get("max_num_results") {
            None | Some(Value::Null) => 10,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(m @ 1..=50) => usize::try_from(m).unwrap_or(10),
                _ => {
                    return Err(bad(
                        &max_param,
                        format!(
                            "Invalid '{max_param}': expected an integer between 1 and 50, but got {n}."
                        ),
                    ));
                }
            },
            Some(other) => return Err(invalid_type(&max_param, "an integer", other)),
        };
        let search = found.get_or_insert(FileSearch {
            vector_store_ids: Vec::new(),
            max_num_results: max,
        });
        search.max_num_results = search.max_num_results.max(max);
        for (k, id) in ids.iter().enumerate() {
            let Value::String(id) = id else {
                return Err(invalid_type(&format!("{param}[{k}]"), "a string", id));
            };
            if !search.vector_store_ids.contains(id) {
                search.vector_store_ids.push(id.clone());
            }
        }
    }
    Ok(found)
}

/// The search query drawn from the input: its first words.
pub(crate) fn query_of(input_text: &str) -> String {
    let words: Vec<&str> = input_text.split_whitespace().take(8).collect();
    if words.is_empty() {
        "files".to_owned()
    } else {
        words.join(" ")
    }
}

impl Storage {
    /// Resolves a create's files against the store: every stored file must be live (else a
    /// 400 naming `input`), every searched vector store must exist and not be expired (else a
    /// 400 naming `tools`). A store still ingesting makes the response fail later
    /// (`store_busy`) instead.
    pub(crate) fn ground(
        &mut self,
        parts: &[FilePart],
        search: Option<&FileSearch>,
        input_text: &str,
    ) -> Result<Grounding, ApiError> {
        let mut grounding = Grounding::default();
        for part in parts {
            let mention = match part {
                FilePart::Stored { file_id } => {
                    let file = self.live_file(file_id).map_err(|_| {
                        ApiError::invalid(
                            format!("No file found with id '{file_id}'."),
                            Some("input"),
                            Some("invalid_value"),
                        )
                    })?;
                    Mention {
                        file_id: Some(file.id.clone()),
                        filename: file.filename.clone(),
                    }
                }
                FilePart::Inline { filename } => Mention {
                    file_id: None,
                    filename: filename.clone(),
                },
            };
            let seen = grounding
                .mentions
                .iter()
                .any(|m| m.file_id.is_some() && m.file_id == mention.file_id);
            if !seen {
                grounding.mentions.push(mention);
            }
        }
        let Some(search) = search else {
            return Ok(grounding);
        };
        let query = query_of(input_text);
        let mut hits: Vec<Hit> = Vec::new();
        for id in &search.vector_store_ids {
            let (now, store) = self.store(id).map_err(|_| {
                ApiError::invalid(
                    format!("Vector store with id '{id}' not found."),
                    Some("tools"),
                    Some("invalid_value"),
                )
            })?;
            match store.status(now) {
                "expired" => {
                    return Err(ApiError::invalid(
                        format!("Vector store {id} is expired and can no longer be searched."),
                        Some("tools"),
                        Some("invalid_value"),
                    ));
                }
                "in_progress" => grounding.store_busy = true,
                _ => {}
            }
            store.touch(now);
            hits.extend(store.search(&query, now));
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(search.max_num_results);
        grounding.search = Some(Searched {
            queries: vec![query],
            hits,
        });
        Ok(grounding)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn param_of(input: Value) -> Option<String> {
        parse_parts(&input).err().and_then(|e| e.param)
    }

    #[test]
    fn file_parts_are_checked_for_shape() {
        let ok = json!([{"role": "user", "content": [
            {"type": "input_text", "text": "hi"},
            {"type": "input_file", "file_id": "file-abc"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,aGVsbG8=", "filename": "a.pdf"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
            {"type": "input_image", "image_url": "data:image/png;base64,aGVsbG8=", "detail": "auto"},
            {"type": "input_image", "file_id": "file-img", "detail": "auto"},
        ]}]);
        assert_eq!(
            parse_parts(&ok).ok(),
            Some(vec![
                FilePart::Stored {
                    file_id: "file-abc".into()
                },
                FilePart::Inline {
                    filename: "a.pdf".into()
                },
                FilePart::Stored {
                    file_id: "file-img".into()
                },
            ])
        );
        assert_eq!(parse_parts(&json!("just text")).ok(), Some(Vec::new()));
        let part = |p: Value| json!([{"role": "user", "content": [p]}]);
        assert_eq!(
            param_of(part(
                json!({"type": "input_file", "file_data": "data:application/pdf;base64,aGVsbG8="})
            ))
            .as_deref(),
            Some("input[0].content[0].filename")
        );
        assert_eq!(
            param_of(part(
                json!({"type": "input_file", "file_data": "aGVsbG8=", "filename": "a.pdf"})
            ))
            .as_deref(),
            Some("input[0].content[0].file_data")
        );
        assert_eq!(
            param_of(part(json!({"type": "input_image", "image_url": "http://example.com/a.png", "detail": "auto"}))).as_deref(),
            Some("input[0].content[0].image_url")
        );
        assert_eq!(
            param_of(part(json!({"type": "input_image", "image_url": "data:text/plain;base64,aGVsbG8=", "detail": "auto"}))).as_deref(),
            Some("input[0].content[0].image_url")
        );
    }

    #[test]
    fn file_search_tools_are_merged_and_checked() {
        let tools = [
            json!({"type": "file_search", "vector_store_ids": ["vs_a", "vs_b"]}),
            json!({"type": "web_search"}),
            json!({"type": "file_search", "vector_store_ids": ["vs_b", "vs_c"], "max_num_results": 3}),
        ];
        let search = parse_file_search(&tools).ok().flatten().expect("a search");
        assert_eq!(search.vector_store_ids, ["vs_a", "vs_b", "vs_c"]);
        assert_eq!(search.max_num_results, 10);
        assert!(
            parse_file_search(&[json!({"type": "file_search", "vector_store_ids": []})]).is_err()
        );
        assert!(parse_file_search(&[json!({"type": "file_search"})]).is_err());
        assert!(
            parse_file_search(&[
                json!({"type": "file_search", "vector_store_ids": ["vs"], "max_num_results": 51})
            ])
            .is_err()
        );
        assert_eq!(parse_file_search(&[]).ok(), Some(None));
    }
}
