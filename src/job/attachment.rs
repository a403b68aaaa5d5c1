//! Attachments: local documents and images a job sends with its input.
//!
//! A file is checked here before anything is sent: its name says what it is (`.pdf`, `.png`,
//! `.md`…), its bytes must agree (a PDF starts `%PDF-`, a PNG with its signature, a text file
//! is UTF-8), and it must be neither empty nor over [`MAX_ATTACHMENT_BYTES`]. An accepted
//! file is named by an [`attachment id`](attachment_id): `att_` and the SHA-256 of its name
//! and bytes, so a job spec that names it changes when either does.
//!
//! Documents go to OpenAI as `input_file` parts (uploaded with the Files API, purpose
//! `user_data`); images as `input_image` parts, inline as a data URL up to
//! [`MAX_INLINE_IMAGE_BYTES`] and uploaded (purpose `vision`) above.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest file a job may attach (OpenAI's documented limit for the file content of one
/// request is 32 MB).
pub const MAX_ATTACHMENT_BYTES: usize = 32 * 1024 * 1024;
/// The most bytes all of one job's attachments may have together.
pub const MAX_JOB_ATTACHMENT_BYTES: u64 = MAX_ATTACHMENT_BYTES as u64;
/// The most attachments one job may have.
pub const MAX_ATTACHMENTS: usize = 100;
/// Images up to this size go inline (a base64 data URL in the create); larger ones are
/// uploaded once and named by their file id.
pub const MAX_INLINE_IMAGE_BYTES: u64 = 256 * 1024;
/// The longest file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// What OpenAI does with an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An `input_file` part: PDFs (text and page images), office documents, text and code.
    Document,
    /// An `input_image` part.
    Image,
}

impl Kind {
    /// The Files API `purpose` respool uploads this kind with.
    pub fn purpose(self) -> &'static str {
        match self {
            Self::Document => "user_data",
            Self::Image => "vision",
        }
    }
}

/// How a file's bytes are checked against its name.
#[derive(Clone, Copy)]
enum Check {
    /// UTF-8 text without NUL bytes.
    Text,
    Magic(fn(&[u8]) -> bool),
}

/// The kinds of file respool attaches, by extension (lowercase): media type, kind, check.
const TYPES: &[(&str, &str, Kind, Check)] = &[
    (
        "pdf",
        "application/pdf",
        Kind::Document,
        Check::Magic(infer::archive::is_pdf),
    ),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Kind::Document,
        Check::Magic(infer::archive::is_zip),
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        Kind::Document,
        Check::Magic(infer::archive::is_zip),
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Kind::Document,
        Check::Magic(infer::archive::is_zip),
    ),
    ("txt", "text/plain", Kind::Document, Check::Text),
    ("md", "text/markdown", Kind::Document, Check::Text),
    ("markdown", "text/markdown", Kind::Document, Check::Text),
    ("csv", "text/csv", Kind::Document, Check::Text),
    (
        "tsv",
        "text/tab-separated-values",
        Kind::Document,
        Check::Text,
    ),
    ("json", "application/json", Kind::Document, Check::Text),
    ("html", "text/html", Kind::Document, Check::Text),
    ("htm", "text/html", Kind::Document, Check::Text),
    ("xml", "application/xml", Kind::Document, Check::Text),
    ("tex", "text/x-tex", Kind::Document, Check::Text),
    ("py", "text/x-python", Kind::Document, Check::Text),
    ("rs", "text/x-rust", Kind::Document, Check::Text),
    ("js", "text/javascript", Kind::Document, Check::Text),
    ("ts", "application/typescript", Kind::Document, Check::Text),
    ("java", "text/x-java", Kind::Document, Check::Text),
    ("c", "text/x-c", Kind::Document, Check::Text),
    ("h", "text/x-c", Kind::Document, Check::Text),
    ("cpp", "text/x-c++", Kind::Document, Check::Text),
    ("go", "text/x-golang", Kind::Document, Check::Text),
    ("rb", "text/x-ruby", Kind::Document, Check::Text),
    ("sh", "application/x-sh", Kind::Document, Check::Text),
    ("css", "text/css", Kind::Document, Check::Text),
    (
        "png",
        "image/png",
        Kind::Image,
        Check::Magic(infer::image::is_png),
    ),
    (
        "jpg",
        "image/jpeg",
        Kind::Image,
        Check::Magic(infer::image::is_jpeg),
    ),
    (
        "jpeg",
        "image/jpeg",
        Kind::Image,
        Check::Magic(infer::image::is_jpeg),
    ),
    (
        "gif",
        "image/gif",
        Kind::Image,
        Check::Magic(infer::image::is_gif),
    ),
    (
        "webp",
        "image/webp",
        Kind::Image,
        Check::Magic(infer::image::is_webp),
    ),
];

/// A checked attachment, without its bytes: what the store keeps beside them and what a job
/// view shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentMeta {
    /// `att_` and 64 hex digits.
    pub id: String,
    /// The file's name (no folders), as OpenAI will see it.
    pub filename: String,
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex: the key of respool's upload cache.
    pub sha256: String,
    #[schema(value_type = String)]
    pub kind: Kind,
}

/// Hex of a SHA-256 digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the attachment named `filename` with these bytes.
pub fn attachment_id(filename: &str, data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(filename.as_bytes());
    h.update([0u8]);
    h.update(data);
    format!("att_{}", hex(&h.finalize()))
}

/// Whether `s` is well formed as an attachment id.
pub fn is_attachment_id(s: &str) -> bool {
    s.strip_prefix("att_").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The regex of an attachment id, for the API's document.
pub const ID_PATTERN: &str = "^att_[0-9a-f]{64}$";

/// Checks a file name: 1 to 255 bytes, no folders, no control characters.
pub fn check_filename(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_FILENAME_BYTES
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "`{}` is not a file name: 1 to {MAX_FILENAME_BYTES} bytes, no `/`, `\\` or control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// The supported extensions, for messages.
pub fn supported() -> String {
    TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
}

/// Checks a file for attaching: its name, size and that its bytes are what its name says.
/// The error is a sentence naming the file.
pub fn check(filename: &str, data: &[u8]) -> Result<AttachmentMeta, String> {
    check_filename(filename)?;
    if data.is_empty() {
        return Err(format!("`{filename}` is empty"));
    }
    if data.len() > MAX_ATTACHMENT_BYTES {
        return Err(format!(
            "`{filename}` is {} bytes; an attachment may have at most {MAX_ATTACHMENT_BYTES}",
            data.len()
        ));
    }
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let Some(&(_, media_type, kind, check)) = TYPES.iter().find(|t| t.0 == ext) else {
        return Err(format!(
            "`{filename}`: respool attaches files named .{}; this one's type is not supported",
            supported().replace(", ", ", .")
        ));
    };
    let ok = match check {
        Check::Text => std::str::from_utf8(data).is_ok_and(|t| !t.contains('\0')),
        Check::Magic(is) => is(data),
    };
    if !ok {
        return Err(match check {
            Check::Text => format!("`{filename}` is not UTF-8 text, as a .{ext} file must be"),
            Check::Magic(_) => format!(
                "`{filename}` is not a {} file: its content does not match its name",
                ext.to_ascii_uppercase()
            ),
        });
    }
    Ok(AttachmentMeta {
        id: attachment_id(filename, data),
        filename: filename.to_string(),
        media_type: media_type.to_string(),
        bytes: data.len() as u64,
        sha256: hex(&Sha256::digest(data)),
        kind,
    })
}

/// The content part that sends an attachment: an uploaded file by its id, or a small image
/// inline (`data` is needed only then).
pub fn input_part(
    meta: &AttachmentMeta,
    file_id: Option<&str>,
    data: Option<&[u8]>,
) -> serde_json::Value {
    use base64::Engine;
    match (meta.kind, file_id) {
        (Kind::Document, id) => serde_json::json!({"type": "input_file", "file_id": id}),
        (Kind::Image, Some(id)) => {
            serde_json::json!({"type": "input_image", "file_id": id, "detail": "auto"})
        }
        (Kind::Image, None) => serde_json::json!({
            "type": "input_image",
            "image_url": format!(
                "data:{};base64,{}",
                meta.media_type,
                base64::engine::general_purpose::STANDARD.encode(data.unwrap_or_default())
            ),
            "detail": "auto",
        }),
    }
}

/// Whether this attachment goes inline (a small image) rather than uploaded.
pub fn inline(meta: &AttachmentMeta) -> bool {
    meta.kind == Kind::Image && meta.bytes <= MAX_INLINE_IMAGE_BYTES
}

/// Puts content `parts` into a create body's `input`, before what the job wrote: a string
/// input becomes one user message of the parts and the text; a list of items gets one user
/// message of the parts in front.
pub fn with_parts(
    input: Option<serde_json::Value>,
    parts: Vec<serde_json::Value>,
) -> serde_json::Value {
    use serde_json::{Value, json};
    match input {
        Some(Value::String(text)) => {
            let mut content = parts;
            content.push(json!({"type": "input_text", "text": text}));
            json!([{"role": "user", "content": content}])
        }
        Some(Value::Array(items)) => {
            let mut out = vec![json!({"role": "user", "content": parts})];
            out.extend(items);
            Value::Array(out)
        }
        _ => json!([{"role": "user", "content": parts}]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

    #[test]
    fn names_and_bytes_must_agree() {
        let pdf = check("report.PDF", PDF).unwrap();
        assert_eq!(pdf.media_type, "application/pdf");
        assert_eq!(pdf.kind, Kind::Document);
        assert_eq!(pdf.bytes, PDF.len() as u64);
        assert!(is_attachment_id(&pdf.id));
        let png = check("chart.png", PNG).unwrap();
        assert_eq!(png.kind, Kind::Image);
        assert!(check("notes.md", "Ünïcödé notes\n".as_bytes()).is_ok());

        let e = check("report.pdf", b"hello").unwrap_err();
        assert!(e.contains("`report.pdf` is not a PDF file"), "{e}");
        let e = check("chart.png", PDF).unwrap_err();
        assert!(e.contains("not a PNG"), "{e}");
        let e = check("notes.txt", b"\xff\xfe").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = check("notes.txt", b"a\0b").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = check("empty.txt", b"").unwrap_err();
        assert!(e.contains("`empty.txt` is empty"), "{e}");
        let e = check("tool.exe", b"MZ").unwrap_err();
        assert!(e.contains("not supported") && e.contains(".pdf"), "{e}");
        let e = check("noext", b"x").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let big = vec![b'a'; MAX_ATTACHMENT_BYTES + 1];
        let e = check("big.txt", &big).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        for bad in ["", "a/b.txt", "..", "a\\b.txt", "a\nb.txt"] {
            assert!(check(bad, b"x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_id_changes_with_the_name_or_the_bytes() {
        let a = attachment_id("a.txt", b"x");
        assert_ne!(a, attachment_id("b.txt", b"x"));
        assert_ne!(a, attachment_id("a.txt", b"y"));
        // The name and the bytes are kept apart: moving a byte across changes the id.
        assert_ne!(attachment_id("ab", b"c"), attachment_id("a", b"bc"));
        assert_eq!(a, attachment_id("a.txt", b"x"));
    }

    #[test]
    fn parts_go_before_the_jobs_own_input() {
        let meta = check("r.pdf", PDF).unwrap();
        let part = input_part(&meta, Some("file-1"), None);
        let v = with_parts(Some(serde_json::json!("Summarise it")), vec![part.clone()]);
        assert_eq!(
            v,
            serde_json::json!([{"role": "user", "content": [
                {"type": "input_file", "file_id": "file-1"},
                {"type": "input_text", "text": "Summarise it"}]}])
        );
        let items = serde_json::json!([{"role": "user", "content": "hi"}]);
        let v = with_parts(Some(items), vec![part]);
        assert_eq!(v[0]["content"][0]["file_id"], "file-1");
        assert_eq!(v[1]["content"], "hi");
        let img = check("c.png", PNG).unwrap();
        assert!(inline(&img));
        let part = input_part(&img, None, Some(PNG));
        assert!(
            part["image_url"]
                .as_str()
                .unwrap()
                .starts_with("data:image/png;base64,iVBOR")
        );
    }

    proptest! {
        #[test]
        fn any_name_and_bytes_give_an_answer_not_a_panic(name in ".{0,40}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            match check(&name, &data) {
                Ok(meta) => {
                    prop_assert!(is_attachment_id(&meta.id));
                    prop_assert_eq!(meta.bytes, data.len() as u64);
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
