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
