//! Synthetic ECLRS snapshots (`sluice gen`, SPEC §8) with their ground truth.
//!
//! A *first* snapshot is made from nothing: `--rows` data rows, every record new. A *next* snapshot is made from a
//! previous one (`--from`) by streaming it line by line, so memory does not grow with its size: each previous
//! record is kept, changed or aged out, and new records, duplicates, conflicting rows and malformed rows are mixed
//! in at the given rates. Beside every snapshot `<out>.truth.json` ([`GroundTruth`]) says what the ingest pipeline
//! must find: new, changed and removed keys, the lines of duplicates, conflict losers and rejects, and the counts.
//!
//! Everything is deterministic given the seed, the arguments and the previous file. The chain of snapshots shares
//! one patient key space (fixed by the first snapshot's seed) and each generation draws from its own counters, so
//! keys never repeat along a chain.
//!
//! Rooms: [`snapshot`] (first and next snapshot), [`factory`] (record values and edits), [`keys`] (keys unique along
//! a chain), [`malformed`] (rows to reject), [`record`] (layout, line encoding), [`emit`] (file order, shuffling,
//! held rows), [`truth`] (ground truth), [`sas`] (datetimes), [`tables`] (invented names, places, labs).
//!
//! The snapshot is written to `<out>.part` and renamed into place after its truth, so a watcher never sees a
//! half-written file or a snapshot without its truth.

mod emit;
mod factory;
mod keys;
mod malformed;
mod record;
mod sas;
mod snapshot;
mod tables;
mod truth;

#[cfg(test)]
mod tests;

pub use truth::{GroundTruth, TruthCounts};

use crate::parse::columns::HeaderVersion;
use anyhow::{bail, ensure, Context};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::fs;
use std::path::PathBuf;

/// `sluice gen`: writes one synthetic ECLRS snapshot and its ground truth.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Output file
    #[arg(long, short)]
    pub out: PathBuf,
    /// Rows in a first snapshot
    #[arg(long, default_value_t = 20_000)]
    pub rows: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Header version: v1, v2 or v3
    #[arg(long, default_value = "v3")]
    pub header: String,
    /// Make a next snapshot from this previous one (with its ground truth beside it)
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Share of the previous snapshot's records that change
    #[arg(long, default_value_t = 0.005)]
    pub changed: f64,
    /// New records per previous record
    #[arg(long, default_value_t = 0.005)]
    pub new: f64,
    /// Share of the previous snapshot's records left out
    #[arg(long, default_value_t = 0.002)]
    pub aged_out: f64,
    /// Share of records followed later by an identical copy
    #[arg(long, default_value_t = 0.001)]
    pub duplicate: f64,
    /// Share of records that get an older, conflicting version in the same file
    #[arg(long, default_value_t = 0.0005)]
    pub conflict: f64,
    /// Malformed rows per record (previous record in a next snapshot, row in a first one)
    #[arg(long, default_value_t = 0.0005)]
    pub malformed: f64,
    /// Shuffle the output rows (deterministic by seed; holds the whole file in memory)
    #[arg(long)]
    pub shuffle: bool,
}

/// What `generate` wrote.
#[derive(Debug, Clone)]
pub struct GenSummary {
    /// Data rows written (excluding the header).
    pub rows: u64,
    pub path: PathBuf,
    pub truth_path: PathBuf,
    pub counts: TruthCounts,
}

/// Writes the snapshot `args.out` and its truth `<out>.truth.json`.
pub fn generate(args: &GenArgs) -> anyhow::Result<GenSummary> {
    let header = parse_header(&args.header)?;
    let rates = rates(args)?;
    let previous = match &args.from {
        Some(from) => Some(truth::PreviousTruth::load(&GroundTruth::path_for(from))?),
        None => None,
    };
    let (generation, chain_seed) = match &previous {
        Some(previous) => (previous.generation + 1, previous.chain_seed),
        None => (0, args.seed),
    };
    ensure!(
        generation <= keys::MAX_GENERATION,
        "a chain of snapshots is limited to {} generations",
        keys::MAX_GENERATION + 1
    );
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory `{}`", dir.display()))?;
    }
    let stream_seed = keys::splitmix64(args.seed ^ keys::splitmix64(u64::from(generation)));
    let shuffle_seed = args
        .shuffle
        .then(|| keys::splitmix64(stream_seed ^ 0x0073_6875_6666_6C65));
    let truth_path = GroundTruth::path_for(&args.out);
    let part = truth::part_path(&args.out);

    let write = || -> anyhow::Result<(u64, TruthCounts)> {
        let truth = truth::TruthWriter::create(&truth_path, generation, chain_seed)?;
        let emitter =
            emit::Emitter::create(&part, &record::header_line(header), truth, shuffle_seed)?;
        let mut writer = snapshot::SnapshotWriter::new(
            emitter,
            factory::RecordFactory::new(chain_seed, generation),
            SmallRng::seed_from_u64(stream_seed),
            header,
            rates,
        );
        match (&args.from, &previous) {
            (Some(from), Some(previous)) => writer.write_next(from, previous)?,
            _ => writer.write_first(args.rows)?,
        }
        writer.finish()
    };
    let (rows, counts) = match write() {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
    };
    fs::rename(&part, &args.out)
        .with_context(|| format!("cannot rename `{}` into place", part.display()))?;
    Ok(GenSummary {
        rows,
        path: args.out.clone(),
        truth_path,
        counts,
    })
}

fn parse_header(name: &str) -> anyhow::Result<HeaderVersion> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "v1" => HeaderVersion::V1,
        "v2" => HeaderVersion::V2,
        "v3" => HeaderVersion::V3,
        _ => bail!("unknown header version `{name}` (expected v1, v2 or v3)"),
    })
}

fn rates(args: &GenArgs) -> anyhow::Result<snapshot::Rates> {
    let shares = [
        ("changed", args.changed),
        ("aged-out", args.aged_out),
        ("duplicate", args.duplicate),
        ("conflict", args.conflict),
        ("malformed", args.malformed),
    ];
    for (name, rate) in shares {
        ensure!(
            (0.0..=1.0).contains(&rate),
            "--{name} must be between 0 and 1, not {rate}"
        );
    }
    ensure!(
        args.changed + args.aged_out <= 1.0,
        "--changed and --aged-out together cannot exceed 1"
    );
    ensure!(
        args.new.is_finite() && (0.0..=1000.0).contains(&args.new),
        "--new must be between 0 and 1000, not {}",
        args.new
    );
    Ok(snapshot::Rates {
        changed: args.changed,
        new: args.new,
        aged_out: args.aged_out,
        duplicate: args.duplicate,
        conflict: args.conflict,
        malformed: args.malformed,
    })
}
