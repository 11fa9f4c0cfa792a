//! sluice's integration tests: one binary, one module per area, all on the fixture in `harness`.

mod app;
mod backpressure;
mod bad_input;
mod delivery;
mod embedded;
mod harness;
mod ingest;
mod migrations;
mod operate;
mod prometheus;
mod sinks;
