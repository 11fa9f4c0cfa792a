//! `ops/bench`'s engine: measures SPEC §9's ingest budgets against a PostgreSQL-native baseline, in one run.
//!
//! What it does, in order (see `docs/BENCHMARKS.md` for what each figure means):
//!
//! 1. starts a durable embedded PostgreSQL cluster in `target/bench/run-<pid>/pg` (a watchdog process stops it and
//!    deletes the directory however this process ends);
//! 2. generates a first snapshot S0 (`--rows`, every row new), a next snapshot S1 from it (~1 % changed or new)
//!    and, for the 8M-key step, S2 from S1;
//! 3. baseline, in its own database: `COPY` into a staging table and one set-based upsert keyed by
//!    (PIDPATIENTKEY, OBRACCESSIONNUM) that writes only new or changed row hashes: S0 (first load), then S1;
//! 4. sluice, in another database: `App::start`, S0 renamed into the inbox (first load), deliveries drained, S1
//!    renamed in (steady state), with the process's peak RSS and the shards' state size;
//! 5. unless `--quick`: `record_state` is padded with synthetic keys up to `--keys`, and a fresh process (this
//!    program again, `--child-keys`) starts the pipeline on it (state load) and ingests S2 (steady state, 8M keys);
//! 6. floors: read + SHA-256 and `Layout::parse_chunk` of S1 alone, without any pipeline;
//! 7. prints a table and appends the same as JSON lines to `target/bench/results.jsonl`.
//!
//! A missed budget is reported, not fatal; a failed set-up or ingest exits non-zero. Run it with `ops/bench`.
//! `SLUICE_LOG=sluice=debug` turns on sluice's logs (off by default, so that logging costs nothing here).

use anyhow::{bail, ensure, Context as _, Result};
use serde::{Deserialize, Serialize};
use sluice::app::App;
use sluice::config::Settings;
use sluice::db::embedded::{self, EmbeddedOptions, EmbeddedPostgres};
use sluice::dedupe::DumpShard;
use sluice::gen::{GenArgs, TruthCounts};
use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SOURCE: &str = "eclrs";
const SLUICE_DB: &str = "bench_sluice";
const LIVE_DB: &str = "bench_live";
const BASELINE_DB: &str = "bench_baseline";
/// Marks the child's result line on its stdout.
const CHILD_TAG: &str = "BENCH-CHILD-RESULT ";
/// How often the ledger is polled while a snapshot is in flight: the resolution of the wall times.
const POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    rows: u64,
    keys: u64,
    quick: bool,
    keep: bool,
    /// Steady-state runs (each on the next snapshot of a chain); the figure is their median.
    repeat: usize,
    /// Internal: run the 8M-key steady-state step in this (fresh) process.
    child: Option<String>,
}

const USAGE: &str = "usage: ops/bench [--rows N] [--keys N] [--quick] [--keep]
  --rows N   rows of the first snapshot (default 500000)
  --keys N   keys tracked in the large-state step (default 8000000)
  --repeat N steady-state runs, each on the next snapshot of a chain (default 3; the median is reported)
  --quick    skip the large-state step
  --keep     keep target/bench/run-<pid> (cluster, snapshots) after the run";

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            rows: 500_000,
            keys: 8_000_000,
            quick: false,
            keep: false,
            repeat: 3,
            child: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut number = |name: &str| -> Result<u64> {
                let v = it.next().with_context(|| format!("{name} needs a value"))?;
                v.replace('_', "")
                    .parse()
                    .with_context(|| format!("{name}: `{v}` is not a number"))
            };
            match a.as_str() {
                "--rows" => args.rows = number("--rows")?,
                "--keys" => args.keys = number("--keys")?,
                "--repeat" => args.repeat = number("--repeat")?.clamp(1, 20) as usize,
                "--quick" => args.quick = true,
                "--keep" => args.keep = true,
                "--child-keys" => {
                    args.child = Some(it.next().context("--child-keys needs a value")?)
                }
                // cargo bench appends `--bench` to a harness-less target's arguments.
                "--bench" => {}
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        ensure!(args.rows >= 1000, "--rows must be at least 1000");
        Ok(args)
    }
}

fn main() -> ExitCode {
    if std::env::var_os("SLUICE_LOG").is_some() {
        sluice::telemetry::init_logging("warn");
    }
    let result = Args::parse().and_then(|args| match &args.child {
        Some(spec) => child_main(spec),
        None => parent_main(&args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Figures

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Budget {
    /// The sluice figure must be at most this.
    AtMost(f64),
    /// The sluice figure must be at least this.
    AtLeast(f64),
}

#[derive(Debug, Clone, Serialize)]
struct Figure {
    id: &'static str,
    label: String,
    unit: &'static str,
    sluice: Option<f64>,
    baseline: Option<f64>,
    budget: Option<Budget>,
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Figure {
    fn new(id: &'static str, label: impl Into<String>, unit: &'static str) -> Figure {
        Figure {
            id,
            label: label.into(),
            unit,
            sluice: None,
            baseline: None,
            budget: None,
            verdict: "info".into(),
            note: None,
        }
    }
    fn sluice(mut self, v: f64) -> Self {
        self.sluice = Some(v);
        self
    }
    fn baseline(mut self, v: f64) -> Self {
        self.baseline = Some(v);
        self
    }
    /// Adds a note (notes accumulate).
    fn note(mut self, n: impl Into<String>) -> Self {
        let n = n.into();
        self.note = Some(match self.note.take() {
            Some(old) => format!("{old}; {n}"),
            None => n,
        });
        self
    }
    fn phases(self, p: &Phases) -> Self {
        self.note(format!(
            "phases: admit {:.3} s, read+parse+classify {:.3} s, write {:.3} s in {} transactions, finalize {:.3} s",
            p.admit_s, p.classify_s, p.write_s, p.batches, p.finalize_s
        ))
    }
    fn cpu(self, cpu: [f64; 4]) -> Self {
        let f = self.note(format!(
            "CPU: sluice {:.2} s, postgres {:.2} s, other {:.2} s, of {:.2} s (wall × cores)",
            cpu[0], cpu[1], cpu[2], cpu[3]
        ));
        if cpu[2] > (0.1 * cpu[3]).max(0.05) {
            f.note("WARNING: other processes were busy during this step; the figure is distorted")
        } else {
            f
        }
    }
    fn budget(mut self, b: Budget) -> Self {
        self.budget = Some(b);
        self.verdict = match (self.sluice, b) {
            (None, _) => "n/a".into(),
            (Some(v), Budget::AtMost(max)) if v <= max => "pass".into(),
            (Some(v), Budget::AtMost(max)) => {
                format!("MISS +{}%", ((v / max - 1.0) * 100.0).ceil())
            }
            (Some(v), Budget::AtLeast(min)) if v >= min => "pass".into(),
            (Some(v), Budget::AtLeast(min)) => {
                format!("MISS -{}%", ((1.0 - v / min) * 100.0).ceil())
            }
        };
        self
    }
}

fn show(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) => match unit {
            "s" if v < 10.0 => format!("{v:.3} s"),
            "s" => format!("{v:.1} s"),
            "x" => format!("{v:.1}×"),
            "MB" => format!("{v:.0} MB"),
            "B" => format!("{v:.1} B"),
            "/s" => format!("{v:.0}/s"),
            "MB/s" => format!("{v:.0} MB/s"),
            "cores" => format!("{v:.2} cores"),
            _ => format!("{v:.3} {unit}"),
        },
    }
}

fn show_budget(b: Option<Budget>, unit: &str) -> String {
    let (sign, v) = match b {
        None => return "—".into(),
        Some(Budget::AtMost(v)) => ("≤", v),
        Some(Budget::AtLeast(v)) => ("≥", v),
    };
    let unit = match unit {
        "x" => "×",
        "s" => " s",
        "MB" => " MB",
        "B" => " B",
        other => other,
    };
    format!("{sign} {v}{unit}")
}

fn print_table(figures: &[Figure]) {
    let rows: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            [
                f.label.clone(),
                show(f.sluice, f.unit),
                show(f.baseline, f.unit),
                show_budget(f.budget, f.unit),
                f.verdict.clone(),
            ]
        })
        .collect();
    let head = ["figure", "sluice", "baseline", "budget", "verdict"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i == 0 {
                s.push_str(&format!("| {c}{} ", " ".repeat(pad)));
            } else {
                s.push_str(&format!("| {}{c} ", " ".repeat(pad)));
            }
        }
        s.push('|');
        s
    };
    println!("{}", line(head));
    let sep: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                format!("|{}", "-".repeat(w + 2))
            } else {
                format!("|{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    println!("{}|", sep.concat());
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    for f in figures.iter().filter(|f| f.note.is_some()) {
        println!("  {}: {}", f.label, f.note.as_deref().unwrap_or_default());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Process memory

/// Resets the peak-RSS high-water mark (`VmHWM`) to the current RSS.
fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
        .context("cannot reset VmHWM (/proc/self/clear_refs)")
}

/// A `kB` line of `/proc/self/status`, in MB.
fn proc_status_mb(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kb * 1024.0 / 1e6)
}

// ---------------------------------------------------------------------------------------------------------------
// Where the CPU went during a step: this process by thread, the PostgreSQL server, everything else

/// Cumulative CPU ticks at one instant.
struct CpuSample {
    at: Instant,
    /// Busy ticks of the whole machine (`/proc/stat`), summed over CPUs.
    machine: u64,
    /// This process, all threads (exited ones included).
    process: u64,
    /// Live threads of this process: tid → (name, ticks).
    threads: std::collections::HashMap<u32, (String, u64)>,
    /// The benchmark cluster's postmaster and its children: pid → ticks.
    postgres: std::collections::HashMap<u32, u64>,
}

/// Pid of the benchmark cluster's postmaster (0: none known yet).
static POSTMASTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn set_postmaster(pg_dir: &Path) {
    let pid = std::fs::read_to_string(pg_dir.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok())
        .unwrap_or(0);
    POSTMASTER.store(pid, std::sync::atomic::Ordering::Relaxed);
}

/// utime + stime of a `/proc/…/stat` line, its command name and its parent pid.
fn stat_ticks(path: &Path) -> Option<(String, u64, u32)> {
    stat_fields(path).map(|(comm, own, _, ppid)| (comm, own, ppid))
}

/// Command name, utime + stime, cutime + cstime (children reaped) and parent pid of a `/proc/…/stat` line.
fn stat_fields(path: &Path) -> Option<(String, u64, u64, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split(' ').collect();
    // Fields after the name start at field 3 (state): ppid is field 4, utime and stime are fields 14 and 15.
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some((comm, utime + stime, cutime + cstime, ppid))
}

/// Share of the machine's CPU time that was busy over `d`.
fn machine_busy(d: Duration) -> f64 {
    let a = cpu_sample();
    std::thread::sleep(d);
    let b = cpu_sample();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (b.machine.saturating_sub(a.machine)) as f64 / hz / (d.as_secs_f64() * cores)
}

fn cpu_sample() -> CpuSample {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_string();
            let v: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq (steal, guest…): busy = user…softirq less idle, iowait.
            Some(v.iter().take(7).sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    let process = stat_ticks(Path::new("/proc/self/stat")).map_or(0, |t| t.1);
    let mut threads = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let (Ok(tid), Some(t)) = (
                e.file_name().to_string_lossy().parse::<u32>(),
                stat_ticks(&e.path().join("stat")),
            ) {
                threads.insert(tid, (t.0, t.1));
            }
        }
    }
    let mut postgres = std::collections::HashMap::new();
    let postmaster = POSTMASTER.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(dir) = std::fs::read_dir("/proc").ok().filter(|_| postmaster != 0) {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some((_, t, children, ppid)) = stat_fields(&e.path().join("stat")) {
                if pid == postmaster || ppid == postmaster {
                    postgres.insert(pid, t);
                }
                if pid == postmaster {
                    // Backends that exited (and were reaped) meanwhile: their CPU moved here. Key 0: no pid.
                    postgres.insert(0, children);
                }
            }
        }
    }
    CpuSample {
        at: Instant::now(),
        machine,
        process,
        threads,
        postgres,
    }
}

/// CPU seconds between two samples, as one line for the log, plus (sluice, postgres, other, wall × cores) seconds.
fn cpu_report(a: &CpuSample, b: &CpuSample) -> (String, [f64; 4]) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let s = |t: u64| t as f64 / hz;
    let process = s(b.process.saturating_sub(a.process));
    // Per process: a backend that exits during the step takes its ticks with it, and must not count negative.
    let postgres = s(b
        .postgres
        .iter()
        .map(|(pid, t)| t.saturating_sub(a.postgres.get(pid).copied().unwrap_or(0)))
        .sum());
    let other = (s(b.machine.saturating_sub(a.machine)) - process - postgres).max(0.0);
    let wall = (b.at - a.at).as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut busy: Vec<(u32, String, f64)> = b
        .threads
        .iter()
        .map(|(tid, (name, t))| {
            let before = a.threads.get(tid).map_or(0, |x| x.1);
            (*tid, name.clone(), s(t.saturating_sub(before)))
        })
        .filter(|x| x.2 > 0.0)
        .collect();
    busy.sort_by(|x, y| y.2.total_cmp(&x.2));
    let top: Vec<String> = busy
        .iter()
        .take(8)
        .map(|(tid, name, v)| format!("{name}[{tid}] {v:.2}"))
        .collect();
    (
        format!(
            "cpu over {wall:.2} s wall ({:.2} s on {} cores): sluice {process:.2} s, postgres {postgres:.2} s, \
             other {other:.2} s; busiest threads (name[tid] s): {}",
            wall * cores as f64,
            cores,
            top.join(", ")
        ),
        [process, postgres, other, wall * cores as f64],
    )
}

/// With `BENCH_PERF=<dir>` set, a system-wide `perf record` runs around a step, into `<dir>/<name>.data`.
struct Perf(Option<std::process::Child>);

impl Perf {
    fn start(name: &str) -> Perf {
        let Some(dir) = std::env::var_os("BENCH_PERF").map(PathBuf::from) else {
            return Perf(None);
        };
        let _ = std::fs::create_dir_all(&dir);
        let out = dir.join(format!("{name}.data"));
        let child = Command::new("perf")
            .args(["record", "-a", "-F", "997", "-o"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                std::thread::sleep(Duration::from_millis(500));
                eprintln!("bench: perf recording into {}", out.display());
                Perf(Some(c))
            }
            Err(e) => {
                eprintln!("bench: warning: cannot run perf: {e}");
                Perf(None)
            }
        }
    }

    fn stop(self) {
        if let Some(mut c) = self.0 {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Working directory, cluster and watchdog

struct Dirs {
    run: PathBuf,
    pg: PathBuf,
    data: PathBuf,
    app: PathBuf,
}

fn bench_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::path::absolute(target.join("bench")).unwrap_or_else(|_| target.join("bench"))
}

fn world_readable_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p).with_context(|| format!("cannot create `{}`", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod `{}`", p.display()))
}

/// Stops the cluster in `pg_dir` (and deletes `run` unless `keep`) once this process has ended, however it ends:
/// a `sh` child waits for end-of-file on a pipe only this process holds (close-on-exec), in its own process group.
fn reap_on_exit(pg_dir: &Path, run: &Path, keep: bool) -> Result<std::process::ChildStdin> {
    const SCRIPT: &str = r#"trap '' HUP INT TERM
dir=$1; keep=$2; shift 2
cat >/dev/null
cd /
"$@" >/dev/null 2>&1
[ "$keep" = 1 ] || rm -rf -- "$dir""#;
    let stop = embedded::immediate_stop_command(pg_dir)?;
    let mut reaper = Command::new("/bin/sh")
        .args(["-c", SCRIPT, "sluice-bench-reaper"])
        .arg(run)
        .arg(if keep { "1" } else { "0" })
        .arg(stop.get_program())
        .args(stop.get_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot spawn the cleanup process")?;
    Ok(reaper.stdin.take().expect("stdin is piped"))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    Ok(sluice::db::connect(url).await?)
}

/// Runs one statement with the simple protocol; answers the row count of its command tag.
async fn simple(c: &tokio_postgres::Client, sql: &str) -> Result<u64> {
    let msgs = c
        .simple_query(sql)
        .await
        .with_context(|| format!("`{}` failed", first_line(sql)))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .last()
        .unwrap_or(0))
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// Makes a quiet database: a checkpoint now, so that none falls inside the next timed step.
async fn quiesce(c: &tokio_postgres::Client, vacuum: bool) -> Result<()> {
    if vacuum {
        simple(c, "VACUUM (ANALYZE)").await?;
    }
    simple(c, "CHECKPOINT").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Snapshots

struct Snap {
    path: PathBuf,
    rows: u64,
    bytes: u64,
    counts: TruthCounts,
}

fn gen(out: &Path, rows: u64, seed: u64, from: Option<&Path>) -> Result<Snap> {
    let args = GenArgs {
        out: out.to_path_buf(),
        rows,
        seed,
        header: "v3".into(),
        from: from.map(Path::to_path_buf),
        changed: 0.005,
        new: 0.005,
        aged_out: 0.002,
        // The baseline's COPY and single upsert accept neither malformed rows nor two rows of one key.
        duplicate: 0.0,
        conflict: 0.0,
        malformed: 0.0,
        shuffle: false,
    };
    let s =
        sluice::gen::generate(&args).with_context(|| format!("generating `{}`", out.display()))?;
    let bytes = std::fs::metadata(&s.path)?.len();
    Ok(Snap {
        path: s.path,
        rows: s.rows,
        bytes,
        counts: s.counts,
    })
}

fn header_columns(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path)?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line)?;
    Ok(line
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches('\u{feff}')
        .split('|')
        .map(str::to_string)
        .collect())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------------------------
// The baseline: COPY into a staging table, one set-based upsert

#[derive(Debug, Default, Clone, Copy)]
struct BaselineStep {
    copy_s: f64,
    upsert_s: f64,
    total_s: f64,
    copied: u64,
    written: u64,
}

async fn baseline_setup(c: &tokio_postgres::Client, columns: &[String]) -> Result<()> {
    ensure!(
        columns.iter().any(|c| c == "PIDPATIENTKEY")
            && columns.iter().any(|c| c == "OBRACCESSIONNUM"),
        "the snapshot header lacks the key columns"
    );
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("{} text", ident(c)))
        .collect();
    simple(
        c,
        &format!(
            "DROP TABLE IF EXISTS staging, state;
             CREATE UNLOGGED TABLE staging ({});
             CREATE TABLE state (
                 patient_key text NOT NULL,
                 accession   text NOT NULL,
                 row_hash    uuid NOT NULL,
                 PRIMARY KEY (patient_key, accession)
             )",
            cols.join(", ")
        ),
    )
    .await?;
    Ok(())
}

/// One snapshot, the PostgreSQL-native way, in one transaction.
async fn baseline_step(c: &tokio_postgres::Client, file: &Path) -> Result<BaselineStep> {
    let path = file.to_str().context("snapshot path is not UTF-8")?;
    let t0 = Instant::now();
    simple(c, "BEGIN; TRUNCATE staging").await?;
    let copied = simple(
        c,
        &format!(
            "COPY staging FROM {} WITH (FORMAT csv, DELIMITER '|', QUOTE '\"', HEADER true)",
            literal(path)
        ),
    )
    .await?;
    let copy_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let written = simple(
        c,
        "INSERT INTO state AS s (patient_key, accession, row_hash)
         SELECT t.\"PIDPATIENTKEY\", t.\"OBRACCESSIONNUM\", md5(t::text)::uuid FROM staging t
         ON CONFLICT (patient_key, accession) DO UPDATE SET row_hash = excluded.row_hash
          WHERE s.row_hash IS DISTINCT FROM excluded.row_hash",
    )
    .await?;
    simple(c, "COMMIT").await?;
    Ok(BaselineStep {
        copy_s,
        upsert_s: t1.elapsed().as_secs_f64(),
        total_s: t0.elapsed().as_secs_f64(),
        copied,
        written,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// sluice

fn app_settings(app_dir: &Path, url: &str) -> Result<Settings> {
    let p = |d: &str| app_dir.join(d).display().to_string();
    let toml = format!(
        r#"
data_dir = {data:?}
[database]
url = {url:?}
[admin]
listen = "127.0.0.1:0"
[[sources]]
name = "{SOURCE}"
profile = "eclrs"
inbox = {inbox:?}
archive = {archive:?}
[[sinks]]
name = "file"
kind = "file"
dir = {out:?}
"#,
        data = p("data"),
        inbox = p("inbox"),
        archive = p("archive"),
        out = p("out"),
    );
    Ok(Settings::with_overrides(&toml)?)
}

/// What the ledger said about one ingested snapshot, and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ingested {
    /// From the rename into the inbox until the poll saw the ledger row `done`.
    wall_s: f64,
    /// `files.duration_ms`: from admission (header read, ledger row inserted) to the final commit.
    duration_s: f64,
    rows: i64,
    new: i64,
    changed: i64,
    unchanged: i64,
    removed: i64,
    rejected: i64,
    /// CPU seconds during the step: sluice (this process), postgres, everything else; and wall × cores.
    cpu: [f64; 4],
    phases: Phases,
}

impl Ingested {
    /// Whether the ledger agrees with the generator's ground truth; says what differs on stderr.
    fn matches(&self, label: &str, t: &TruthCounts) -> bool {
        let pairs = [
            ("rows", self.rows, t.rows()),
            ("new", self.new, t.new),
            ("changed", self.changed, t.changed),
            ("unchanged", self.unchanged, t.unchanged),
            ("rejected", self.rejected, t.rejected),
            ("removed", self.removed, t.removed),
        ];
        let mut ok = true;
        for (what, ledger, truth) in pairs {
            if ledger as u64 != truth {
                eprintln!("bench: {label}: ledger {what} = {ledger}, ground truth {truth}");
                ok = false;
            }
        }
        ok
    }
}

/// Where the time of one snapshot went, from the database's own clock (same machine): the ledger's
/// `started_at` (the writer's BeginFile) and `finished_at` (Finalize), and the start of the first and last
/// event-writing transactions (`events.created_at`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Phases {
    /// Rename → BeginFile: inotify, the watcher, header read, ledger insert.
    admit_s: f64,
    /// BeginFile → first event transaction: read, SHA-256, parse, classify, barrier.
    classify_s: f64,
    /// First event transaction → Finalize: every event batch (events, record_state, outbox).
    write_s: f64,
    /// Finalize → the poll saw `done`: the last commit, and up to 5 ms of polling.
    finalize_s: f64,
    /// Distinct event transactions.
    batches: i64,
}

async fn phases(
    c: &tokio_postgres::Client,
    file_id: i64,
    renamed: SystemTime,
    seen_done: SystemTime,
) -> Result<Phases> {
    let r = c
        .query_one(
            "SELECT extract(epoch FROM f.started_at)::float8, extract(epoch FROM f.finished_at)::float8,
                    extract(epoch FROM min(e.created_at))::float8, count(DISTINCT e.created_at)
               FROM files f LEFT JOIN events e ON e.file_id = f.id
              WHERE f.id = $1 GROUP BY f.id",
            &[&file_id],
        )
        .await?;
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let started: f64 = r.get::<_, Option<f64>>(0).unwrap_or(0.0);
    let finished: f64 = r.get::<_, Option<f64>>(1).unwrap_or(0.0);
    let first_write: f64 = r.get::<_, Option<f64>>(2).unwrap_or(finished);
    Ok(Phases {
        admit_s: started - epoch(renamed),
        classify_s: first_write - started,
        write_s: finished - first_write,
        finalize_s: epoch(seen_done) - finished,
        batches: r.get(3),
    })
}

/// Drops `src` into the inbox as a careful producer does (a hidden name, then a rename) and waits for its ledger
/// row to close. The hidden name is a hard link, so `src` stays where it is and nothing is copied.
async fn ingest(
    c: &tokio_postgres::Client,
    label: &str,
    inbox: &Path,
    src: &Path,
    name: &str,
    timeout: Duration,
) -> Result<Ingested> {
    std::fs::create_dir_all(inbox)?;
    let after: i64 = c
        .query_one("SELECT coalesce(max(id), 0) FROM files", &[])
        .await?
        .get(0);
    let hidden = inbox.join(format!(".{name}"));
    let _ = std::fs::remove_file(&hidden);
    std::fs::hard_link(src, &hidden)
        .or_else(|_| std::fs::copy(src, &hidden).map(|_| ()))
        .with_context(|| format!("cannot place `{}` in the inbox", src.display()))?;
    let poll = c
        .prepare(
            "SELECT status, coalesce(duration_ms, 0), rows, new, changed, unchanged, removed, rejected,
                    coalesce(reason, ''), id
               FROM files WHERE source = $1 AND name = $2 AND id > $3 ORDER BY id DESC LIMIT 1",
        )
        .await?;
    let perf = Perf::start(label);
    let cpu0 = cpu_sample();
    let t0 = Instant::now();
    let renamed = SystemTime::now();
    std::fs::rename(&hidden, inbox.join(name))?;
    loop {
        if let Some(r) = c.query_opt(&poll, &[&SOURCE, &name, &after]).await? {
            let status: String = r.get(0);
            match status.as_str() {
                "done" => {
                    let wall_s = t0.elapsed().as_secs_f64();
                    let seen_done = SystemTime::now();
                    let (report, cpu) = cpu_report(&cpu0, &cpu_sample());
                    perf.stop();
                    let phases = phases(c, r.get(9), renamed, seen_done).await?;
                    eprintln!("bench: {label}: {report}");
                    eprintln!(
                        "bench: {label}: phases: admit {:.3} s, read+parse+classify {:.3} s, write {:.3} s \
                         ({} event transactions), finalize {:.3} s",
                        phases.admit_s,
                        phases.classify_s,
                        phases.write_s,
                        phases.batches,
                        phases.finalize_s
                    );
                    return Ok(Ingested {
                        phases,
                        cpu,
                        wall_s,
                        duration_s: r.get::<_, i64>(1) as f64 / 1000.0,
                        rows: r.get(2),
                        new: r.get(3),
                        changed: r.get(4),
                        unchanged: r.get(5),
                        removed: r.get(6),
                        rejected: r.get(7),
                    });
                }
                "pending" | "processing" => {}
                other => bail!(
                    "`{name}` ended `{other}` ({}) instead of done",
                    r.get::<_, String>(8)
                ),
            }
        }
        ensure!(
            t0.elapsed() < timeout,
            "`{name}` was not done within {timeout:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn open_deliveries(c: &tokio_postgres::Client) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM deliveries WHERE state IN ('available', 'retryable', 'executing')",
        &[],
    )
    .await?
    .get(0))
}

async fn completed_deliveries(c: &tokio_postgres::Client) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        &[],
    )
    .await?
    .get(0))
}

/// Deliveries completed so far by this process's delivery actors (their own counters: asking costs PostgreSQL
/// nothing, unlike counting the outbox, which at 500k rows would compete with the very drain it measures).
async fn delivered(app: &App) -> Result<u64> {
    let mut n = 0;
    for d in &app.delivery {
        n += d
            .send(sluice::delivery::DumpDelivery)
            .await
            .context("a delivery actor is gone")?
            .completed;
    }
    Ok(n)
}

/// Waits until the delivery actors have completed `expected` more deliveries than `before`, then until the outbox
/// has nothing open; answers the seconds until the first.
async fn drain_deliveries(
    app: &App,
    c: &tokio_postgres::Client,
    before: u64,
    expected: u64,
    timeout: Duration,
) -> Result<f64> {
    let t0 = Instant::now();
    while delivered(app).await? < before + expected {
        ensure!(
            t0.elapsed() < timeout,
            "{} of {expected} deliveries completed after {timeout:?}",
            delivered(app).await? - before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = t0.elapsed().as_secs_f64();
    loop {
        let open = open_deliveries(c).await?;
        if open == 0 {
            return Ok(drained);
        }
        ensure!(
            t0.elapsed() < timeout,
            "{open} deliveries still open after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keys tracked and bytes of dedupe state, summed over the source's shards.
async fn shard_state(app: &App) -> Result<(u64, u64)> {
    let shards = app.routes.get(SOURCE).context("no shards for the source")?;
    let (mut keys, mut bytes) = (0u64, 0u64);
    for m in shards {
        let d = m.addr().send(DumpShard).await.context("a shard is gone")?;
        keys += d.keys as u64;
        bytes += d.state_bytes as u64;
    }
    Ok((keys, bytes))
}

// ---------------------------------------------------------------------------------------------------------------
// The large-state step, in a fresh process

#[derive(Debug, Serialize, Deserialize)]
struct ChildSpec {
    url: String,
    postmaster: u32,
    app_dir: PathBuf,
    /// Snapshots to ingest in turn, with the names they are dropped under.
    files: Vec<(PathBuf, String)>,
}

/// One snapshot ingested by the child, with the peak RSS of its step.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRun {
    ingested: Ingested,
    peak_rss_mb: f64,
    rss_before_mb: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChildResult {
    load_s: f64,
    keys: u64,
    state_bytes: u64,
    rss_after_load_mb: f64,
    runs: Vec<ChildRun>,
    keys_after: u64,
    state_bytes_after: u64,
}

fn child_main(spec: &str) -> Result<()> {
    let spec: ChildSpec = serde_json::from_str(spec).context("bad --child-keys spec")?;
    POSTMASTER.store(spec.postmaster, std::sync::atomic::Ordering::Relaxed);
    let result = actix_rt::System::new().block_on(async move {
        let settings = app_settings(&spec.app_dir, &spec.url)?;
        let c = connect(&spec.url).await?;
        let tracked = tracked_keys(&c).await?;
        // The shards load their state when the watcher takes the source's ingest lock, just after the start:
        // timed until every key is in memory.
        let t0 = Instant::now();
        let app = App::start(settings, spec.url.clone(), false).await?;
        let (keys, state_bytes) = loop {
            let (keys, bytes) = shard_state(&app).await?;
            if keys >= tracked {
                break (keys, bytes);
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(300),
                "the shards loaded {keys} of {tracked} keys in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let load_s = t0.elapsed().as_secs_f64();
        let rss_after_load_mb = proc_status_mb("VmRSS")?;
        let mut runs = Vec::new();
        for (i, (file, name)) in spec.files.iter().enumerate() {
            if i > 0 {
                // Untimed: nothing left to deliver from the previous run.
                drain_deliveries(&app, &c, 0, 0, Duration::from_secs(300)).await?;
                quiesce(&c, true).await?;
            }
            let rss_before_mb = proc_status_mb("VmRSS")?;
            reset_peak_rss()?;
            let ingested = ingest(
                &c,
                &format!("large-state-{}", i + 1),
                &spec.app_dir.join("inbox"),
                file,
                name,
                Duration::from_secs(300),
            )
            .await?;
            runs.push(ChildRun {
                ingested,
                peak_rss_mb: proc_status_mb("VmHWM")?,
                rss_before_mb,
            });
        }
        let (keys_after, state_bytes_after) = shard_state(&app).await?;
        app.stop().await;
        anyhow::Ok(ChildResult {
            load_s,
            keys,
            state_bytes,
            rss_after_load_mb,
            runs,
            keys_after,
            state_bytes_after,
        })
    })?;
    println!("{CHILD_TAG}{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Keys of the source in `record_state`.
async fn tracked_keys(c: &tokio_postgres::Client) -> Result<u64> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM record_state WHERE source = $1",
            &[&SOURCE],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

/// Pads `record_state` with synthetic keys of the source up to `keys`; answers how many were added. They are
/// keys that left the source's window long ago (`removed`), as the 7.5M keys beyond a 500k-row window are in a
/// real deployment: tracked, in memory, but not expected in the next snapshot.
async fn seed_keys(c: &tokio_postgres::Client, keys: u64) -> Result<u64> {
    let have = tracked_keys(c).await?;
    let extra = keys.saturating_sub(have);
    if extra == 0 {
        return Ok(0);
    }
    // Sorted by key hash, so the primary key's b-tree is filled in order rather than at random.
    simple(c, "SET work_mem = '1GB'").await?;
    let added = simple(
        c,
        &format!(
            "INSERT INTO record_state (source, key_hash, key, row_hash, version, removed, last_event)
             SELECT '{SOURCE}', h, ARRAY['x' || i, 'y'], decode(md5(i::text), 'hex'), 1, true, gen_random_uuid()
               FROM (SELECT i, hashtextextended('sluice-bench-' || i, 0) AS h
                       FROM generate_series(1, {extra}) AS i) AS k
              ORDER BY h
             ON CONFLICT DO NOTHING"
        ),
    )
    .await?;
    simple(c, "RESET work_mem").await?;
    Ok(added)
}

fn run_child(spec: &ChildSpec) -> Result<ChildResult> {
    // `/proc/self/exe`, not `current_exe()`: a rebuild during the run replaces the file, and the path then names
    // nothing; the link still execs this very binary.
    let out = Command::new("/proc/self/exe")
        .arg("--child-keys")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the large-state step")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "the large-state step failed ({}): {stdout}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(CHILD_TAG))
        .context("the large-state step printed no result")?;
    Ok(serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------------------------------
// Floors: the file alone, no pipeline

/// Seconds to read `path` and SHA-256 every byte, as the ParserPool's reader thread does.
fn floor_read_sha(path: &Path) -> Result<f64> {
    use sha2::{Digest, Sha256};
    let t0 = Instant::now();
    let mut f = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 2 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    std::hint::black_box(sha.finalize());
    Ok(t0.elapsed().as_secs_f64())
}

/// Seconds for `Layout::parse_chunk` over the whole file (already in memory) on `threads` threads, in chunks of
/// `chunk_bytes` whole lines.
fn floor_parse(path: &Path, chunk_bytes: usize, threads: usize) -> Result<(f64, u64)> {
    let bytes = std::fs::read(path)?;
    let header_end = memchr::memchr(b'\n', &bytes).context("no header line")?;
    let layout = sluice::parse::Profile::Eclrs
        .layout(&bytes[..header_end])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chunks = Vec::new();
    let mut start = header_end + 1;
    while start < bytes.len() {
        let end = (start + chunk_bytes).min(bytes.len());
        let end = if end == bytes.len() {
            end
        } else {
            start + memchr::memrchr(b'\n', &bytes[start..end]).map_or(end - start, |i| i + 1)
        };
        chunks.push((start, end));
        start = end;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows = std::sync::atomic::AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(a, b)) = chunks.get(i) else { break };
                let parsed = layout.parse_chunk(&bytes[a..b], 0, a as u64);
                rows.fetch_add(
                    parsed.rows.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            });
        }
    });
    Ok((t0.elapsed().as_secs_f64(), rows.into_inner()))
}

// ---------------------------------------------------------------------------------------------------------------
// The run

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0).round())
        .unwrap_or_default();
    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    serde_json::json!({
        "load1_at_start": load1,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "mem_gb": mem_gb,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn step(what: &str) {
    eprintln!(
        "bench: [{}] (RSS {:.0} MB) {what}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        proc_status_mb("VmRSS").unwrap_or(0.0)
    );
}

fn parent_main(args: &Args) -> Result<()> {
    let started = Instant::now();
    let busy = machine_busy(Duration::from_secs(1));
    if busy > 0.1 {
        eprintln!(
            "bench: warning: the machine is {:.0}% busy before the run — other work distorts the figures \
             (each step's notes say how much CPU other processes took)",
            busy * 100.0
        );
    }
    let root = bench_root();
    world_readable_dir(&root)?;
    let run = root.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let dirs = Dirs {
        pg: run.join("pg"),
        data: run.join("data"),
        app: run.join("app"),
        run: run.clone(),
    };
    for d in [&dirs.run, &dirs.data, &dirs.app] {
        world_readable_dir(d)?;
    }
    let pg_dir = dirs.pg.clone();
    let _reaper = reap_on_exit(&pg_dir, &dirs.run, args.keep)?;

    step("starting a durable embedded PostgreSQL cluster");
    let pg = EmbeddedPostgres::start(
        &pg_dir,
        EmbeddedOptions {
            port: None,
            durable: true,
        },
    )
    .context("cannot start the embedded PostgreSQL cluster")?;
    set_postmaster(&pg_dir);

    let result = actix_rt::System::new().block_on(run_all(args, &dirs, &pg));
    if let Err(e) = pg.stop() {
        eprintln!("bench: warning: the cluster did not stop cleanly: {e}");
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dirs.run);
    }
    let (figures, context) = result?;
    let total_s = started.elapsed().as_secs_f64();

    println!();
    println!(
        "sluice ops/bench — {} rows, {}; {} cores, {}",
        args.rows,
        if args.quick {
            "quick (no large-state step)".to_string()
        } else {
            format!("{} keys in the large-state step", args.keys)
        },
        context["machine"]["cores"],
        context["postgres"].as_str().unwrap_or_default()
    );
    print_table(&figures);
    println!("(run took {total_s:.0} s)");

    let out = root.join("results.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .with_context(|| format!("cannot open `{}`", out.display()))?;
    let when = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let run_id = format!("{when}-{}", std::process::id());
    for fig in &figures {
        let mut v = serde_json::to_value(fig)?;
        v["run"] = run_id.clone().into();
        v["at"] = when.clone().into();
        v["rows"] = args.rows.into();
        v["keys"] = if args.quick {
            serde_json::Value::Null
        } else {
            args.keys.into()
        };
        v["git"] = std::env::var("BENCH_GIT_REV")
            .unwrap_or_else(|_| "unknown".into())
            .into();
        v["machine"] = context["machine"].clone();
        v["postgres"] = context["postgres"].clone();
        writeln!(f, "{}", serde_json::to_string(&v)?)?;
    }
    println!("results appended to {}", out.display());
    Ok(())
}

/// Median of a non-empty list.
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The name a snapshot is dropped under: a timestamp every 30 minutes, as the lab system writes them.
fn drop_name(i: usize) -> String {
    format!("eclrs_20240101T{:02}{:02}00.txt", i / 2, (i % 2) * 30)
}

/// With `BENCH_PG_STATS=1`: the statements of database `db` that took the most time since the last call, as log
/// lines (pg_stat_statements, reset after reading).
async fn statement_stats(admin: &tokio_postgres::Client, db: &str, label: &str) {
    if std::env::var_os("BENCH_PG_STATS").is_none() {
        return;
    }
    let rows = admin
        .query(
            "SELECT s.calls, s.total_exec_time, s.rows,
                    regexp_replace(left(s.query, 110), '\\s+', ' ', 'g')
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = $1 ORDER BY s.total_exec_time DESC LIMIT 10",
            &[&db],
        )
        .await;
    match rows {
        Ok(rows) => {
            eprintln!("bench: {label}: statements by time in {db}:");
            for r in rows {
                eprintln!(
                    "bench:   {:>9.1} ms {:>6} calls {:>8} rows  {}",
                    r.get::<_, f64>(1),
                    r.get::<_, i64>(0),
                    r.get::<_, i64>(2),
                    r.get::<_, String>(3)
                );
            }
        }
        Err(e) => eprintln!("bench: pg_stat_statements: {e}"),
    }
    let _ = admin
        .simple_query("SELECT pg_stat_statements_reset()")
        .await;
}

async fn run_all(
    args: &Args,
    dirs: &Dirs,
    pg: &EmbeddedPostgres,
) -> Result<(Vec<Figure>, serde_json::Value)> {
    let mut figs = Vec::new();
    let admin = connect(&pg.url("postgres")).await?;
    if std::env::var_os("BENCH_PG_STATS").is_some() {
        step("BENCH_PG_STATS: restarting the cluster with pg_stat_statements");
        simple(
            &admin,
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        )
        .await?;
        drop(admin);
        pg.stop()?;
        pg.restart()?;
        set_postmaster(&dirs.pg);
    }
    let admin = connect(&pg.url("postgres")).await?;
    for db in [SLUICE_DB, LIVE_DB, BASELINE_DB] {
        pg.ensure_database(db).await?;
        if std::env::var_os("BENCH_PG_STATS").is_some() {
            let c = connect(&pg.url(db)).await?;
            simple(&c, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
        }
    }
    if std::env::var_os("BENCH_PG_STATS").is_some() {
        simple(&admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
    }
    let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    let context = serde_json::json!({
        "machine": machine(),
        "postgres": format!("PostgreSQL {version}"),
    });

    // ---- snapshots: S0, then a chain of next snapshots (one per steady-state run, one for the large state)
    let repeat = args.repeat;
    let big_runs = if args.quick { 0 } else { 2 };
    step(&format!(
        "generating S0 ({} rows) and {} next snapshots",
        args.rows,
        repeat + big_runs
    ));
    let s0 = gen(&dirs.data.join("s0.txt"), args.rows, 1, None)?;
    let mut next: Vec<Snap> = Vec::new();
    for i in 1..=repeat + big_runs {
        let from = next.last().map_or(&s0.path, |s| &s.path).clone();
        next.push(gen(
            &dirs.data.join(format!("s{i}.txt")),
            0,
            1 + i as u64,
            Some(&from),
        )?);
    }
    let big: Vec<Snap> = next.split_off(repeat);
    let steady_snaps = &next;
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let s1 = &steady_snaps[0];
    eprintln!(
        "bench: S0 {} rows, {:.0} MB; S1 {} rows, {:.0} MB, {} new + {} changed",
        s0.rows,
        mb(s0.bytes),
        s1.rows,
        mb(s1.bytes),
        s1.counts.new,
        s1.counts.changed
    );

    // ---- floors, first: the machine was just checked to be quiet
    step("floors: S1 read + SHA-256 and parse_chunk, no pipeline (best of 3)");
    let chunk_bytes = sluice::config::Settings::with_overrides("")?
        .pipeline
        .chunk_bytes;
    let (mut sha_s, mut parse1_s, mut parse2_s) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        sha_s = sha_s.min(floor_read_sha(&s1.path)?);
        let (t, parsed) = floor_parse(&s1.path, chunk_bytes, 1)?;
        ensure!(
            parsed == s1.rows,
            "parse_chunk found {parsed} of {} rows",
            s1.rows
        );
        parse1_s = parse1_s.min(t);
        parse2_s = parse2_s.min(floor_parse(&s1.path, chunk_bytes, 2)?.0);
    }
    let floor_figs = [
        Figure::new(
            "floor_read_sha_s",
            "floor: S1 read + SHA-256, 1 thread",
            "s",
        )
        .sluice(sha_s)
        .note(format!("{:.0} MB/s", mb(s1.bytes) / sha_s)),
        Figure::new("floor_parse1_s", "floor: S1 parse_chunk, 1 thread", "s").sluice(parse1_s),
        Figure::new("floor_parse2_s", "floor: S1 parse_chunk, 2 threads", "s").sluice(parse2_s),
    ];

    // ---- a cluster that has run for a while: WAL segments exist and are recycled, not created and zero-filled
    // during a timed step (a fresh cluster's first ~1 GB of WAL costs whichever step writes it first ~2 s more).
    step("warming the cluster's WAL (1.2 GB written and checkpointed once)");
    {
        let admin = connect(&pg.url("postgres")).await?;
        simple(
            &admin,
            "CREATE TABLE bench_wal_warmup AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 1200000) g",
        )
        .await?;
        simple(&admin, "DROP TABLE bench_wal_warmup").await?;
        simple(&admin, "CHECKPOINT").await?;
    }

    // ---- baseline
    step("baseline: COPY + set-based upsert of S0, then of each next snapshot");
    let base_url = pg.url(BASELINE_DB);
    let b = connect(&base_url).await?;
    baseline_setup(&b, &header_columns(&s0.path)?).await?;
    quiesce(&b, false).await?;
    let cpu0 = cpu_sample();
    let b0 = baseline_step(&b, &s0.path).await?;
    let (report, b0_cpu) = cpu_report(&cpu0, &cpu_sample());
    eprintln!(
        "bench: baseline S0 {:.2} s (COPY {:.2} + upsert {:.2}); {report}",
        b0.total_s, b0.copy_s, b0.upsert_s
    );
    ensure!(
        b0.copied == s0.rows && b0.written == s0.rows,
        "baseline first load copied {} and wrote {} of {} rows",
        b0.copied,
        b0.written,
        s0.rows
    );
    let mut b_steady = Vec::new();
    for (i, s) in steady_snaps.iter().enumerate() {
        quiesce(&b, true).await?;
        let cpu0 = cpu_sample();
        let bi = baseline_step(&b, &s.path).await?;
        let (report, cpu) = cpu_report(&cpu0, &cpu_sample());
        eprintln!(
            "bench: baseline S{} {:.2} s (COPY {:.2} + upsert {:.2}), {} rows written; {report}",
            i + 1,
            bi.total_s,
            bi.copy_s,
            bi.upsert_s,
            bi.written
        );
        let expected = s.counts.new + s.counts.changed;
        ensure!(
            bi.copied == s.rows && bi.written == expected,
            "baseline steady state copied {} and wrote {} rows; expected {} and {}",
            bi.copied,
            bi.written,
            s.rows,
            expected
        );
        b_steady.push((bi, cpu));
    }
    statement_stats(&admin, BASELINE_DB, "baseline").await;
    drop(b);
    simple(&admin, &format!("DROP DATABASE {BASELINE_DB} WITH (FORCE)")).await?;
    let b_med = median(&b_steady.iter().map(|x| x.0.total_s).collect::<Vec<_>>());
    let b_med_upsert = median(&b_steady.iter().map(|x| x.0.upsert_s).collect::<Vec<_>>());
    let b_med_copy = median(&b_steady.iter().map(|x| x.0.copy_s).collect::<Vec<_>>());

    // ---- sluice, first load with delivery running, in a database of its own
    step("sluice: starting the pipeline (database bench_live)");
    let live_url = pg.url(LIVE_DB);
    let live_dir = dirs.app.join("live");
    let app = App::start(app_settings(&live_dir, &live_url)?, live_url.clone(), false).await?;
    let c = connect(&live_url).await?;
    quiesce(&c, false).await?;

    step("sluice: idle for 3 s (empty inbox)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_sample();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (report, idle) = cpu_report(&cpu0, &cpu_sample());
    eprintln!("bench: idle: {report}");
    let idle_wall = idle[3] / std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;

    step("sluice: first load, delivery running (S0 renamed into the inbox)");
    statement_stats(&admin, LIVE_DB, "reset").await;
    let first_rss0 = proc_status_mb("VmRSS")?;
    reset_peak_rss()?;
    let first = ingest(
        &c,
        "first-load",
        &live_dir.join("inbox"),
        &s0.path,
        &drop_name(0),
        Duration::from_secs(600),
    )
    .await?;
    let first_rss = proc_status_mb("VmHWM")?;
    let delivered_during = completed_deliveries(&c).await?;
    let first_ok = first.matches("first load", &s0.counts);
    eprintln!(
        "bench: first load {:.2} s (ledger {:.2} s), {delivered_during} deliveries completed meanwhile",
        first.wall_s, first.duration_s
    );
    statement_stats(&admin, LIVE_DB, "first load, delivery running").await;
    app.stop().await;
    drop(c);
    simple(&admin, &format!("DROP DATABASE {LIVE_DB} WITH (FORCE)")).await?;

    // ---- sluice, first load with deliveries held back, then the outbox drain, then the steady state
    step("sluice: starting the pipeline (database bench_sluice)");
    let url = pg.url(SLUICE_DB);
    let main_dir = dirs.app.join("main");
    let app = App::start(app_settings(&main_dir, &url)?, url.clone(), false).await?;
    let c = connect(&url).await?;
    // New outbox rows are due in 100 years: the delivery actor finds nothing to claim until they are released.
    simple(
        &c,
        "ALTER TABLE deliveries ALTER COLUMN next_attempt_at SET DEFAULT now() + interval '100 years'",
    )
    .await?;
    quiesce(&c, false).await?;

    step("sluice: first load, deliveries held back (S0 renamed into the inbox)");
    statement_stats(&admin, SLUICE_DB, "reset").await;
    let held = ingest(
        &c,
        "first-load-held",
        &main_dir.join("inbox"),
        &s0.path,
        &drop_name(0),
        Duration::from_secs(600),
    )
    .await?;
    let held_ok =
        held.matches("first load (held)", &s0.counts) && completed_deliveries(&c).await? == 0;
    eprintln!(
        "bench: first load without delivery {:.2} s (ledger {:.2} s); releasing the outbox",
        held.wall_s, held.duration_s
    );
    statement_stats(&admin, SLUICE_DB, "first load, deliveries held back").await;
    simple(
        &c,
        "ALTER TABLE deliveries ALTER COLUMN next_attempt_at SET DEFAULT now()",
    )
    .await?;
    let before = delivered(&app).await?;
    let released = simple(
        &c,
        "UPDATE deliveries SET next_attempt_at = now() WHERE state = 'available'",
    )
    .await?;
    let drain_s = drain_deliveries(&app, &c, before, released, Duration::from_secs(900)).await?;
    eprintln!("bench: {released} deliveries drained in {drain_s:.1} s");
    statement_stats(&admin, SLUICE_DB, "outbox drain").await;

    let mut steady = Vec::new();
    let mut steady_rss = 0f64;
    let mut steady_rss0 = 0f64;
    let mut steady_ok = true;
    for (i, s) in steady_snaps.iter().enumerate() {
        quiesce(&c, true).await?;
        step(&format!(
            "sluice: steady state {}/{repeat}, delivery running (S{} renamed into the inbox)",
            i + 1,
            i + 1
        ));
        statement_stats(&admin, SLUICE_DB, "reset").await;
        steady_rss0 = steady_rss0.max(proc_status_mb("VmRSS")?);
        reset_peak_rss()?;
        let r = ingest(
            &c,
            &format!("steady-{}", i + 1),
            &main_dir.join("inbox"),
            &s.path,
            &drop_name(i + 1),
            Duration::from_secs(300),
        )
        .await?;
        steady_rss = steady_rss.max(proc_status_mb("VmHWM")?);
        steady_ok &= r.matches(&format!("steady state {}", i + 1), &s.counts);
        eprintln!(
            "bench: steady state {}: {:.3} s (ledger {:.3} s)",
            i + 1,
            r.wall_s,
            r.duration_s
        );
        statement_stats(&admin, SLUICE_DB, "steady state").await;
        steady.push(r);
        // Untimed: the outbox must be empty before the next run.
        drain_deliveries(&app, &c, 0, 0, Duration::from_secs(300)).await?;
    }
    let (keys, state_bytes) = shard_state(&app).await?;
    app.stop().await;
    let walls: Vec<f64> = steady.iter().map(|r| r.wall_s).collect();
    let med = median(&walls);
    let med_run = steady
        .iter()
        .find(|r| r.wall_s == med)
        .expect("the median is one of the runs");
    let best = walls.iter().copied().fold(f64::INFINITY, f64::min);

    let mismatch =
        |ok: bool| (!ok).then_some("ledger counts differ from the generator's ground truth!");
    figs.push(
        Figure::new("idle_cpu", "idle pipeline: CPU per second", "cores")
            .sluice(idle[0] / idle_wall)
            .baseline(0.0)
            .note(format!(
                "empty inbox, nothing to deliver; postgres {:.2} cores meanwhile",
                idle[1] / idle_wall
            )),
    );
    let mut f = Figure::new("first_load_s", "first load: rename → done", "s")
        .sluice(first.wall_s)
        .baseline(b0.total_s)
        .budget(Budget::AtMost(6.0))
        .cpu(first.cpu)
        .phases(&first.phases)
        .note(format!(
            "delivery running: {delivered_during} deliveries completed meanwhile; ledger {:.3} s",
            first.duration_s
        ));
    if let Some(m) = mismatch(first_ok) {
        f = f.note(m);
    }
    figs.push(f);
    let mut f = Figure::new("first_load_held_s", "first load, deliveries held back", "s")
        .sluice(held.wall_s)
        .baseline(b0.total_s)
        .budget(Budget::AtMost(6.0))
        .cpu(held.cpu)
        .phases(&held.phases)
        .note(format!(
            "ingest alone; ledger {:.3} s; baseline: COPY {:.2} s + upsert {:.2} s, CPU postgres {:.2} s",
            held.duration_s, b0.copy_s, b0.upsert_s, b0_cpu[1]
        ));
    if !held_ok {
        f = f.note("ledger counts differ from the ground truth, or deliveries were not held back!");
    }
    figs.push(f);
    figs.push(
        Figure::new("first_load_peak_rss_mb", "first load: peak RSS", "MB")
            .sluice(first_rss)
            .note(format!("RSS {first_rss0:.0} MB at the start of the step")),
    );
    figs.push(
        Figure::new(
            "delivery_drain_per_s",
            "outbox drain after the first load (file sink)",
            "/s",
        )
        .sluice(released as f64 / drain_s.max(1e-3))
        .note(format!(
            "{released} deliveries in {drain_s:.1} s, nothing else running; SPEC's 3,000/s is for an HTTP sink"
        )),
    );
    let mut f = Figure::new(
        "steady_s",
        format!("steady state: rename → done (median of {repeat})"),
        "s",
    )
    .sluice(med)
    .baseline(b_med)
    .budget(Budget::AtMost(0.6))
    .cpu(med_run.cpu)
    .phases(&med_run.phases)
    .note(format!(
        "runs {}; baseline runs {}",
        walls
            .iter()
            .map(|w| format!("{w:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        b_steady
            .iter()
            .map(|b| format!("{:.2}", b.0.total_s))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(m) = mismatch(steady_ok) {
        f = f.note(m);
    }
    figs.push(f);
    figs.push(
        Figure::new("steady_best_s", "steady state: best run", "s")
            .sluice(best)
            .baseline(
                b_steady
                    .iter()
                    .map(|b| b.0.total_s)
                    .fold(f64::INFINITY, f64::min),
            ),
    );
    figs.push(
        Figure::new(
            "steady_speedup",
            "steady state: speed-up over baseline (medians)",
            "x",
        )
        .sluice(b_med / med)
        .budget(Budget::AtLeast(10.0)),
    );
    figs.push(
        Figure::new("steady_ledger_s", "steady state: files.duration_ms", "s")
            .sluice(med_run.duration_s)
            .baseline(b_med_upsert)
            .note(format!(
                "sluice: from admission to commit; baseline column: the upsert alone (COPY {b_med_copy:.2} s)"
            )),
    );
    figs.push(
        Figure::new(
            "steady_peak_rss_mb",
            format!("steady state: peak RSS ({keys} keys)"),
            "MB",
        )
        .sluice(steady_rss)
        .note(format!(
            "RSS up to {steady_rss0:.0} MB at the start of a run: this process also ran both first loads"
        )),
    );
    figs.push(
        Figure::new(
            "state_bytes_per_key",
            format!("dedupe state per key ({keys} keys)"),
            "B",
        )
        .sluice(state_bytes as f64 / keys.max(1) as f64)
        .budget(Budget::AtMost(40.0)),
    );

    // ---- the large-state step: a fresh process, two snapshots (the first after a start, then a steady one)
    if !big.is_empty() {
        step(&format!(
            "large state: padding record_state to {} keys",
            args.keys
        ));
        let t0 = Instant::now();
        let added = seed_keys(&c, args.keys).await?;
        let seed_s = t0.elapsed().as_secs_f64();
        quiesce(&c, true).await?;
        eprintln!(
            "bench: {added} synthetic keys added in {seed_s:.1} s (+ {:.1} s VACUUM ANALYZE, CHECKPOINT)",
            t0.elapsed().as_secs_f64() - seed_s
        );
        step("large state: a fresh process loads the state and ingests two next snapshots");
        statement_stats(&admin, SLUICE_DB, "reset").await;
        let r = run_child(&ChildSpec {
            url: url.clone(),
            postmaster: POSTMASTER.load(std::sync::atomic::Ordering::Relaxed),
            app_dir: main_dir.clone(),
            files: big
                .iter()
                .enumerate()
                .map(|(i, s)| (s.path.clone(), drop_name(repeat + 1 + i)))
                .collect(),
        })?;
        statement_stats(&admin, SLUICE_DB, "large state").await;
        let mut ok = true;
        for (i, (run, s)) in r.runs.iter().zip(&big).enumerate() {
            ok &= run
                .ingested
                .matches(&format!("large state {}", i + 1), &s.counts);
            eprintln!(
                "bench: large state run {}: {:.3} s, peak RSS {:.0} MB (RSS {:.0} MB before)",
                i + 1,
                run.ingested.wall_s,
                run.peak_rss_mb,
                run.rss_before_mb
            );
        }
        let k = r.keys_after;
        let (first, last) = (&r.runs[0], &r.runs[r.runs.len() - 1]);
        figs.push(
            Figure::new(
                "big_load_s",
                format!("state load at start ({} keys)", r.keys),
                "s",
            )
            .sluice(r.load_s)
            .note(format!(
                "App::start until every shard holds its keys; RSS after the load {:.0} MB",
                r.rss_after_load_mb
            )),
        );
        figs.push(
            Figure::new(
                "big_first_s",
                format!("first snapshot after a start ({} keys)", r.keys),
                "s",
            )
            .sluice(first.ingested.wall_s)
            .baseline(b_med)
            .cpu(first.ingested.cpu)
            .phases(&first.ingested.phases)
            .note(format!("peak RSS {:.0} MB", first.peak_rss_mb)),
        );
        let mut f = Figure::new("big_steady_s", format!("steady state with {k} keys"), "s")
            .sluice(last.ingested.wall_s)
            .baseline(b_med)
            .cpu(last.ingested.cpu)
            .phases(&last.ingested.phases)
            .note(format!(
                "the second snapshot after the start; ledger {:.3} s",
                last.ingested.duration_s
            ));
        if !ok {
            f = f.note("ledger counts differ from the generator's ground truth!");
        }
        figs.push(f);
        figs.push(
            Figure::new(
                "big_peak_rss_mb",
                format!("steady state: peak RSS ({k} keys)"),
                "MB",
            )
            .sluice(last.peak_rss_mb)
            .budget(Budget::AtMost(300.0))
            .note(format!(
                "fresh process, second snapshot; RSS {:.0} MB after the state load, {:.0} MB before the run",
                r.rss_after_load_mb, last.rss_before_mb
            )),
        );
        figs.push(
            Figure::new(
                "big_state_bytes_per_key",
                format!("dedupe state per key ({k} keys)"),
                "B",
            )
            .sluice(r.state_bytes_after as f64 / k.max(1) as f64)
            .budget(Budget::AtMost(40.0)),
        );
    }
    drop(c);

    figs.extend(floor_figs);
    Ok((figs, context))
}
