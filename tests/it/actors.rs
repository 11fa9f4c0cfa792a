//! `GET /admin/actors`: the supervision tree with every actor's state, as an operator reads it.

use crate::app::{gen_args, settings, Options};
use crate::harness::test_db;
use serde_json::Value;
use sluice::app::{App, StartOptions};

/// The tree's shape: names, kinds, strategies, statuses and which fields exist, with every number zeroed
/// (figures move from run to run; the shape must not).
fn shape(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::from(0),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "busy_seconds")
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => other.clone(),
    }
}

#[actix_rt::test]
async fn the_actor_dump_shows_the_supervision_tree_with_state_and_no_record_values() {
    let db = test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        shards: 2,
        ..Options::default()
    };
    let app = App::start_with(
        settings(&db, dir.path(), &options),
        db.url.clone(),
        StartOptions::new(true),
    )
    .await
    .unwrap();
    let summary =
        sluice::gen::generate(&gen_args(&dir.path().join("g0"), 3_000, 51, None)).unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    std::fs::copy(&summary.path, dir.path().join("inbox/S0.TXT.part")).unwrap();
    std::fs::rename(
        dir.path().join("inbox/S0.TXT.part"),
        dir.path().join("inbox/S0.TXT"),
    )
    .unwrap();
    let client = db.client().await;
    // Wait for the file to be done and every delivery closed: then every actor is idle and answers its dump.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM files WHERE status = 'done'),
                        (SELECT count(*) FROM deliveries WHERE state <> 'completed'),
                        (SELECT count(*) FROM deliveries)",
                &[],
            )
            .await
            .unwrap();
        let (done, open, all): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if done == 1 && open == 0 && all > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ingested and delivered in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    sluice::tls::install_crypto_provider();
    let addr = app.admin.as_ref().unwrap().addr;
    let body = reqwest::get(format!("http://{addr}/admin/actors"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dump: Value = serde_json::from_str(&body).unwrap();

    // The figures an operator looks for are there and add up.
    let tree = &dump["tree"];
    let ingest = &tree["children"][1];
    assert_eq!(ingest["name"], "ingest");
    let keys: u64 = ingest["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "dedupe")
        .map(|a| a["state"]["keys"].as_u64().unwrap())
        .sum();
    let committed: i64 = client
        .query_one("SELECT count(*) FROM record_state", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys as i64, committed, "shards track every committed key");
    let writer = &ingest["children"][0];
    assert!(writer["state"]["batches_committed"].as_u64().unwrap() >= 1);

    // No patient key, accession number or name from the snapshot appears.
    for value in crate::app::phi_values(&summary.path, 50) {
        assert!(!body.contains(&value), "the dump holds a field value");
    }

    insta::assert_json_snapshot!("admin_actors_shape", shape(&dump));
    app.stop().await;
}
