//! The embedded cluster `sluice run` and `sluice demo` fall back to: it keeps its port and its data across stops,
//! crashes and restarts, and says why when it cannot start.

use crate::harness::reap_on_exit;
use sluice::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;

const THROWAWAY: EmbeddedOptions = EmbeddedOptions {
    port: None,
    durable: false,
};

#[actix_rt::test]
async fn a_cluster_keeps_its_port_and_data_across_stop_kill_and_restart() {
    let dir = tempfile::Builder::new()
        .prefix("sluice-embedded-")
        .tempdir()
        .unwrap();
    reap_on_exit(dir.path()).unwrap();
    let pg = EmbeddedPostgres::start(dir.path(), THROWAWAY).unwrap();
    let port = pg.port();
    pg.ensure_database("ledger").await.unwrap();
    pg.ensure_database("ledger").await.unwrap();
    let client = sluice::db::connect(&pg.url("ledger")).await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();
    drop(client);

    pg.stop().unwrap();
    pg.stop().unwrap();
    assert!(
        sluice::db::connect(&pg.url("ledger")).await.is_err(),
        "stopped server still answers"
    );
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(kept(&pg).await, 7);

    let again = EmbeddedPostgres::start(dir.path(), THROWAWAY).unwrap();
    assert_eq!(
        again.port(),
        port,
        "a second start reuses the running server"
    );

    pg.kill().unwrap();
    pg.restart().unwrap();
    assert_eq!(kept(&pg).await, 7, "crash recovery keeps committed rows");
    pg.stop().unwrap();

    let cold = EmbeddedPostgres::start(dir.path(), THROWAWAY).unwrap();
    assert_eq!(cold.port(), port, "the port is persisted with the cluster");
    cold.stop().unwrap();
}

#[test]
fn a_directory_the_server_account_cannot_reach_is_refused_with_the_reason() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root hands the cluster to another account
    }
    let private = tempfile::Builder::new()
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .unwrap();
    match EmbeddedPostgres::start(&private.path().join("pg"), THROWAWAY) {
        Ok(pg) => {
            pg.kill().unwrap();
            panic!("started a cluster the server account cannot reach");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("cannot enter"), "{msg}");
            assert!(msg.contains(&private.path().display().to_string()), "{msg}");
        }
    }
}

async fn kept(pg: &EmbeddedPostgres) -> i32 {
    let client = sluice::db::connect(&pg.url("ledger")).await.unwrap();
    client
        .query_one("SELECT n FROM kept", &[])
        .await
        .unwrap()
        .get(0)
}
