//! Puts rows into the snapshot file and keeps the truth's line numbers right.
//!
//! Rows go straight to a buffered file, except with `--shuffle`: then every row is held in memory (about the size
//! of the file) until the end, written in a seeded random order, and the line-numbered parts of the truth are
//! computed for that order. Some rows are *held* to appear a little later than they are made (duplicates, conflict
//! losers placed after their winner); they come out when their due row is reached.

use super::truth::{TruthCounts, TruthWriter};
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// What a row is, as far as line-numbered truth is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A record (its key and outcome are recorded by the caller; they do not depend on the line).
    Record,
    /// A byte-identical copy of the record at row `of_row` (0-based, in emission order).
    Duplicate {
        of_row: u64,
    },
    ConflictLoser,
    Rejected(&'static str),
}

struct Held {
    due: u64,
    line: Vec<u8>,
    role: Role,
}

enum Output {
    Stream,
    /// `--shuffle`: rows (concatenated, with their end offsets) and the roles of the non-record rows.
    Shuffle {
        bytes: Vec<u8>,
        ends: Vec<usize>,
        roles: Vec<(u64, Role)>,
        rng: SmallRng,
    },
}

pub(crate) struct Emitter {
    file: BufWriter<File>,
    output: Output,
    pub(crate) truth: TruthWriter,
    written: u64,
    /// Rows waiting for their due row, ordered by it.
    held: VecDeque<Held>,
}

/// Line number of row 0: line 1 is the header.
const FIRST_DATA_LINE: u64 = 2;

impl Emitter {
    /// Creates the file and writes the header line. `shuffle` is the seed of the row order, if shuffling.
    pub(crate) fn create(
        path: &Path,
        header: &[u8],
        truth: TruthWriter,
        shuffle: Option<u64>,
    ) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
        let mut file = BufWriter::with_capacity(4 << 20, file);
        file.write_all(header)?;
        let output = match shuffle {
            None => Output::Stream,
            Some(seed) => Output::Shuffle {
                bytes: Vec::new(),
                ends: Vec::new(),
                roles: Vec::new(),
                rng: SmallRng::seed_from_u64(seed),
            },
        };
        Ok(Emitter {
            file,
            output,
            truth,
            written: 0,
            held: VecDeque::new(),
        })
    }

    /// Rows emitted so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Rows held for later.
    pub(crate) fn held(&self) -> u64 {
        self.held.len() as u64
    }

    /// Emits the held rows that are due, then `line`; returns `line`'s row index.
    pub(crate) fn emit(&mut self, line: &[u8], role: Role) -> io::Result<u64> {
        while self.held.front().is_some_and(|h| h.due <= self.written) {
            self.emit_next_held()?;
        }
        self.emit_now(line, role)
    }

    /// Holds `line` back to appear about `delay` rows later.
    pub(crate) fn hold(&mut self, delay: u64, line: Vec<u8>, role: Role) {
        let due = self.written + delay;
        let at = self.held.partition_point(|h| h.due <= due);
        self.held.insert(at, Held { due, line, role });
    }

    /// Emits the held row due first, if any.
    pub(crate) fn emit_next_held(&mut self) -> io::Result<()> {
        if let Some(held) = self.held.pop_front() {
            self.emit_now(&held.line, held.role)?;
        }
        Ok(())
    }

    fn emit_now(&mut self, line: &[u8], role: Role) -> io::Result<u64> {
        let row = self.written;
        self.written += 1;
        match &mut self.output {
            Output::Stream => {
                self.file.write_all(line)?;
                let line_no = row + FIRST_DATA_LINE;
                match role {
                    Role::Record => {}
                    Role::Duplicate { .. } => self.truth.duplicate_line(line_no)?,
                    Role::ConflictLoser => self.truth.conflict_line(line_no)?,
                    Role::Rejected(reason) => self.truth.rejected(line_no, reason)?,
                }
            }
            Output::Shuffle {
                bytes, ends, roles, ..
            } => {
                bytes.extend_from_slice(line);
                ends.push(bytes.len());
                if role != Role::Record {
                    roles.push((row, role));
                }
            }
        }
        Ok(row)
    }

    /// Emits what is still held, writes the shuffled rows if shuffling, flushes the file and writes the truth.
    /// Returns the data rows written and the truth's counts.
    pub(crate) fn finish(mut self) -> anyhow::Result<(u64, TruthCounts)> {
        while !self.held.is_empty() {
            self.emit_next_held()?;
        }
        if let Output::Shuffle {
            bytes,
            ends,
            roles,
            mut rng,
        } = std::mem::replace(&mut self.output, Output::Stream)
        {
            write_shuffled(
                &mut self.file,
                &mut self.truth,
                &bytes,
                &ends,
                roles,
                &mut rng,
            )?;
        }
        // Not fsynced: the data is synthetic, and renaming after writing already hides half-written files.
        self.file.flush().context("cannot write the snapshot")?;
        let counts = self.truth.finish(self.written)?;
        Ok((self.written, counts))
    }
}

/// Writes the rows in a random order and records the line-numbered truth for that order. Of a group of identical
/// rows, the first in the new order is the original and the others are its duplicates.
fn write_shuffled(
    file: &mut impl Write,
    truth: &mut TruthWriter,
    bytes: &[u8],
    ends: &[usize],
    roles: Vec<(u64, Role)>,
    rng: &mut SmallRng,
) -> io::Result<()> {
    let rows =
        u32::try_from(ends.len()).map_err(|_| io::Error::other("too many rows to shuffle"))?;
    let mut order: Vec<u32> = (0..rows).collect();
    order.shuffle(rng);
    let mut line_of = vec![0u64; ends.len()];
    for (position, &row) in order.iter().enumerate() {
        let row = row as usize;
        line_of[row] = position as u64 + FIRST_DATA_LINE;
        let start = if row == 0 { 0 } else { ends[row - 1] };
        file.write_all(&bytes[start..ends[row]])?;
    }
    let mut conflicts = Vec::new();
    let mut rejects = Vec::new();
    let mut copies: HashMap<u64, Vec<u64>> = HashMap::new();
    for (row, role) in roles {
        let line = line_of[row as usize];
        match role {
            Role::Record => {}
            Role::Duplicate { of_row } => copies
                .entry(of_row)
                .or_insert_with(|| vec![line_of[of_row as usize]])
                .push(line),
            Role::ConflictLoser => conflicts.push(line),
            Role::Rejected(reason) => rejects.push((line, reason)),
        }
    }
    let mut duplicates: Vec<u64> = Vec::new();
    for (_, mut lines) in copies {
        lines.sort_unstable();
        duplicates.extend_from_slice(&lines[1..]);
    }
    duplicates.sort_unstable();
    conflicts.sort_unstable();
    rejects.sort_unstable();
    for line in duplicates {
        truth.duplicate_line(line)?;
    }
    for line in conflicts {
        truth.conflict_line(line)?;
    }
    for (line, reason) in rejects {
        truth.rejected(line, reason)?;
    }
    Ok(())
}
