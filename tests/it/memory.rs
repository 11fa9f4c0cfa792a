//! Bounded memory: with a slow writer and a slow sink, the real `sluice run` process ingests a 500k-row snapshot
//! (~325 MB) while its resident set is sampled. In-flight batches never exceed the edge bounds and the process
//! grows only by the per-key structures the design accounts for — never with the file (SPEC §2).

use crate::app::{assert_ledger, gen_args, Options};
use crate::faults::webhook_sink;
use crate::service::{for_child, free_port, tail, Sluice};
use serde_json::Value;
use sluice::fake_api::{FakeApi, FakeApiArgs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u64 = 500_000;
const SHARDS: usize = 2;
const MIB: u64 = 1 << 20;

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`: resident now, `VmHWM`: the resident peak so far).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One RSS sample: how far the parser had read the file (0..=1) and whether the file was done, resident bytes.
#[derive(Debug, Clone, Copy)]
struct Sample {
    progress: f64,
    done: bool,
    rss: u64,
}

/// Samples the RSS of `pid` every 100 ms on a thread of its own, tagged with the progress last seen.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    progress: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, progress, done, stop) = (
                samples.clone(),
                progress.clone(),
                done.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status(pid, "VmRSS:") {
                        samples.lock().unwrap().push(Sample {
                            progress: f64::from_bits(progress.load(Ordering::Relaxed)),
                            done: done.load(Ordering::Relaxed),
                            rss,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            samples,
            progress,
            done,
            stop,
            thread: Some(thread),
        }
    }

    fn set_progress(&self, p: f64) {
        self.progress.store(p.to_bits(), Ordering::Relaxed);
    }

    fn set_done(&self) {
        self.set_progress(1.0);
        self.done.store(true, Ordering::Relaxed);
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.samples.lock().unwrap().clone()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// "n samples, min / p50 / max" of the RSS samples that `pick` selects, in MiB.
fn summary(samples: &[Sample], pick: impl Fn(&Sample) -> bool) -> String {
    let mut rss: Vec<u64> = samples.iter().filter(|s| pick(s)).map(|s| s.rss).collect();
    rss.sort_unstable();
    match (rss.first(), rss.get(rss.len() / 2), rss.last()) {
        (Some(min), Some(p50), Some(max)) => format!(
            "{:>4} samples, min {:6.1} / p50 {:6.1} / max {:6.1} MiB",
            rss.len(),
            mib(*min),
            mib(*p50),
            mib(*max)
        ),
        _ => "no samples".into(),
    }
}

/// Bytes per key of the structures that legitimately grow with the keys of a snapshot, at their worst moment
/// (the end-of-snapshot barrier, when they coexist; src/dedupe):
/// - the snapshot's rows in flight: a `Vec` of 48-byte rows, reserved from the last snapshot's row count and
///   otherwise doubling while pushed to (a first snapshot): at most 2 × 48 = 96 B;
/// - the barrier's `Vec<Change>` (64 B a change, every key is new in a first snapshot), up to twice that while a
///   pushed-to Vec doubles: 128 B;
/// - the committed state the barrier applies: the delta map (24-byte entries plus a control byte, 16/7 buckets a
///   key: 57 B), then its merge into the sorted 20-byte array (the sorted copy and the grown array: 40 B).
///
/// (While parsing, the rows' `Vec` doubling — the new buffer beside the old full one — peaks at 3 × 48 = 144 B,
/// below the barrier's figure.) A row of the file is ~650 bytes: holding rows, or the file, would not fit.
const PER_KEY_BYTES: u64 = 96 + 128 + 57 + 40;

/// What does not grow with the file: the reader's and parsers' chunks in flight, the batches on the bounded
/// edges (each writer's edge holds up to `capacity + 1` batches materialised from the file, ~1.5 MB each at
/// 1,000 rows), delivery's claimed rows, and what the allocator keeps of freed memory.
const FIXED_ALLOWANCE: u64 = 48 * MIB;

#[actix_rt::test]
async fn a_500k_row_snapshot_with_a_slow_writer_and_sink_stays_within_the_bounds_and_flat_memory() {
    let api = FakeApi::start(FakeApiArgs {
        latency: Duration::from_millis(30),
        ..FakeApiArgs::default()
    })
    .expect("fake API starts");
    let options = Options {
        shards: SHARDS,
        writer_batch: 1000,
        settle: "200ms",
        sinks: Some(webhook_sink(&api, 4)),
        ..Options::default()
    };
    let (t, config, log) = for_child(options).await;
    let (snapshot, truth) = t.generate(gen_args(&t.path("big.TXT"), ROWS, 71, None));
    let file_size = std::fs::metadata(&snapshot).unwrap().len();

    let admin = format!("127.0.0.1:{}", free_port());
    let mut service = Sluice::spawn(
        &config,
        &log,
        &[
            ("SLUICE_FAULTS", "writer:delay:20ms"),
            ("SLUICE_ADMIN__LISTEN", &admin),
        ],
    );
    sluice::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, admin) = (&http, &admin);
        async move {
            let r = http
                .get(format!("http://{admin}{path}"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())?;
            r.json::<Value>().await.ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/admin/actors").await.is_none() {
        assert!(service.exited().is_none(), "sluice exited:\n{}", tail(&log));
        assert!(Instant::now() < deadline, "no admin API:\n{}", tail(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every actor started, no snapshot yet: what the process costs idle.
    let idle = proc_status(service.pid(), "VmRSS:").unwrap();
    let sampler = Sampler::start(service.pid());

    // Into the inbox by a rename on the same file system: the test does not hold a second copy either.
    std::fs::create_dir_all(&t.inbox).unwrap();
    std::fs::rename(&snapshot, t.inbox.join("ECLRS_20260101_0000.TXT")).unwrap();
    let db = t.db.client().await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    // Progress as an operator follows it: the newest ledger row, with the share of the file read so far.
    let file_id: i64 = loop {
        assert!(service.exited().is_none(), "sluice exited:\n{}", tail(&log));
        assert!(
            Instant::now() < deadline,
            "the snapshot was not ingested in time:\n{}",
            tail(&log)
        );
        if let Some(files) = get("/admin/files?limit=1").await {
            let f = &files["files"][0];
            match f["status"].as_str() {
                Some("processing") => sampler.set_progress(f["progress"].as_f64().unwrap_or(0.0)),
                Some("pending") | None => {}
                Some(_) => break f["id"].as_i64().expect("file id"),
            }
        }
        // Twice as often as the sampler, so that a sample's tag is at most one poll behind.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    sampler.set_done();

    // Deliveries keep flowing through the slow sink after the snapshot; a thousand more, still sampled.
    const COMPLETED: &str = "SELECT count(*) FROM deliveries WHERE state = 'completed'";
    let completed_at_done = count(COMPLETED).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(COMPLETED).await < completed_at_done + 1000 {
        assert!(service.exited().is_none(), "sluice exited:\n{}", tail(&log));
        assert!(
            Instant::now() < deadline,
            "deliveries stalled after the snapshot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = proc_status(service.pid(), "VmHWM:").unwrap();
    let dump = get("/admin/actors").await.expect("admin answers");
    let samples = sampler.finish();
    drop(service);

    eprintln!(
        "{ROWS} rows, file {:.0} MiB; idle RSS {:.1} MiB, peak (VmHWM) {:.1} MiB",
        mib(file_size),
        mib(idle),
        mib(peak),
    );
    for (label, from, upto) in [
        ("  0-20 % read", 0.0, 0.2),
        (" 20-50 % read", 0.2, 0.5),
        ("50-100 % read", 0.5, 1.0),
    ] {
        eprintln!(
            "  {label}: {}",
            summary(&samples, |s| !s.done
                && s.progress >= from
                && s.progress < upto)
        );
    }
    eprintln!(
        "  barrier, commits: {}",
        summary(&samples, |s| !s.done && s.progress >= 1.0)
    );
    eprintln!("  delivering:       {}", summary(&samples, |s| s.done));
    eprintln!("edges: {}", dump["edges"]);

    // (a) Every edge stayed within its bound. `depth` counts the messages holding one of the edge's `capacity`
    // permits (queued or being handled), so it never exceeds `capacity`. `alive` counts the batches that exist
    // at all — built, waiting for room, queued or handled — so it may exceed `capacity` only by one batch per
    // producer, built and waiting for a permit: the parser routes one chunk at a time (one batch per shard edge),
    // and each shard at its barrier sends its changes one batch at a time (the parser's rejects and the removals
    // carry no guard). The watcher's edge carries files, not batches.
    let edges = dump["edges"].as_array().expect("edges");
    // The watcher's edge, one per shard, one per writer (the default 2; shard i writes through writer i mod 2).
    assert_eq!(edges.len(), 1 + SHARDS + 2, "{edges:?}");
    for e in edges {
        let figure = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}"));
        let producers = match e["name"].as_str().unwrap() {
            "watcher_to_parser" => 0,
            "parser_to_dedupe" => 1,
            "dedupe_to_writer" => SHARDS.div_ceil(2) as u64,
            other => panic!("unexpected edge {other}"),
        };
        let capacity = figure("capacity");
        assert!(figure("sent") > 0, "{e}");
        assert!(figure("max_depth") <= capacity, "{e}");
        assert!(
            figure("max_alive") <= capacity + producers,
            "{e}: more than {} batches alive",
            capacity + producers
        );
    }
    // The slow writer was the bottleneck: its edge filled up and the shards waited for room.
    let writer = edges
        .iter()
        .find(|e| e["name"] == "dedupe_to_writer")
        .unwrap();
    assert_eq!(writer["max_depth"], writer["capacity"], "{writer}");
    assert!(
        writer["backpressure_seconds"].as_f64().unwrap() > 0.0,
        "{writer}"
    );

    // (b) Memory. Past the first 20 % of the file, the process grows only by the per-key structures
    // (PER_KEY_BYTES a key, for every key of the file: each row's key is distinct here) plus a fixed allowance. The
    // peak is the kernel's high-water mark, so it includes the moments between samples.
    let at_20 = samples
        .iter()
        .filter(|s| !s.done && s.progress < 0.2)
        .map(|s| s.rss)
        .max()
        .unwrap_or(idle);
    let allowance = ROWS * PER_KEY_BYTES + FIXED_ALLOWANCE;
    assert!(
        allowance < file_size * 4 / 5,
        "a service keeping what it read past 20 % of the file must not fit in the allowance"
    );
    assert!(
        peak <= at_20 + allowance,
        "RSS grew from {:.1} MiB at 20 % to a peak of {:.1} MiB: more than the {:.1} MiB the per-key structures \
         and fixed buffers account for",
        mib(at_20),
        mib(peak),
        mib(allowance)
    );
    assert!(
        peak < file_size * 3 / 4,
        "peak RSS {:.1} MiB for a {:.1} MiB file",
        mib(peak),
        mib(file_size)
    );
    // Delivering does not accumulate: once the snapshot is done, RSS stays within the fixed allowance of what it
    // was when the file was closed.
    let at_done = samples
        .iter()
        .find(|s| s.done)
        .expect("a sample after the file was done")
        .rss;
    let delivering_max = samples
        .iter()
        .filter(|s| s.done)
        .map(|s| s.rss)
        .max()
        .unwrap();
    assert!(
        delivering_max <= at_done + FIXED_ALLOWANCE,
        "RSS grew from {:.1} to {:.1} MiB while delivering",
        mib(at_done),
        mib(delivering_max)
    );

    // (c) The snapshot completed and every change was committed; deliveries flowed and none died.
    let pool = sluice::db::pool(&t.db.url, 1).unwrap();
    let row = sluice::ledger::get(&pool, file_id).await.unwrap().unwrap();
    assert_ledger(&row, &truth);
    assert_eq!(
        count("SELECT count(*) FROM events").await,
        (truth.counts.new + truth.counts.changed) as i64,
        "one committed event per change"
    );
    assert_eq!(
        count("SELECT count(*) FROM deliveries").await,
        (truth.counts.new + truth.counts.changed) as i64,
        "one delivery per event"
    );
    assert!(count(COMPLETED).await > completed_at_done);
    assert_eq!(
        count("SELECT count(*) FROM deliveries WHERE state = 'dead'").await,
        0
    );
    let received = api.received();
    assert_eq!(received.changes_applied_twice(), 0);
}
