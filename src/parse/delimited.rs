//! The generic delimited profile (SPEC §3.3): the header names the columns; the source's config names the key,
//! the required columns, the columns left out of the row hash and the conflict order column.

use super::hash::{push_prefixed, HashBufs};
use super::rows::{text, Rules};
use super::split::{Fields, Splitter};
use super::{DelimitedProfile, HeaderError, RejectReason};

/// How rows of one delimited file are read: configured names resolved to positions in its header.
#[derive(Debug)]
pub(crate) struct DelimitedRules {
    delimiter: u8,
    quote: u8,
    /// The header's column count; every row must have as many fields.
    field_count: usize,
    /// Positions of the key columns, in key order.
    key: Vec<usize>,
    /// Positions of the required columns.
    required: Vec<usize>,
    /// Per column: whether it goes into the row hash (false for `hash_exclude` columns).
    hashed: Vec<bool>,
    /// Position of the conflict order column, if one is configured.
    order: Option<usize>,
}

impl DelimitedRules {
    /// Reads a header line (BOM already stripped, whitespace trimmed) and returns the header's column names
    /// (trimmed, unquoted) with the rules.
    ///
    /// Key, required and order columns must be in the header (`MissingColumn`); a `hash_exclude` column that is
    /// absent excludes nothing and is not an error. If a name occurs twice in the header, its first column is used.
    pub(crate) fn from_header(
        profile: &DelimitedProfile,
        header: &[u8],
    ) -> Result<(Vec<String>, Self), HeaderError> {
        let mut splitter = Splitter::default();
        let names = splitter
            .split(header, profile.delimiter, profile.quote)
            .map_err(|_| HeaderError::Unknown("header has an unterminated quote".to_string()))?;
        let columns: Vec<String> = names.iter().map(|n| text(n.trim_ascii())).collect();
        let position = |name: &String| {
            columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| HeaderError::MissingColumn(name.clone()))
        };
        let key = profile
            .key_columns
            .iter()
            .map(position)
            .collect::<Result<_, _>>()?;
        let required = profile
            .required_columns
            .iter()
            .map(position)
            .collect::<Result<_, _>>()?;
        let order = profile.order_column.as_ref().map(position).transpose()?;
        let hashed = columns
            .iter()
            .map(|c| !profile.hash_exclude.contains(c))
            .collect();
        let rules = DelimitedRules {
            delimiter: profile.delimiter,
            quote: profile.quote,
            field_count: columns.len(),
            key,
            required,
            hashed,
            order,
        };
        Ok((columns, rules))
    }

    /// Per canonical column: whether it goes into the row hash.
    pub(crate) fn hashed(&self) -> &[bool] {
        &self.hashed
    }
}

/// The conflict order key of an order column value: its first 8 bytes (after trimming ASCII whitespace) read as
/// a big-endian u64, shorter values padded with zero bytes. Greater means later in byte-wise lexical order, so
/// ISO dates and fixed-width numbers order correctly; values that share their first 8 bytes tie, and the row hash
/// decides.
pub(crate) fn order_key_of(value: &[u8]) -> u64 {
    let value = value.trim_ascii();
    let mut bytes = [0u8; 8];
    let n = value.len().min(8);
    bytes[..n].copy_from_slice(&value[..n]);
    u64::from_be_bytes(bytes)
}

impl Rules for DelimitedRules {
    fn delimiter(&self) -> u8 {
        self.delimiter
    }

    fn quote(&self) -> u8 {
        self.quote
    }

    fn field_count(&self) -> usize {
        self.field_count
    }

    fn validate(&self, fields: &Fields<'_>) -> Result<(), RejectReason> {
        let blank = |&i: &usize| fields.get(i).trim_ascii().is_empty();
        if self.key.iter().any(blank) || self.required.iter().any(blank) {
            return Err(RejectReason::MissingRequired);
        }
        Ok(())
    }

    fn encode(&self, fields: &Fields<'_>, bufs: &mut HashBufs) -> u64 {
        bufs.key.clear();
        for &i in &self.key {
            push_prefixed(&mut bufs.key, fields.get(i).trim_ascii());
        }
        let src = fields.src();
        bufs.begin_row(self.field_count, src.len());
        for (i, _) in self.hashed.iter().enumerate().filter(|(_, &h)| h) {
            bufs.push_row_value(src, fields.span(i));
        }
        self.order.map_or(0, |i| order_key_of(fields.get(i)))
    }

    fn key(&self, fields: &Fields<'_>) -> Vec<String> {
        self.key
            .iter()
            .map(|&i| text(fields.get(i).trim_ascii()))
            .collect()
    }

    fn canonical(&self, fields: &Fields<'_>, f: &mut dyn FnMut(&[u8])) {
        for v in fields.iter() {
            f(v);
        }
    }
}
