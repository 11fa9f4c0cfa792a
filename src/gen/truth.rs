//! Ground truth: what became of every row of a generated snapshot, written beside it as `<snapshot>.truth.json`.
//!
//! Key lists can be long (every row of a first snapshot is new), so while generating, each list is spilled to a
//! hidden temporary file next to the output and the JSON is assembled from them at the end: memory stays flat.
//! The small fields come first in the file, so `head` shows the counts.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Ground truth written beside each snapshot as `<out>.truth.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// Data rows written (excluding the header).
    pub rows: u64,
    pub counts: TruthCounts,
    /// `[PIDPATIENTKEY, OBRACCESSIONNUM]` of each record that is new in this file.
    pub new: Vec<[String; 2]>,
    /// Keys of the records whose content differs from the previous snapshot's.
    pub changed: Vec<[String; 2]>,
    /// Keys of the previous snapshot's records absent from this one (aged out).
    pub removed: Vec<[String; 2]>,
    /// 1-based file line numbers (header = line 1) of the rows that lose a conflict, ascending.
    pub conflict_lines: Vec<u64>,
    /// Lines of rows identical to an earlier row, ascending.
    pub duplicate_lines: Vec<u64>,
    /// `(line, reason name)` of malformed rows, by line.
    pub rejected: Vec<(u64, String)>,
    /// Position in the chain of snapshots: 0 for a first snapshot, one more than its predecessor's otherwise.
    /// Keeps patient keys unique across the chain.
    #[serde(default)]
    pub generation: u32,
    /// Seed of the chain's first snapshot, which fixes the chain's patient key space.
    #[serde(default)]
    pub chain_seed: u64,
}

/// Rows per outcome. `rows = new + changed + unchanged + duplicate + conflict + rejected`; `removed` counts keys of
/// the previous snapshot, not rows of this one.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruthCounts {
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub duplicate: u64,
    pub conflict: u64,
    pub rejected: u64,
    pub removed: u64,
}

impl TruthCounts {
    /// The rows these counts account for (every outcome but `removed`).
    pub fn rows(&self) -> u64 {
        self.new + self.changed + self.unchanged + self.duplicate + self.conflict + self.rejected
    }
}

impl GroundTruth {
    /// Reads a whole truth file into memory (for tests and tools; the generator itself never does).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = fs::read(path)
            .with_context(|| format!("cannot read ground truth `{}`", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid ground truth `{}`", path.display()))
    }

    /// Where the truth of `snapshot` lives: its path with `.truth.json` appended.
    pub fn path_for(snapshot: &Path) -> PathBuf {
        let mut path = snapshot.as_os_str().to_owned();
        path.push(".truth.json");
        PathBuf::from(path)
    }
}

/// The parts of a previous snapshot's truth that a next snapshot needs. The key lists are skipped while parsing,
/// never held in memory.
#[derive(Deserialize)]
pub(crate) struct PreviousTruth {
    pub rows: u64,
    #[serde(default)]
    pub generation: u32,
    #[serde(default)]
    pub chain_seed: u64,
    pub conflict_lines: Vec<u64>,
    pub duplicate_lines: Vec<u64>,
    pub rejected: Vec<(u64, String)>,
}

impl PreviousTruth {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| {
            format!(
                "cannot open `{}`, the ground truth a next snapshot is made from",
                path.display()
            )
        })?;
        serde_json::from_reader(BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("invalid ground truth `{}`", path.display()))
    }

    /// Lines of the previous snapshot that hold no record (duplicates, conflict losers, rejects), ascending.
    pub(crate) fn non_record_lines(&self) -> Vec<u64> {
        let mut lines: Vec<u64> = self
            .conflict_lines
            .iter()
            .chain(&self.duplicate_lines)
            .copied()
            .chain(self.rejected.iter().map(|(line, _)| *line))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        lines
    }
}

/// How a record compares with the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    New,
    Changed,
    Unchanged,
}

/// Accumulates a snapshot's truth while it is written.
pub(crate) struct TruthWriter {
    path: PathBuf,
    counts: TruthCounts,
    generation: u32,
    chain_seed: u64,
    new: SpillList,
    changed: SpillList,
    removed: SpillList,
    conflict_lines: SpillList,
    duplicate_lines: SpillList,
    rejected: SpillList,
}

impl TruthWriter {
    pub(crate) fn create(path: &Path, generation: u32, chain_seed: u64) -> anyhow::Result<Self> {
        let spill = |list: &str| SpillList::create(path, list);
        Ok(TruthWriter {
            path: path.to_owned(),
            counts: TruthCounts::default(),
            generation,
            chain_seed,
            new: spill("new")?,
            changed: spill("changed")?,
            removed: spill("removed")?,
            conflict_lines: spill("conflict_lines")?,
            duplicate_lines: spill("duplicate_lines")?,
            rejected: spill("rejected")?,
        })
    }

    pub(crate) fn record(&mut self, outcome: Outcome, key: (&str, &str)) -> io::Result<()> {
        match outcome {
            Outcome::New => {
                self.counts.new += 1;
                self.new.push_key(key)
            }
            Outcome::Changed => {
                self.counts.changed += 1;
                self.changed.push_key(key)
            }
            Outcome::Unchanged => {
                self.counts.unchanged += 1;
                Ok(())
            }
        }
    }

    pub(crate) fn removed(&mut self, key: (&str, &str)) -> io::Result<()> {
        self.counts.removed += 1;
        self.removed.push_key(key)
    }

    pub(crate) fn duplicate_line(&mut self, line: u64) -> io::Result<()> {
        self.counts.duplicate += 1;
        self.duplicate_lines.push_json(&line)
    }

    pub(crate) fn conflict_line(&mut self, line: u64) -> io::Result<()> {
        self.counts.conflict += 1;
        self.conflict_lines.push_json(&line)
    }

    pub(crate) fn rejected(&mut self, line: u64, reason: &str) -> io::Result<()> {
        self.counts.rejected += 1;
        self.rejected.push_json(&(line, reason))
    }

    /// Writes the truth file (atomically: a `.part` file renamed into place) and removes the spill files.
    pub(crate) fn finish(mut self, rows: u64) -> anyhow::Result<TruthCounts> {
        anyhow::ensure!(
            self.counts.rows() == rows,
            "internal error: truth accounts for {} rows, {} were written",
            self.counts.rows(),
            rows
        );
        let part = part_path(&self.path);
        let mut write = || -> io::Result<()> {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&part)?);
            write!(
                out,
                "{{\"generation\":{},\"chain_seed\":{},\"rows\":{},\"counts\":{},",
                self.generation,
                self.chain_seed,
                rows,
                serde_json::to_string(&self.counts)?
            )?;
            let lists = [
                ("conflict_lines", &mut self.conflict_lines),
                ("duplicate_lines", &mut self.duplicate_lines),
                ("rejected", &mut self.rejected),
                ("new", &mut self.new),
                ("changed", &mut self.changed),
                ("removed", &mut self.removed),
            ];
            for (i, (name, list)) in lists.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write!(out, "\n\"{name}\":[")?;
                list.copy_into(&mut out)?;
                out.write_all(b"]")?;
            }
            out.write_all(b"}\n")?;
            out.flush()
        };
        write().with_context(|| format!("cannot write ground truth `{}`", part.display()))?;
        fs::rename(&part, &self.path)
            .with_context(|| format!("cannot rename `{}` into place", part.display()))?;
        Ok(self.counts)
    }
}

/// `<path>.part`: where a file is written before it is renamed into place (sluice's watcher ignores `*.part`).
pub(crate) fn part_path(path: &Path) -> PathBuf {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

/// One JSON array's elements, comma separated, in a hidden temporary file beside the truth file; removed on drop.
struct SpillList {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
}

impl SpillList {
    fn create(truth: &Path, list: &str) -> anyhow::Result<Self> {
        let name = truth
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = truth.with_file_name(format!(".{name}.{list}.tmp"));
        let file =
            File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(SpillList {
            path,
            writer: BufWriter::with_capacity(256 << 10, file),
            len: 0,
        })
    }

    fn push_key(&mut self, (patient, accession): (&str, &str)) -> io::Result<()> {
        if self.len > 0 {
            self.writer.write_all(b",")?;
        }
        self.writer.write_all(b"\n")?;
        serde_json::to_writer(&mut self.writer, &[patient, accession])?;
        self.len += 1;
        Ok(())
    }

    fn push_json<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        if self.len > 0 {
            self.writer.write_all(b",")?;
        }
        serde_json::to_writer(&mut self.writer, value)?;
        self.len += 1;
        Ok(())
    }

    fn copy_into(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.writer.flush()?;
        let mut file = File::open(&self.path)?;
        io::copy(&mut file, out)?;
        Ok(())
    }
}

impl Drop for SpillList {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
