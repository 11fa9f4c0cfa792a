-- sluice schema, version 1. Forward-only: a later change is a new file, never an edit of this one.
--
-- No foreign keys on the bulk tables (events, deliveries, delivery_attempts, rejects, conflicts): the
-- EventLogWriter and the delivery actors write a row and what it refers to in one transaction, and per-row
-- referential-integrity triggers would cost more than the whole rest of a first load. (They would also not
-- distribute on Citus, SPEC §10.) The `*_id` columns are indexed where they are looked up.

-- The file ledger: every file a source ever saw, and what became of each of its rows.
CREATE TABLE files (
    id              bigserial PRIMARY KEY,
    source          text        NOT NULL,
    name            text        NOT NULL,
    sha256          text        NOT NULL,
    size            bigint      NOT NULL,
    status          text        NOT NULL CHECK (status IN
                        ('pending', 'processing', 'done', 'failed', 'duplicate_file', 'superseded')),
    header_version  text,
    -- Canonical column names of the file's profile: the names of `events.payload`'s elements.
    columns         text[],
    -- Names of the record key's columns (a subset of columns, in key order).
    key_columns     text[],
    rows            bigint      NOT NULL DEFAULT 0,
    new             bigint      NOT NULL DEFAULT 0,
    changed         bigint      NOT NULL DEFAULT 0,
    unchanged       bigint      NOT NULL DEFAULT 0,
    duplicate       bigint      NOT NULL DEFAULT 0,
    conflict        bigint      NOT NULL DEFAULT 0,
    rejected        bigint      NOT NULL DEFAULT 0,
    removed         bigint      NOT NULL DEFAULT 0,
    events_written  bigint      NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    reason          text,
    discovered_at   timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    duration_ms     bigint
);
CREATE INDEX files_source_sha ON files (source, sha256);
CREATE INDEX files_status ON files (status) WHERE status IN ('pending', 'processing');

-- Committed state per record: what dedupe compares each snapshot's rows with. Rebuilt into memory at start.
CREATE TABLE record_state (
    source      text        NOT NULL,
    key_hash    bigint      NOT NULL,
    key         text[]      NOT NULL,
    row_hash    bytea       NOT NULL,
    version     integer     NOT NULL,
    removed     boolean     NOT NULL DEFAULT false,
    last_event  uuid        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, key_hash)
);

-- The event log: append-only history of every change of every record.
CREATE TABLE events (
    id          uuid        PRIMARY KEY,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    source      text        NOT NULL,
    key_hash    bigint      NOT NULL,
    key         text[]      NOT NULL,
    version     integer     NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('new', 'changed', 'removed')),
    row_hash    bytea       NOT NULL,
    -- The record's canonical field values, named by files.columns of file_id. NULL for `removed`.
    payload     text[],
    file_id     bigint      NOT NULL,
    line        bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- One event per version per key: a second emission of the same change cannot commit.
    UNIQUE (source, key_hash, version)
);
CREATE INDEX events_file ON events (file_id);

-- The outbox: one row per event per sink, with its delivery state machine.
CREATE TABLE deliveries (
    id               bigserial   PRIMARY KEY,
    event_id         uuid        NOT NULL,
    sink             text        NOT NULL,
    source           text        NOT NULL,
    key_hash         bigint      NOT NULL,
    version          integer     NOT NULL,
    state            text        NOT NULL DEFAULT 'available' CHECK (state IN
                         ('available', 'executing', 'completed', 'retryable', 'dead', 'superseded', 'cancelled',
                          'ignored')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    idempotency_key  uuid        NOT NULL,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);
CREATE INDEX deliveries_ready ON deliveries (sink, next_attempt_at, id) WHERE state IN ('available', 'retryable');
CREATE INDEX deliveries_key ON deliveries (sink, source, key_hash, version);
CREATE INDEX deliveries_state ON deliveries (state, sink);
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'executing';

-- Audit: every delivery attempt and its answer (never the request body; no PHI).
CREATE TABLE delivery_attempts (
    id                bigserial   PRIMARY KEY,
    delivery_id       bigint      NOT NULL,
    attempt           integer     NOT NULL,
    lease_owner       text        NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       integer     NOT NULL,
    status_code       integer,
    outcome           text        NOT NULL,
    error             text,
    response_excerpt  text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- Rows that could not be parsed or validated, with their line and named reason.
CREATE TABLE rejects (
    id       bigserial PRIMARY KEY,
    file_id  bigint    NOT NULL,
    line     bigint    NOT NULL,
    reason   text      NOT NULL,
    raw      bytea     NOT NULL
);
CREATE INDEX rejects_file ON rejects (file_id);

-- Rows that lost a conflict (same key, other content, same snapshot) to the row that became the record.
CREATE TABLE conflicts (
    id        bigserial PRIMARY KEY,
    file_id   bigint    NOT NULL,
    line      bigint    NOT NULL,
    key_hash  bigint    NOT NULL,
    raw       bytea     NOT NULL
);
CREATE INDEX conflicts_file ON conflicts (file_id);

-- The event log as JSON records, for people reading the history with SQL.
CREATE VIEW event_records AS
SELECT e.id, e.seq, e.source, e.key, e.version, e.kind, e.file_id, e.line, e.created_at,
       (SELECT jsonb_object_agg(c.name, c.value)
          FROM unnest(f.columns, e.payload) AS c(name, value)) AS record
  FROM events e
  JOIN files f ON f.id = e.file_id;
