//! Parsing: turns the bytes of a snapshot into classified-ready rows.
//!
//! A [`Profile`] (from a source's config) reads a file's header line and yields a [`Layout`]: how the file's
//! columns map onto the profile's canonical columns. The layout then parses chunks of whole lines
//! ([`Layout::parse_chunk`]) into [`ParsedRow`]s — record key hash, row hash, winner order key and the row's place in
//! the file — or [`Reject`]s with a named [`RejectReason`]. Parsing is pure and synchronous: the `ParserPool` runs it on
//! blocking threads, off the async executors.
//!
//! Rows keep no field values: for the ~99 % of rows that are unchanged nothing more is needed. The few rows that
//! become events are read again by offset and parsed in full with [`Layout::parse_record`].

pub mod columns;

use std::sync::Arc;

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
    pub order_key: u64,
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Byte offset of the row's first byte in the file.
    pub offset: u64,
    /// Length of the row in bytes, without the line terminator.
    pub len: u32,
}

/// A row that failed parsing or validation.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A fully parsed record, for the rows that become events.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    // filled in by the parser implementation
}
