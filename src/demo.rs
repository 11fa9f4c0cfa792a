//! `sluice demo`: the whole pipeline on embedded defaults, start to finish, in one command.
//!
//! It starts (or reuses) the embedded PostgreSQL cluster under `data_dir/pg`, resets a `sluice_demo` database in it,
//! generates a first snapshot and a next one with every kind of change, drops both into an inbox, waits for each to
//! be committed and for every change to be delivered, and prints what happened. It exits 0 only when every change
//! was delivered and every file's ledger balances.

mod bar;

use crate::app::{App, Database};
use crate::config::{ConfigSources, Settings};
use crate::gen::{GenArgs, GroundTruth};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Rows in the first generated snapshot.
    #[arg(long, default_value_t = 20_000)]
    pub rows: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Give up when a step takes longer than this.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The database the demo resets and uses in the embedded cluster.
pub const DEMO_DB: &str = "sluice_demo";

pub async fn run(args: DemoArgs, sources: ConfigSources) -> anyhow::Result<()> {
    let base = Settings::load(&sources)?;
    let demo_dir = base.data_dir.join("demo");
    let inbox = demo_dir.join("inbox");
    let archive = demo_dir.join("archive");
    let gen_dir = demo_dir.join("generated");
    for d in [&inbox, &archive, &gen_dir] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("cannot clear {}", d.display()))?;
        }
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let api = crate::fake_api::FakeApi::start(crate::fake_api::FakeApiArgs::default())
        .context("cannot start the built-in fake contact-tracing API")?;
    let overrides = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[sources]]
name = "eclrs"
profile = "eclrs"
inbox = {inbox:?}
archive = {archive:?}
pending = "all"
settle = "1s"
rescan = "250ms"
[[sinks]]
name = "tracing"
kind = "webhook"
url = "{url}"
"#,
        inbox = inbox.display().to_string(),
        archive = archive.display().to_string(),
        url = api.webhook_url(),
    );
    let settings = Settings::load(&ConfigSources {
        overrides: Some(overrides),
        ..sources
    })?;

    println!("sluice demo: {} rows, seed {}", args.rows, args.seed);
    let s0 = gen_dir.join("ECLRS_20260101_0000.TXT");
    let s1 = gen_dir.join("ECLRS_20260101_0030.TXT");
    let t = Instant::now();
    let first = crate::gen::generate(&gen_args(&s0, args.rows, args.seed, None))?;
    let next = crate::gen::generate(&gen_args(&s1, args.rows, args.seed + 1, Some(&s0)))?;
    println!(
        "generated {} ({} rows) and {} ({} rows) in {:.1}s",
        name(&s0),
        first.rows,
        name(&s1),
        next.rows,
        t.elapsed().as_secs_f64()
    );

    let db = Database::resolve(&settings, DEMO_DB).await?;
    let result = async {
        if db.embedded.is_some() {
            reset_database(&db, DEMO_DB).await?;
        }
        drive(&args, settings, &db, &[s0, s1], &api).await
    }
    .await;
    db.stop();
    result
}

async fn reset_database(db: &Database, name: &str) -> anyhow::Result<()> {
    let pg = db.embedded.as_ref().expect("embedded");
    let admin = crate::db::connect(&pg.url("postgres")).await?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .context("cannot reset the demo database")?;
    }
    Ok(())
}

async fn drive(
    args: &DemoArgs,
    settings: Settings,
    db: &Database,
    files: &[PathBuf],
    api: &crate::fake_api::FakeApi,
) -> anyhow::Result<()> {
    let inbox = settings.sources[0].inbox.clone();
    let app = App::start(settings, db.url.clone(), true).await?;
    if let Some(admin) = &app.admin {
        println!("metrics at http://{}/metrics", admin.addr);
    }
    let started = Instant::now();
    let outcome = async {
        let client = crate::db::connect(&db.url).await?;
        for file in files {
            let t = Instant::now();
            drop_into(file, &inbox)?;
            println!("dropped {} into the inbox", name(file));
            let truth = GroundTruth::load(&GroundTruth::path_for(file))?;
            let row = wait_for_file(&client, &name(file), args.timeout, &app).await?;
            let counts: Vec<i64> = (1..=9).map(|i| row.get(i)).collect();
            let status: String = row.get(0);
            if status != "done" {
                bail!("{} ended {status}", name(file));
            }
            println!(
                "  {}: rows {} | new {} | changed {} | unchanged {} | duplicate {} | conflict {} | rejected {} | removed {} | {:.2}s",
                name(file), counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
                t.elapsed().as_secs_f64()
            );
            let balanced = counts[0] == counts[1..7].iter().sum::<i64>();
            let expected = (truth.counts.new + truth.counts.changed) as i64;
            if !balanced || counts[8] != expected {
                bail!(
                    "{}: ledger does not match the ground truth ({} events, {} expected; balanced: {balanced})",
                    name(file), counts[8], expected
                );
            }
        }
        let delivered = wait_for_deliveries(&client, args.timeout).await?;
        let received = api.received();
        let superseded: i64 = client
            .query_one("SELECT count(*) FROM deliveries WHERE state = 'superseded'", &[])
            .await?
            .get(0);
        if superseded > 0 {
            println!("{superseded} older versions were superseded by a newer one before they were sent");
        }
        println!(
            "delivered {delivered} changes; the contact-tracing API received {} ({} repeats, {} applied twice); \
             everything done in {:.1}s",
            received.accepted,
            received.duplicates,
            received.changes_applied_twice(),
            started.elapsed().as_secs_f64()
        );
        if received.accepted != delivered as u64 || received.changes_applied_twice() > 0 {
            bail!("the API did not receive every change exactly once");
        }
        Ok(())
    }
    .await;
    app.stop().await;
    outcome
}

/// Generator settings of the demo: defaults of `sluice gen`, with a few malformed rows in the first file too.
fn gen_args(out: &Path, rows: u64, seed: u64, from: Option<&Path>) -> GenArgs {
    GenArgs {
        out: out.to_path_buf(),
        rows,
        seed,
        header: "v3".into(),
        from: from.map(Path::to_path_buf),
        changed: 0.005,
        new: 0.005,
        aged_out: 0.002,
        duplicate: 0.001,
        conflict: 0.0005,
        malformed: 0.0005,
        shuffle: false,
    }
}

fn name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Copies a file into the inbox the way a careful producer does: write under a temporary name, then rename.
fn drop_into(file: &Path, inbox: &Path) -> anyhow::Result<()> {
    let tmp = inbox.join(format!("{}.part", name(file)));
    std::fs::copy(file, &tmp).with_context(|| format!("cannot copy {}", file.display()))?;
    std::fs::rename(&tmp, inbox.join(name(file)))?;
    Ok(())
}

async fn wait_for_file(
    client: &tokio_postgres::Client,
    file: &str,
    timeout: Duration,
    app: &App,
) -> anyhow::Result<tokio_postgres::Row> {
    let deadline = Instant::now() + timeout;
    let mut bar = bar::ProgressBar::new();
    let row = loop {
        let row = client
            .query_opt(
                "SELECT status, rows, new, changed, unchanged, duplicate, conflict, rejected, removed, events_written
                   FROM files WHERE name = $1 ORDER BY id DESC LIMIT 1",
                &[&file],
            )
            .await?;
        if let Some(row) = row {
            let status: String = row.get(0);
            if status != "processing" && status != "pending" {
                break Ok(row);
            }
        }
        if let Some(p) = app.progress.view() {
            bar.update(p.fraction, p.rows);
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "{file} was not processed within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish();
    row
}

async fn wait_for_deliveries(
    client: &tokio_postgres::Client,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'completed'),
                        count(*) FILTER (WHERE state NOT IN ('completed', 'superseded', 'ignored', 'cancelled')),
                        count(*) FILTER (WHERE state = 'dead')
                   FROM deliveries",
                &[],
            )
            .await?;
        let (done, open, dead): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if dead > 0 {
            bail!("{dead} deliveries are dead");
        }
        if open == 0 {
            return Ok(done);
        }
        if Instant::now() > deadline {
            bail!("{open} deliveries still open after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
