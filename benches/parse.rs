//! Micro-benchmark of `Layout::parse_chunk`, the CPU heart of ingest: no PostgreSQL, no actors.
//!
//! `cargo bench --bench parse [-- --rows N --chunk-bytes N --runs N]` generates a v3 snapshot with `sluice::gen`
//! (default 100k rows, ~65 MB, a few quoted and malformed rows as in real drops) into `target/bench/parse/`, reads
//! it into memory, cuts it into chunks of whole lines as the ParserPool does (default: the configured
//! `pipeline.chunk_bytes`) and parses every chunk on one thread, `--runs` times. It prints the best and the median
//! run as MB/s and ns/row. No harness dependency: the figure of interest is throughput of one loop, and the best of
//! a handful of runs is a stable estimate of it on a quiet machine.

use anyhow::{bail, Context as _, Result};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<()> {
    let (mut rows, mut chunk_bytes, mut runs) = (100_000u64, None::<usize>, 7usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || -> Result<u64> {
            let v = it.next().with_context(|| format!("{a} needs a value"))?;
            v.replace('_', "")
                .parse()
                .with_context(|| format!("{a}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--rows" => rows = value()?,
            "--chunk-bytes" => chunk_bytes = Some(value()? as usize),
            "--runs" => runs = value()?.max(1) as usize,
            "--bench" => {}
            other => bail!("unknown argument `{other}` (use --rows, --chunk-bytes, --runs)"),
        }
    }
    let chunk_bytes = match chunk_bytes {
        Some(n) => n,
        None => {
            sluice::config::Settings::with_overrides("")?
                .pipeline
                .chunk_bytes
        }
    };

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target
        .join("bench")
        .join("parse")
        .join(format!("v3-{rows}.txt"));
    if !out.exists() {
        sluice::gen::generate(&sluice::gen::GenArgs {
            out: out.clone(),
            rows,
            seed: 7,
            header: "v3".into(),
            from: None,
            changed: 0.0,
            new: 0.0,
            aged_out: 0.0,
            duplicate: 0.0,
            conflict: 0.0,
            malformed: 0.0005,
            shuffle: false,
        })?;
    }
    let bytes = std::fs::read(&out)?;
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
        chunks.push(&bytes[start..end]);
        start = end;
    }

    let mut times = Vec::with_capacity(runs);
    let mut parsed = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut n = 0;
        let mut offset = header_end as u64 + 1;
        for chunk in &chunks {
            let p = layout.parse_chunk(chunk, 2, offset);
            n += p.rows.len() + p.rejects.len();
            offset += chunk.len() as u64;
            std::hint::black_box(&p);
        }
        times.push(t0.elapsed().as_secs_f64());
        parsed = n;
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[times.len() / 2]);
    let mb = (bytes.len() - header_end - 1) as f64 / 1e6;
    println!(
        "parse_chunk: {parsed} rows, {mb:.0} MB in {} chunks of ≤ {chunk_bytes} bytes, {runs} runs on one thread",
        chunks.len()
    );
    for (what, t) in [("best", best), ("median", median)] {
        println!(
            "  {what:>6}: {:.1} ms  {:.0} MB/s  {:.0} ns/row",
            t * 1e3,
            mb / t,
            t * 1e9 / parsed.max(1) as f64
        );
    }
    Ok(())
}
