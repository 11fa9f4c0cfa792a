//! Ingest end to end: snapshots in, events, state, outbox and ledger out (SPEC §2–§4).

use crate::app::{assert_ledger, expected_events, gen_args, spawn_app, Options};
use std::collections::BTreeSet;
use std::time::Duration;

#[actix_rt::test]
async fn the_basic_sequence_commits_exactly_the_ground_truth() {
    let t = spawn_app(Options::default()).await;
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 20_000, 11, None));
    let (s1, truth1) = t.generate(gen_args(&t.path("s1.TXT"), 20_000, 12, Some(&s0)));
    assert!(truth1.counts.changed > 0 && truth1.counts.new > 0 && truth1.counts.removed > 0);
    assert!(
        truth1.counts.duplicate > 0 && truth1.counts.conflict > 0 && truth1.counts.rejected > 0
    );

    let f0 = t.ingest(&s0, "ECLRS_0000.TXT").await;
    assert_ledger(&f0, &truth0);
    assert_eq!(t.events_of(f0.id).await, expected_events(&truth0));

    let f1 = t.ingest(&s1, "ECLRS_0030.TXT").await;
    assert_ledger(&f1, &truth1);
    assert_eq!(t.events_of(f1.id).await, expected_events(&truth1));

    // Every reject is stored with its line and named reason; every conflict loser with its line.
    let c = t.db.client().await;
    let rejects: BTreeSet<(i64, String)> = c
        .query(
            "SELECT line, reason FROM rejects WHERE file_id = $1",
            &[&f1.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: BTreeSet<(i64, String)> = truth1
        .rejected
        .iter()
        .map(|(l, r)| (*l as i64, r.clone()))
        .collect();
    assert_eq!(rejects, expected);
    let conflicts: BTreeSet<i64> = c
        .query("SELECT line FROM conflicts WHERE file_id = $1", &[&f1.id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        conflicts,
        truth1.conflict_lines.iter().map(|l| *l as i64).collect()
    );

    // State: one row per live key; versions bumped for changed keys.
    let changed = truth1.changed.len() as i64;
    assert_eq!(
        t.count("SELECT count(*) FROM record_state WHERE version = 2")
            .await,
        changed
    );
    assert_eq!(
        t.count("SELECT count(*) FROM record_state").await,
        (truth0.counts.new + truth1.counts.new) as i64
    );

    // Every event is delivered to the file sink once, unless a newer version of its key superseded it first.
    let events = t.count("SELECT count(*) FROM events").await;
    let completed = t.wait_delivered().await;
    let superseded = t
        .count("SELECT count(*) FROM deliveries WHERE state = 'superseded'")
        .await;
    assert_eq!(completed + superseded, events);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM deliveries d JOIN record_state s ON s.key_hash = d.key_hash
              WHERE d.version = s.version AND d.state = 'completed'"
        )
        .await,
        t.count("SELECT count(*) FROM record_state").await,
        "the newest version of every record was delivered"
    );
    let mut lines = 0;
    let mut keys = BTreeSet::new();
    for f in std::fs::read_dir(&t.out).unwrap() {
        for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["idempotency_key"], v["event_id"]);
            keys.insert(v["idempotency_key"].as_str().unwrap().to_string());
            lines += 1;
        }
    }
    assert_eq!(lines, completed);
    assert_eq!(
        keys.len() as i64,
        completed,
        "no change under two idempotency keys"
    );
    // Both files were archived.
    assert!(t.archive.join("ECLRS_0000.TXT").exists() && t.archive.join("ECLRS_0030.TXT").exists());
}

#[actix_rt::test]
async fn repeats_and_reordering_emit_nothing() {
    let t = spawn_app(Options::default()).await;
    let (s0, _) = t.generate(gen_args(&t.path("s0.TXT"), 5_000, 21, None));
    let (s1, truth1) = t.generate(gen_args(&t.path("s1.TXT"), 5_000, 22, Some(&s0)));
    let mut shuffled_args = gen_args(&t.path("s1-shuffled.TXT"), 5_000, 22, Some(&s0));
    shuffled_args.shuffle = true;
    let (s1_shuffled, truth_shuffled) = t.generate(shuffled_args);
    assert_eq!(truth_shuffled.counts, truth1.counts);
    assert_ne!(
        std::fs::read(&s1).unwrap(),
        std::fs::read(&s1_shuffled).unwrap()
    );

    t.ingest(&s0, "A_0000.TXT").await;
    let f1 = t.ingest(&s1, "A_0030.TXT").await;
    assert_ledger(&f1, &truth1);
    let events = t.count("SELECT count(*) FROM events").await;

    let again = t.ingest(&s1, "A_0030.TXT").await;
    assert_eq!(again.status, "duplicate_file");
    let renamed = t.ingest(&s1, "A_0100.TXT").await;
    assert_eq!(renamed.status, "duplicate_file");
    let shuffled = t.ingest(&s1_shuffled, "A_0130.TXT").await;
    assert_eq!(shuffled.status, "done");
    assert_eq!((shuffled.new, shuffled.changed), (0, 0), "{shuffled:?}");
    assert_eq!(shuffled.duplicate, truth1.counts.duplicate as i64);
    assert_eq!(shuffled.conflict, truth1.counts.conflict as i64);
    assert_eq!(t.count("SELECT count(*) FROM events").await, events);
}

#[actix_rt::test]
async fn a_shuffled_snapshot_emits_the_same_events() {
    let a = spawn_app(Options::default()).await;
    let b = spawn_app(Options::default()).await;
    let (s0, _) = a.generate(gen_args(&a.path("s0.TXT"), 5_000, 31, None));
    let (s1, _) = a.generate(gen_args(&a.path("s1.TXT"), 5_000, 32, Some(&s0)));
    let mut shuffled = gen_args(&a.path("s1-shuffled.TXT"), 5_000, 32, Some(&s0));
    shuffled.shuffle = true;
    let (s1_shuffled, _) = a.generate(shuffled);

    a.ingest(&s0, "S_0000.TXT").await;
    a.ingest(&s1, "S_0030.TXT").await;
    b.ingest(&s0, "S_0000.TXT").await;
    b.ingest(&s1_shuffled, "S_0030.TXT").await;
    let (ea, eb) = (a.all_events().await, b.all_events().await);
    assert!(!ea.is_empty());
    assert_eq!(ea, eb);
}

/// The same data under an older header: v1/v2 rows are padded to the v3 layout, so nothing looks changed.
#[actix_rt::test]
async fn older_headers_of_the_same_data_emit_nothing() {
    let t = spawn_app(Options::default()).await;
    let mut v1 = gen_args(&t.path("v1.TXT"), 3_000, 41, None);
    v1.header = "v1".into();
    v1.malformed = 0.0;
    v1.duplicate = 0.0;
    v1.conflict = 0.0;
    let (v1_path, truth) = t.generate(v1);
    let v3_path = t.path("v3.TXT");
    let v2_path = t.path("v2.TXT");
    reheader(
        &v1_path,
        &v3_path,
        sluice::parse::columns::HeaderVersion::V3,
    );
    reheader(
        &v1_path,
        &v2_path,
        sluice::parse::columns::HeaderVersion::V2,
    );

    let f3 = t.ingest(&v3_path, "H_0000.TXT").await;
    assert_eq!(f3.new, truth.counts.new as i64);
    let events = t.count("SELECT count(*) FROM events").await;
    for (path, name) in [(&v1_path, "H_0030.TXT"), (&v2_path, "H_0100.TXT")] {
        let f = t.ingest(path, name).await;
        assert_eq!(f.status, "done");
        assert_eq!(
            (f.new, f.changed, f.unchanged),
            (0, 0, truth.counts.new as i64),
            "{name}"
        );
    }
    assert_eq!(t.count("SELECT count(*) FROM events").await, events);
}

/// Rewrites a v1 file under another header version: empty fields inserted before RESULTPOSITIVE.
fn reheader(
    src: &std::path::Path,
    dst: &std::path::Path,
    to: sluice::parse::columns::HeaderVersion,
) {
    let text = std::fs::read_to_string(src).unwrap();
    let pad = "|".repeat(to.len() - sluice::parse::columns::V1_LEN);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(&to.columns().join("|"));
        } else {
            let cut = line.rfind('|').unwrap();
            out.push_str(&line[..cut]);
            out.push_str(&pad);
            out.push_str(&line[cut..]);
        }
        out.push('\n');
    }
    std::fs::write(dst, out).unwrap();
}

#[actix_rt::test]
async fn a_restart_mid_snapshot_completes_it_without_losing_or_doubling() {
    let _faults = crate::app::FAULTS.lock().await;
    let mut t = spawn_app(Options {
        writer_batch: 200,
        ..Options::default()
    })
    .await;
    let (s0, truth0) = t.generate(gen_args(&t.path("s0.TXT"), 20_000, 51, None));
    sluice::faults::set_writer_delay(Duration::from_millis(20));
    t.drop_file(&s0, "R_0000.TXT");
    // Wait until some batches are committed, then stop everything mid-snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let written = t
            .count("SELECT coalesce(max(events_written), 0) FROM files WHERE status = 'processing'")
            .await;
        if written >= 1_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no batch committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.stop().await;
    sluice::faults::set_writer_delay(Duration::ZERO);
    let partial = t.count("SELECT count(*) FROM events").await;
    assert!(
        partial > 0 && partial < truth0.counts.new as i64,
        "stopped mid-snapshot: {partial}"
    );

    t.restart().await;
    let f = t.wait_file("R_0000.TXT").await;
    assert_ledger(&f, &truth0);
    assert_eq!(t.events_of(f.id).await, expected_events(&truth0));
    assert_eq!(
        t.count("SELECT count(*) FROM events").await,
        truth0.counts.new as i64
    );
}

/// A record that leaves the window is counted removed once, not again in every later snapshot; back unchanged, it
/// is unchanged (downstream never heard of its removal, so nothing is sent).
#[actix_rt::test]
async fn removed_records_are_counted_once_and_come_back_silently() {
    let t = spawn_app(Options::default()).await;
    let a = t
        .ingest_rows("X_0000.TXT", 10_000_000_000_000, 3, "Detected")
        .await;
    assert_eq!((a.new, a.removed), (3, 0));
    let b = t
        .ingest_rows("X_0030.TXT", 10_000_000_000_000, 1, "Detected")
        .await;
    assert_eq!((b.unchanged, b.removed), (1, 2));
    // The same single record again (a trailing empty line makes it another file, not a duplicate file).
    let path = t.path("x.TXT");
    crate::app::write_eclrs(
        &path,
        &[crate::app::eclrs_row("10000000000000", "ACC-0", "Detected")],
    );
    std::fs::write(
        &path,
        [std::fs::read(&path).unwrap(), b"\n".to_vec()].concat(),
    )
    .unwrap();
    let c = t.ingest(&path, "X_0100.TXT").await;
    assert_eq!(
        (c.status.as_str(), c.unchanged, c.removed),
        ("done", 1, 0),
        "already counted"
    );
    let d = t
        .ingest_rows("X_0130.TXT", 10_000_000_000_000, 3, "Detected")
        .await;
    assert_eq!(
        (d.new, d.changed, d.unchanged, d.removed),
        (0, 0, 3, 0),
        "{d:?}"
    );
    assert_eq!(t.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        t.count("SELECT count(*) FROM record_state WHERE removed")
            .await,
        0
    );
}

#[actix_rt::test]
async fn a_chain_of_snapshots_matches_each_ground_truth() {
    let t = spawn_app(Options::default()).await;
    let mut prev: Option<std::path::PathBuf> = None;
    for (i, seed) in [91u64, 92, 93].iter().enumerate() {
        let (path, truth) = t.generate(gen_args(
            &t.path(&format!("c{i}.TXT")),
            4_000,
            *seed,
            prev.as_deref(),
        ));
        let f = t.ingest(&path, &format!("C_{i:04}.TXT")).await;
        assert_ledger(&f, &truth);
        assert_eq!(t.events_of(f.id).await, expected_events(&truth));
        prev = Some(path);
    }
}
