-- Glance: image records, their extra properties, tags and members.
-- Image ids are hyphenated UUIDs; owner and member ids are Keystone project
-- ids. The image data itself lives in files of the image store directory
-- (see docs/design/0004-image-store.md), never in the database.

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT,
    owner TEXT,
    -- queued | saving | active | killed | deactivated
    status TEXT NOT NULL,
    -- public | private | shared | community
    visibility TEXT NOT NULL,
    protected BIGINT NOT NULL,
    os_hidden BIGINT NOT NULL,
    disk_format TEXT,
    container_format TEXT,
    min_disk BIGINT NOT NULL,
    min_ram BIGINT NOT NULL,
    size BIGINT,
    virtual_size BIGINT,
    checksum TEXT,
    os_hash_algo TEXT,
    os_hash_value TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX images_owner ON images (owner);
CREATE INDEX images_visibility ON images (visibility);

-- Extra properties (hw_machine_type, os_type, …): string values, one row
-- each so list filters on them stay in SQL.
CREATE TABLE image_properties (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);
CREATE INDEX image_tags_tag ON image_tags (tag);

-- Projects a `shared` image is offered to; status pending | accepted | rejected.
CREATE TABLE image_members (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (image_id, member_id)
);
CREATE INDEX image_members_member ON image_members (member_id);
