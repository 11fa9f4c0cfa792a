-- sluice schema, version 2: operator settings of a sink that outlive a restart.
--
-- A sink paused through the admin API stays paused when its instance restarts (or another instance starts on the
-- same database) until an operator resumes it. Each DeliveryActor reads its row before its first claim.
CREATE TABLE sink_controls (
    sink        text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
