//! Markers in a create's input text, for clients that control only the prompt (a job file's
//! input): `SIM_IMAGE_COUNT=N` sets how many images an `image_generation` tool makes (0–4,
//! default 1), `SIM_CONTAINER_FILES=N` how many files a `code_interpreter` run leaves in
//! its container (0–5, default 2) and `SIM_FUNCTION_TURNS=N` how many function-call turns the
//! model makes before it answers (0–10, default 1). They do what the `metadata.sim` directives
//! `images=N`, `container_files=N` and `function_turns=N` do ([`Overrides`]); a directive wins over a marker. A marker whose value
//! is out of range is a 400 naming `input`, as a bad directive is one naming `metadata.sim`.

use super::faults::{MAX_CONTAINER_FILES, MAX_FUNCTION_TURNS, MAX_IMAGES, Overrides, count_in};

/// The marker for the number of images.
pub(crate) const IMAGE_COUNT: &str = "SIM_IMAGE_COUNT";
/// The marker for the number of container files.
pub(crate) const CONTAINER_FILES: &str = "SIM_CONTAINER_FILES";
/// The marker for the number of function-call turns.
pub(crate) const FUNCTION_TURNS: &str = "SIM_FUNCTION_TURNS";

/// The value of the first `NAME=N` in `text`; `Ok(None)` when the marker is absent.
fn marker(text: &str, name: &str, max: usize) -> Result<Option<usize>, String> {
    let key = format!("{name}=");
    let Some(at) = text.find(&key) else {
        return Ok(None);
    };
    let digits: String = text[at + key.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    count_in(name, &digits, max).map(Some)
}

impl Overrides {
    /// Takes the counts the input's markers set, where no directive set them already.
    pub(crate) fn apply_markers(&mut self, input_text: &str) -> Result<(), String> {
        if self.images.is_none() {
            self.images = marker(input_text, IMAGE_COUNT, MAX_IMAGES)?;
        }
        if self.container_files.is_none() {
            self.container_files = marker(input_text, CONTAINER_FILES, MAX_CONTAINER_FILES)?;
        }
        if self.function_turns.is_none() {
            self.function_turns = marker(input_text, FUNCTION_TURNS, MAX_FUNCTION_TURNS)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(spec: &str, input: &str) -> Result<(Option<usize>, Option<usize>), String> {
        let mut o = Overrides::parse(spec)?;
        o.apply_markers(input)?;
        Ok((o.images, o.container_files))
    }

    #[test]
    fn markers_set_counts_unless_a_directive_did() {
        assert_eq!(counts("", "draw a cat"), Ok((None, None)));
        assert_eq!(
            counts("", "draw SIM_IMAGE_COUNT=3 cats, SIM_CONTAINER_FILES=0"),
            Ok((Some(3), Some(0)))
        );
        assert_eq!(
            counts("images=1", "SIM_IMAGE_COUNT=3 über"),
            Ok((Some(1), None))
        );
        assert_eq!(counts("", "SIM_IMAGE_COUNT=4."), Ok((Some(4), None)));
        assert!(counts("", "SIM_IMAGE_COUNT=5").is_err());
        assert!(counts("", "SIM_IMAGE_COUNT=").is_err());
        assert!(counts("", "SIM_CONTAINER_FILES=6").is_err());
        assert!(counts("", "SIM_CONTAINER_FILES=99999999999999999999999").is_err());
        assert!(counts("container_files=9", "").is_err());
        assert!(counts("images=x", "").is_err());
        let turns = |spec: &str, input: &str| {
            let mut o = Overrides::parse(spec)?;
            o.apply_markers(input).map(|()| o.function_turns)
        };
        assert_eq!(turns("", "SIM_FUNCTION_TURNS=3 please"), Ok(Some(3)));
        assert_eq!(
            turns("function_turns=0", "SIM_FUNCTION_TURNS=3"),
            Ok(Some(0))
        );
        assert!(turns("", "SIM_FUNCTION_TURNS=11").is_err());
    }
}
