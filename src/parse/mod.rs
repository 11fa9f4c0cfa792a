//! Parsing: turns the bytes of a snapshot into classified-ready rows.
//!
//! A [`Profile`] (from a source's config) reads a file's header line and yields a [`Layout`]: how the file's
//! columns map onto the profile's canonical columns. The layout then parses chunks of whole lines
//! ([`Layout::parse_chunk`]) into [`ParsedRow`]s — record key hash, row hash, winner order key and the row's place in
//! the file — or [`Reject`]s with a named [`RejectReason`]. Parsing is pure and synchronous: the `ParserPool` runs it on
//! blocking threads, off the async executors.
//!
//! Rows keep no field values: for the ~99 % of rows that are unchanged nothing more is needed. The few rows that
//! become events are read again by offset and parsed with [`Layout::parse_event`], which writes their values
//! straight into the event's JSON payload. [`Layout::parse_record`] gives the same values as strings (the reference
//! the tests hold `parse_event` and the hashes to).
//!
//! The rooms, in the order a row passes through them:
//! - `rows` — the chunk loop shared by all profiles: lines, CR/LF, empty lines, the order of reject reasons;
//! - `split` — one row into fields: a word-at-a-time fast path for rows without quotes, unquoting otherwise;
//! - `eclrs` and `delimited` — each profile's header reading, validation and hash inputs ([`columns`] holds the
//!   ECLRS column lists);
//! - `hash` — the length-prefixed xxh3 encodings of record key and row (SPEC §1);
//! - [`sas`] — SAS datetimes: ordering keys and UTC conversion with New York's daylight saving rules.
//!
//! Measured on the development machine (release build, synthetic 500k-row v3 snapshot of 332 MB): ~0.17 s on one
//! thread, ~0.09 s on two (`parse::tests::parse_throughput`, ignored by default).

pub mod columns;
mod delimited;
mod eclrs;
mod hash;
mod rows;
pub mod sas;
mod split;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_128;

use delimited::DelimitedRules;
use eclrs::EclrsRules;
pub use hash::key_hash;
pub use rows::EventScratch;

/// 64-bit xxh3 of the record key's fields, each length-prefixed. Identifies a record within a source.
pub type KeyHash = u64;
/// 128-bit xxh3 of the record's canonical fields, each length-prefixed (SPEC §1).
pub type RowHash = u128;

/// Why a row was rejected. The names are part of the contract (SPEC §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RejectReason {
    FieldCount,
    MissingPatientKey,
    BadPatientKey,
    MissingAccession,
    BadCounty,
    MissingResult,
    InvalidUtf8,
    UnterminatedQuote,
    /// Delimited profile: a configured required column is blank.
    MissingRequired,
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::FieldCount => "field_count",
            RejectReason::MissingPatientKey => "missing_patient_key",
            RejectReason::BadPatientKey => "bad_patient_key",
            RejectReason::MissingAccession => "missing_accession",
            RejectReason::BadCounty => "bad_county",
            RejectReason::MissingResult => "missing_result",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::UnterminatedQuote => "unterminated_quote",
            RejectReason::MissingRequired => "missing_required",
        }
    }
}

/// Why a whole file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header matches none of the profile's known headers. Reason name `unknown_header`.
    #[error("unknown header: {0}")]
    Unknown(String),
    /// A configured key or required column is missing from a delimited file's header. Reason `unknown_header`.
    #[error("header lacks configured column `{0}`")]
    MissingColumn(String),
    /// No header line at all (empty file). Reason name `empty_file`.
    #[error("file is empty")]
    Empty,
}

impl HeaderError {
    /// Ledger reason name.
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Unknown(_) | HeaderError::MissingColumn(_) => "unknown_header",
            HeaderError::Empty => "empty_file",
        }
    }
}

/// Settings of the generic delimited profile (SPEC §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelimitedProfile {
    pub delimiter: u8,
    pub quote: u8,
    pub key_columns: Vec<String>,
    pub required_columns: Vec<String>,
    pub hash_exclude: Vec<String>,
    /// Column whose greatest value wins a conflict (compared as text); none: row hash alone decides.
    /// Compared by its first 8 bytes after trimming (see [`ParsedRow::order_key`]).
    pub order_column: Option<String>,
}

/// A source's format profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    Eclrs,
    Delimited(DelimitedProfile),
}

/// One data row that parsed and validated: everything dedupe needs, and where to find the row again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRow {
    pub key_hash: KeyHash,
    pub row_hash: RowHash,
    /// Conflict winner order: greatest wins (ECLRS: `OBRCREATEDATE` as microseconds, 0 when blank or bad).
    /// Delimited: the order column's first 8 bytes after trimming ASCII whitespace, big-endian, zero-padded (so
    /// byte-wise lexical order; values equal in their first 8 bytes tie); 0 when no order column is configured.
    pub order_key: u64,
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Byte offset of the row's first byte in the file.
    pub offset: u64,
    /// Length of the row in bytes, without the line terminator.
    pub len: u32,
}

/// A row that failed parsing or validation.
#[derive(Clone, PartialEq, Eq)]
pub struct Reject {
    pub line: u64,
    pub reason: RejectReason,
    /// The raw row bytes, without the line terminator (stored in the `rejects` table, never logged).
    pub raw: Vec<u8>,
}

/// Output of parsing one chunk.
#[derive(Debug, Default)]
pub struct ParsedChunk {
    pub rows: Vec<ParsedRow>,
    pub rejects: Vec<Reject>,
}

/// What an event needs of a row besides its payload: the key values and the row's hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct EventRow {
    pub key: Vec<String>,
    pub key_hash: KeyHash,
    pub row_hash: RowHash,
}

/// A fully parsed record, for the rows that become events.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The key fields' values, in key column order.
    pub key: Vec<String>,
    /// All canonical fields' values, in canonical column order.
    pub fields: Vec<String>,
}

/// How one file's columns map onto its profile's canonical columns. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Layout {
    inner: Arc<LayoutInner>,
}

#[derive(Debug)]
struct LayoutInner {
    /// "v1" | "v2" | "v3" | "delimited".
    version: &'static str,
    /// Canonical column names: what [`Record::fields`] holds, in order.
    columns: Vec<String>,
    key_columns: Vec<String>,
    rules: ProfileRules,
}

/// The per-profile half of a layout: positions and checks resolved from the header.
#[derive(Debug)]
enum ProfileRules {
    Eclrs(EclrsRules),
    Delimited(DelimitedRules),
}

impl Profile {
    /// Reads a header line (bytes without the line terminator) and returns the layout of the file's rows.
    ///
    /// A leading UTF-8 BOM is stripped and surrounding ASCII whitespace trimmed. ECLRS: the header must equal the
    /// v1, v2 or v3 header exactly (`HeaderError::Unknown`). Delimited: the header's fields (unquoted, trimmed) are
    /// the columns; key, required and order columns must be among them (`HeaderError::MissingColumn`). A blank
    /// header is `HeaderError::Empty`. No error message holds the header's text.
    pub fn layout(&self, header: &[u8]) -> Result<Layout, HeaderError> {
        let header = header
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(header)
            .trim_ascii();
        if header.is_empty() {
            return Err(HeaderError::Empty);
        }
        let inner = match self {
            Profile::Eclrs => {
                let rules = EclrsRules::from_header(header)?;
                let (columns, key_columns) = eclrs::canonical_columns();
                LayoutInner {
                    version: rules.version.as_str(),
                    columns,
                    key_columns,
                    rules: ProfileRules::Eclrs(rules),
                }
            }
            Profile::Delimited(profile) => {
                let (columns, rules) = DelimitedRules::from_header(profile, header)?;
                LayoutInner {
                    version: "delimited",
                    columns,
                    key_columns: profile.key_columns.clone(),
                    rules: ProfileRules::Delimited(rules),
                }
            }
        };
        Ok(Layout {
            inner: Arc::new(inner),
        })
    }
}

impl Layout {
    /// "v1" | "v2" | "v3" for ECLRS, "delimited" for the generic profile.
    pub fn version(&self) -> &str {
        self.inner.version
    }

    /// Canonical column names (ECLRS: always the 65 v3 columns; delimited: the header's columns).
    pub fn columns(&self) -> &[String] {
        &self.inner.columns
    }

    /// Key column names, in key order (ECLRS: `PIDPATIENTKEY`, `OBRACCESSIONNUM`).
    pub fn key_columns(&self) -> &[String] {
        &self.inner.key_columns
    }

    /// Parses a chunk of whole data lines.
    ///
    /// `first_line` is the 1-based file line number of the chunk's first line, `base_offset` the file byte offset
    /// of the chunk's first byte. Lines end in LF or CRLF; the last line may lack a terminator. Every non-empty line
    /// yields exactly one [`ParsedRow`] or one [`Reject`]; empty lines are skipped but counted. A row's
    /// `offset`/`len` locate it in the file without its terminator. Allocates nothing per row except for rejects.
    pub fn parse_chunk(&self, chunk: &[u8], first_line: u64, base_offset: u64) -> ParsedChunk {
        match &self.inner.rules {
            ProfileRules::Eclrs(rules) => rows::parse_chunk(rules, chunk, first_line, base_offset),
            ProfileRules::Delimited(rules) => {
                rows::parse_chunk(rules, chunk, first_line, base_offset)
            }
        }
    }

    /// Parses one row (bytes without terminator) into owned strings — the plain form of [`Layout::parse_event`]:
    /// trimmed key values and all canonical field values
    /// (unquoted; v1/v2 padded to v3). Same validation, with the same reasons, as [`Layout::parse_chunk`].
    pub fn parse_record(&self, row: &[u8]) -> Result<Record, RejectReason> {
        match &self.inner.rules {
            ProfileRules::Eclrs(rules) => rows::parse_record(rules, row),
            ProfileRules::Delimited(rules) => rows::parse_record(rules, row),
        }
    }

    /// Parses one row (bytes without terminator) for its event: writes the canonical field values as a JSON array
    /// of strings into `payload` and answers the key values with the key and row hashes, equal to what
    /// [`Layout::parse_chunk`] gives the row. Same validation, with the same reasons. `scratch` is reused across
    /// rows.
    pub fn parse_event(
        &self,
        row: &[u8],
        scratch: &mut EventScratch,
        payload: &mut String,
    ) -> Result<EventRow, RejectReason> {
        match &self.inner.rules {
            ProfileRules::Eclrs(rules) => rows::parse_event(rules, row, scratch, payload),
            ProfileRules::Delimited(rules) => rows::parse_event(rules, row, scratch, payload),
        }
    }

    /// The row hash of a parsed record: for a record from [`Layout::parse_record`], the same value
    /// [`Layout::parse_chunk`] gives its row.
    pub fn row_hash(&self, record: &Record) -> RowHash {
        let hashed = |i: usize| match &self.inner.rules {
            ProfileRules::Eclrs(_) => true,
            ProfileRules::Delimited(rules) => rules.hashed().get(i).copied().unwrap_or(true),
        };
        let mut buf = Vec::new();
        for (i, value) in record.fields.iter().enumerate() {
            if hashed(i) {
                hash::push_prefixed(&mut buf, value.as_bytes());
            }
        }
        xxh3_128(&buf)
    }
}

// Rows hold PHI: their Debug output shows shapes, never values.
impl std::fmt::Debug for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reject")
            .field("line", &self.line)
            .field("reason", &self.reason)
            .field("raw_bytes", &self.raw.len())
            .finish()
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key_fields", &self.key.len())
            .field("fields", &self.fields.len())
            .finish()
    }
}
