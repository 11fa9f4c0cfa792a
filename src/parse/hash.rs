//! Record key and row hashes (SPEC §1).
//!
//! Both hash a sequence of values, each encoded as its byte length (u32, little-endian) followed by its bytes, all
//! concatenated and hashed in one call: the length prefix keeps `("ab", "c")` and `("a", "bc")` apart. The key hash
//! is xxh3-64 over the trimmed key values; the row hash is xxh3-128 over the canonical field values as read.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::{KeyHash, RowHash};

/// The key hash of `values`, given in key column order and already trimmed (as in [`super::Record::key`]).
///
/// The same function the parser applies to each row, for code that holds key values rather than rows (e.g. when
/// rebuilding state from the database).
pub fn key_hash<V: AsRef<[u8]>>(values: &[V]) -> KeyHash {
    let mut buf = Vec::new();
    for value in values {
        push_prefixed(&mut buf, value.as_ref());
    }
    xxh3_64(&buf)
}

/// Appends one length-prefixed value. Values never exceed `u32::MAX` bytes: longer rows are rejected before any
/// field is hashed.
#[inline]
pub(crate) fn push_prefixed(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

/// Reused encoding buffers, one pair per chunk, so hashing allocates nothing per row.
#[derive(Default)]
pub(crate) struct HashBufs {
    /// The key encoding, built with [`push_prefixed`].
    pub(crate) key: Vec<u8>,
    /// The row encoding, written by index: `row[..row_len]` is the encoding, the rest is slack that lets short
    /// values be copied with one fixed-size move instead of a `memcpy` call per value.
    row: Vec<u8>,
    row_len: usize,
}

/// Values up to this long are copied with a fixed-size move (over-reading the source, over-writing the slack).
const SHORT: usize = 32;

impl HashBufs {
    pub(crate) fn key_hash(&self) -> KeyHash {
        xxh3_64(&self.key)
    }

    /// Starts a row encoding of at most `values` values totalling at most `value_bytes` bytes.
    #[inline]
    pub(crate) fn begin_row(&mut self, values: usize, value_bytes: usize) {
        let needed = value_bytes + 4 * values + SHORT;
        if self.row.len() < needed {
            self.row.resize(needed, 0);
        }
        self.row_len = 0;
    }

    /// Appends the value `src[start..end]`, length-prefixed. `src` is the buffer the value lies in: reading past
    /// the value's end, within `src`, is what makes the short copy cheap.
    #[inline(always)]
    pub(crate) fn push_row_value(&mut self, src: &[u8], (start, end): (usize, usize)) {
        let len = end - start;
        let at = self.row_len;
        self.row[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let at = at + 4;
        if len <= SHORT && start + SHORT <= src.len() {
            self.row[at..at + SHORT].copy_from_slice(&src[start..start + SHORT]);
        } else {
            self.row[at..at + len].copy_from_slice(&src[start..end]);
        }
        self.row_len = at + len;
    }

    /// Appends `count` empty values (the padding of v1 and v2 rows).
    #[inline]
    pub(crate) fn push_row_empty(&mut self, count: usize) {
        let at = self.row_len;
        self.row[at..at + 4 * count].fill(0);
        self.row_len = at + 4 * count;
    }

    pub(crate) fn row_hash(&self) -> RowHash {
        xxh3_128(&self.row[..self.row_len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_keep_value_boundaries_apart() {
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
        assert_ne!(key_hash(&["", "x"]), key_hash(&["x", ""]));
    }

    #[test]
    fn the_row_encoding_is_the_length_prefixed_values_whatever_their_length() {
        let src: Vec<u8> = (0..200u8).collect();
        let spans = [
            (0, 0),
            (3, 10),
            (10, 42),
            (42, 43),
            (50, 150),
            (170, 199),
            (199, 200),
        ];
        let mut bufs = HashBufs::default();
        // Twice, so the second encoding runs over the first one's leftovers.
        for _ in 0..2 {
            bufs.begin_row(spans.len() + 2, src.len());
            let mut expected = Vec::new();
            for &(start, end) in &spans {
                bufs.push_row_value(&src, (start, end));
                push_prefixed(&mut expected, &src[start..end]);
            }
            bufs.push_row_empty(2);
            push_prefixed(&mut expected, b"");
            push_prefixed(&mut expected, b"");
            assert_eq!(bufs.row_hash(), xxh3_128(&expected));
        }
    }

    #[test]
    fn key_hash_is_xxh3_64_over_length_prefixed_values() {
        let mut expected = Vec::new();
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(b"123");
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(b"AB");
        assert_eq!(key_hash(&["123", "AB"]), xxh3_64(&expected));
    }
}
