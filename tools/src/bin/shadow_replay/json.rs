//! Output lines: JSON objects whose keys come out in the order written
//! (serde_json's map would sort them, putting `ok` in the middle).

use std::fmt::Write as _;

/// One output object under construction.
pub struct Line<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Line<'o> {
    /// Starts an object in `out` (which the caller has cleared).
    pub fn new(out: &'o mut String) -> Self {
        out.push('{');
        Line { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are fixed identifiers: no escaping needed.
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// `"key":true|false`
    pub fn flag(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key":N` (a decimal JSON number).
    pub fn number(&mut self, key: &str, value: impl Into<i128>) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{}", value.into());
        self
    }

    /// `"key":"0x.."`: addresses and register values, as s2walk prints them.
    pub fn hex(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "\"{value:#x}\"");
        self
    }

    /// `"key":"text"`, escaped.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.out
            .push_str(&serde_json::Value::String(value.to_string()).to_string());
        self
    }

    /// `"key":{...}`: a nested object filled by `fill`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut Line<'_>)) -> &mut Self {
        self.key(key);
        let mut inner = Line::new(self.out);
        fill(&mut inner);
        inner.finish();
        self
    }

    /// Closes the object.
    pub fn finish(&mut self) {
        self.out.push('}');
    }
}

/// The line for an input line that could not be applied.
pub fn error_line(out: &mut String, message: &str) {
    Line::new(out)
        .flag("ok", false)
        .text("error", message)
        .finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_in_the_order_written() {
        let mut out = String::new();
        Line::new(&mut out)
            .flag("ok", true)
            .hex("pa", 0x1000)
            .number("n", -1i64)
            .text("note", "a \"quoted\"\nline")
            .object("inner", |o| {
                o.flag("x", false);
            })
            .finish();
        assert_eq!(
            out,
            r#"{"ok":true,"pa":"0x1000","n":-1,"note":"a \"quoted\"\nline","inner":{"x":false}}"#
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["note"], "a \"quoted\"\nline");
        let mut out = String::new();
        error_line(&mut out, "bad \\ line");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["error"], "bad \\ line");
    }
}
