//! Every error type of sluice, in one place. Messages carry context; causes stay in `#[source]`. No message ever
//! holds a field value of a record: PHI never reaches an error.

use std::path::PathBuf;

/// Errors talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url")]
    BadUrl(#[source] tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL")]
    Connect(#[source] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("PostgreSQL failed while {context}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("embedded PostgreSQL: {0}")]
    Embedded(String),
}

impl DbError {
    pub fn query(context: &'static str, source: tokio_postgres::Error) -> Self {
        DbError::Query { context, source }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

/// Errors reading a snapshot file as a whole (row-level problems are rejects, not errors).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
