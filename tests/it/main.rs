//! sluice's integration tests: one binary, one module per area, all on the fixture in `harness`.

mod actors;
mod admin;
mod app;
mod backpressure;
mod bad_input;
mod delivery;
mod embedded;
mod faults;
mod harness;
mod ingest;
mod memory;
mod migrations;
mod operate;
mod phi;
mod prometheus;
mod service;
mod sinks;
mod supervision;
