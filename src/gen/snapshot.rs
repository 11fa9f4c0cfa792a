//! The two ways to make a snapshot: a first one from nothing, or a next one by streaming the previous file.

use super::emit::{Emitter, Role};
use super::factory::{chance, Created, RecordFactory};
use super::malformed::{write_malformed, REJECT_REASONS};
use super::record::{decode, encode, header_version, layout, Record};
use super::truth::{Outcome, PreviousTruth, TruthCounts};
use crate::parse::columns::HeaderVersion;
use anyhow::{anyhow, bail, Context};
use rand::rngs::SmallRng;
use rand::Rng;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Per-record probabilities of each kind of change (see `GenArgs`). `new` may exceed 1: it is the expected number
/// of new records per previous record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    pub changed: f64,
    pub new: f64,
    pub aged_out: f64,
    pub duplicate: f64,
    pub conflict: f64,
    pub malformed: f64,
}

/// Held rows (duplicates, losers placed after their winner) appear up to this many rows after their original.
const MAX_HOLD: u64 = 40;

/// Share of a next snapshot's new records that are another result for a patient already in the file.
const NEW_RESULT_FOR_KNOWN_PATIENT: f64 = 0.3;

pub(crate) struct SnapshotWriter {
    emitter: Emitter,
    factory: RecordFactory,
    rng: SmallRng,
    layout: Vec<usize>,
    /// Under a v1 or v2 header the employer, school and AOE columns are not written, so records must hold them
    /// blank: the same data under an older header is then the same record.
    blank_extras: bool,
    rates: Rates,
    line: Vec<u8>,
    loser: Record,
    malformed: Record,
}

impl SnapshotWriter {
    pub(crate) fn new(
        emitter: Emitter,
        factory: RecordFactory,
        rng: SmallRng,
        header: HeaderVersion,
        rates: Rates,
    ) -> Self {
        SnapshotWriter {
            emitter,
            factory,
            rng,
            layout: layout(header),
            blank_extras: header != HeaderVersion::V3,
            rates,
            line: Vec::with_capacity(2048),
            loser: Record::blank(),
            malformed: Record::blank(),
        }
    }

    /// A first snapshot of exactly `rows` data rows: every record new; patients have one to three results.
    /// Duplicates, conflict losers and malformed rows are made only while they fit in the row budget.
    pub(crate) fn write_first(&mut self, rows: u64) -> anyhow::Result<()> {
        let mut rec = Record::blank();
        let mut results_left = 0;
        while self.emitter.written() < rows {
            let free = rows - self.emitter.written() - self.emitter.held();
            if free == 0 {
                self.emitter.emit_next_held()?;
                continue;
            }
            if chance(&mut self.rng, self.rates.malformed) {
                self.emit_malformed()?;
                continue;
            }
            if results_left == 0 {
                self.factory.new_patient(&mut self.rng, &mut rec);
                results_left = match self.rng.random_range(0..100) {
                    0..75 => 1,
                    75..93 => 2,
                    _ => 3,
                };
            }
            self.factory
                .new_result(&mut self.rng, &mut rec, Created::InWindow);
            results_left -= 1;
            self.emit_record(&mut rec, None, free - 1)?;
        }
        Ok(())
    }

    /// A next snapshot: streams `previous` line by line (memory does not grow with its size), carrying each of
    /// its records over unchanged, changed, or not at all (aged out), and interleaving new records, duplicates,
    /// conflicts and malformed rows.
    pub(crate) fn write_next(
        &mut self,
        previous: &Path,
        truth: &PreviousTruth,
    ) -> anyhow::Result<()> {
        let context = || format!("cannot read previous snapshot `{}`", previous.display());
        let file = File::open(previous).with_context(context)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut buf = Vec::with_capacity(2048);
        reader.read_until(b'\n', &mut buf).with_context(context)?;
        let version = header_version(trim_line_end(&buf)).ok_or_else(|| {
            anyhow!(
                "previous snapshot `{}` has no ECLRS header",
                previous.display()
            )
        })?;
        let previous_layout = layout(version);
        let skip = truth.non_record_lines();
        let mut next_skip = 0;
        let mut line_no = 1u64;
        let mut before = Record::blank();
        let mut rec = Record::blank();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).with_context(context)? == 0 {
                break;
            }
            line_no += 1;
            while skip.get(next_skip).is_some_and(|&l| l < line_no) {
                next_skip += 1;
            }
            if skip.get(next_skip) == Some(&line_no) {
                continue;
            }
            decode(trim_line_end(&buf), &previous_layout, &mut before).map_err(|e| {
                anyhow!(
                    "line {line_no} of `{}` is not a record ({e}), though its ground truth says it is",
                    previous.display()
                )
            })?;

            let roll: f64 = self.rng.random();
            if roll < self.rates.aged_out {
                self.emitter.truth.removed(before.key())?;
            } else {
                rec.copy_from(&before);
                if roll < self.rates.aged_out + self.rates.changed {
                    self.factory.change(&mut self.rng, &mut rec);
                }
                self.emit_record(&mut rec, Some(&before), u64::MAX)?;
            }

            let new_records = self.rates.new.trunc() as u64
                + u64::from(chance(&mut self.rng, self.rates.new.fract()));
            for _ in 0..new_records {
                if chance(&mut self.rng, NEW_RESULT_FOR_KNOWN_PATIENT) {
                    rec.copy_from(&before);
                } else {
                    self.factory.new_patient(&mut self.rng, &mut rec);
                }
                self.factory
                    .new_result(&mut self.rng, &mut rec, Created::Recently);
                self.emit_record(&mut rec, None, u64::MAX)?;
            }

            if chance(&mut self.rng, self.rates.malformed) {
                self.emit_malformed()?;
            }
        }
        if line_no - 1 != truth.rows {
            bail!(
                "previous snapshot `{}` has {} data rows but its ground truth says {}",
                previous.display(),
                line_no - 1,
                truth.rows
            );
        }
        Ok(())
    }

    /// Emits one record, classified against `previous` (its content in the previous snapshot, if any). With the
    /// conflict rate it gets one or two losers, placed before or after it; with the duplicate rate, a later copy.
    /// `spare` bounds the extra rows this may add.
    fn emit_record(
        &mut self,
        rec: &mut Record,
        previous: Option<&Record>,
        mut spare: u64,
    ) -> anyhow::Result<()> {
        if self.blank_extras {
            rec.blank_extras();
        }
        let outcome = match previous {
            None => Outcome::New,
            Some(before) if before == rec => Outcome::Unchanged,
            Some(_) => Outcome::Changed,
        };
        if spare > 0 && chance(&mut self.rng, self.rates.conflict) {
            let losers = if spare >= 2 && chance(&mut self.rng, 0.2) {
                2
            } else {
                1
            };
            for k in 0..losers {
                self.factory
                    .conflict_loser(&mut self.rng, rec, k, &mut self.loser);
                encode(&self.loser, &self.layout, &mut self.line);
                if chance(&mut self.rng, 0.5) {
                    self.emitter.emit(&self.line, Role::ConflictLoser)?;
                } else {
                    let delay = self.rng.random_range(1..=MAX_HOLD);
                    self.emitter
                        .hold(delay, self.line.clone(), Role::ConflictLoser);
                }
                spare -= 1;
            }
        }
        encode(rec, &self.layout, &mut self.line);
        let row = self.emitter.emit(&self.line, Role::Record)?;
        self.emitter.truth.record(outcome, rec.key())?;
        if spare > 0 && chance(&mut self.rng, self.rates.duplicate) {
            let delay = self.rng.random_range(1..=MAX_HOLD);
            self.emitter
                .hold(delay, self.line.clone(), Role::Duplicate { of_row: row });
        }
        Ok(())
    }

    fn emit_malformed(&mut self) -> anyhow::Result<()> {
        let m = self
            .factory
            .malformed_record(&mut self.rng, &mut self.malformed);
        if self.blank_extras {
            self.malformed.blank_extras();
        }
        // Reasons cycle, so any eight consecutive malformed rows cover them all.
        let reason = REJECT_REASONS[(m % REJECT_REASONS.len() as u64) as usize];
        write_malformed(
            &mut self.rng,
            reason,
            &mut self.malformed,
            &self.layout,
            &mut self.line,
        );
        self.emitter.emit(&self.line, Role::Rejected(reason))?;
        Ok(())
    }

    pub(crate) fn finish(self) -> anyhow::Result<(u64, TruthCounts)> {
        self.emitter.finish()
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
