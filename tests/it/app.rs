//! `spawn_app`: the whole actor system on a fresh database, with its inbox, archive and file sink in a temp dir.

use crate::harness::{test_db, TestDb};
use sluice::app::App;
use sluice::config::Settings;
use sluice::gen::{GenArgs, GroundTruth};
use sluice::ledger::FileRow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Knobs the tests turn; everything else is the built-in default.
#[derive(Debug, Clone)]
pub struct Options {
    pub pending: &'static str,
    pub settle: &'static str,
    pub shards: usize,
    pub writer_batch: usize,
    pub emit_removed: bool,
    /// Extra TOML appended to the generated configuration.
    pub extra: String,
    /// `[[sinks]]` tables replacing the default file sink.
    pub sinks: Option<String>,
    /// The clock delivery uses for retry times.
    pub clock: Option<std::sync::Arc<sluice::clock::ManualClock>>,
    /// Faults to inject.
    pub faults: sluice::faults::Faults,
    /// Whether the admin server runs (on an ephemeral port).
    pub admin: bool,
    /// `admin.token`.
    pub admin_token: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pending: "all",
            settle: "300ms",
            shards: 3,
            writer_batch: 1000,
            emit_removed: false,
            extra: String::new(),
            sinks: None,
            clock: None,
            faults: Default::default(),
            admin: false,
            admin_token: "",
        }
    }
}

pub struct TestApp {
    pub app: Option<App>,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub inbox: PathBuf,
    pub archive: PathBuf,
    pub out: PathBuf,
    pub options: Options,
}

pub fn settings(db: &TestDb, dir: &Path, o: &Options) -> Settings {
    Settings::with_overrides(&config_toml(db, dir, o)).expect("test settings")
}

/// The test configuration as TOML (for `settings`, or a file for the `sluice` binary).
pub fn config_toml(db: &TestDb, dir: &Path, o: &Options) -> String {
    format!(
        r#"
data_dir = {data:?}
[database]
url = {url:?}
pool_size = 4
[admin]
listen = "127.0.0.1:0"
token = {token:?}
[pipeline]
shards = {shards}
writer_batch = {batch}
chunk_bytes = 262144
[delivery]
poll_interval = "100ms"
[[sources]]
name = "eclrs"
profile = "eclrs"
inbox = {inbox:?}
archive = {archive:?}
pending = "{pending}"
settle = "{settle}"
rescan = "100ms"
emit_removed = {emit}
{sinks}
{extra}
"#,
        data = dir.join("data").display().to_string(),
        url = db.url,
        shards = o.shards,
        batch = o.writer_batch,
        inbox = dir.join("inbox").display().to_string(),
        archive = dir.join("archive").display().to_string(),
        pending = o.pending,
        settle = o.settle,
        emit = o.emit_removed,
        sinks = o.sinks.clone().unwrap_or_else(|| format!(
            "[[sinks]]\nname = \"file\"\nkind = \"file\"\ndir = {:?}\n",
            dir.join("out").display().to_string()
        )),
        extra = o.extra,
        token = o.admin_token,
    )
}

pub async fn spawn_app(options: Options) -> TestApp {
    spawn_app_on(test_db().await, options, false).await
}

/// As [`spawn_app`], on a database of the caller's, with the admin server (on a free port) when `admin`.
pub async fn spawn_app_on(db: TestDb, options: Options, admin: bool) -> TestApp {
    let mut t = TestApp::unstarted(db, options);
    t.app = Some(start(&t.db, t.dir.path(), &t.options, admin).await);
    t
}

async fn start(db: &TestDb, dir: &Path, options: &Options, admin: bool) -> App {
    let clock: sluice::clock::SharedClock = match &options.clock {
        Some(c) => c.clone(),
        None => sluice::clock::system(),
    };
    let start = sluice::app::StartOptions {
        clock,
        faults: options.faults.clone(),
        ..sluice::app::StartOptions::new(options.admin || admin)
    };
    App::start_with(settings(db, dir, options), db.url.clone(), start)
        .await
        .expect("app starts")
}

/// Generator arguments with the defaults of `sluice gen`.
pub fn gen_args(out: &Path, rows: u64, seed: u64, from: Option<&Path>) -> GenArgs {
    GenArgs {
        out: out.to_path_buf(),
        rows,
        seed,
        header: "v3".into(),
        from: from.map(Path::to_path_buf),
        changed: 0.01,
        new: 0.01,
        aged_out: 0.005,
        duplicate: 0.002,
        conflict: 0.002,
        malformed: 0.002,
        shuffle: false,
    }
}

pub type Key = [String; 2];

impl TestApp {
    /// The database and directories of a pipeline not started (or running elsewhere: in a child process).
    pub fn unstarted(db: TestDb, options: Options) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        TestApp {
            app: None,
            inbox: dir.path().join("inbox"),
            archive: dir.path().join("archive"),
            out: dir.path().join("out"),
            db,
            dir,
            options,
        }
    }

    /// Stops the actor system (as a crash between commits would, minus the process exit).
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// Starts the actor system again on the same database and directories.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.app = Some(start(&self.db, self.dir.path(), &self.options, false).await);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Generates a snapshot into the test's directory.
    pub fn generate(&self, args: GenArgs) -> (PathBuf, GroundTruth) {
        let summary = sluice::gen::generate(&args).expect("gen");
        let truth = GroundTruth::load(&summary.truth_path).expect("truth");
        (summary.path, truth)
    }

    /// Drops a file into the inbox as a careful producer does: a temporary name, then a rename.
    pub fn drop_file(&self, src: &Path, name: &str) {
        std::fs::create_dir_all(&self.inbox).unwrap();
        let tmp = self.inbox.join(format!("{name}.part"));
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, self.inbox.join(name)).unwrap();
    }

    /// Waits for a ledger row of `name` to leave `processing`.
    pub async fn wait_file(&self, name: &str) -> FileRow {
        self.wait_file_after(name, 0).await
    }

    /// The newest ledger id so far.
    pub async fn last_file_id(&self) -> i64 {
        self.count("SELECT coalesce(max(id), 0) FROM files").await
    }

    /// Waits for a ledger row of `name` newer than `after` to leave `processing`.
    pub async fn wait_file_after(&self, name: &str, after: i64) -> FileRow {
        let c = self.db.client().await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let row = c
                .query_opt(
                    "SELECT id FROM files WHERE name = $1 AND id > $2 AND status NOT IN ('processing', 'pending')
                      ORDER BY id DESC LIMIT 1",
                    &[&name, &after],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                let pool = sluice::db::pool(&self.db.url, 1).unwrap();
                return sluice::ledger::get(&pool, row.get(0))
                    .await
                    .unwrap()
                    .unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not processed in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops a file and waits for it to be closed in the ledger.
    pub async fn ingest(&self, src: &Path, name: &str) -> FileRow {
        let after = self.last_file_id().await;
        self.drop_file(src, name);
        self.wait_file_after(name, after).await
    }

    /// The (key, kind) of every event a file appended.
    pub async fn events_of(&self, file_id: i64) -> BTreeSet<(Key, String)> {
        let c = self.db.client().await;
        c.query(
            "SELECT key, kind FROM events WHERE file_id = $1",
            &[&file_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let key: Vec<String> = r.get(0);
            ([key[0].clone(), key[1].clone()], r.get(1))
        })
        .collect()
    }

    /// (key, version, row hash) of every event, for comparing two runs.
    pub async fn all_events(&self) -> BTreeSet<(Key, i32, String, Vec<u8>)> {
        let c = self.db.client().await;
        c.query("SELECT key, version, kind, row_hash FROM events", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let key: Vec<String> = r.get(0);
                (
                    [key[0].clone(), key[1].clone()],
                    r.get(1),
                    r.get(2),
                    r.get(3),
                )
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until no delivery is open; answers how many completed.
    pub async fn wait_delivered(&self) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let open = self
                .count("SELECT count(*) FROM deliveries WHERE state IN ('available', 'retryable', 'executing')")
                .await;
            if open == 0 {
                return self
                    .count("SELECT count(*) FROM deliveries WHERE state = 'completed'")
                    .await;
            }
            assert!(Instant::now() < deadline, "{open} deliveries still open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The expected events of a file: its truth's new and changed keys.
pub fn expected_events(truth: &GroundTruth) -> BTreeSet<(Key, String)> {
    truth
        .new
        .iter()
        .map(|k| (k.clone(), "new".to_string()))
        .chain(
            truth
                .changed
                .iter()
                .map(|k| (k.clone(), "changed".to_string())),
        )
        .collect()
}

/// Asserts a ledger row equals the ground truth's counts and balances.
pub fn assert_ledger(row: &FileRow, truth: &GroundTruth) {
    assert_eq!(row.status, "done", "{row:?}");
    let c = &truth.counts;
    assert_eq!(
        (
            row.rows,
            row.new,
            row.changed,
            row.unchanged,
            row.duplicate,
            row.conflict,
            row.rejected,
            row.removed
        ),
        (
            truth.rows as i64,
            c.new as i64,
            c.changed as i64,
            c.unchanged as i64,
            c.duplicate as i64,
            c.conflict as i64,
            c.rejected as i64,
            c.removed as i64
        ),
        "ledger of {} vs ground truth",
        row.name
    );
    assert_eq!(
        row.rows,
        row.new + row.changed + row.unchanged + row.duplicate + row.conflict + row.rejected,
        "ledger balances"
    );
}

/// Serialises the tests that turn process-wide fault knobs.
pub static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A valid v3 ECLRS row with the given patient key, accession number and result text.
pub fn eclrs_row(patient_key: &str, accession: &str, result: &str) -> Vec<String> {
    sluice::parse::columns::HeaderVersion::V3
        .columns()
        .iter()
        .map(|c| match *c {
            "PIDPATIENTKEY" => patient_key.to_string(),
            "OBRACCESSIONNUM" => accession.to_string(),
            "PIDCOUNTYCODE" => "47".to_string(),
            "RESULTPOSITIVE" => "POSITIVE".to_string(),
            "PIDLASTNAME" => "TESTER".to_string(),
            "OBXOBSERVATIONRESULTTEXT" => result.to_string(),
            "OBRCREATEDATE" => "20MAR2020:06:03:36.589000".to_string(),
            _ => String::new(),
        })
        .collect()
}

/// Writes a v3 ECLRS file of the given rows.
pub fn write_eclrs(path: &Path, rows: &[Vec<String>]) {
    let mut text = sluice::parse::columns::HeaderVersion::V3
        .columns()
        .join("|");
    text.push('\n');
    for r in rows {
        text.push_str(&r.join("|"));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

impl TestApp {
    /// Writes and ingests a file of `n` rows with keys `<base + i>`/`ACC-<i>` and the given result text.
    pub async fn ingest_rows(&self, name: &str, base: u64, n: u64, result: &str) -> FileRow {
        let rows: Vec<Vec<String>> = (0..n)
            .map(|i| eclrs_row(&format!("{}", base + i), &format!("ACC-{i}"), result))
            .collect();
        let path = self.path(&format!("{name}.src"));
        write_eclrs(&path, &rows);
        self.ingest(&path, name).await
    }

    /// Waits until `sql` (a count) answers `want`.
    pub async fn wait_count(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = self.count(sql).await;
            if n == want {
                return;
            }
            assert!(Instant::now() < deadline, "`{sql}` is {n}, not {want}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `sql` (a count) answers at least `want`.
    pub async fn wait_at_least(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = self.count(sql).await;
            if n >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{sql}` is {n}, not {want} or more"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn delivery(&self, sink: &str) -> actix::Addr<sluice::delivery::DeliveryActor> {
        let app = self.app.as_ref().unwrap();
        let i = app
            .settings
            .sinks
            .iter()
            .position(|s| s.name == sink)
            .expect("sink");
        app.delivery[i].clone()
    }
}

/// Values of PHI and key columns from the first `rows` data rows of an ECLRS file (rows without quoted fields,
/// which split on `|` simply), long enough not to occur by chance in other text.
pub fn phi_values(path: &Path, rows: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').collect();
    let columns = [
        "PIDPATIENTKEY",
        "OBRACCESSIONNUM",
        "PIDLASTNAME",
        "PIDFIRSTNAME",
        "PIDDATEOFBIRTH",
        "PIDADDRESSLINE1",
        "PIDHOMEPHONE",
    ];
    let at: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).expect(c))
        .collect();
    lines
        .filter(|l| !l.contains('"'))
        .take(rows)
        .flat_map(|l| {
            let fields: Vec<&str> = l.split('|').collect();
            at.iter()
                .filter_map(|i| fields.get(*i).map(|v| v.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .filter(|v| v.len() >= 5)
        .collect()
}
