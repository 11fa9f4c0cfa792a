//! Delivery benchmark (SPEC §9): completed deliveries per second to a local API that answers at once, with leases
//! and audit rows, and the time from a change's commit to its first attempt when the system is idle.
//!
//! Run with `cargo bench --bench delivery`. It starts a durable embedded PostgreSQL in
//! `target/bench/delivery-<pid>` and the built-in fake API on loopback, ingests a snapshot with the sink paused so
//! that its changes wait in the outbox, resumes the sink and times the drain; then it drops one-row snapshots one
//! at a time into an idle pipeline and reads commit → first attempt from the database.

use anyhow::{Context as _, Result};
use sluice::app::App;
use sluice::config::Settings;
use sluice::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use sluice::delivery::{Pause, Resume};
use sluice::fake_api::{FakeApi, FakeApiArgs};
use sluice::gen::GenArgs;
use std::path::Path;
use std::time::{Duration, Instant};

const ROWS: u64 = 30_000;
const LATENCY_SAMPLES: usize = 40;

fn main() -> Result<()> {
    let run = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench/delivery-{}", std::process::id()));
    std::fs::create_dir_all(&run)?;
    let result = actix_rt::System::new().block_on(bench(&run));
    let _ = std::fs::remove_dir_all(&run);
    result
}

async fn bench(run: &Path) -> Result<()> {
    let pg_dir = run.join("pg");
    let pg = {
        let dir = pg_dir.clone();
        tokio::task::spawn_blocking(move || {
            EmbeddedPostgres::start(&dir, EmbeddedOptions::default())
        })
        .await??
    };
    let outcome = measure(run, &pg).await;
    let _ = pg.stop();
    outcome
}

async fn measure(run: &Path, pg: &EmbeddedPostgres) -> Result<()> {
    pg.ensure_database("bench_delivery").await?;
    let url = pg.url("bench_delivery");
    let api = FakeApi::start(FakeApiArgs::default())?;
    let inbox = run.join("inbox");
    let settings = Settings::with_overrides(&format!(
        r#"
data_dir = {data:?}
[database]
url = {url:?}
[admin]
listen = "127.0.0.1:0"
[delivery]
poll_interval = "500ms"
claim_batch = 500
[[sources]]
name = "eclrs"
profile = "eclrs"
inbox = {inbox:?}
archive = {archive:?}
pending = "all"
settle = "200ms"
rescan = "50ms"
[[sinks]]
name = "api"
kind = "webhook"
url = "{api}"
concurrency = 32
"#,
        data = run.join("data").display().to_string(),
        inbox = inbox.display().to_string(),
        archive = run.join("archive").display().to_string(),
        api = api.webhook_url(),
    ))?;
    let app = App::start(settings, url.clone(), false).await?;
    let client = sluice::db::connect(&url).await?;
    let sink = app.delivery[0].clone();

    // Throughput: a snapshot's changes wait in the outbox, then the sink drains them.
    let snapshot = run.join("s0.TXT");
    sluice::gen::generate(&GenArgs {
        out: snapshot.clone(),
        rows: ROWS,
        seed: 7,
        header: "v3".into(),
        from: None,
        changed: 0.0,
        new: 0.0,
        aged_out: 0.0,
        duplicate: 0.0,
        conflict: 0.0,
        malformed: 0.0,
        shuffle: false,
    })?;
    sink.send(Pause).await?;
    drop_into(&snapshot, &inbox, "D_0000.TXT")?;
    wait(
        &client,
        "SELECT count(*) FROM files WHERE status = 'done'",
        1,
    )
    .await?;
    let pending = count(
        &client,
        "SELECT count(*) FROM deliveries WHERE state = 'available'",
    )
    .await?;
    let t0 = Instant::now();
    sink.send(Resume).await?;
    wait(
        &client,
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        pending,
    )
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    let audited = count(&client, "SELECT count(*) FROM delivery_attempts").await?;
    let throughput = pending as f64 / seconds;

    // Latency: one change at a time into an idle pipeline.
    for i in 0..LATENCY_SAMPLES {
        let name = format!("L_{i:04}.TXT");
        let path = run.join(&name);
        let mut text = sluice::parse::columns::HeaderVersion::V3
            .columns()
            .join("|");
        text.push('\n');
        let row: Vec<String> = sluice::parse::columns::HeaderVersion::V3
            .columns()
            .iter()
            .map(|c| match *c {
                "PIDPATIENTKEY" => format!("{}", 90_000_000_000_000u64 + i as u64),
                "OBRACCESSIONNUM" => format!("LAT-{i}"),
                "PIDCOUNTYCODE" => "47".into(),
                "RESULTPOSITIVE" => "POSITIVE".into(),
                _ => String::new(),
            })
            .collect();
        text.push_str(&row.join("|"));
        text.push('\n');
        std::fs::write(&path, text)?;
        let before = count(
            &client,
            "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        )
        .await?;
        drop_into(&path, &inbox, &name)?;
        wait(
            &client,
            "SELECT count(*) FROM deliveries WHERE state = 'completed'",
            before + 1,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)
               FROM (SELECT extract(epoch FROM a.started_at - e.created_at) * 1000 AS ms
                       FROM delivery_attempts a
                       JOIN deliveries d ON d.id = a.delivery_id
                       JOIN events e ON e.id = d.event_id
                      WHERE a.attempt = 1 AND e.key[2] LIKE 'LAT-%') t",
            &[],
        )
        .await?;
    let (p50, p95): (f64, f64) = (row.get(0), row.get(1));
    app.stop().await;

    println!("figure                                   | sluice        | budget      | verdict");
    println!("-----------------------------------------|---------------|-------------|--------");
    println!(
        "completed deliveries/s (fake API, 32 conc.) | {throughput:>10.0}/s | ≥ 3000/s    | {}",
        if throughput >= 3000.0 { "ok" } else { "MISSED" }
    );
    println!(
        "commit → first attempt p50 (idle)           | {p50:>10.1} ms | ≤ 50 ms     | {}",
        if p50 <= 50.0 { "ok" } else { "MISSED" }
    );
    println!("commit → first attempt p95 (idle)           | {p95:>10.1} ms |             |");
    println!("({pending} deliveries drained in {seconds:.2}s, {audited} audit rows; {LATENCY_SAMPLES} latency samples)");
    let received = api.received();
    anyhow::ensure!(
        received.changes_applied_twice() == 0,
        "a change was applied twice"
    );
    Ok(())
}

fn drop_into(src: &Path, inbox: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(inbox)?;
    let tmp = inbox.join(format!("{name}.part"));
    std::fs::copy(src, &tmp).context("copy into the inbox")?;
    std::fs::rename(&tmp, inbox.join(name))?;
    Ok(())
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    Ok(c.query_one(sql, &[]).await?.get(0))
}

async fn wait(c: &tokio_postgres::Client, sql: &str, want: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(c, sql).await? < want {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out waiting for `{sql}` to reach {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
