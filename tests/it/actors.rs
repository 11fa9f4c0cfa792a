//! `GET /admin/actors`: the supervision tree with every actor's state, as an operator reads it.

use crate::app::{gen_args, spawn_app, Options};
use serde_json::Value;

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
    let mut t = spawn_app(Options {
        shards: 2,
        admin: true,
        ..Options::default()
    })
    .await;
    let (s0, _) = t.generate(gen_args(&t.path("g0"), 3_000, 51, None));
    assert_eq!(t.ingest(&s0, "S0.TXT").await.status, "done");
    // Once every delivery is closed, every actor is idle and answers its dump.
    assert!(t.wait_delivered().await > 0);
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state <> 'completed'")
            .await,
        0
    );

    sluice::tls::install_crypto_provider();
    let addr = t.app.as_ref().unwrap().admin.as_ref().unwrap().addr;
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
    let committed = t.count("SELECT count(*) FROM record_state").await;
    assert_eq!(keys as i64, committed, "shards track every committed key");
    let writer = &ingest["children"][0];
    assert!(writer["state"]["batches_committed"].as_u64().unwrap() >= 1);

    // No patient key, accession number or name from the snapshot appears.
    for value in crate::app::phi_values(&s0, 50) {
        assert!(!body.contains(&value), "the dump holds a field value");
    }

    insta::assert_json_snapshot!("admin_actors_shape", shape(&dump));
    t.stop().await;
}
