//! The vocabulary the ingest actors share about one snapshot in flight.

use crate::parse::{KeyHash, Layout, RowHash};
use serde::Serialize;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// One snapshot being ingested: its ledger row, its file and how to read it.
#[derive(Debug)]
pub struct Snapshot {
    /// `files.id` of its ledger row.
    pub file_id: i64,
    pub source: Arc<str>,
    /// File name (never logged with field values; file names carry no PHI in ECLRS drops).
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Open handle, so rows can be read again by offset even while other files arrive.
    pub file: File,
    pub layout: Layout,
    /// Byte offset of the first data line (after the header line).
    pub data_offset: u64,
    /// Some batches of this file may already be committed (a restart resumed it).
    pub resumed: bool,
    pub emit_removed: bool,
    pub admitted: Instant,
}

/// What a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    New,
    Changed,
    Removed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::New => "new",
            ChangeKind::Changed => "changed",
            ChangeKind::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        match s {
            "new" => Some(ChangeKind::New),
            "changed" => Some(ChangeKind::Changed),
            "removed" => Some(ChangeKind::Removed),
            _ => None,
        }
    }
}

/// A new or changed record found by a dedupe shard: the event to append, and where its row is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub key_hash: KeyHash,
    pub kind: ChangeKind,
    pub version: u32,
    pub row_hash: RowHash,
    pub line: u64,
    pub offset: u64,
    pub len: u32,
}

/// A row that lost a conflict: stored with its line so that nothing disappears silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictRow {
    pub key_hash: KeyHash,
    pub line: u64,
    pub offset: u64,
    pub len: u32,
}

/// A file's ledger counters. `rows = new + changed + unchanged + duplicate + conflict + rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub duplicate: u64,
    pub conflict: u64,
    pub rejected: u64,
    pub removed: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.rows += o.rows;
        self.new += o.new;
        self.changed += o.changed;
        self.unchanged += o.unchanged;
        self.duplicate += o.duplicate;
        self.conflict += o.conflict;
        self.rejected += o.rejected;
        self.removed += o.removed;
    }

    /// Whether every row is in exactly one bucket.
    pub fn balances(&self) -> bool {
        self.rows
            == self.new
                + self.changed
                + self.unchanged
                + self.duplicate
                + self.conflict
                + self.rejected
    }
}

/// The shard a key belongs to. Mirrored in SQL as `(key_hash & 2147483647) % shards`.
pub fn shard_of(key_hash: KeyHash, shards: usize) -> usize {
    ((key_hash & 0x7fff_ffff) % shards as u64) as usize
}

/// A short, non-reversible label for a key hash, for logs and dumps.
pub fn short_key(key_hash: KeyHash) -> String {
    format!(
        "{:08x}",
        (xxhash_rust::xxh3::xxh3_64(&key_hash.to_le_bytes()) >> 32) as u32
    )
}
