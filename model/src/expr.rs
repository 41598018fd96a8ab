//! Expressions: CEL (the Common Expression Language), compiled when a definition is
//! loaded, evaluated later against an instance's JSON variables.
//!
//! CEL was chosen because it is made for exactly this: side-effect free, not
//! Turing-complete (no loops, no recursion), bounded in time by the size of the
//! expression, and familiar from Kubernetes and Google's APIs. Loading still caps the
//! length and the nesting depth, so that no expression can exhaust the parser's stack.

use std::sync::Arc;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting (brackets, calls, unary operators) accepted.
pub const MAX_DEPTH: usize = 32;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The expression is longer than [`MAX_LEN`].
    #[error("the expression is {len} bytes long; the limit is {MAX_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The expression nests deeper than [`MAX_DEPTH`].
    #[error("the expression nests more than {MAX_DEPTH} levels deep")]
    TooDeep {
        /// Character offset where the limit was passed.
        offset: usize,
    },
    /// The expression is empty.
    #[error("the expression is empty")]
    Empty,
    /// CEL syntax error.
    #[error("{message}")]
    Syntax {
        /// Character offset of the problem inside the expression.
        offset: usize,
        /// The parser's message.
        message: String,
    },
}

impl Error {
    /// Character offset of the problem inside the expression.
    pub fn offset(&self) -> usize {
        match self {
            Error::TooDeep { offset } | Error::Syntax { offset, .. } => *offset,
            Error::TooLong { .. } | Error::Empty => 0,
        }
    }
}

/// A compiled expression together with its source text.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    ast: Arc<cel::IdedExpr>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// The text of the expression.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The parsed CEL expression, for `cel::Value::resolve`.
    pub fn ast(&self) -> &cel::IdedExpr {
        &self.ast
    }
}

/// Compiles `source`: parses it with CEL's Pratt parser (its recursion capped), then
/// checks that the tree is at most [`MAX_DEPTH`] deep, because evaluation recurses
/// once per level. (cel's ANTLR parser is not used: in a debug build it overflows a
/// 2 MiB thread stack at twelve nested parentheses.)
pub fn compile(source: &str) -> Result<Expression, Error> {
    if source.trim().is_empty() {
        return Err(Error::Empty);
    }
    if source.len() > MAX_LEN {
        return Err(Error::TooLong { len: source.len() });
    }
    let ast = cel::parser::PrattParser::new()
        .max_recursion_depth(2 * MAX_DEPTH as u16)
        .parse(source)
        .map_err(|errs| first_error(source, &errs))?;
    if depth(&ast) > MAX_DEPTH {
        return Err(Error::TooDeep { offset: 0 });
    }
    Ok(Expression {
        source: source.into(),
        ast: Arc::new(ast),
    })
}

fn first_error(source: &str, errs: &cel::ParseErrors) -> Error {
    match errs.errors.first() {
        Some(e) => {
            let offset = offset_of(source, e.pos.0, e.pos.1);
            let mut message = e.msg.clone();
            if let Some(tok) = source.chars().skip(offset).find(|c| !c.is_whitespace()) {
                message = format!(
                    "{message} `{tok}` at character {} of `{}`",
                    offset + 1,
                    source.trim()
                );
            }
            if message.contains("recursion") || message.contains("depth") {
                Error::TooDeep { offset }
            } else {
                Error::Syntax { offset, message }
            }
        }
        None => Error::Syntax {
            offset: 0,
            message: "the expression does not parse".into(),
        },
    }
}

/// Character offset of the parser's (1-based line, 1-based byte column).
fn offset_of(source: &str, line: isize, col: isize) -> usize {
    let line = usize::try_from(line.max(1)).unwrap_or(1);
    let col = usize::try_from(col.max(1)).unwrap_or(1) - 1;
    let mut offset = 0;
    for (i, text) in source.split('\n').enumerate() {
        if i + 1 == line {
            let upto = text.char_indices().take_while(|(b, _)| *b < col).count();
            return offset + upto;
        }
        offset += text.chars().count() + 1;
    }
    source.chars().count()
}

/// The depth of an expression tree, walked without recursion.
fn depth(root: &cel::IdedExpr) -> usize {
    use cel::common::ast::{EntryExpr, Expr};
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        let d = d + 1;
        match &e.expr {
            Expr::Call(c) => {
                stack.extend(c.target.iter().map(|t| (t.as_ref(), d)));
                stack.extend(c.args.iter().map(|a| (a, d)));
            }
            Expr::Comprehension(c) => {
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    stack.push((x, d));
                }
            }
            Expr::List(l) => stack.extend(l.elements.iter().map(|x| (x, d))),
            Expr::Map(m) => {
                for en in &m.entries {
                    if let EntryExpr::MapEntry(me) = &en.expr {
                        stack.push((&me.key, d));
                        stack.push((&me.value, d));
                    }
                }
            }
            Expr::Struct(s) => {
                for en in &s.entries {
                    match &en.expr {
                        EntryExpr::StructField(f) => stack.push((&f.value, d)),
                        EntryExpr::MapEntry(me) => stack.push((&me.value, d)),
                    }
                }
            }
            Expr::Select(s) => stack.push((s.operand.as_ref(), d)),
            Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
        }
    }
    max
}

/// The expression a value stands for, if it is one: a string starting with `=`.
/// Returns the expression text and its character offset inside the string.
pub fn as_expression(value: &str) -> Option<(&str, usize)> {
    value.strip_prefix('=').map(|rest| (rest, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_conditions() {
        for src in [
            "amount > 1000 && customer.grade == 'vip'",
            "size(items) == 0",
            "x in ['a', 'b']",
        ] {
            assert!(compile(src).is_ok(), "{src}");
        }
    }

    #[test]
    fn syntax_error_has_offset_inside_the_expression() {
        let err = compile("amount > > 3").err();
        assert!(
            matches!(err, Some(Error::Syntax { offset: 9, .. })),
            "{err:?}"
        );
        let err = compile("a &&\n  (b ||").err();
        assert!(
            matches!(&err, Some(Error::Syntax { offset, .. }) if *offset >= 7),
            "{err:?}"
        );
    }

    #[test]
    fn caps_length_and_depth() {
        let long = "a + ".repeat(MAX_LEN / 4) + "a";
        assert!(matches!(compile(&long), Err(Error::TooLong { .. })));
        let deep = "[".repeat(40) + "a" + &"]".repeat(40);
        assert!(matches!(compile(&deep), Err(Error::TooDeep { .. })));
        // The parser folds runs of `!`; what it accepts must still be shallow.
        let nots = "!".repeat(1001) + "a";
        assert!(compile(&nots).map_or(true, |e| depth(e.ast()) <= MAX_DEPTH));
        let sum = "a + ".repeat(40) + "a";
        assert!(matches!(compile(&sum), Err(Error::TooDeep { .. })));
        // Parentheses alone add no depth to the tree.
        let parens = "(".repeat(40) + "a" + &")".repeat(40);
        assert!(compile(&parens).is_ok());
        assert!(matches!(compile("  "), Err(Error::Empty)));
    }

    #[test]
    fn long_chains_are_rejected_without_exhausting_the_stack() {
        // Each runs on a test thread's 2 MiB stack: a crash here fails the suite.
        for src in [
            "a + ".repeat(1500) + "a",
            "a".to_owned() + &".b".repeat(1500),
            "a && ".repeat(1500) + "a",
        ] {
            assert!(compile(&src).is_err());
        }
    }

    #[test]
    fn macros_expand() {
        assert!(compile("items.exists(i, i.amount > 10) && has(lead.email)").is_ok());
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let src = format!("x == '{}'", "(".repeat(100));
        assert!(compile(&src).is_ok());
    }
}
