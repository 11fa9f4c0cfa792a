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
    /// A stored value that does not decode (its content is never quoted: it may hold PHI).
    #[error("malformed {0} in the database")]
    Malformed(&'static str),
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

/// Errors inside the ingest pipeline. Any of them aborts the snapshot in flight; its file is retried with the
/// dedupe state rebuilt from committed `record_state` (SPEC §2 invariant).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the {0} mailbox is closed (its actor stopped)")]
    Closed(&'static str),
    #[error("a parser task failed: {0}")]
    Parser(String),
    #[error("the pipeline is shutting down")]
    Shutdown,
    #[error("work of a snapshot attempt that a restart cut short")]
    Stale,
    /// Changes that `record_state` refused (their key is already at that version or past it): the shard's memory
    /// and the database disagree. The snapshot is retried after the state is reloaded.
    #[error("record_state refused changes: {0}")]
    StateConflict(String),
}

impl PipelineError {
    /// Whether retrying the same work later may succeed (PostgreSQL away, an actor restarting) as opposed to a
    /// problem with the file itself.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PipelineError::File(_))
    }
}
