//! Where each part of a YAML file was written: a map from a path inside the document
//! (`nodes / qualify / next`) to the line and column of its key and value.
//!
//! serde_yaml turns the text into values but forgets positions once it has, so a
//! second, event-level pass (saphyr-parser) records them. The validator reports every
//! problem by path, and this map turns the path into `file:line:col`. The same pass
//! enforces the structural limits (nesting depth, one document, plain-text keys) and
//! finds duplicate keys, so that all of them are reported, not only the first.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;
use std::fmt;

/// Deepest nesting of mappings and sequences a process file may use.
pub const MAX_DEPTH: usize = 64;

/// One step of a path inside a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_owned())
    }
}
impl From<String> for Seg {
    fn from(s: String) -> Self {
        Seg::Key(s)
    }
}
impl From<&String> for Seg {
    fn from(s: &String) -> Self {
        Seg::Key(s.clone())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A path inside a document, from its root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The document's root.
    pub fn root() -> Self {
        Path(Vec::new())
    }
    /// This path with one more step.
    pub fn join(&self, seg: impl Into<Seg>) -> Self {
        let mut v = self.0.clone();
        v.push(seg.into());
        Path(v)
    }
    /// The enclosing path, if any.
    pub fn parent(&self) -> Option<Path> {
        if self.0.is_empty() {
            None
        } else {
            Some(Path(self.0[..self.0.len() - 1].to_vec()))
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A position in the text: 1-based line and column (in characters), and the
/// character offsets of the range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Character offset of the start.
    pub start: usize,
    /// Character offset just past the end.
    pub end: usize,
}

impl Pos {
    fn of(span: Span) -> Self {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
            start: span.start.index(),
            end: span.end.index().max(span.start.index()),
        }
    }
    /// The first character of a file.
    pub fn start_of_file() -> Self {
        Pos {
            line: 1,
            column: 1,
            start: 0,
            end: 0,
        }
    }
}

/// How a scalar value was written, which decides where characters inside it sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A plain scalar: its text starts where it stands.
    Plain,
    /// A quoted scalar: its text starts one character in.
    Quoted,
    /// A block scalar, mapping or sequence: positions inside are not exact.
    Other,
}

/// Where a key and its value were written.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The key (absent for sequence items and the root).
    pub key: Option<Pos>,
    /// The value.
    pub value: Pos,
    /// How the value was written.
    pub style: Style,
}

/// A structural problem found while mapping the file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Stable code of the problem kind.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Where.
    pub pos: Pos,
}

/// Positions of every key and value of a document.
#[derive(Debug, Default)]
pub struct SourceMap {
    entries: HashMap<Path, Entry>,
}

enum Frame {
    Map {
        path: Path,
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: Path,
        next: usize,
    },
}

impl SourceMap {
    /// Maps `text`. Problems that make the file unusable (syntax, depth, several
    /// documents, complex keys) are returned together with duplicate keys; when any is
    /// returned, the file must not be decoded further.
    pub fn build(text: &str) -> Result<SourceMap, Vec<Problem>> {
        let mut map = SourceMap::default();
        let mut problems = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0usize;
        for item in Parser::new_from_str(text) {
            let (event, span) = match item {
                Ok(ev) => ev,
                Err(e) => {
                    let m = e.marker();
                    problems.push(Problem {
                        code: "yaml-syntax",
                        message: format!("YAML syntax error: {}", e.info()),
                        hint: Some(
                            "check indentation (spaces only), colons after keys, and quotes around values that contain `: ` or start with a special character".into(),
                        ),
                        pos: Pos {
                            line: m.line(),
                            column: m.col() + 1,
                            start: m.index(),
                            end: m.index(),
                        },
                    });
                    return Err(problems);
                }
            };
            let pos = Pos::of(span);
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        problems.push(Problem {
                            code: "several-documents",
                            message: "a process file holds one YAML document; this is a second one".into(),
                            hint: Some("put each process in a file of its own, and remove the `---` separator".into()),
                            pos,
                        });
                        return Err(problems);
                    }
                }
                Event::Scalar(value, style, _, _) => {
                    let style = match style {
                        ScalarStyle::Plain => Style::Plain,
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                        _ => Style::Other,
                    };
                    if let Some(Frame::Map { key, seen, path }) = stack.last_mut()
                        && key.is_none()
                    {
                        if let Some(first) = seen.get(value.as_ref()) {
                            problems.push(Problem {
                                code: "duplicate-key",
                                message: format!(
                                    "`{value}` is written twice in `{path}`; the first is at line {}",
                                    first.line
                                ),
                                hint: Some("remove one of them, or rename it".into()),
                                pos,
                            });
                        } else {
                            seen.insert(value.to_string(), pos);
                        }
                        *key = Some((value.into_owned(), pos));
                        continue;
                    }
                    map.value(&mut stack, pos, style);
                }
                Event::Alias(_) => {
                    map.value(&mut stack, pos, Style::Other);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    if let Some(Frame::Map { key: None, .. }) = stack.last() {
                        problems.push(Problem {
                            code: "complex-key",
                            message: "a mapping key must be plain text, not a mapping or a list"
                                .into(),
                            hint: Some("write keys as `name: value`".into()),
                            pos,
                        });
                        return Err(problems);
                    }
                    let path = map.value(&mut stack, pos, Style::Other);
                    if stack.len() >= MAX_DEPTH {
                        problems.push(Problem {
                            code: "too-deep",
                            message: format!(
                                "the document is nested more than {MAX_DEPTH} levels deep"
                            ),
                            hint: Some(
                                "flatten the structure; a process needs far fewer levels".into(),
                            ),
                            pos,
                        });
                        return Err(problems);
                    }
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            path,
                            key: None,
                            seen: HashMap::new(),
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(map)
        } else {
            Err(problems)
        }
    }

    /// Records a value at the current place and returns its path.
    fn value(&mut self, stack: &mut [Frame], pos: Pos, style: Style) -> Path {
        let (path, key) = match stack.last_mut() {
            None => (Path::root(), None),
            Some(Frame::Map { path, key, .. }) => match key.take() {
                Some((k, kpos)) => (path.join(k), Some(kpos)),
                None => (path.clone(), None),
            },
            Some(Frame::Seq { path, next }) => {
                let p = path.join(*next);
                *next += 1;
                (p, None)
            }
        };
        // The first definition wins: a duplicate key was already reported.
        self.entries.entry(path.clone()).or_insert(Entry {
            key,
            value: pos,
            style,
        });
        path
    }

    /// Where the value at `path` was written, or the nearest enclosing one.
    pub fn value_pos(&self, path: &Path) -> Pos {
        self.nearest(path)
            .map(|e| e.value)
            .unwrap_or_else(Pos::start_of_file)
    }

    /// Where the key of `path` was written (its value for sequence items), or the
    /// nearest enclosing one.
    pub fn key_pos(&self, path: &Path) -> Pos {
        self.nearest(path)
            .map(|e| e.key.unwrap_or(e.value))
            .unwrap_or_else(Pos::start_of_file)
    }

    /// The entry at `path` exactly.
    pub fn get(&self, path: &Path) -> Option<&Entry> {
        self.entries.get(path)
    }

    fn nearest(&self, path: &Path) -> Option<&Entry> {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(e) = self.entries.get(&cur) {
                return Some(e);
            }
            p = cur.parent();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[&str]) -> Path {
        Path(
            segs.iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(n) => Seg::Index(n),
                    Err(_) => Seg::Key((*s).to_owned()),
                })
                .collect(),
        )
    }

    #[test]
    fn records_keys_and_values() -> Result<(), Vec<Problem>> {
        let text = "id: x\nnodes:\n  a:\n    next: [b, c]\n  b: {type: end}\n";
        let map = SourceMap::build(text)?;
        let a = map
            .get(&p(&["nodes", "a"]))
            .map(|e| (e.key.map(|k| (k.line, k.column)), e.value.line));
        assert_eq!(a, Some((Some((3, 3)), 4)));
        assert_eq!(map.value_pos(&p(&["nodes", "a", "next", "1"])).column, 15);
        assert_eq!(map.key_pos(&p(&["nodes", "b", "type"])).column, 7);
        // Unknown paths fall back to the nearest known parent.
        assert_eq!(map.value_pos(&p(&["nodes", "a", "missing"])).line, 4);
        Ok(())
    }

    #[test]
    fn reports_every_duplicate_key() {
        let text = "id: x\nid: y\nnodes:\n  a: {}\n  a: {}\n";
        let problems = SourceMap::build(text).err().unwrap_or_default();
        let lines: Vec<_> = problems.iter().map(|p| (p.code, p.pos.line)).collect();
        assert_eq!(lines, vec![("duplicate-key", 2), ("duplicate-key", 5)]);
    }

    #[test]
    fn rejects_deep_nesting() {
        let text = "a: ".to_owned() + &"[".repeat(100) + &"]".repeat(100);
        let problems = SourceMap::build(&text).err().unwrap_or_default();
        assert_eq!(problems.first().map(|p| p.code), Some("too-deep"));
    }
}
