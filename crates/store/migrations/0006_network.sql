-- Neutron: networks, subnets, ports and their fixed IPs, security groups
-- and rules, routers, floating IPs, per-project network quotas.
-- Lists (DNS servers, pools, routes, address pairs) are JSON TEXT.

CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    admin_state_up BIGINT NOT NULL,
    shared BIGINT NOT NULL,
    external BIGINT NOT NULL,
    -- flat | vxlan
    network_type TEXT NOT NULL,
    physical_network TEXT,
    -- The VNI of a vxlan network; unique per type, so a VNI is never given twice.
    segmentation_id BIGINT,
    mtu BIGINT NOT NULL,
    port_security_enabled BIGINT NOT NULL,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX networks_project ON networks (project_id);
CREATE UNIQUE INDEX networks_segment ON networks (network_type, segmentation_id);
-- One flat network per physical network (its bridge).
CREATE UNIQUE INDEX networks_physnet ON networks (physical_network);

CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    ip_version BIGINT NOT NULL,
    cidr TEXT NOT NULL,
    gateway_ip TEXT,
    -- JSON [{"start": ip, "end": ip}]
    allocation_pools TEXT NOT NULL,
    dns_nameservers TEXT NOT NULL,
    -- JSON [{"destination": cidr, "nexthop": ip}]
    host_routes TEXT NOT NULL,
    enable_dhcp BIGINT NOT NULL,
    ipv6_ra_mode TEXT,
    ipv6_address_mode TEXT,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX subnets_network ON subnets (network_id);

CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    admin_state_up BIGINT NOT NULL,
    mac_address TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_owner TEXT NOT NULL,
    -- DOWN until bound to a host, then ACTIVE.
    status TEXT NOT NULL,
    binding_host_id TEXT NOT NULL,
    binding_profile TEXT NOT NULL,
    binding_vnic_type TEXT NOT NULL,
    -- The tap QEMU uses, once bound by compute.
    tap TEXT,
    port_security_enabled BIGINT NOT NULL,
    allowed_address_pairs TEXT NOT NULL,
    dns_name TEXT NOT NULL,
    -- 1 when compute created the port for a server (deleted with it).
    auto_delete BIGINT NOT NULL,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX ports_mac ON ports (network_id, mac_address);
CREATE INDEX ports_project ON ports (project_id);
CREATE INDEX ports_device ON ports (device_id);

-- One row per address of a port; the primary key makes an address
-- impossible to hand out twice in a subnet.
CREATE TABLE port_fixed_ips (
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    ip_address TEXT NOT NULL,
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    network_id TEXT NOT NULL,
    PRIMARY KEY (subnet_id, ip_address)
);
CREATE INDEX port_fixed_ips_port ON port_fixed_ips (port_id);

CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The project id for a project's `default` group, else NULL: at most one
    -- default group per project, even when two requests create it at once.
    default_for TEXT UNIQUE,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX security_groups_project ON security_groups (project_id);

CREATE TABLE security_group_rules (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    direction TEXT NOT NULL,
    ethertype TEXT NOT NULL,
    protocol TEXT,
    port_range_min BIGINT,
    port_range_max BIGINT,
    remote_ip_prefix TEXT,
    remote_group_id TEXT,
    description TEXT NOT NULL,
    -- Every matching attribute, normalised: a duplicate rule is refused.
    fingerprint TEXT NOT NULL UNIQUE,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (security_group_id);

CREATE TABLE port_security_groups (
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id),
    PRIMARY KEY (port_id, security_group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (security_group_id);

-- Router interfaces and gateways are ports (device_owner
-- network:router_interface / network:router_gateway, device_id = router).
CREATE TABLE routers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    admin_state_up BIGINT NOT NULL,
    status TEXT NOT NULL,
    gw_network_id TEXT,
    gw_port_id TEXT,
    enable_snat BIGINT NOT NULL,
    -- JSON [{"destination": cidr, "nexthop": ip}]
    routes TEXT NOT NULL,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX routers_project ON routers (project_id);

-- The floating address itself is held by a network:floatingip port on the
-- external network.
CREATE TABLE floating_ips (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    floating_network_id TEXT NOT NULL,
    floating_ip_address TEXT NOT NULL,
    floating_port_id TEXT NOT NULL,
    port_id TEXT,
    fixed_ip_address TEXT,
    router_id TEXT,
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    revision_number BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX floating_ips_project ON floating_ips (project_id);
CREATE INDEX floating_ips_port ON floating_ips (port_id);

CREATE TABLE network_quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);
