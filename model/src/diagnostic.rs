//! Diagnostics: what is wrong in a process file, where, and how to fix it.

use super::source::Pos;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;
use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The definition cannot be deployed.
    Error,
    /// The definition can be deployed, but probably does not do what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a process file.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable, kebab-case name of the kind of problem (`unknown-target`), for tools
    /// and for searching the docs.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The file, as it was named to the loader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Character offsets of the range the problem covers.
    #[serde(skip)]
    pub range: (usize, usize),
}

impl Diagnostic {
    /// A diagnostic at `pos` in `file`.
    pub fn new(
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
        hint: Option<String>,
        file: &str,
        pos: Pos,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            hint,
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            range: (pos.start, pos.end),
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way rustc does: the message, `--> file:line:col`, the
    /// source line with a caret under the problem, and the hint.
    pub fn render(&self, source: &str) -> String {
        let (start, end) = byte_range(source, self.range);
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(&self.message).id(self.code);
        let in_text = start <= source.len() && !source.is_empty();
        let mut report = vec![if in_text {
            title.element(
                Snippet::source(source)
                    .path(&self.file)
                    .annotation(AnnotationKind::Primary.span(start..end)),
            )
        } else {
            title.element(
                annotate_snippets::Origin::path(&self.file)
                    .line(self.line)
                    .char_column(self.column),
            )
        }];
        if let Some(hint) = &self.hint {
            report.push(Group::with_title(Level::HELP.secondary_title(hint)));
        }
        Renderer::plain().render(&report)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            self.file, self.line, self.column, self.severity, self.code, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// Turns a character range into a byte range of `source`, widened to at least one
/// character so a caret shows, and clamped to the text.
fn byte_range(source: &str, (start, end): (usize, usize)) -> (usize, usize) {
    let to_byte = |n: usize| {
        source
            .char_indices()
            .nth(n)
            .map(|(b, _)| b)
            .unwrap_or(source.len())
    };
    let s = to_byte(start);
    let mut e = to_byte(end.max(start));
    if e <= s {
        e = source[s..]
            .chars()
            .next()
            .map(|c| s + c.len_utf8())
            .unwrap_or(s);
    }
    // Keep the caret on the first line of a multi-line value.
    if let Some(nl) = source[s..e].find('\n')
        && nl > 0
    {
        e = s + nl;
    }
    (s, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_source_line_caret_and_hint() {
        let src = "id: x\nnext: asign\n";
        let pos = Pos {
            line: 2,
            column: 7,
            start: 12,
            end: 17,
        };
        let d = Diagnostic::new(
            Severity::Error,
            "unknown-target",
            "no node `asign`",
            Some("did you mean `assign`?".into()),
            "a.yaml",
            pos,
        );
        let out = d.render(src);
        assert!(
            out.contains("error[unknown-target]: no node `asign`"),
            "{out}"
        );
        assert!(out.contains("a.yaml:2:7"), "{out}");
        assert!(out.contains("^^^^^"), "{out}");
        assert!(out.contains("help: did you mean `assign`?"), "{out}");
    }

    #[test]
    fn byte_range_handles_multibyte_and_empty_ranges() {
        let src = "名字: é\n";
        assert_eq!(byte_range(src, (4, 5)), (8, 10));
        assert_eq!(byte_range(src, (4, 4)), (8, 10));
        assert_eq!(byte_range(src, (99, 99)), (src.len(), src.len()));
    }
}
