//! sluice turns full-snapshot lab-result exports into a durable, delivered stream of changes.
//!
//! A tour in the order data flows (SPEC §2):
//!
//! 1. [`watcher`] — a `FileWatcher` per source finds complete snapshots in its inbox (filesystem events plus a
//!    periodic rescan), records them in the [`ledger`] and hands them on, one at a time.
//! 2. [`parser_pool`] — the `ParserPool` streams the file once (SHA-256 on the way), parses chunks of whole lines
//!    on blocking threads with the source's [`parse`] profile, and routes rows to the shards that own their keys.
//! 3. [`dedupe`] — `DedupeShard`s hold the committed state `key → (row hash, version)` in a compact sorted map and
//!    classify every row: new, changed, unchanged, duplicate or conflict. At the end-of-snapshot barrier they settle
//!    conflicts order-independently and emit the changes.
//! 4. [`writer`] — the `EventLogWriter` appends events, upserts `record_state` and fills the outbox, one
//!    transaction per batch, and acknowledges only after commit.
//! 5. [`delivery`] — `DeliveryActor`s claim outbox rows under leases and deliver them through [`sinks`].
//!
//! Around them: [`mailbox`] (bounded mailboxes: back-pressure on every data edge), [`snapshot`] (what the stages
//! say to each other about a file), [`db`] (pool, migrations, embedded PostgreSQL), [`config`], [`app`] (start-up),
//! [`admin`] (health endpoints, the database probe behind readiness, `/metrics` and the JSON API), [`status`]
//! (`sluice status`), [`supervisor`] (the supervision tree), [`metrics`] (every metric: names, labels, buckets, the
//! recorder), [`gen`] (synthetic data) and [`demo`].

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod dedupe;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod fake_api;
pub mod faults;
pub mod gen;
pub mod ledger;
pub mod mailbox;
pub mod metrics;
pub mod parse;
pub mod parser_pool;
pub mod sinks;
pub mod snapshot;
pub mod status;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod watcher;
pub mod writer;
