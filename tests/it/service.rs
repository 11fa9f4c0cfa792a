//! `sluice run` as a child process of a test: the real binary, with its own configuration file and log.

use crate::app::{config_toml, Options, TestApp};
use crate::harness::test_db;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `sluice run`, killed when dropped (so a failing test leaves none behind).
pub struct Sluice(Child);

impl Sluice {
    /// Starts `sluice run -c config`, appending its output to `log`, with `env` on top of a clean environment.
    pub fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Sluice {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("run").arg("-c").arg(config);
        // Only the test's own configuration: none of the environment's database or settings.
        for (name, _) in std::env::vars_os() {
            if name == "DATABASE_URL" || name.to_string_lossy().starts_with("SLUICE_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("SLUICE_LOG", "info").envs(env.iter().copied());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sluice starts");
        Sluice(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL: no destructor, no drain, no lease release.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, sig) }, 0);
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().unwrap()
    }

    /// Waits (without blocking the test's runtime) for the process to exit by itself.
    pub async fn wait(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "sluice did not exit in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// For a pipeline run as a child process: a TestApp that lends its database, directories and helpers, the
/// configuration file written for it, and the path of its log.
pub async fn for_child(options: Options) -> (TestApp, PathBuf, PathBuf) {
    let t = TestApp::unstarted(test_db().await, options);
    let config = t.path("sluice.toml");
    std::fs::write(&config, config_toml(&t.db, t.dir.path(), &t.options)).unwrap();
    let log = t.path("sluice.log");
    (t, config, log)
}

/// The last 40 lines of a log, for a failure message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A loopback port free a moment ago (another process could take it before the service binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
