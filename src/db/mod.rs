//! PostgreSQL access: the connection pool, migrations and the embedded cluster.

pub mod copy;
pub mod embedded;
mod migrate;

pub use migrate::{migrate, MIGRATIONS};

use crate::error::DbError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;

/// Builds a connection pool for `url` (a `postgres://` URL or a libpq key=value string).
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let pg = tokio_postgres::Config::from_str(url).map_err(DbError::BadUrl)?;
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Opens one connection outside any pool and drives it on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(DbError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}
