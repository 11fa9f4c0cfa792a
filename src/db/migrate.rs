//! Forward-only migrations from `migrations/`, applied under a PostgreSQL advisory lock so that several
//! instances starting at once apply each migration exactly once.

use crate::error::DbError;

/// The migrations compiled into the binary: (version, name, SQL). Append only.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "sink_controls",
        include_str!("../../migrations/0002_sink_controls.sql"),
    ),
    (
        3,
        "lean_write_path",
        include_str!("../../migrations/0003_lean_write_path.sql"),
    ),
];

/// Advisory lock key shared by every sluice instance (the ASCII bytes of "sluice:m").
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_3a6d;

/// Applies every migration the database lacks. Safe to call concurrently from many processes.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<usize, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| DbError::query("taking the migration lock", e))?;
    let result = apply_pending(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| DbError::query("releasing the migration lock", e));
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_pending(client: &mut tokio_postgres::Client) -> Result<usize, DbError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS sluice_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| DbError::query("creating sluice_migrations", e))?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM sluice_migrations",
            &[],
        )
        .await
        .map_err(|e| DbError::query("reading the schema version", e))?
        .get(0);
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        let tx = client
            .transaction()
            .await
            .map_err(|e| DbError::query("opening a migration transaction", e))?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| DbError::Migration {
                version: *version,
                name,
                source: e,
            })?;
        tx.execute(
            "INSERT INTO sluice_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| DbError::query("recording a migration", e))?;
        tx.commit().await.map_err(|e| DbError::Migration {
            version: *version,
            name,
            source: e,
        })?;
        tracing::info!(version, name, "applied migration");
        applied += 1;
    }
    Ok(applied)
}
