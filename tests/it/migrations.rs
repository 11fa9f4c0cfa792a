//! Migrations: applied exactly once however many instances start at the same time.

use crate::harness::{empty_db, test_db};
use sluice::db::{migrate, MIGRATIONS};

const TABLES: [&str; 7] = [
    "files",
    "record_state",
    "events",
    "deliveries",
    "delivery_attempts",
    "rejects",
    "conflicts",
];

#[actix_rt::test]
async fn two_migrators_at_once_both_succeed() {
    let db = empty_db().await;
    let (mut first, mut second) = (db.client().await, db.client().await);

    let (a, b) = tokio::join!(migrate(&mut first), migrate(&mut second));

    let (a, b) = (a.expect("first migrator"), b.expect("second migrator"));
    assert_eq!(
        a + b,
        MIGRATIONS.len(),
        "each migration is applied by exactly one of them"
    );
    let versions: Vec<i32> = first
        .query(
            "SELECT version FROM sluice_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = MIGRATIONS.iter().map(|(version, _, _)| *version).collect();
    assert_eq!(versions, expected);
    assert_tables_exist(&first).await;
}

#[actix_rt::test]
async fn migrate_is_idempotent() {
    let db = empty_db().await;
    let mut client = db.client().await;

    assert_eq!(migrate(&mut client).await.unwrap(), MIGRATIONS.len());
    assert_eq!(migrate(&mut client).await.unwrap(), 0);
    assert_tables_exist(&client).await;
}

#[tokio::test]
async fn a_test_database_starts_fully_migrated_and_empty() {
    let db = test_db().await;
    let mut client = db.client().await;

    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, db.name);
    assert_eq!(
        migrate(&mut client).await.unwrap(),
        0,
        "the template holds every migration"
    );
    assert_tables_exist(&client).await;
    let events: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0);
}

async fn assert_tables_exist(client: &tokio_postgres::Client) {
    let present: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in TABLES {
        assert!(
            present.iter().any(|t| t == table),
            "table {table} missing; present: {present:?}"
        );
    }
}

/// A database at schema version 2 (events with `text[]` payloads, outbox rows by event uuid).
async fn at_version_2(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TABLE sluice_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= 2) {
        c.batch_execute(sql).await.unwrap();
        c.execute(
            "INSERT INTO sluice_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .unwrap();
    }
    c.batch_execute(
        r#"INSERT INTO files (id, source, name, sha256, size, status, columns, key_columns)
                VALUES (1, 'eclrs', 'f', '', 0, 'done', '{A,B,C}', '{A,B}');
           INSERT INTO events (id, source, key_hash, key, version, kind, row_hash, payload, file_id) VALUES
                ('00000000-0000-0000-0000-00000000000a', 'eclrs', 1, '{k,1}', 1, 'new', '\x01',
                 ARRAY['k', '1', 'say "hi" \ é'], 1),
                ('00000000-0000-0000-0000-00000000000b', 'eclrs', 2, '{k,2}', 2, 'removed', '\x02', NULL, 1);
           INSERT INTO deliveries (event_id, sink, source, key_hash, version, idempotency_key) VALUES
                ('00000000-0000-0000-0000-00000000000a', 'hook', 'eclrs', 1, 1, '00000000-0000-0000-0000-00000000000a'),
                ('00000000-0000-0000-0000-00000000000b', 'hook', 'eclrs', 2, 2, '00000000-0000-0000-0000-00000000000b');"#,
    )
    .await
    .unwrap();
}

#[actix_rt::test]
async fn migration_3_keeps_existing_events_and_their_outbox_rows() {
    let db = empty_db().await;
    let mut c = db.client().await;
    at_version_2(&c).await;

    assert_eq!(migrate(&mut c).await.unwrap(), MIGRATIONS.len() - 2);

    // Payloads become JSON arrays of the same values; a removed event keeps none.
    let rows = c
        .query("SELECT id::text, payload FROM events ORDER BY id", &[])
        .await
        .unwrap();
    let payload: Option<&str> = rows[0].get(1);
    let values: Vec<String> = serde_json::from_str(payload.unwrap()).unwrap();
    assert_eq!(values, ["k", "1", "say \"hi\" \\ é"]);
    assert_eq!(rows[1].get::<_, Option<&str>>(1), None);
    // Every outbox row points at its own event by seq.
    let unmatched = c
        .query_one(
            "SELECT count(*) FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq
              WHERE e.id IS DISTINCT FROM d.event_id",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(unmatched, 0);
    // The history view still pairs names and values.
    let record: serde_json::Value = c
        .query_one("SELECT record FROM event_records WHERE kind = 'new'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(record["C"], "say \"hi\" \\ é");
}

#[actix_rt::test]
async fn migration_3_refuses_outbox_rows_without_their_event_and_changes_nothing() {
    let db = empty_db().await;
    let mut c = db.client().await;
    at_version_2(&c).await;
    c.batch_execute("DELETE FROM events WHERE kind = 'removed'")
        .await
        .unwrap();

    let err = migrate(&mut c).await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(chain.contains("have no event"), "{chain}");
    let version: i32 = c
        .query_one("SELECT max(version) FROM sluice_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    let payload_type: String = c
        .query_one(
            "SELECT data_type FROM information_schema.columns
              WHERE table_name = 'events' AND column_name = 'payload'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        payload_type, "ARRAY",
        "the failed migration was rolled back"
    );
}
