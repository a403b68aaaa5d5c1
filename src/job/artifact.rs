//! Artifacts: what a finished response made besides its text (`upstream-api.md` §1.5, §1.6).
//!
//! - **Images**: each `image_generation_call` item carries its picture as base64 in `result`.
//!   [`find`] decodes them; once one is on disk, [`mark_kept`] takes its base64 out of the
//!   response (the item keeps a `respool_artifact` key naming the file instead), so the stored
//!   JSON stays small.
//! - **Container files**: code interpreter writes files into a container that expires 20
//!   minutes after its last use. [`find`] names the containers (every `code_interpreter_call`'s
//!   `container_id`) and the files the answer cites (`container_file_citation`), for the
//!   daemon to download before they are gone.
//!
//! Pure: no I/O. Names are made safe here ([`safe_name`]) and unique per job ([`Names`]).

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::Value;

/// The key an `image_generation_call` item gets in place of its base64 `result`.
pub const ARTIFACT_KEY: &str = "respool_artifact";
/// The longest name kept, in characters (the extension is kept when a name is cut).
const MAX_NAME_CHARS: usize = 120;

/// An image decoded from an `image_generation_call` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The item's place in `output`.
    pub index: usize,
    /// The item's id (`ig_…`).
    pub item_id: String,
    /// Its file name in the job's artifacts (`image-1.png`).
    pub name: String,
    pub media_type: String,
    pub data: Vec<u8>,
}

/// A container file the answer cites.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cited {
    pub container_id: String,
    pub file_id: String,
    pub filename: String,
}

/// An image item whose `result` could not be kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    pub item_id: String,
    pub name: String,
    pub error: String,
}

/// What [`find`] found in a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub images: Vec<Image>,
    pub bad_images: Vec<BadImage>,
    /// Every container the response's code ran in, in order of first mention.
    pub containers: Vec<String>,
    /// The container files the answer cites, each once, in order.
    pub cited: Vec<Cited>,
}

impl Found {
    /// Whether the response made nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
            && self.bad_images.is_empty()
            && self.containers.is_empty()
            && self.cited.is_empty()
    }
}

/// The media type of image bytes, by their signature; `None` when they are not an image a
/// browser shows.
pub fn image_type(data: &[u8]) -> Option<(&'static str, &'static str)> {
    if infer::image::is_png(data) {
        Some(("image/png", "png"))
    } else if infer::image::is_jpeg(data) {
        Some(("image/jpeg", "jpg"))
    } else if infer::image::is_webp(data) {
        Some(("image/webp", "webp"))
    } else if infer::image::is_gif(data) {
        Some(("image/gif", "gif"))
    } else {
        None
    }
}

/// The media type of a file by its name, for serving it (`application/octet-stream` when
/// unknown). Images are checked by their bytes before they are shown inline.
pub fn media_type_of(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Finds the artifacts of a response. `names` makes their names unique within the job. Never
/// fails: an item that is not what it should be is skipped or listed as bad.
pub fn find(response: &Value, names: &mut Names) -> Found {
    let mut found = Found::default();
    let Some(output) = response.get("output").and_then(Value::as_array) else {
        return found;
    };
    let mut containers = BTreeSet::new();
    let mut cited = BTreeSet::new();
    let mut image_no = 0;
    for (index, item) in output.iter().enumerate() {
        match item.get("type").and_then(Value::as_str) {
            Some("image_generation_call") => {
                let Some(b64) = item.get("result").and_then(Value::as_str) else {
                    continue;
                };
                image_no += 1;
                let item_id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| format!("its base64 does not decode: {e}"))
                    .and_then(|data| match image_type(&data) {
                        Some((media, ext)) => Ok((data, media, ext)),
                        None => Err("its bytes are not a PNG, JPEG, WebP or GIF image".into()),
                    });
                match decoded {
                    Ok((data, media, ext)) => {
                        let name = names.claim(&format!("image-{image_no}.{ext}"));
                        found.images.push(Image {
                            index,
                            item_id,
                            name,
                            media_type: media.to_string(),
                            data,
                        });
                    }
                    Err(error) => {
                        let name = names.claim(&format!("image-{image_no}"));
                        found.bad_images.push(BadImage {
                            item_id,
                            name,
                            error,
                        });
                    }
                }
            }
            Some("code_interpreter_call") => {
                if let Some(c) = item.get("container_id").and_then(Value::as_str)
                    && !c.is_empty()
                    && containers.insert(c.to_string())
                {
                    found.containers.push(c.to_string());
                }
            }
            Some("message") => {
                let annotations = item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|part| part.get("annotations").and_then(Value::as_array))
                    .flatten();
                for a in annotations {
                    if a.get("type").and_then(Value::as_str) != Some("container_file_citation") {
                        continue;
                    }
                    let field = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default();
                    let (container_id, file_id) = (field("container_id"), field("file_id"));
                    if container_id.is_empty() || file_id.is_empty() {
                        continue;
                    }
                    let c = Cited {
                        container_id: container_id.to_string(),
                        file_id: file_id.to_string(),
                        filename: field("filename").to_string(),
                    };
                    if cited.insert((c.container_id.clone(), c.file_id.clone())) {
                        if containers.insert(c.container_id.clone()) {
                            found.containers.push(c.container_id.clone());
                        }
                        found.cited.push(c);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Takes the base64 of image item `index` out of `response` once its bytes are kept as `name`:
/// the item gets `result: null` and `respool_artifact: NAME`.
pub fn mark_kept(response: &mut Value, index: usize, name: &str) {
    if let Some(item) = response
        .get_mut("output")
        .and_then(|o| o.get_mut(index))
        .and_then(Value::as_object_mut)
    {
        item.insert("result".into(), Value::Null);
        item.insert(ARTIFACT_KEY.into(), Value::String(name.to_string()));
    }
}

/// A name that is safe as a file name and in a URL path segment once encoded: the last
/// component of `raw` (a container path such as `/mnt/data/out.csv` gives `out.csv`), without
/// control characters, `/`, `\`, NUL or a leading dot, at most [`MAX_NAME_CHARS`] characters
/// (the extension kept), never empty (`file`).
pub fn safe_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .map(|c| {
            if matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    let cleaned = if cleaned.is_empty() {
        "file".to_string()
    } else {
        cleaned
    };
    if cleaned.chars().count() <= MAX_NAME_CHARS {
        return cleaned;
    }
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.chars().count() <= 10 => (s, Some(e)),
        _ => (cleaned.as_str(), None),
    };
    cut(stem, ext, MAX_NAME_CHARS)
}

/// `stem.ext` in at most `max` characters: the stem cut (and trimmed, so it ends in no space
/// or dot), the extension kept.
fn cut(stem: &str, ext: Option<&str>, max: usize) -> String {
    let keep = max.saturating_sub(ext.map_or(0, |e| e.chars().count() + 1));
    let stem: String = stem.chars().take(keep).collect();
    let stem = stem.trim_end_matches([' ', '.']).trim_end();
    let stem = if stem.is_empty() { "file" } else { stem };
    match ext {
        Some(e) => format!("{stem}.{e}"),
        None => stem.to_string(),
    }
}

/// Characters that change how a name reads without being seen: bidirectional controls
/// (`x\u{202e}gnp.exe` reads as `xexe.png`), zero-width characters, the soft hyphen, the byte
/// order mark.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// Whether `name` is one [`safe_name`] could have made (what the API accepts as a name).
pub fn is_safe_name(name: &str) -> bool {
    safe_name(name) == name
}

/// The names taken in one job's artifacts: a name asked for twice gets ` (2)`, ` (3)`… before
/// its extension.
#[derive(Debug, Clone, Default)]
pub struct Names(BTreeSet<String>);

impl Names {
    /// A fresh set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A safe, unique name for `wanted`, now taken.
    pub fn claim(&mut self, wanted: &str) -> String {
        let base = safe_name(wanted);
        if self.0.insert(base.clone()) {
            return base;
        }
        let (stem, ext) = match base.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() && e.chars().count() <= 10 => (s.to_string(), Some(e)),
            _ => (base.clone(), None),
        };
        // The suffix fits within the limit: the stem gives way.
        (2..)
            .map(|n| {
                let suffix = format!(" ({n})");
                let room = MAX_NAME_CHARS - suffix.chars().count();
                let head = cut(&stem, None, room - ext.map_or(0, |e| e.chars().count() + 1));
                match ext {
                    Some(e) => format!("{head}{suffix}.{e}"),
                    None => format!("{head}{suffix}"),
                }
            })
            .find(|candidate| self.0.insert(candidate.clone()))
            .expect("some number is free")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn images_are_decoded_and_taken_out_of_the_response() {
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
        jpeg.extend_from_slice(b"rest of a jpeg");
        let mut response = json!({"output": [
            {"id": "ig_1", "type": "image_generation_call", "status": "completed", "result": b64(PNG)},
            {"id": "ig_2", "type": "image_generation_call", "status": "completed", "result": b64(&jpeg)},
            {"id": "ig_3", "type": "image_generation_call", "status": "failed", "result": null},
            {"id": "ig_4", "type": "image_generation_call", "status": "completed", "result": "not base64!"},
            {"id": "ig_5", "type": "image_generation_call", "status": "completed", "result": b64(b"%PDF-1.7")},
            {"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": "Here.", "annotations": []}]},
        ]});
        let found = find(&response, &mut Names::new());
        for image in &found.images {
            mark_kept(&mut response, image.index, &image.name);
        }
        let names: Vec<&str> = found.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["image-1.png", "image-2.jpg"]);
        assert_eq!(found.images[0].data, PNG);
        assert_eq!(found.images[0].media_type, "image/png");
        assert_eq!(found.images[1].data, jpeg);
        assert_eq!(found.images[1].item_id, "ig_2");
        let bad: Vec<(&str, &str)> = found
            .bad_images
            .iter()
            .map(|b| (b.item_id.as_str(), b.name.as_str()))
            .collect();
        assert_eq!(bad, [("ig_4", "image-3"), ("ig_5", "image-4")]);
        assert!(found.bad_images[0].error.contains("base64"));
        assert!(found.bad_images[1].error.contains("not a PNG"));
        // The base64 is out of the stored response; the item names its file.
        assert_eq!(response["output"][0]["result"], Value::Null);
        assert_eq!(response["output"][0][ARTIFACT_KEY], "image-1.png");
        assert_eq!(response["output"][1][ARTIFACT_KEY], "image-2.jpg");
        // A bad one keeps what it had, for whoever reads the response.
        assert_eq!(response["output"][3]["result"], "not base64!");
        assert!(!response.to_string().contains(&b64(PNG)));
    }

    #[test]
    fn containers_and_cited_files_are_found_once_each() {
        let cite = |c: &str, f: &str, name: &str| {
            json!({"type": "container_file_citation", "container_id": c, "file_id": f,
                   "filename": name, "start_index": 0, "end_index": 3})
        };
        let response = json!({"output": [
            {"id": "ci_1", "type": "code_interpreter_call", "container_id": "cntr_a", "code": "1+1", "outputs": null},
            {"id": "ci_2", "type": "code_interpreter_call", "container_id": "cntr_a"},
            {"id": "ci_3", "type": "code_interpreter_call", "container_id": ""},
            {"id": "msg_1", "type": "message", "content": [
                {"type": "output_text", "text": "abc", "annotations": [
                    cite("cntr_a", "cfile_1", "results.csv"),
                    cite("cntr_a", "cfile_1", "results.csv"),
                    {"type": "url_citation", "url": "https://example.com", "start_index": 0, "end_index": 1, "title": "t"},
                    cite("cntr_b", "cfile_2", "chart.png"),
                    cite("cntr_b", "", "nameless.png"),
                    {"type": "container_file_citation"},
                ]},
                {"type": "refusal", "refusal": "no"},
            ]},
        ]});
        let found = find(&response, &mut Names::new());
        assert_eq!(found.containers, ["cntr_a", "cntr_b"]);
        assert_eq!(
            found.cited,
            [
                Cited {
                    container_id: "cntr_a".into(),
                    file_id: "cfile_1".into(),
                    filename: "results.csv".into()
                },
                Cited {
                    container_id: "cntr_b".into(),
                    file_id: "cfile_2".into(),
                    filename: "chart.png".into()
                },
            ]
        );
    }

    #[test]
    fn responses_without_artifacts_find_nothing() {
        for v in [
            json!(null),
            json!({}),
            json!({"output": null}),
            json!({"output": "x"}),
            json!({"output": [1, "two", null, {"type": 3}]}),
            json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "hi", "annotations": []}]}]}),
        ] {
            assert!(find(&v, &mut Names::new()).is_empty(), "{v}");
        }
    }

    #[test]
    fn names_are_safe_and_unique() {
        assert_eq!(safe_name("/mnt/data/results.csv"), "results.csv");
        assert_eq!(safe_name("..\\..\\evil.sh"), "evil.sh");
        assert_eq!(safe_name("../"), "file");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(safe_name("Größe: übersicht?.csv"), "Größe_ übersicht_.csv");
        let long = format!("{}.parquet", "ж".repeat(300));
        let cut = safe_name(&long);
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert!(cut.ends_with(".parquet"));
        let mut names = Names::new();
        assert_eq!(names.claim("out.csv"), "out.csv");
        assert_eq!(names.claim("/other/out.csv"), "out (2).csv");
        assert_eq!(names.claim("out.csv"), "out (3).csv");
        assert_eq!(names.claim("README"), "README");
        assert_eq!(names.claim("README"), "README (2)");
        // Long names keep their suffix and extension within the limit, and stay stable.
        let long = format!("{}.csv", "x".repeat(200));
        let first = names.claim(&long);
        let second = names.claim(&long);
        assert_eq!(first.chars().count(), MAX_NAME_CHARS);
        assert!(second.ends_with(" (2).csv") && second.chars().count() <= MAX_NAME_CHARS);
        assert!(is_safe_name(&first) && is_safe_name(&second));
        let spaced = format!("{}b", "word ".repeat(30));
        assert!(
            is_safe_name(&safe_name(&spaced)),
            "{:?}",
            safe_name(&spaced)
        );
        assert_eq!(safe_name("x\u{202e}gnp.exe"), "xgnp.exe");
        assert_eq!(safe_name("a\u{200b}b.png"), "ab.png");
    }

    proptest! {
        #[test]
        fn any_name_becomes_a_safe_one(raw in ".{0,300}") {
            let name = safe_name(&raw);
            prop_assert!(!name.is_empty());
            prop_assert!(!name.contains(['/', '\\', '\0']));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(!name.chars().any(char::is_control));
            prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
            prop_assert!(is_safe_name(&name), "{name:?} is not stable");
        }

        #[test]
        fn claimed_names_are_safe_and_distinct(raws in prop::collection::vec(".{0,200}", 1..8)) {
            let mut names = Names::new();
            let mut seen = BTreeSet::new();
            for raw in raws.iter().chain(raws.iter()) {
                let name = names.claim(raw);
                prop_assert!(is_safe_name(&name), "{name:?} from {raw:?}");
                prop_assert!(seen.insert(name.clone()), "{name} twice");
            }
        }

        #[test]
        fn any_json_is_read_without_panicking(raw in crate::job::artifact::tests::json_strategy()) {
            let mut v = raw;
            let found = find(&v, &mut Names::new());
            for image in &found.images {
                mark_kept(&mut v, image.index, &image.name);
                prop_assert_eq!(&v["output"][image.index][ARTIFACT_KEY], &json!(image.name));
            }
            let mut seen = BTreeSet::new();
            for n in found.images.iter().map(|i| &i.name).chain(found.bad_images.iter().map(|b| &b.name)) {
                prop_assert!(seen.insert(n.clone()), "{n} twice");
            }
        }
    }

    pub(super) fn json_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop_oneof![
                Just("image_generation_call".to_string()),
                Just("code_interpreter_call".to_string()),
                Just("message".to_string()),
                Just("container_file_citation".to_string()),
                Just(b64(PNG)),
                ".{0,12}",
            ]
            .prop_map(Value::String),
        ];
        let keys = prop_oneof![
            Just("type".to_string()),
            Just("output".to_string()),
            Just("result".to_string()),
            Just("container_id".to_string()),
            Just("file_id".to_string()),
            Just("content".to_string()),
            Just("annotations".to_string()),
            Just("id".to_string()),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
