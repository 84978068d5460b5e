-- Placement: resource providers, their inventories, traits and aggregates,
-- consumers and their allocations. Standard resource classes and traits live
-- in code (scheduler crate); only the custom ones (CUSTOM_*) are rows here.

CREATE TABLE resource_providers (
    uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- Bumped on every change to the provider, its inventory, traits,
    -- aggregates or allocations; writers send the generation they saw.
    generation BIGINT NOT NULL,
    parent_provider_uuid TEXT REFERENCES resource_providers (uuid),
    root_provider_uuid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX resource_providers_root ON resource_providers (root_provider_uuid);

CREATE TABLE resource_classes (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE inventories (
    provider_uuid TEXT NOT NULL REFERENCES resource_providers (uuid) ON DELETE CASCADE,
    resource_class TEXT NOT NULL,
    total BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    min_unit BIGINT NOT NULL,
    max_unit BIGINT NOT NULL,
    step_size BIGINT NOT NULL,
    allocation_ratio DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider_uuid, resource_class)
);
CREATE INDEX inventories_class ON inventories (resource_class);

CREATE TABLE placement_consumers (
    uuid TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX placement_consumers_project ON placement_consumers (project_id, user_id);

CREATE TABLE allocations (
    consumer_uuid TEXT NOT NULL,
    provider_uuid TEXT NOT NULL REFERENCES resource_providers (uuid),
    resource_class TEXT NOT NULL,
    used BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (consumer_uuid, provider_uuid, resource_class)
);
CREATE INDEX allocations_provider ON allocations (provider_uuid, resource_class);

CREATE TABLE traits (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE resource_provider_traits (
    provider_uuid TEXT NOT NULL REFERENCES resource_providers (uuid) ON DELETE CASCADE,
    trait TEXT NOT NULL,
    PRIMARY KEY (provider_uuid, trait)
);
CREATE INDEX resource_provider_traits_trait ON resource_provider_traits (trait);

CREATE TABLE resource_provider_aggregates (
    provider_uuid TEXT NOT NULL REFERENCES resource_providers (uuid) ON DELETE CASCADE,
    aggregate_uuid TEXT NOT NULL,
    PRIMARY KEY (provider_uuid, aggregate_uuid)
);
CREATE INDEX resource_provider_aggregates_agg ON resource_provider_aggregates (aggregate_uuid);
