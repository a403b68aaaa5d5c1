//! YAML helpers shared by the config file and the jobs file: `${VAR}` interpolation that keeps
//! line numbers intact, locating a key path in the source text, and turning parser errors into
//! `file:line:col` messages.

use std::fmt;

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// An error located in a source file: `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text` with values from `lookup`; `$$` is a literal
/// `$`. Comments are left alone, so a commented-out `${VAR}` needs no variable. Substitution
/// happens on the text, line by line, so line numbers of later errors stay right.
pub fn interpolate(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Located> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let mut chars = code.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            match chars.peek() {
                Some((_, '$')) => {
                    chars.next();
                    out.push('$');
                }
                Some((_, '{')) => {
                    let rest = &code[i + 2..];
                    let Some(end) = rest.find('}') else {
                        return Err(Located {
                            file: file.to_string(),
                            pos: Some(Pos {
                                line: lineno + 1,
                                col: code[..i].chars().count() + 1,
                            }),
                            message: "unterminated `${` (write `$$` for a literal `$`)".into(),
                        });
                    };
                    let expr = &rest[..end];
                    let (name, default) = match expr.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (expr, None),
                    };
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        return Err(Located {
                            file: file.to_string(),
                            pos: Some(Pos {
                                line: lineno + 1,
                                col: code[..i].chars().count() + 1,
                            }),
                            message: format!("`${{{expr}}}` is not a valid variable reference"),
                        });
                    }
                    match lookup(name).or_else(|| default.map(str::to_string)) {
                        Some(v) => out.push_str(&v),
                        None => {
                            return Err(Located {
                                file: file.to_string(),
                                pos: Some(Pos {
                                    line: lineno + 1,
                                    col: code[..i].chars().count() + 1,
                                }),
                                message: format!(
                                    "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                                ),
                            });
                        }
                    }
                    // Skip the consumed `{expr}`: it ends at byte i + 2 + end.
                    while chars.next_if(|(j, _)| *j <= i + 2 + end).is_some() {}
                }
                _ => out.push('$'),
            }
        }
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset where a YAML comment starts on this line, if any: a `#` at the start of the
/// line or after whitespace, outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_single = false;
    let mut in_double = false;
    let mut prev: Option<char> = None;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single && prev != Some('\\') => in_double = !in_double,
            '#' if !in_single && !in_double && prev.is_none_or(char::is_whitespace) => {
                return Some(i);
            }
            _ => {}
        }
        prev = Some(c);
    }
    None
}

/// Finds the position of a key path such as `["polling", "min_interval"]` or
/// `["jobs", "2", "model"]` (a number picks a list item) in block-style YAML. Returns `None`
/// when the path is not written out in the text (a default, or flow style).
pub fn locate(text: &str, path: &[&str]) -> Option<Pos> {
    let lines: Vec<&str> = text.lines().collect();
    // Each meaningful line: (line index, effective indent, key if any, is a list dash).
    let parsed: Vec<(usize, usize, Option<&str>, bool, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(n, line)| {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                return None;
            }
            let indent = line.len() - trimmed.len();
            let is_dash = trimmed.starts_with("- ") || trimmed == "-";
            let mut key_indent = indent;
            let mut rest = trimmed;
            while let Some(r) = rest.strip_prefix("- ") {
                let r2 = r.trim_start();
                key_indent += rest.len() - r2.len();
                rest = r2;
            }
            let key = rest
                .split_once(':')
                .filter(|(k, v)| !k.contains(' ') || v.is_empty() || v.starts_with(' '))
                .map(|(k, _)| k.trim().trim_matches('"').trim_matches('\''));
            Some((n, indent, key, is_dash, key_indent))
        })
        .collect();
    let mut window: &[(usize, usize, Option<&str>, bool, usize)] = &parsed;
    let mut found = None;
    for seg in path {
        let (idx, node_indent, is_item) = if let Ok(index) = seg.parse::<usize>() {
            let dash_indent = window.iter().filter(|l| l.3).map(|l| l.1).min()?;
            let pos = window
                .iter()
                .enumerate()
                .filter(|(_, l)| l.3 && l.1 == dash_indent)
                .nth(index)?
                .0;
            (pos, dash_indent, true)
        } else {
            let key_indent = window.iter().filter(|l| l.2.is_some()).map(|l| l.4).min()?;
            let pos = window
                .iter()
                .position(|l| l.4 == key_indent && l.2 == Some(*seg))?;
            (pos, key_indent, false)
        };
        let line = window[idx];
        found = Some(Pos {
            line: line.0 + 1,
            col: if is_item { line.1 + 1 } else { line.4 + 1 },
        });
        // The node's block: following lines indented deeper (a list under a key may sit at
        // the key's own indentation).
        let block_end = window[idx + 1..]
            .iter()
            .position(|l| {
                if is_item {
                    l.1 <= node_indent
                } else {
                    l.1 < node_indent || (l.1 == node_indent && !l.3)
                }
            })
            .map_or(window.len(), |p| idx + 1 + p);
        // `- name: x`: an item's first key sits on the dash line itself.
        window = if is_item {
            &window[idx..block_end]
        } else {
            &window[idx + 1..block_end]
        };
    }
    found
}

/// Converts a serde-saphyr error into a located error.
pub fn parse_error(file: &str, source: &str, err: &serde_saphyr::Error) -> Located {
    let pos = err.location().map(|l| Pos {
        line: l.line() as usize,
        col: l.column() as usize,
    });
    // serde-saphyr's message carries its own location and a snippet of the source (which may
    // hold an interpolated secret): keep only the message itself.
    let text = err.to_string();
    let mut message = text.lines().next().unwrap_or("").trim().to_string();
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    if message.starts_with("line ")
        && let Some((_, rest)) = message.split_once(": ")
    {
        message = rest.to_string();
    }
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    if let Some(path) = pos.and_then(|p| key_path_at(source, p.line)) {
        message = format!("`{path}`: {message}");
    }
    Located {
        file: file.to_string(),
        pos,
        message,
    }
}

/// The dotted key path of the key written on `line` (1-based) of block-style YAML, found by
/// walking up to each less-indented parent key.
pub fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let mut indent = l.len() - trimmed.len();
        let mut rest = trimmed;
        while let Some(r) = rest.strip_prefix("- ") {
            indent += 2;
            rest = r.trim_start();
        }
        let (k, _) = rest.split_once(':')?;
        let k = k.trim().trim_matches('"').trim_matches('\'');
        (!k.is_empty() && !k.contains(' ')).then(|| (indent, k.to_string()))
    };
    let start = line.checked_sub(1)?;
    let (mut indent, key) = key_of(lines.get(start)?)?;
    let mut parts = vec![key];
    for l in lines[..start].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some((ind, k)) = key_of(l)
            && ind < indent
        {
            parts.push(k);
            indent = ind;
        }
    }
    parts.reverse();
    Some(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            _ => None,
        }
    }

    #[test]
    fn interpolates_and_keeps_comments() {
        let text = "a: ${KEY}\n# ${MISSING}\nb: \"x\" # ${MISSING}\nc: ${NOPE:-dflt}\nd: $$5\n";
        let out = interpolate("f.yaml", text, &env).unwrap();
        assert_eq!(
            out,
            "a: sk-123\n# ${MISSING}\nb: \"x\" # ${MISSING}\nc: dflt\nd: $5\n"
        );
    }

    #[test]
    fn missing_variable_is_located() {
        let err = interpolate("f.yaml", "a: 1\nb:  ${MISSING}\n", &env).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 5 }));
        assert!(
            err.to_string()
                .starts_with("f.yaml:2:5: environment variable `MISSING`")
        );
    }

    #[test]
    fn key_path_of_a_line() {
        let text = "a:\n  b:\n    c: 1\n  d: 2\njobs:\n  - name: x\n    model: 5\n";
        assert_eq!(key_path_at(text, 3).as_deref(), Some("a.b.c"));
        assert_eq!(key_path_at(text, 4).as_deref(), Some("a.d"));
        assert_eq!(key_path_at(text, 7).as_deref(), Some("jobs.model"));
    }

    #[test]
    fn locates_nested_keys_and_list_items() {
        let text = "listen: x\npolling:\n  min_interval: 2s\n  max_interval: 1s\njobs:\n  - name: a\n    model: m\n  - name: b\n    model: n\n    input: hi\n";
        assert_eq!(
            locate(text, &["polling", "max_interval"]),
            Some(Pos { line: 4, col: 3 })
        );
        assert_eq!(
            locate(text, &["jobs", "1", "input"]).map(|p| p.line),
            Some(10)
        );
        assert_eq!(
            locate(text, &["jobs", "0", "model"]).map(|p| p.line),
            Some(7)
        );
        assert_eq!(locate(text, &["jobs", "1"]).map(|p| p.line), Some(8));
    }
}
