-- Compute (Nova): flavors, keypairs, servers, quotas.

CREATE TABLE flavors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vcpus BIGINT NOT NULL,
    ram_mb BIGINT NOT NULL,
    disk_gb BIGINT NOT NULL,
    ephemeral_gb BIGINT NOT NULL,
    swap_mb BIGINT NOT NULL,
    rxtx_factor DOUBLE PRECISION NOT NULL,
    is_public BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE flavor_extra_specs (
    flavor_id TEXT NOT NULL REFERENCES flavors (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (flavor_id, key)
);

CREATE TABLE flavor_projects (
    flavor_id TEXT NOT NULL REFERENCES flavors (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);

CREATE TABLE keypairs (
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    description TEXT,
    image_id TEXT NOT NULL,
    -- The flavor as it was at boot (Nova embeds it; the flavor may be deleted).
    flavor_id TEXT NOT NULL,
    flavor TEXT NOT NULL,
    key_name TEXT,
    key_data TEXT,
    user_data TEXT,
    config_drive BIGINT NOT NULL,
    -- The requested networks (JSON): "none", "auto" or a list.
    requested_networks TEXT NOT NULL,
    availability_zone TEXT,
    host TEXT,
    node TEXT,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    power_state BIGINT NOT NULL,
    access_ipv4 TEXT NOT NULL,
    access_ipv6 TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    launch_index BIGINT NOT NULL,
    locked BIGINT NOT NULL,
    -- Bumped on every state change; updates are conditional on it.
    generation BIGINT NOT NULL,
    launched_at TEXT,
    terminated_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    -- Nova's soft-delete flag: 0 while the server exists.
    deleted BIGINT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id, deleted);
CREATE INDEX servers_created ON servers (created_at, id);
CREATE INDEX servers_host ON servers (host);

CREATE TABLE server_metadata (
    server_id TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (server_id, key)
);

CREATE TABLE server_faults (
    server_id TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    code BIGINT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX server_faults_server ON server_faults (server_id, created_at);

-- Per-project quota overrides; absent rows take the configured default.
CREATE TABLE compute_quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE server_tags (
    server_id TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (server_id, tag)
);
