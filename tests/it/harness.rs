//! The shared fixture: one PostgreSQL server per test run, and a fresh database per test.
//!
//! With `DATABASE_URL` set, tests use that server (its user needs CREATEDB). Otherwise a throwaway cluster is
//! started from the system's binaries in a temp dir, once per process, and torn down when the process ends.
//! Each test gets its own database cloned from a migrated template, so tests run in parallel without seeing each
//! other's rows. Works under `#[actix_rt::test]` and `#[tokio::test]` alike: the server is set up with blocking
//! calls on a thread of its own, and every client is opened in the calling test's runtime.

use sluice::db::embedded::{self, EmbeddedOptions, EmbeddedPostgres};
use std::error::Error;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Prefix of every database the tests create; on a shared server a run first drops earlier runs' leftovers.
const PREFIX: &str = "sluice_test_";

/// A database of its own for one test. Never dropped: the cluster is thrown away, and on a shared server the
/// next run drops it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A connection driven by the calling test's runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        sluice::db::connect(&self.url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to test database {}: {}",
                self.name,
                chain(&e)
            )
        })
    }
}

/// A fresh database with every migration applied (a clone of the run's template).
pub async fn test_db() -> TestDb {
    let server = server();
    create_database(server, &server.template).await
}

/// A fresh database with no schema at all (a clone of `template0`).
pub async fn empty_db() -> TestDb {
    create_database(server(), "template0").await
}

/// Serialises clones: PostgreSQL refuses to copy a template while another session is in it.
static CLONING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn create_database(server: &Server, template: &str) -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let name = format!(
        "{PREFIX}{}_{}",
        server.run,
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sluice::db::connect(&server.admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {}", chain(&e)));
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        ident(&name),
        ident(template)
    );
    let _one_at_a_time = CLONING.lock().await;
    admin
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {}", chain(&e)));
    TestDb {
        url: server.url(&name),
        name,
    }
}

/// The run's server, set up on first use. A failed set-up fails every test with the same message.
fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        // On a thread of its own: the set-up runs a private runtime, which cannot nest in a test's.
        std::thread::spawn(Server::set_up)
            .join()
            .unwrap_or_else(|_| Err("the test server's set-up panicked".into()))
    });
    server
        .as_ref()
        .unwrap_or_else(|e| panic!("no test server: {e}"))
}

struct Server {
    /// Where `CREATE DATABASE` runs.
    admin_url: String,
    /// Distinguishes this run's databases from a concurrent run's on a shared server.
    run: String,
    /// The migrated database every [`test_db`] is cloned from.
    template: String,
    place: Place,
}

enum Place {
    /// `DATABASE_URL`: other databases on the same server are reached by swapping the database name.
    Shared { url: String },
    /// Our own cluster; it lives as long as the process.
    Embedded(EmbeddedPostgres),
}

impl Server {
    fn set_up() -> Result<Server, String> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Server {
                admin_url: url.clone(),
                template: format!("{PREFIX}template_{run}"),
                run,
                place: Place::Shared { url },
            },
            _ => {
                let (cluster, _) = start_cluster()?;
                Server {
                    admin_url: cluster.url("postgres"),
                    template: "sluice_template".into(),
                    run,
                    place: Place::Embedded(cluster),
                }
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        runtime.block_on(server.create_template())?;
        Ok(server)
    }

    fn url(&self, db: &str) -> String {
        match &self.place {
            Place::Shared { url } => with_database(url, db),
            Place::Embedded(cluster) => cluster.url(db),
        }
    }

    async fn create_template(&self) -> Result<(), String> {
        let (admin, _admin_connection) = connect(&self.admin_url).await?;
        if matches!(self.place, Place::Shared { .. }) {
            drop_leftovers(&admin).await;
        }
        let name = ident(&self.template);
        let sql = format!("CREATE DATABASE {name} TEMPLATE template0");
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("`{sql}` failed: {}", chain(&e)))?;

        let (mut client, connection) = connect(&self.url(&self.template)).await?;
        sluice::db::migrate(&mut client)
            .await
            .map_err(|e| format!("migrating the template failed: {}", chain(&e)))?;
        // Leave no session behind in the template: it could not be cloned until the server noticed.
        drop(client);
        let _ = connection.await;
        // Nor let a test wander into it.
        let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false");
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("`{sql}` failed: {}", chain(&e)))
    }
}

/// Best effort: a database still in use (a concurrent run's) stays.
async fn drop_leftovers(admin: &tokio_postgres::Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", ident(&name)))
            .await;
    }
}

/// Connects and hands back the connection's task, to await its end.
async fn connect(
    url: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {url}: {}", chain(&e)))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// A non-durable cluster in a fresh directory under the system temp dir (world-traversable, unlike most homes),
/// stopped and deleted when the process ends however it ends. Answers the cluster and its directory.
fn start_cluster() -> Result<(EmbeddedPostgres, std::path::PathBuf), String> {
    ensure_server_binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-it-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?
        .keep();
    reap_on_exit(&dir)?;
    let options = EmbeddedOptions {
        port: None,
        durable: false,
    };
    let cluster = EmbeddedPostgres::start(&dir, options).map_err(|e| chain(&e))?;
    Ok((cluster, dir))
}

/// A PostgreSQL cluster of one test's own, for tests that stop and start the server (the run's shared cluster
/// serves the tests running in parallel). It keeps its port across [`stop`](Self::stop) and
/// [`start_again`](Self::start_again), so URLs stay valid. Dropping it — a failing test unwinds through the drop —
/// stops the server at once and deletes its directory; if the process dies first, the reaper of [`reap_on_exit`]
/// does.
pub struct PrivateCluster {
    /// Shared with the blocking tasks that run `pg_ctl`.
    pg: std::sync::Arc<EmbeddedPostgres>,
    dir: std::path::PathBuf,
}

impl PrivateCluster {
    pub async fn start() -> PrivateCluster {
        let (pg, dir) = tokio::task::spawn_blocking(start_cluster)
            .await
            .expect("cluster start-up task")
            .unwrap_or_else(|e| panic!("no private cluster: {e}"));
        PrivateCluster { pg: pg.into(), dir }
    }

    /// A new database with every migration applied; answers its URL.
    pub async fn migrated_db(&self, name: &str) -> String {
        self.pg
            .ensure_database(name)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {}", chain(&e)));
        let url = self.pg.url(name);
        let mut client = sluice::db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {}", chain(&e)));
        sluice::db::migrate(&mut client)
            .await
            .unwrap_or_else(|e| panic!("cannot migrate {name}: {}", chain(&e)));
        url
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`): every session is cut at once.
    pub async fn stop(&self) {
        self.pg_ctl("stop", EmbeddedPostgres::kill).await;
    }

    /// Starts the server again on the same port (after crash recovery).
    pub async fn start_again(&self) {
        self.pg_ctl("start again", EmbeddedPostgres::restart).await;
    }

    /// Runs a blocking `pg_ctl` call off the test's runtime.
    async fn pg_ctl(
        &self,
        what: &str,
        call: fn(&EmbeddedPostgres) -> Result<(), sluice::error::DbError>,
    ) {
        let pg = self.pg.clone();
        tokio::task::spawn_blocking(move || call(&pg))
            .await
            .expect("pg_ctl task")
            .unwrap_or_else(|e| panic!("cannot {what} the private cluster: {}", chain(&e)));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(e) = self.pg.kill() {
            eprintln!("cannot stop the private cluster: {}", chain(&e));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the cluster in `dir` and deletes `dir` once this process has ended, however it ends: Rust runs no
/// static destructors, and an abort or SIGKILL runs nothing at all. A `sh` child waits for end-of-file on a pipe
/// whose write end only this process holds (it is close-on-exec, so no other child inherits it); the kernel
/// closes it when the process goes. The child has its own process group, so a Ctrl-C meant for the tests does
/// not reach it, and it ignores the usual termination signals.
pub fn reap_on_exit(dir: &Path) -> Result<(), String> {
    /// Write ends of the reapers' pipes, held for the life of the process.
    static PIPES: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());
    const SCRIPT: &str = r#"trap '' HUP INT TERM
dir=$1; shift
cat >/dev/null
cd /
"$@" >/dev/null 2>&1
rm -rf -- "$dir""#;
    let stop = embedded::immediate_stop_command(dir).map_err(|e| chain(&e))?;
    let mut reaper = Command::new("/bin/sh")
        .args(["-c", SCRIPT, "sluice-test-reaper"])
        .arg(dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot spawn the cleanup process: {e}"))?;
    let pipe = reaper.stdin.take().expect("stdin is piped");
    PIPES.lock().unwrap_or_else(|e| e.into_inner()).push(pipe);
    Ok(())
}

/// Installs the `postgresql` package when the server binaries are missing and we are root.
fn ensure_server_binaries() -> Result<(), String> {
    if embedded::server_bin_dir().is_ok() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "PostgreSQL server binaries not found; install the `postgresql` package (needs root), \
                    or set DATABASE_URL to a server the tests may create databases on"
                .into(),
        );
    }
    eprintln!("PostgreSQL server binaries not found: installing the `postgresql` package");
    apt_install(&["postgresql"]);
    embedded::server_bin_dir()
        .map(|_| ())
        .map_err(|e| format!("after `apt-get install -y postgresql`: {}", chain(&e)))
}

/// `apt-get install -y <args>`, updating the package lists first if that fails (a fresh machine has none).
/// Answers whether it succeeded; the caller checks for what it needed.
pub fn apt_install(args: &[&str]) -> bool {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = [&["install", "-y"], args].concat();
    apt(&install) || (apt(&["update"]) && apt(&install))
}

/// `url` with its database replaced by `db`; `url` is a `postgres://` URL or a libpq `key=value` string.
fn with_database(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // In a key=value string the last assignment wins.
        return format!("{url} dbname={db}");
    };
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_end = base[scheme_end + 3..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + 3 + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{db}{query}", &base[..authority_end])
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An error and its causes on one line: the messages here carry context, the causes say what went wrong.
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
