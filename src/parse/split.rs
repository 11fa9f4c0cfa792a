//! Splitting one row into fields: the hot path of the whole service.
//!
//! Most rows hold no quote byte at all, so they are cut at each delimiter in place, without copying. A row with a
//! quote byte takes the slow path, which unquotes its fields into a reused buffer. Either way the caller gets
//! [`Fields`], a view of field boundaries over one byte slice, and nothing is allocated once the buffers have grown
//! to the longest row seen.
//!
//! Quoting rules: a quote has meaning only as the first byte of a field. Inside a quoted field the delimiter is
//! data and a doubled quote is one quote; the field ends at the next lone quote. Text between that closing quote
//! and the next delimiter is kept as is (`"ab"c` reads `abc`), and a quote in the middle of an unquoted field is an
//! ordinary byte. A quote still open at the end of the row rejects the row (`unterminated_quote`): records never
//! span lines.

use memchr::memchr;

use super::RejectReason;

/// The fields of one row: `spans` index into `src`, which is either the row itself (fast path) or the splitter's
/// unquoting buffer (slow path).
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    src: &'a [u8],
    spans: &'a [(usize, usize)],
}

impl<'a> Fields<'a> {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Where field `i` lies in [`Fields::src`].
    #[inline]
    pub(crate) fn span(&self, i: usize) -> (usize, usize) {
        self.spans[i]
    }

    /// The buffer all fields lie in; its length bounds their total length.
    pub(crate) fn src(&self) -> &'a [u8] {
        self.src
    }

    /// The value of field `i` (unquoted, not trimmed). Panics if `i` is out of range: callers check the field
    /// count first.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        let (start, end) = self.spans[i];
        &self.src[start..end]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let src = self.src;
        self.spans.iter().map(move |&(start, end)| &src[start..end])
    }
}

/// Reusable buffers for splitting rows. One per parsing thread (per chunk), never per row.
#[derive(Default)]
pub(crate) struct Splitter {
    /// Field boundaries of the current row.
    spans: Vec<(usize, usize)>,
    /// Unquoted field bytes of the current row, for rows that contain a quote.
    unquoted: Vec<u8>,
}

impl Splitter {
    /// Splits `row` (no line terminator) at `delimiter`, honouring `quote`.
    ///
    /// The fast path reads the row a word (8 bytes) at a time and finds every delimiter and quote byte of the
    /// word with a few bit operations: fields are ~10 bytes long, too short for a `memchr` call per field to pay.
    pub(crate) fn split<'a>(
        &'a mut self,
        row: &'a [u8],
        delimiter: u8,
        quote: u8,
    ) -> Result<Fields<'a>, RejectReason> {
        self.spans.clear();
        let mut start = 0;
        let mut words = row.chunks_exact(8);
        let mut base = 0;
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
            if byte_mask(word, quote) != 0 {
                return self.split_quoted(row, delimiter, quote);
            }
            let mut delimiters = byte_mask(word, delimiter);
            while delimiters != 0 {
                let pos = base + (delimiters.trailing_zeros() / 8) as usize;
                self.spans.push((start, pos));
                start = pos + 1;
                delimiters &= delimiters - 1;
            }
            base += 8;
        }
        for (i, &byte) in words.remainder().iter().enumerate() {
            if byte == quote {
                return self.split_quoted(row, delimiter, quote);
            }
            if byte == delimiter {
                self.spans.push((start, base + i));
                start = base + i + 1;
            }
        }
        self.spans.push((start, row.len()));
        Ok(Fields {
            src: row,
            spans: &self.spans,
        })
    }

    /// The slow path: the row holds at least one quote byte, so every field is copied, unquoted, into
    /// `self.unquoted`.
    fn split_quoted<'a>(
        &'a mut self,
        row: &[u8],
        delimiter: u8,
        quote: u8,
    ) -> Result<Fields<'a>, RejectReason> {
        self.spans.clear();
        self.unquoted.clear();
        let out = &mut self.unquoted;
        let mut pos = 0;
        loop {
            let field_start = out.len();
            if row.get(pos) == Some(&quote) {
                pos += 1;
                loop {
                    let Some(i) = memchr(quote, &row[pos..]) else {
                        return Err(RejectReason::UnterminatedQuote);
                    };
                    out.extend_from_slice(&row[pos..pos + i]);
                    pos += i + 1;
                    if row.get(pos) == Some(&quote) {
                        out.push(quote);
                        pos += 1;
                    } else {
                        break;
                    }
                }
            }
            // The whole field when unquoted; whatever follows the closing quote otherwise.
            match memchr(delimiter, &row[pos..]) {
                Some(i) => {
                    out.extend_from_slice(&row[pos..pos + i]);
                    self.spans.push((field_start, out.len()));
                    pos += i + 1;
                }
                None => {
                    out.extend_from_slice(&row[pos..]);
                    self.spans.push((field_start, out.len()));
                    break;
                }
            }
        }
        Ok(Fields {
            src: &self.unquoted,
            spans: &self.spans,
        })
    }
}

/// A word with 0x80 in each byte where `word` (little-endian) holds `byte`, and 0 elsewhere. Exact: the usual
/// "has zero byte" trick, in the form that cannot carry into a neighbouring byte.
#[inline(always)]
fn byte_mask(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(row: &str) -> Result<Vec<String>, RejectReason> {
        let mut splitter = Splitter::default();
        let fields = splitter.split(row.as_bytes(), b'|', b'"')?;
        Ok(fields
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect())
    }

    #[test]
    fn unquoted_rows_split_at_every_delimiter() {
        assert_eq!(split("a|b|c").unwrap(), ["a", "b", "c"]);
        assert_eq!(split("|a||").unwrap(), ["", "a", "", ""]);
        assert_eq!(split("").unwrap(), [""]);
    }

    #[test]
    fn quoted_fields_keep_delimiters_and_undouble_quotes() {
        assert_eq!(
            split(r#"x|"ACME | INC"|"say ""hi"""|"""|"|y"#).unwrap(),
            ["x", "ACME | INC", r#"say "hi""#, r#""|"#, "y"]
        );
        assert_eq!(split(r#""""#).unwrap(), [""]);
        assert_eq!(split(r#"a|"""#).unwrap(), ["a", ""]);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_data() {
        assert_eq!(split(r#"5" tall|b"#).unwrap(), [r#"5" tall"#, "b"]);
        assert_eq!(split(r#""ab"c|d"#).unwrap(), ["abc", "d"]);
    }

    #[test]
    fn an_open_quote_at_end_of_row_is_rejected() {
        assert_eq!(split(r#"a|"b|c"#), Err(RejectReason::UnterminatedQuote));
        assert_eq!(split(r#"a|"b""|c"#), Err(RejectReason::UnterminatedQuote));
        assert_eq!(split(r#"""#), Err(RejectReason::UnterminatedQuote));
    }

    /// The quoting rules of the module doc, one byte at a time.
    fn reference_split(row: &[u8], delimiter: u8, quote: u8) -> Result<Vec<Vec<u8>>, RejectReason> {
        let mut fields = Vec::new();
        let mut i = 0;
        loop {
            let mut field = Vec::new();
            if row.get(i) == Some(&quote) {
                i += 1;
                loop {
                    match (row.get(i), row.get(i + 1)) {
                        (None, _) => return Err(RejectReason::UnterminatedQuote),
                        (Some(&a), Some(&b)) if a == quote && b == quote => {
                            field.push(quote);
                            i += 2;
                        }
                        (Some(&a), _) if a == quote => {
                            i += 1;
                            break;
                        }
                        (Some(&a), _) => {
                            field.push(a);
                            i += 1;
                        }
                    }
                }
            }
            while i < row.len() && row[i] != delimiter {
                field.push(row[i]);
                i += 1;
            }
            fields.push(field);
            if i >= row.len() {
                return Ok(fields);
            }
            i += 1;
        }
    }

    #[test]
    fn byte_mask_marks_exactly_the_matching_bytes() {
        for byte in 0..=255u8 {
            for other in 0..=255u8 {
                for pos in 0..8 {
                    let mut bytes = [other; 8];
                    bytes[pos] = byte;
                    let mask = byte_mask(u64::from_le_bytes(bytes), byte);
                    for (i, &b) in bytes.iter().enumerate() {
                        assert_eq!((mask >> (8 * i + 7)) & 1 == 1, b == byte);
                    }
                    assert_eq!(mask & !0x8080_8080_8080_8080, 0);
                }
            }
        }
    }

    #[test]
    fn splitting_agrees_with_the_byte_at_a_time_rules_on_many_rows() {
        // A small deterministic generator over an alphabet rich in delimiters and quotes, at every length that
        // crosses the 8-byte words of the fast path.
        let alphabet = [b'a', b'b', b'|', b'|', b'"', b' ', 0xC3, 0xA9];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut splitter = Splitter::default();
        for case in 0..20_000 {
            let len = case % 41;
            let row: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Fewer quotes in half the cases, so the fast path runs whole rows too.
                    let pick = (state >> 32) as usize % alphabet.len();
                    if case % 2 == 0 && alphabet[pick] == b'"' {
                        b'a'
                    } else {
                        alphabet[pick]
                    }
                })
                .collect();
            let got = splitter
                .split(&row, b'|', b'"')
                .map(|f| f.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            assert_eq!(got, reference_split(&row, b'|', b'"'), "row {row:?}");
        }
    }
}
