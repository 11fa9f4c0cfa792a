//! Delivery through the built-in fake contact-tracing API: CommCare, fan-out, end to end (outages: `faults`).

use crate::app::{expected_events, gen_args, spawn_app, Options};
use sluice::fake_api::{FakeApi, FakeApiArgs};
use std::collections::{BTreeMap, BTreeSet};

fn fake() -> FakeApi {
    FakeApi::start(FakeApiArgs::default()).expect("fake API starts")
}

#[actix_rt::test]
async fn commcare_forms_route_by_county_and_keep_their_case_ids_across_resends() {
    let api = fake();
    let t = spawn_app(Options {
        sinks: Some(format!(
            r#"[[sinks]]
name = "commcare"
kind = "commcare"
base_url = "{}"
api_user = "sluice@example.org"
api_key = "k"
statewide_domain = "ny-state"
backoff_base = "20ms"
backoff_cap = "100ms"
[sinks.counties."47"]
domain = "ny-kings"
owner_id = "owner-47"
[sinks.counties."61"]
domain = "ny-newyork"
owner_id = "owner-61"
participating = false
"#,
            api.url()
        )),
        ..Options::default()
    })
    .await;
    // Every request fails once (503), so every form is sent twice.
    api.faults().set_error_rate(1.0);
    let mut rows = Vec::new();
    for (i, county) in ["47", "47", "61", "99"].iter().enumerate() {
        let mut r = crate::app::eclrs_row(
            &format!("1000000000000{i}"),
            &format!("ACC-{i}"),
            "Detected",
        );
        let c = sluice::parse::columns::HeaderVersion::V3
            .columns()
            .iter()
            .position(|c| *c == "PIDCOUNTYCODE")
            .unwrap();
        r[c] = county.to_string();
        rows.push(r);
    }
    let path = t.path("cc.TXT");
    crate::app::write_eclrs(&path, &rows);
    t.ingest(&path, "CC_0000.TXT").await;
    t.wait_count("SELECT count(*) FROM deliveries WHERE state = 'ignored'", 1)
        .await;
    t.wait_at_least(
        "SELECT count(*) FROM delivery_attempts WHERE status_code = 503",
        3,
    )
    .await;
    api.faults().set_error_rate(0.0);
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE state = 'completed'",
        3,
    )
    .await;
    let received = api.received();
    let domains: BTreeMap<String, usize> =
        received.changes.iter().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.domain.clone().unwrap_or_default()).or_default() += 1;
            m
        });
    assert_eq!(
        domains,
        BTreeMap::from([("ny-kings".to_string(), 2), ("ny-state".to_string(), 1)])
    );
    assert_eq!(received.changes_applied_twice(), 0);
    // The county that does not take part is counted, never sent.
    assert_eq!(t.count("SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.state = 'ignored'").await, 0);
}

#[actix_rt::test]
async fn with_one_sink_down_the_other_completes_and_the_first_catches_up() {
    let (up, down) = (fake(), fake());
    let t = spawn_app(Options {
        sinks: Some(format!(
            "[[sinks]]\nname = \"up\"\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_base = \"50ms\"\nbackoff_cap = \"500ms\"\n\
             [[sinks]]\nname = \"down\"\nkind = \"webhook\"\nurl = \"{}\"\nbackoff_base = \"50ms\"\nbackoff_cap = \"500ms\"\n",
            up.webhook_url(),
            down.webhook_url()
        )),
        ..Options::default()
    })
    .await;
    down.faults().set_down(true);
    t.ingest_rows("F_0000.TXT", 10_000_000_000_000, 300, "Detected")
        .await;
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE sink = 'up' AND state = 'completed'",
        300,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE sink = 'down' AND state = 'completed'")
            .await,
        0
    );
    down.faults().set_down(false);
    t.wait_count(
        "SELECT count(*) FROM deliveries WHERE sink = 'down' AND state = 'completed'",
        300,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(up.received().changes.len(), 300);
    assert_eq!(down.received().changes.len(), 300);
}

#[actix_rt::test]
async fn the_api_receives_exactly_the_ground_truths_changes() {
    let api = fake();
    let t = spawn_app(Options {
        sinks: Some(format!(
            "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            api.webhook_url()
        )),
        ..Options::default()
    })
    .await;
    // Pause delivery so that both files' changes wait together: supersession then keeps only newest versions.
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 10_000, 71, None));
    let (s1, truth1) = t.generate(gen_args(&t.path("s1.TXT"), 10_000, 72, Some(&s0)));
    t.ingest(&s0, "E_0000.TXT").await;
    t.wait_delivered().await;
    t.ingest(&s1, "E_0030.TXT").await;
    t.wait_delivered().await;
    let received = api.received();
    let got: BTreeSet<([String; 2], String)> = received
        .changes
        .iter()
        .map(|c| ([c.key[0].clone(), c.key[1].clone()], c.kind.clone()))
        .collect();
    let want: BTreeSet<_> = expected_events(&truth0)
        .into_iter()
        .chain(expected_events(&truth1))
        .collect();
    assert_eq!(got, want);
    assert_eq!(received.changes.len(), want.len());
    assert_eq!(
        received.changes_applied_twice(),
        0,
        "a change went out under two idempotency keys"
    );
}
