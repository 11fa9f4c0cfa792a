//! The row loop shared by every profile: cut a chunk into lines, split and check each row, hash it.
//!
//! A profile supplies [`Rules`] — its dialect, field count, validation and what goes into each hash — and the loop
//! is compiled once per profile, so the per-row calls inline.

use memchr::memchr_iter;

use super::hash::HashBufs;
use super::split::{Fields, Splitter};
use super::{EventRow, ParsedChunk, ParsedRow, Record, Reject, RejectReason};

/// What a profile decides about a row once the shared steps (UTF-8, splitting, field count) have passed.
pub(crate) trait Rules {
    fn delimiter(&self) -> u8;
    fn quote(&self) -> u8;
    /// Fields every row of this file must have.
    fn field_count(&self) -> usize;
    /// The profile's checks, in the order their reasons take precedence.
    fn validate(&self, fields: &Fields<'_>) -> Result<(), RejectReason>;
    /// Writes the key encoding (to `bufs.key`, cleared first) and the row encoding (begun afresh) and returns the
    /// row's conflict order key.
    fn encode(&self, fields: &Fields<'_>, bufs: &mut HashBufs) -> u64;
    /// The record's key values (trimmed), in key column order.
    fn key(&self, fields: &Fields<'_>) -> Vec<String>;
    /// Calls `f` with each canonical field value, in canonical column order.
    fn canonical(&self, fields: &Fields<'_>, f: &mut dyn FnMut(&[u8]));
}

/// Splits and validates one row (no terminator). Reasons take precedence in this order: `invalid_utf8`,
/// `unterminated_quote`, `field_count`, then the profile's own checks.
pub(crate) fn check_row<'a, R: Rules>(
    rules: &R,
    row: &'a [u8],
    splitter: &'a mut Splitter,
) -> Result<Fields<'a>, RejectReason> {
    // Full validation only for the rare row with a non-ASCII byte; `is_ascii` is a word-at-a-time scan. A NUL
    // byte counts as invalid too, as PostgreSQL counts it: no text value can hold one.
    if (!row.is_ascii() && std::str::from_utf8(row).is_err()) || memchr::memchr(0, row).is_some() {
        return Err(RejectReason::InvalidUtf8);
    }
    // `ParsedRow::len` and the hash length prefixes are u32: a longer "row" is not a row of any export.
    if u32::try_from(row.len()).is_err() {
        return Err(RejectReason::FieldCount);
    }
    let fields = splitter.split(row, rules.delimiter(), rules.quote())?;
    if fields.len() != rules.field_count() {
        return Err(RejectReason::FieldCount);
    }
    rules.validate(&fields)?;
    Ok(fields)
}

/// [`super::Layout::parse_chunk`] for one profile.
pub(crate) fn parse_chunk<R: Rules>(
    rules: &R,
    chunk: &[u8],
    first_line: u64,
    base_offset: u64,
) -> ParsedChunk {
    let mut out = ParsedChunk::default();
    let mut splitter = Splitter::default();
    let mut bufs = HashBufs::default();
    let mut row_start = 0;
    let mut line = first_line;
    for newline in memchr_iter(b'\n', chunk) {
        parse_line(
            rules,
            chunk,
            row_start,
            newline,
            line,
            base_offset,
            &mut splitter,
            &mut bufs,
            &mut out,
        );
        row_start = newline + 1;
        line += 1;
    }
    if row_start < chunk.len() {
        parse_line(
            rules,
            chunk,
            row_start,
            chunk.len(),
            line,
            base_offset,
            &mut splitter,
            &mut bufs,
            &mut out,
        );
    }
    out
}

/// Parses the line `chunk[start..end]` (`end` excludes the LF; a CR before it is dropped here) into `out`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn parse_line<R: Rules>(
    rules: &R,
    chunk: &[u8],
    start: usize,
    mut end: usize,
    line: u64,
    base_offset: u64,
    splitter: &mut Splitter,
    bufs: &mut HashBufs,
    out: &mut ParsedChunk,
) {
    if end > start && chunk[end - 1] == b'\r' {
        end -= 1;
    }
    if end == start {
        return;
    }
    let row = &chunk[start..end];
    match check_row(rules, row, splitter) {
        Ok(fields) => {
            let order_key = rules.encode(&fields, bufs);
            out.rows.push(ParsedRow {
                key_hash: bufs.key_hash(),
                row_hash: bufs.row_hash(),
                order_key,
                line,
                offset: base_offset + start as u64,
                // check_row bounds the length to u32.
                len: row.len() as u32,
            });
        }
        Err(reason) => out.rejects.push(Reject {
            line,
            reason,
            raw: row.to_vec(),
        }),
    }
}

/// [`super::Layout::parse_record`] for one profile.
pub(crate) fn parse_record<R: Rules>(rules: &R, row: &[u8]) -> Result<Record, RejectReason> {
    let mut splitter = Splitter::default();
    let fields = check_row(rules, row, &mut splitter)?;
    let mut values = Vec::with_capacity(fields.len());
    rules.canonical(&fields, &mut |v| values.push(text(v)));
    Ok(Record {
        key: rules.key(&fields),
        fields: values,
    })
}

/// [`super::Layout::parse_event`] for one profile.
pub(crate) fn parse_event<R: Rules>(
    rules: &R,
    row: &[u8],
    scratch: &mut EventScratch,
    payload: &mut String,
) -> Result<EventRow, RejectReason> {
    let fields = check_row(rules, row, &mut scratch.splitter)?;
    rules.encode(&fields, &mut scratch.bufs);
    payload.clear();
    payload.push('[');
    rules.canonical(&fields, &mut |v| {
        if payload.len() > 1 {
            payload.push(',');
        }
        push_json_string(payload, v);
    });
    payload.push(']');
    Ok(EventRow {
        key: rules.key(&fields),
        key_hash: scratch.bufs.key_hash(),
        row_hash: scratch.bufs.row_hash(),
    })
}

/// Appends `value` (UTF-8, as every row is checked to be) as a JSON string.
fn push_json_string(out: &mut String, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&value[start..i]));
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&String::from_utf8_lossy(&value[start..]));
    out.push('"');
}

/// Buffers [`parse_event`] reuses from one row to the next.
#[derive(Default)]
pub struct EventScratch {
    splitter: Splitter,
    bufs: HashBufs,
}

/// A field value as text. Rows are checked to be UTF-8 before any field is read and split only at ASCII bytes (the
/// ECLRS dialect; a delimited source's delimiter and quote should be ASCII too), so the lossy conversion replaces
/// nothing.
pub(crate) fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
