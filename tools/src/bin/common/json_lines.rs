//! The JSON-lines loop `s2walk batch` and `shadow-replay` share: one input
//! line in, one output line out, in order, flushed whenever no further
//! input is waiting (a driver feeding lines one at a time gets each answer
//! at once, a large batch is written in big blocks).

use std::io::{self, BufRead, BufReader, Read, Write};

use serde_json::error::Category;

/// Longest input line accepted (without its newline); a request is a few
/// hundred bytes at most. A longer line is answered with an error and
/// skipped without being held in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// One input line as the loop hands it over.
pub enum InputLine<'a> {
    /// The line's text, without its `\n` or `\r\n`.
    Text(&'a str),
    /// A line the loop refused: why, as one sentence.
    Refused(String),
}

/// Reads lines from `input` until end of file and writes, for each, the
/// line `answer` puts in its buffer (which it finds empty). `answer`
/// returns whether the line was good; the result is whether every line
/// was.
pub fn serve(
    input: impl Read,
    output: impl Write,
    mut answer: impl FnMut(InputLine<'_>, &mut String) -> bool,
) -> io::Result<bool> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut writer = io::BufWriter::with_capacity(1 << 16, output);
    let mut raw = Vec::new();
    let mut out = String::new();
    let mut all_good = true;
    loop {
        raw.clear();
        let Some(length) = read_line_bounded(&mut reader, &mut raw)? else {
            break;
        };
        let trimmed = raw
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(&raw);
        out.clear();
        let line = if length > MAX_LINE {
            InputLine::Refused(format!("line of {length} bytes is longer than {MAX_LINE}"))
        } else {
            match std::str::from_utf8(trimmed) {
                Ok(text) => InputLine::Text(text),
                Err(e) => InputLine::Refused(format!("line is not UTF-8: {e}")),
            }
        };
        all_good &= answer(line, &mut out);
        out.push('\n');
        writer.write_all(out.as_bytes())?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()?;
    Ok(all_good)
}

/// The JSON object `line` holds, read as `T`, or one sentence saying why
/// not: an empty line, malformed JSON, or (serde's own message) an object
/// `T` refuses.
pub fn parse_object<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, String> {
    if line.trim().is_empty() {
        return Err("empty line (expected a JSON object)".to_string());
    }
    serde_json::from_str(line).map_err(|e| match e.classify() {
        // The JSON is well-formed but not what `T` reads: say what is wrong.
        Category::Data => e.to_string(),
        Category::Syntax | Category::Eof | Category::Io => format!("invalid JSON: {e}"),
    })
}

/// Reads one line into `line` (at most `MAX_LINE + 1` bytes kept; the rest
/// of a longer line is read and dropped). `None` at end of input, else the
/// line's full length without its `\n`.
fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut length = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((length > 0).then_some(length));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let keep = chunk.len().min((MAX_LINE + 1).saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..keep]);
        let used = chunk.len();
        length += used;
        reader.consume(used);
        if done {
            // The newline ends the line; it is not part of it (a line of
            // exactly MAX_LINE bytes is accepted).
            return Ok(Some(length - 1));
        }
    }
}
