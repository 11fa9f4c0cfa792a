//! sluice turns full-snapshot lab-result exports into a durable, delivered stream of changes.
//! (Module tour is completed as the pipeline lands.)

pub mod db;
pub mod error;
pub mod gen;
pub mod parse;
