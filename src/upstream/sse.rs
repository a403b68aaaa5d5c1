//! A small server-sent-events parser (the subset of the WHATWG format that OpenAI's streams
//! use: `event:` and `data:` lines, comments, blank-line dispatch; `id:` and `retry:` are read
//! and ignored). Fed arbitrary chunks of bytes, it gives the same events however the bytes were
//! split (a property test holds it to that).
//!
//! Why not a crate: `eventsource-stream`, the one most clients use, has had no release since
//! 2022 and pulls in `nom` 7 for what is ~100 lines here; the parser is also where a byte from
//! the network meets our code, so it is kept small, panic-free and tested in place.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`None`: the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The longest line kept (a `response.completed` event carries the whole Response, so this is
/// generous); a longer one is cut there, and its event then fails to parse as JSON.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// The most data one event may gather (a few of the longest lines).
const MAX_EVENT: usize = 4 * MAX_LINE;

/// An incremental parser: [`SseParser::push`] bytes as they come.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The last byte seen was a `\r` (a `\n` right after it ends nothing more).
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, &mut out);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    }
                }
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(at) => {
                let value = &text[at + 1..];
                (&text[..at], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                // An event bigger than any the API sends (a whole response is one `data:`
                // line) is cut, not kept growing: a stream that never ends its event cannot
                // take the daemon's memory.
                if self.data.len() + value.len() > MAX_EVENT {
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n\
: a comment\r\n\
event: response.output_text.delta\r\ndata: {\"delta\":\"h\\u00e9llo é\"}\r\n\r\n\
data: line one\ndata: line two\n\n\
event: error\rdata:{\"message\":\"x\"}\r\r\
id: 7\nretry: 10\nevent: response.completed\ndata: {}\n\n\
data: [DONE]\n\n";

    fn all_at_once() -> Vec<SseEvent> {
        SseParser::new().push(STREAM.as_bytes())
    }

    #[test]
    fn reads_fields_line_endings_and_comments() {
        let events = all_at_once();
        assert_eq!(events.len(), 6, "{events:?}");
        assert_eq!(events[0].event.as_deref(), Some("response.created"));
        assert!(events[1].data.contains("é"));
        assert_eq!(events[2].event, None);
        assert_eq!(events[2].data, "line one\nline two");
        assert_eq!(events[3].event.as_deref(), Some("error"));
        assert_eq!(events[3].data, "{\"message\":\"x\"}");
        assert_eq!(events[4].event.as_deref(), Some("response.completed"));
        assert_eq!(events[5].data, "[DONE]");
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: x\ndata: 1\n").is_empty());
        assert_eq!(p.push(b"\n").len(), 1);
    }

    proptest! {
        /// However the bytes of a stream are cut into chunks (mid-line, mid-`\r\n`, mid-UTF-8
        /// character), the parser gives the same events as from one piece.
        #[test]
        fn chunking_does_not_change_the_events(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..40)) {
            let bytes = STREAM.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut p = SseParser::new();
            let mut got = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                got.extend(p.push(&bytes[from..c]));
                from = c;
            }
            prop_assert_eq!(got, all_at_once());
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SseParser::new().push(&bytes);
        }
    }
}
