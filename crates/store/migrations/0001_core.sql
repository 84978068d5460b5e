-- Core tables shared by every role.

-- Persisted sagas: one row per multi-step workflow (see conductor::saga).
CREATE TABLE sagas (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    -- The resource the saga works on (e.g. a server id), for lookups.
    target_id TEXT NOT NULL,
    -- running | unwinding | done | failed
    state TEXT NOT NULL,
    -- Index of the next step to run (running) or undo (unwinding).
    step BIGINT NOT NULL,
    params TEXT NOT NULL,
    -- Outputs of finished steps, a JSON object, so a replay reuses them.
    outputs TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX sagas_state ON sagas (state);
CREATE INDEX sagas_target ON sagas (target_id);

-- Hypervisor hosts (one per agent).
CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    virt_type TEXT NOT NULL,
    -- JSON: what the agent reported (vcpus, memory, disk, accel, warnings).
    facts TEXT NOT NULL,
    status TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Secrets generated on first start (token signing keys), shared by every
-- controller through the store.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One row per project, locked while a quota-checked create counts usage.
CREATE TABLE quota_locks (
    project_id TEXT PRIMARY KEY
);

-- Reconciler reports, for admins.
CREATE TABLE reconciler_runs (
    name TEXT PRIMARY KEY,
    last_run_at TEXT NOT NULL,
    ok BIGINT NOT NULL,
    summary TEXT NOT NULL
);
