//! An embedded PostgreSQL cluster started from the system's binaries.
