//! An embedded PostgreSQL cluster started from the system's binaries: `sluice run` and `sluice demo` use it when no
//! database URL is configured, and the integration tests run on a throwaway one.
//!
//! The directory given to [`EmbeddedPostgres::start`] is the data directory itself. Next to the cluster's own files
//! it holds `server.log`, the unix socket, and `sluice.conf`: sluice's settings (port, loopback-only listening,
//! durability), included from `postgresql.conf` and rewritten at every start, so the port chosen at the first
//! start is kept. PostgreSQL refuses to run as root, so when sluice runs as root every server binary runs as the
//! `postgres` account through `runuser`, and the directory is handed to that account.

use crate::error::DbError;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::Metadata;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The account the server runs as when sluice runs as root; also the cluster's superuser.
const SERVER_USER: &str = "postgres";
/// sluice's settings, rewritten at every start; `postgresql.conf` includes it last, so it wins.
const SETTINGS_FILE: &str = "sluice.conf";
const LOG_FILE: &str = "server.log";
/// Seconds `pg_ctl` waits for a start (crash recovery included) or a stop before giving up.
const PG_CTL_TIMEOUT: &str = "120";
/// A unix socket path longer than this (`sun_path` holds 108 bytes) cannot be bound.
const MAX_SOCKET_PATH: usize = 107;

/// How to start a cluster.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// Loopback port to listen on; `None` picks a free one at the first start, which is then kept.
    pub port: Option<u16>,
    /// `false` turns off fsync, synchronous commit and full-page writes: fast, and lost when the machine
    /// crashes. Only for throwaway clusters.
    pub durable: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            port: None,
            durable: true,
        }
    }
}

/// A PostgreSQL cluster in a directory, run by `pg_ctl`. The server outlives this handle and the process: call
/// [`stop`](Self::stop) to end it; a later [`start`](Self::start) on the same directory reuses a server left
/// running.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// Absolute data directory, so that a change of working directory cannot matter.
    dir: PathBuf,
    /// Chosen at the first start and persisted in `sluice.conf`: URLs stay valid across restarts and runs.
    port: u16,
    /// Where `initdb` and `pg_ctl` are.
    bin: PathBuf,
    /// `Some` when we are root: every server binary then runs as this account.
    account: Option<Account>,
}

impl EmbeddedPostgres {
    /// Initialises (initdb, if `dir` holds no cluster) and starts a cluster in `dir`, listening on 127.0.0.1 only
    /// (and a unix socket inside `dir`), trust auth for local connections, superuser `postgres`. If a server from
    /// a previous run is still running on that dir, reuses it. Blocking; call from a blocking context. Creates
    /// `dir` (and hands it to `postgres` when root).
    pub fn start(dir: &Path, opts: EmbeddedOptions) -> Result<Self, DbError> {
        let account = if is_root() {
            Some(Account::lookup(SERVER_USER)?)
        } else {
            None
        };
        let dir = prepare_dir(dir, account.as_ref())?;
        let has_cluster = dir.join("PG_VERSION").is_file();
        let bin = bin_dir_for(&dir)?;
        let mut pg = EmbeddedPostgres {
            dir,
            port: 0,
            bin,
            account,
        };

        if has_cluster && pg.is_running()? {
            pg.port = pg.running_port()?;
            if let Some(wanted) = opts.port.filter(|&p| p != pg.port) {
                return Err(pg.error(format!(
                    "a server is already running on this directory with port {}, not the configured {wanted}; \
                     stop it first",
                    pg.port
                )));
            }
            tracing::info!(dir = %pg.dir.display(), port = pg.port, "reusing running embedded PostgreSQL");
            return Ok(pg);
        }
        if !has_cluster {
            pg.initdb(opts.durable)?;
        }

        // A port picked here may be taken by someone else before the server binds it: then pick another.
        let fixed = opts.port.or_else(|| pg.persisted_port());
        pg.port = match fixed {
            Some(port) => port,
            None => free_port()?,
        };
        let mut retries = 3;
        loop {
            pg.write_settings(opts.durable)?;
            let log_from = pg.log_len();
            match pg.pg_ctl_start(log_from) {
                Ok(()) => break,
                Err(_) if fixed.is_none() && retries > 0 && pg.port_was_taken(log_from) => {
                    retries -= 1;
                    pg.port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(dir = %pg.dir.display(), port = pg.port, "started embedded PostgreSQL");
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SERVER_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates the database if missing (connecting to the `postgres` database).
    pub async fn ensure_database(&self, db: &str) -> Result<(), DbError> {
        let client = super::connect(&self.url("postgres")).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(|e| DbError::query("looking up a database", e))?
            .is_some();
        if exists {
            return Ok(());
        }
        let create = format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\""));
        match client.batch_execute(&create).await {
            Ok(()) => Ok(()),
            // Someone else created it meanwhile.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                Ok(())
            }
            Err(e) => Err(DbError::query("creating a database", e)),
        }
    }

    /// `pg_ctl stop -m fast`: disconnects every session and shuts down cleanly. Idempotent.
    pub fn stop(&self) -> Result<(), DbError> {
        self.pg_ctl_stop("fast")
    }

    /// `pg_ctl stop -m immediate`: like a crash, the next start runs recovery. For fault tests.
    pub fn kill(&self) -> Result<(), DbError> {
        self.pg_ctl_stop("immediate")
    }

    /// Starts the server again after [`stop`](Self::stop) or [`kill`](Self::kill): same directory, same port.
    /// Does nothing if it is running.
    pub fn restart(&self) -> Result<(), DbError> {
        if self.is_running()? {
            return Ok(());
        }
        self.pg_ctl_start(self.log_len())?;
        tracing::info!(dir = %self.dir.display(), port = self.port, "restarted embedded PostgreSQL");
        Ok(())
    }

    fn initdb(&self, durable: bool) -> Result<(), DbError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.dir);
        cmd.args([
            "-U",
            SERVER_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]);
        if !durable {
            cmd.arg("--no-sync");
        }
        self.run(cmd, None)?;
        // `include` (not `include_if_exists`): a start without sluice's settings would listen on the default port.
        let conf = self.dir.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(|e| self.io_error("read", &conf, e))?;
        write!(
            text,
            "\n# sluice's settings, rewritten at every start\ninclude '{SETTINGS_FILE}'\n"
        )
        .unwrap();
        std::fs::write(&conf, text).map_err(|e| self.io_error("write", &conf, e))?;
        tracing::info!(dir = %self.dir.display(), "initialised embedded PostgreSQL cluster");
        Ok(())
    }

    /// Writes `sluice.conf`: the port, loopback-only listening, and settings for a 2-core machine with memory
    /// to spare.
    fn write_settings(&self, durable: bool) -> Result<(), DbError> {
        let dir = self.dir.to_string_lossy();
        // A path the server cannot bind or parse as one list element gets no socket: TCP is what sluice uses.
        let socket_dir = if dir.len() + ".s.PGSQL.65535".len() + 1 > MAX_SOCKET_PATH
            || dir.contains([',', '\'', '"'])
        {
            String::new()
        } else {
            dir.into_owned()
        };
        let on_off = if durable { "on" } else { "off" };
        let text = format!(
            "# Written by sluice at every start of the embedded cluster; edits here are lost.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = 200\n\
             shared_buffers = 256MB\n\
             effective_cache_size = 4GB\n\
             work_mem = 16MB\n\
             maintenance_work_mem = 256MB\n\
             wal_buffers = 16MB\n\
             min_wal_size = 256MB\n\
             max_wal_size = 2GB\n\
             checkpoint_timeout = 10min\n\
             checkpoint_completion_target = 0.9\n\
             random_page_cost = 1.1\n\
             fsync = {on_off}\n\
             synchronous_commit = {on_off}\n\
             full_page_writes = {on_off}\n\
             timezone = 'UTC'\n\
             log_timezone = 'UTC'\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
            port = self.port,
        );
        let path = self.dir.join(SETTINGS_FILE);
        std::fs::write(&path, text).map_err(|e| self.io_error("write", &path, e))?;
        if let Some(account) = &self.account {
            account
                .chown(&path)
                .map_err(|e| self.io_error("chown", &path, e))?;
        }
        Ok(())
    }

    /// The port last written to `sluice.conf`.
    fn persisted_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(self.dir.join(SETTINGS_FILE)).ok()?;
        text.lines()
            .filter_map(|line| line.strip_prefix("port = "))
            .find_map(|port| port.trim().parse().ok())
    }

    /// The port of the running server: line 4 of `postmaster.pid`.
    fn running_port(&self) -> Result<u16, DbError> {
        let path = self.dir.join("postmaster.pid");
        let text = std::fs::read_to_string(&path).map_err(|e| self.io_error("read", &path, e))?;
        text.lines()
            .nth(3)
            .and_then(|port| port.trim().parse().ok())
            .ok_or_else(|| self.error(format!("`{}` names no port", path.display())))
    }

    /// `pg_ctl status`: 0 running, 3 not running, anything else is an error.
    fn is_running(&self) -> Result<bool, DbError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.dir);
        let out = self.output(&mut cmd)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => Err(self.failure(&cmd, &out, None)),
        }
    }

    fn pg_ctl_start(&self, log_from: u64) -> Result<(), DbError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start").arg("-D").arg(&self.dir);
        cmd.arg("-l").arg(self.dir.join(LOG_FILE));
        cmd.args(["-w", "-t", PG_CTL_TIMEOUT, "-s"]);
        self.run(cmd, Some(log_from))
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), DbError> {
        if !self.is_running()? {
            return Ok(());
        }
        let log_from = self.log_len();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.dir);
        cmd.args(["-m", mode, "-w", "-t", PG_CTL_TIMEOUT, "-s"]);
        match self.run(cmd, Some(log_from)) {
            // It stopped by itself between the status check and ours.
            Err(_) if !self.is_running()? => Ok(()),
            result => result,
        }?;
        tracing::info!(dir = %self.dir.display(), mode, "stopped embedded PostgreSQL");
        Ok(())
    }

    /// A server binary, run as `postgres` when we are root, from `/` (root's working directory may be closed to
    /// `postgres`), with English messages.
    fn command(&self, program: &str) -> Command {
        command_as(&self.bin.join(program), self.account.is_some())
    }

    fn output(&self, cmd: &mut Command) -> Result<std::process::Output, DbError> {
        cmd.output().map_err(|e| {
            self.error(format!(
                "cannot run `{}`: {e}",
                cmd.get_program().to_string_lossy()
            ))
        })
    }

    /// Runs `cmd`; on failure the error quotes its output and, with `log_from`, what the server logged since.
    fn run(&self, mut cmd: Command, log_from: Option<u64>) -> Result<(), DbError> {
        let out = self.output(&mut cmd)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure(&cmd, &out, log_from))
        }
    }

    fn failure(&self, cmd: &Command, out: &std::process::Output, log_from: Option<u64>) -> DbError {
        let mut msg = format!("`{}` failed ({})", show(cmd), out.status);
        // The error is on stderr; stdout (initdb's progress) only says how far it got.
        let said = [(&out.stderr, 10), (&out.stdout, 4)]
            .map(|(bytes, n)| last_lines(&String::from_utf8_lossy(bytes), n))
            .into_iter()
            .filter(|lines| !lines.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if !said.is_empty() {
            write!(msg, ":\n{said}").unwrap();
        }
        if let Some(from) = log_from {
            let log = self.log_since(from);
            if !log.is_empty() {
                let path = self.dir.join(LOG_FILE);
                write!(msg, "\nlast lines of `{}`:\n{log}", path.display()).unwrap();
            }
        }
        self.error(msg)
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.dir.join(LOG_FILE)).map_or(0, |m| m.len())
    }

    /// The last lines the server logged after byte `from` of `server.log`.
    fn log_since(&self, from: u64) -> String {
        let Ok(bytes) = std::fs::read(self.dir.join(LOG_FILE)) else {
            return String::new();
        };
        let from = usize::try_from(from).unwrap_or(0);
        let new = bytes.get(from..).unwrap_or(&bytes);
        last_lines(&String::from_utf8_lossy(new), 15)
    }

    fn port_was_taken(&self, log_from: u64) -> bool {
        self.log_since(log_from).contains("Address already in use")
    }

    fn error(&self, what: String) -> DbError {
        DbError::Embedded(format!("data directory `{}`: {what}", self.dir.display()))
    }

    fn io_error(&self, verb: &str, path: &Path, e: std::io::Error) -> DbError {
        self.error(format!("cannot {verb} `{}`: {e}", path.display()))
    }
}

/// The command that stops the cluster in `dir` at once (`pg_ctl stop -m immediate`), for a watchdog process that
/// must end the server after this one is gone.
pub fn immediate_stop_command(dir: &Path) -> Result<Command, DbError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| DbError::Embedded(format!("cannot resolve `{}`: {e}", dir.display())))?;
    let mut cmd = command_as(&server_bin_dir()?.join("pg_ctl"), is_root());
    cmd.arg("stop").arg("-D").arg(dir);
    cmd.args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT, "-s"]);
    Ok(cmd)
}

/// The newest installed PostgreSQL's server binaries: the highest `/usr/lib/postgresql/<version>/bin`, else
/// `pg_config --bindir`.
pub fn server_bin_dir() -> Result<PathBuf, DbError> {
    let complete = |bin: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| bin.join(p).is_file())
    };
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: Option<Vec<u32>> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect();
            Some((version?, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .max();
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match from_pg_config {
        Some(bin) if complete(&bin) => Ok(bin),
        _ => Err(DbError::Embedded(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and \
             postgres, and `pg_config --bindir` names none): install the `postgresql` package, or configure \
             database.url"
                .into(),
        )),
    }
}

/// The binaries of the cluster's own major version if installed (a cluster can only be run by its version),
/// else the newest.
fn bin_dir_for(dir: &Path) -> Result<PathBuf, DbError> {
    if let Ok(version) = std::fs::read_to_string(dir.join("PG_VERSION")) {
        let bin = Path::new("/usr/lib/postgresql")
            .join(version.trim())
            .join("bin");
        if bin.join("pg_ctl").is_file() {
            return Ok(bin);
        }
    }
    server_bin_dir()
}

/// Makes `dir` absolute, creates it, and when root checks that `postgres` can reach it and hands it over.
fn prepare_dir(dir: &Path, account: Option<&Account>) -> Result<PathBuf, DbError> {
    let fail =
        |what: String| DbError::Embedded(format!("data directory `{}`: {what}", dir.display()));
    let dir =
        std::path::absolute(dir).map_err(|e| fail(format!("cannot resolve the path: {e}")))?;
    // Checked before creating anything, so that a refusal leaves nothing behind; and after, because the
    // directories just created, and symbolic links, count too.
    if let Some(account) = account {
        account.check_can_reach(&dir).map_err(fail)?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| fail(format!("cannot resolve the path: {e}")))?;
    let has_cluster = dir.join("PG_VERSION").is_file();
    if let Some(account) = account {
        account.check_can_reach(&dir).map_err(fail)?;
        let meta = std::fs::metadata(&dir).map_err(|e| fail(format!("cannot inspect it: {e}")))?;
        if meta.uid() != account.uid && !has_cluster {
            account
                .chown(&dir)
                .map_err(|e| fail(format!("cannot hand it to `{SERVER_USER}`: {e}")))?;
        }
    }
    if !has_cluster {
        // The server insists on a private data directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(format!("cannot set its mode to 700: {e}")))?;
    }
    Ok(dir)
}

fn command_as(program: &Path, as_server_user: bool) -> Command {
    let mut cmd = if as_server_user {
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("runuser");
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", SERVER_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.current_dir("/")
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .stdin(Stdio::null());
    cmd
}

fn free_port() -> Result<u16, DbError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| DbError::Embedded(format!("cannot find a free loopback port: {e}")))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command line as a user would type it.
fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `postgres` account: who runs the server when we are root.
#[derive(Debug)]
struct Account {
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// Primary and supplementary groups: what decides whether it may enter a directory.
    groups: Vec<libc::gid_t>,
}

impl Account {
    fn lookup(name: &str) -> Result<Self, DbError> {
        let missing = || {
            DbError::Embedded(format!(
                "there is no `{name}` account: PostgreSQL refuses to run as root, so sluice runs it as `{name}`; \
                 install the `postgresql` package (it creates the account) or run sluice as another user"
            ))
        };
        let cname = CString::new(name).map_err(|_| missing())?;
        // SAFETY: a zeroed passwd is a valid out-parameter; getpwnam_r fills it with pointers into `buf`, which
        // outlives every read of it below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(missing());
        }
        let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
        let mut groups: Vec<libc::gid_t> = vec![0; 32];
        loop {
            let mut n = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `groups` has room for `n` entries; on -1 glibc sets `n` to the count it needs.
            let rc =
                unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
            let n = usize::try_from(n).unwrap_or(0);
            if rc >= 0 {
                groups.truncate(n);
                break;
            }
            groups.resize(n.max(groups.len() * 2), 0);
        }
        Ok(Account { uid, gid, groups })
    }

    /// Whether the account may traverse a directory with this metadata (ACLs aside).
    fn can_enter(&self, meta: &Metadata) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if self.groups.contains(&meta.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }

    /// Whether the account may traverse every existing parent of `dir`; if not, which one stops it and why.
    fn check_can_reach(&self, dir: &Path) -> Result<(), String> {
        for parent in dir.ancestors().skip(1) {
            let meta = match std::fs::metadata(parent) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot inspect `{}`: {e}", parent.display())),
            };
            if !self.can_enter(&meta) {
                return Err(format!(
                    "PostgreSQL runs as `{SERVER_USER}`, which cannot enter `{}` (mode {:o}, owner uid {}, group \
                     gid {}); choose a data directory whose every parent `{SERVER_USER}` may traverse (e.g. under \
                     /var/lib or /tmp), or grant it: `chmod o+x {}`",
                    parent.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    parent.display()
                ));
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }
}
