-- Keystone: domains, projects, users, groups, roles, assignments, token
-- revocations and the service catalog. IDs are Keystone's 32-hex strings
-- (domains may have readable ids such as `default`).

CREATE TABLE identity_domains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    -- JSON object of attributes Keystone keeps but OxiStack does not interpret.
    extra TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE identity_projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES identity_domains (id),
    -- The parent project; for a top-level project, its domain (as Keystone).
    parent_id TEXT,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    extra TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (domain_id, name)
);
CREATE INDEX identity_projects_parent ON identity_projects (parent_id);

CREATE TABLE identity_users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES identity_domains (id),
    enabled BIGINT NOT NULL,
    -- argon2id PHC string; NULL for a user without a password.
    password_hash TEXT,
    default_project_id TEXT,
    -- JSON object: email, description and any other attribute given.
    extra TEXT NOT NULL,
    password_changed_at TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE identity_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES identity_domains (id),
    description TEXT NOT NULL,
    extra TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE identity_group_members (
    group_id TEXT NOT NULL REFERENCES identity_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES identity_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX identity_group_members_user ON identity_group_members (user_id);

-- Global roles (Keystone's domain-specific roles are not supported).
CREATE TABLE identity_roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    extra TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE identity_implied_roles (
    prior_role_id TEXT NOT NULL REFERENCES identity_roles (id) ON DELETE CASCADE,
    implied_role_id TEXT NOT NULL REFERENCES identity_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

-- actor_type: user | group; target_type: project | domain.
CREATE TABLE identity_assignments (
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    role_id TEXT NOT NULL REFERENCES identity_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (actor_id, target_id, role_id)
);
CREATE INDEX identity_assignments_target ON identity_assignments (target_id);
CREATE INDEX identity_assignments_role ON identity_assignments (role_id);

-- Revoked tokens: one audit id, or every token of a user issued at or
-- before `issued_before`.
CREATE TABLE identity_revocations (
    id TEXT PRIMARY KEY,
    audit_id TEXT,
    user_id TEXT,
    issued_before TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX identity_revocations_audit ON identity_revocations (audit_id);
CREATE INDEX identity_revocations_user ON identity_revocations (user_id);

CREATE TABLE identity_regions (
    id TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    parent_region_id TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE identity_services (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE identity_endpoints (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES identity_services (id) ON DELETE CASCADE,
    interface TEXT NOT NULL,
    region_id TEXT,
    url TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX identity_endpoints_service ON identity_endpoints (service_id);
