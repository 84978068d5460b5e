//! The network service's application layer on the engine under test
//! (SQLite by default, PostgreSQL with OXISTACK_TEST_DATABASE=postgres).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use oxistack_model::config::Settings;
use oxistack_model::{AppError, AuthContext, NetworkId, ProjectId, ServerId, SubnetId, UserId};
use oxistack_network::servers::{PortBinding, RequestedNic};
use oxistack_network::Network;
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;
use serde_json::{json, Value};

struct World {
    _db: TestDb,
    net: Arc<Network>,
}

async fn world() -> World {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let net = Arc::new(Network::new(store, Arc::new(Settings::default())));
    World { _db: db, net }
}

fn ctx(project: ProjectId, roles: &[&str]) -> AuthContext {
    let now = oxistack_model::time::now();
    AuthContext {
        user_id: UserId::new(),
        user_name: "u".into(),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        project_id: Some(project),
        project_name: Some("p".into()),
        project_domain_id: Some("default".into()),
        project_domain_name: Some("Default".into()),
        domain_id: None,
        domain_name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        role_ids: vec![],
        issued_at: now,
        expires_at: now + chrono::Duration::hours(1),
        audit_id: "t".into(),
        methods: vec!["password".into()],
    }
}

fn member() -> AuthContext {
    ctx(ProjectId::new(), &["member", "reader"])
}
fn admin() -> AuthContext {
    ctx(ProjectId::new(), &["admin", "member", "reader"])
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn code(e: AppError) -> (u16, &'static str) {
    (e.status(), e.code.unwrap_or(""))
}

impl World {
    async fn network(&self, c: &AuthContext, extra: Value) -> NetworkId {
        let mut b = json!({"name": "n"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.net.network_create(c, body(b)).await.unwrap().net.id
    }
    async fn subnet(
        &self,
        c: &AuthContext,
        n: &NetworkId,
        cidr: &str,
        extra: Value,
    ) -> Result<SubnetId, AppError> {
        let mut b = json!({"network_id": n.to_string(), "ip_version": if cidr.contains(':') {6} else {4}, "cidr": cidr});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.net.subnet_create(c, body(b)).await.map(|s| s.id)
    }
    async fn port(
        &self,
        c: &AuthContext,
        n: &NetworkId,
        extra: Value,
    ) -> Result<oxistack_store::network::Port, AppError> {
        let mut b = json!({"network_id": n.to_string()});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.net.port_create(c, body(b)).await
    }
}

#[tokio::test]
async fn subnet_defaults_and_ip_allocation_until_exhaustion() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    let view = w.net.network_get(&c, &n).await.unwrap();
    assert_eq!(view.net.mtu, 1450);
    assert_eq!(view.net.network_type, "vxlan");
    let sid = w.subnet(&c, &n, "10.0.0.0/29", json!({})).await.unwrap();
    let s = w.net.subnet_get(&c, &sid).await.unwrap();
    assert_eq!(s.gateway_ip, Some(ip("10.0.0.1")));
    assert_eq!(s.allocation_pools.len(), 1);
    assert_eq!(s.allocation_pools[0].start, ip("10.0.0.2"));
    assert_eq!(s.allocation_pools[0].end, ip("10.0.0.6"));
    // The DHCP port holds the first address; four remain.
    let mut got = Vec::new();
    for _ in 0..4 {
        let p = w.port(&c, &n, json!({})).await.unwrap();
        assert!(p.mac_address.starts_with("fa:16:3e:"));
        assert_eq!(p.status, "DOWN");
        got.push(p.fixed_ips[0].ip_address);
    }
    assert_eq!(
        got,
        vec![
            ip("10.0.0.3"),
            ip("10.0.0.4"),
            ip("10.0.0.5"),
            ip("10.0.0.6")
        ]
    );
    let e = w.port(&c, &n, json!({})).await.unwrap_err();
    assert_eq!(code(e), (409, "IpAddressGenerationFailure"));
    // A deleted port's address is given again.
    let ports = w.net.port_list(&c).await.unwrap();
    let victim = ports
        .iter()
        .find(|p| p.fixed_ips[0].ip_address == ip("10.0.0.4"))
        .unwrap();
    w.net.port_delete(&c, &victim.id).await.unwrap();
    let p = w.port(&c, &n, json!({})).await.unwrap();
    assert_eq!(p.fixed_ips[0].ip_address, ip("10.0.0.4"));
}

#[tokio::test]
async fn concurrent_ports_get_distinct_addresses() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    w.subnet(&c, &n, "10.1.0.0/24", json!({})).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let net = w.net.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            net.port_create(&c, body(json!({"network_id": n.to_string()})))
                .await
        }));
    }
    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    for t in tasks {
        let p = t.await.unwrap().unwrap();
        assert!(ips.insert(p.fixed_ips[0].ip_address));
        assert!(macs.insert(p.mac_address));
    }
    assert_eq!(ips.len(), 12);
}

#[tokio::test]
async fn bad_subnets_are_refused() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    let e = w
        .subnet(&c, &n, "10.0.0.0/31", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("too small"), "{}", e.message);
    let e = w
        .subnet(&c, &n, "10.0.0.0/24", json!({"allocation_pools": [
            {"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.15", "end": "10.0.0.30"}]}))
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "OverlappingAllocationPools"));
    let e = w
        .subnet(
            &c,
            &n,
            "10.0.0.0/24",
            json!({"allocation_pools": [{"start": "10.0.0.10", "end": "10.0.1.20"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "OutOfBoundsAllocationPool"));
    let e = w
        .subnet(&c, &n, "10.0.0.5/24", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    // No gateway: the pool starts at the first address.
    let sid = w
        .subnet(&c, &n, "10.0.0.0/24", json!({"gateway_ip": null}))
        .await
        .unwrap();
    let s = w.net.subnet_get(&c, &sid).await.unwrap();
    assert_eq!(s.gateway_ip, None);
    assert_eq!(s.allocation_pools[0].start, ip("10.0.0.1"));
    // Overlapping CIDR on the same network.
    let e = w
        .subnet(&c, &n, "10.0.0.128/25", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    // IPv6 works, with the SLAAC mode checked.
    let v6 = w
        .subnet(
            &c,
            &n,
            "fd00:1::/64",
            json!({"ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}),
        )
        .await
        .unwrap();
    let s6 = w.net.subnet_get(&c, &v6).await.unwrap();
    assert_eq!(s6.gateway_ip, Some(ip("fd00:1::1")));
    let e = w
        .subnet(&c, &n, "10.9.0.0/24", json!({"ipv6_address_mode": "slaac"}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn requested_fixed_ips_are_checked() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    let sid = w.subnet(&c, &n, "10.2.0.0/24", json!({})).await.unwrap();
    let e = w
        .port(
            &c,
            &n,
            json!({"fixed_ips": [{"subnet_id": sid.to_string(), "ip_address": "10.3.0.5"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "InvalidIpForSubnet"));
    let p = w
        .port(&c, &n, json!({"fixed_ips": [{"ip_address": "10.2.0.50"}]}))
        .await
        .unwrap();
    assert_eq!(p.fixed_ips[0].ip_address, ip("10.2.0.50"));
    assert_eq!(p.fixed_ips[0].subnet_id, sid);
    let e = w
        .port(&c, &n, json!({"fixed_ips": [{"ip_address": "10.2.0.50"}]}))
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "IpAddressAlreadyAllocated"));
}

#[tokio::test]
async fn default_security_group_and_rules() {
    let w = world().await;
    let c = member();
    let groups = w.net.security_group_list(&c).await.unwrap();
    assert_eq!(groups.len(), 1);
    let d = &groups[0];
    assert_eq!(d.group.name, "default");
    assert_eq!(d.rules.len(), 4);
    assert_eq!(
        d.rules
            .iter()
            .filter(|r| r.direction == "egress" && r.remote_group_id.is_none())
            .count(),
        2
    );
    assert_eq!(
        d.rules
            .iter()
            .filter(|r| r.direction == "ingress" && r.remote_group_id == Some(d.group.id))
            .count(),
        2
    );
    // Listing again does not make a second one.
    assert_eq!(w.net.security_group_list(&c).await.unwrap().len(), 1);
    let e = w
        .net
        .security_group_delete(&c, &d.group.id)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);
    // A port without groups gets the default group.
    let n = w.network(&c, json!({})).await;
    let p = w.port(&c, &n, json!({})).await.unwrap();
    assert_eq!(p.security_groups, vec![d.group.id]);

    let rule = json!({"security_group_id": d.group.id.to_string(), "direction": "ingress",
                      "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                      "remote_ip_prefix": "0.0.0.0/0"});
    let r = w.net.rule_create(&c, body(rule.clone())).await.unwrap();
    assert_eq!(r.protocol.as_deref(), Some("tcp"));
    let e = w.net.rule_create(&c, body(rule)).await.unwrap_err();
    assert_eq!(code(e), (409, "SecurityGroupRuleExists"));
    let e = w
        .net
        .rule_create(
            &c,
            body(
                json!({"security_group_id": d.group.id.to_string(), "direction": "ingress",
            "protocol": "tcp", "port_range_min": 30, "port_range_max": 22}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "SecurityGroupInvalidPortRange"));
    let e = w
        .net
        .rule_create(
            &c,
            body(
                json!({"security_group_id": d.group.id.to_string(), "direction": "ingress",
            "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "SecurityGroupRuleParameterConflict"));
    // Another project cannot see the group.
    let other = member();
    assert_eq!(
        w.net
            .security_group_get(&other, &d.group.id)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

async fn external_net(w: &World, a: &AuthContext) -> (NetworkId, SubnetId) {
    let ext = w
        .network(a, json!({"router:external": true, "provider:network_type": "flat", "provider:physical_network": "br-ext"}))
        .await;
    let s = w
        .subnet(
            a,
            &ext,
            "172.24.4.0/24",
            json!({"enable_dhcp": false,
            "allocation_pools": [{"start": "172.24.4.10", "end": "172.24.4.20"}]}),
        )
        .await
        .unwrap();
    (ext, s)
}

#[tokio::test]
async fn routers_interfaces_and_floating_ips() {
    let w = world().await;
    let a = admin();
    let c = member();
    let (ext, _) = external_net(&w, &a).await;
    let n = w.network(&c, json!({})).await;
    let sid = w.subnet(&c, &n, "10.4.0.0/24", json!({})).await.unwrap();
    let vm = w.port(&c, &n, json!({})).await.unwrap();

    // Floating IPs only from external networks.
    let e = w
        .net
        .floating_ip_create(&c, body(json!({"floating_network_id": n.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("is not a valid external network"));
    let fip = w
        .net
        .floating_ip_create(&c, body(json!({"floating_network_id": ext.to_string()})))
        .await
        .unwrap();
    assert_eq!(fip.status, "DOWN");
    assert_eq!(fip.floating_ip_address, ip("172.24.4.10"));
    // No router joins the subnet to the external network yet.
    let e = w
        .net
        .floating_ip_update(&c, &fip.id, body(json!({"port_id": vm.id.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(code(e), (404, "ExternalGatewayForFloatingIPNotFound"));

    let r = w
        .net
        .router_create(
            &c,
            body(json!({"name": "r", "external_gateway_info": {"network_id": ext.to_string()}})),
        )
        .await
        .unwrap();
    assert_eq!(r.external_fixed_ips.len(), 1);
    assert!(r.router.enable_snat);
    let rid = r.router.id;
    let info = w
        .net
        .router_add_interface(&c, &rid, body(json!({"subnet_id": sid.to_string()})))
        .await
        .unwrap();
    let iface = w.net.port_get(&c, &info.port_id).await.unwrap();
    assert_eq!(iface.fixed_ips[0].ip_address, ip("10.4.0.1"));
    assert_eq!(iface.device_owner, "network:router_interface");
    // The same subnet again is refused.
    let e = w
        .net
        .router_add_interface(&c, &rid, body(json!({"subnet_id": sid.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    // Both or neither of subnet_id / port_id are refused.
    assert_eq!(
        w.net
            .router_add_interface(&c, &rid, body(json!({})))
            .await
            .unwrap_err()
            .status(),
        400
    );

    let fip = w
        .net
        .floating_ip_update(&c, &fip.id, body(json!({"port_id": vm.id.to_string()})))
        .await
        .unwrap();
    assert_eq!(fip.status, "ACTIVE");
    assert_eq!(fip.router_id, Some(rid));
    assert_eq!(fip.fixed_ip_address, Some(vm.fixed_ips[0].ip_address));

    // Router with an interface cannot go.
    assert_eq!(
        code(w.net.router_delete(&c, &rid).await.unwrap_err()),
        (409, "RouterInUse")
    );
    // Nor the interface a floating IP goes through.
    assert_eq!(
        w.net
            .router_remove_interface(&c, &rid, body(json!({"subnet_id": sid.to_string()})))
            .await
            .unwrap_err()
            .status(),
        409
    );
    let fip = w
        .net
        .floating_ip_update(&c, &fip.id, body(json!({"port_id": null})))
        .await
        .unwrap();
    assert_eq!(fip.status, "DOWN");
    assert_eq!(fip.port_id, None);
    w.net
        .router_remove_interface(&c, &rid, body(json!({"subnet_id": sid.to_string()})))
        .await
        .unwrap();
    w.net.floating_ip_delete(&c, &fip.id).await.unwrap();
    w.net.router_delete(&c, &rid).await.unwrap();
    // The external network's addresses came back.
    let fip2 = w
        .net
        .floating_ip_create(&c, body(json!({"floating_network_id": ext.to_string()})))
        .await
        .unwrap();
    assert_eq!(fip2.floating_ip_address, ip("172.24.4.10"));
}

#[tokio::test]
async fn network_and_subnet_in_use() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    let sid = w.subnet(&c, &n, "10.5.0.0/24", json!({})).await.unwrap();
    let p = w
        .port(
            &c,
            &n,
            json!({"device_owner": "compute:nova", "device_id": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(
        code(w.net.subnet_delete(&c, &sid).await.unwrap_err()),
        (409, "SubnetInUse")
    );
    assert_eq!(
        code(w.net.network_delete(&c, &n).await.unwrap_err()),
        (409, "NetworkInUse")
    );
    w.net.port_delete(&c, &p.id).await.unwrap();
    // Only the DHCP port is left: the network goes, with its subnet.
    w.net.network_delete(&c, &n).await.unwrap();
    assert_eq!(
        code(w.net.subnet_get(&c, &sid).await.unwrap_err()),
        (404, "SubnetNotFound")
    );
    assert_eq!(
        code(w.net.network_get(&c, &n).await.unwrap_err()),
        (404, "NetworkNotFound")
    );
}

#[tokio::test]
async fn quotas_are_enforced() {
    let w = world().await;
    let a = admin();
    let c = member();
    let p = c.project_id.unwrap();
    let q = w.net.quota_show(&c, &p).await.unwrap();
    assert_eq!(q["network"], 100);
    assert_eq!(q["port"], 500);
    assert_eq!(q["router"], 10);
    assert_eq!(q["floatingip"], 50);
    assert!(w
        .net
        .quota_update(&c, &p, &[("network".to_string(), json!(1))].into())
        .await
        .is_err());
    w.net
        .quota_update(&a, &p, &[("network".to_string(), json!(1))].into())
        .await
        .unwrap();
    w.network(&c, json!({})).await;
    let e = w
        .net
        .network_create(&c, body(json!({"name": "two"})))
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "OverQuota"));
    w.net.quota_reset(&a, &p).await.unwrap();
    w.network(&c, json!({})).await;
}

#[tokio::test]
async fn visibility_and_policy() {
    let w = world().await;
    let a = admin();
    let alice = member();
    let bob = member();
    let private = w.network(&alice, json!({})).await;
    let shared = w.network(&a, json!({"shared": true})).await;
    w.subnet(&a, &shared, "10.6.0.0/24", json!({}))
        .await
        .unwrap();
    // Bob sees the shared network, not Alice's.
    assert_eq!(
        code(w.net.network_get(&bob, &private).await.unwrap_err()),
        (404, "NetworkNotFound")
    );
    let seen: Vec<NetworkId> = w
        .net
        .network_list(&bob)
        .await
        .unwrap()
        .iter()
        .map(|n| n.net.id)
        .collect();
    assert!(seen.contains(&shared) && !seen.contains(&private));
    // Admin sees both.
    let seen: Vec<NetworkId> = w
        .net
        .network_list(&a)
        .await
        .unwrap()
        .iter()
        .map(|n| n.net.id)
        .collect();
    assert!(seen.contains(&shared) && seen.contains(&private));
    // Bob may put a port on the shared network, but not change it.
    let p = w.port(&bob, &shared, json!({})).await.unwrap();
    assert_eq!(p.project_id, bob.project_id.unwrap());
    assert_eq!(
        w.net
            .network_delete(&bob, &shared)
            .await
            .unwrap_err()
            .status(),
        403
    );
    // Members cannot make shared, external or provider networks.
    assert_eq!(
        w.net
            .network_create(&bob, body(json!({"shared": true})))
            .await
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(
        w.net
            .network_create(&bob, body(json!({"provider:network_type": "vxlan"})))
            .await
            .unwrap_err()
            .status(),
        403
    );
    // Alice does not see Bob's port.
    assert_eq!(
        w.net.port_get(&alice, &p.id).await.unwrap_err().status(),
        404
    );
    // A reader cannot create.
    let reader = ctx(ProjectId::new(), &["reader"]);
    assert_eq!(
        w.net
            .network_create(&reader, body(json!({})))
            .await
            .unwrap_err()
            .status(),
        403
    );
}

#[tokio::test]
async fn vni_allocation_is_unique_and_released() {
    let w = world().await;
    let a = admin();
    let n1 = w.net.network_create(&a, body(json!({}))).await.unwrap().net;
    let n2 = w.net.network_create(&a, body(json!({}))).await.unwrap().net;
    assert_eq!(n1.segmentation_id, Some(1000));
    assert_eq!(n2.segmentation_id, Some(1001));
    let e = w
        .net
        .network_create(
            &a,
            body(json!({"provider:network_type": "vxlan", "provider:segmentation_id": 1001})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);
    w.net.network_delete(&a, &n1.id).await.unwrap();
    let n3 = w.net.network_create(&a, body(json!({}))).await.unwrap().net;
    assert_eq!(n3.segmentation_id, Some(1000));
    let flat = w
        .net
        .network_create(
            &a,
            body(json!({"provider:network_type": "flat", "provider:physical_network": "br-x"})),
        )
        .await
        .unwrap()
        .net;
    assert_eq!(flat.mtu, 1500);
    assert_eq!(flat.segmentation_id, None);
}

#[tokio::test]
async fn ports_for_servers() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({"name": "private"})).await;
    w.subnet(&c, &n, "10.7.0.0/24", json!({})).await.unwrap();
    let own = w.port(&c, &n, json!({"name": "mine"})).await.unwrap();
    let server = ServerId::new();
    let ports = w
        .net
        .allocate_ports_for_server(
            &c,
            &server,
            &[RequestedNic::Auto, RequestedNic::Port(own.id)],
            "host1",
        )
        .await
        .unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].network_id, n);
    assert_eq!(ports[0].mtu, 1450);
    assert_eq!(ports[0].vif_type, "bridge");
    // A replay returns the same ports.
    let again = w
        .net
        .allocate_ports_for_server(&c, &server, &[RequestedNic::Auto], "host1")
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    w.net
        .bind_port(
            &ports[0].port_id,
            &PortBinding {
                server_id: server,
                host: "host1".into(),
                tap: ports[0].tap.clone(),
                hostname: Some("vm1".into()),
            },
        )
        .await
        .unwrap();
    let bound = w.net.port_get(&c, &ports[0].port_id).await.unwrap();
    assert_eq!(bound.status, "ACTIVE");
    assert_eq!(bound.binding_host_id, "host1");
    let addrs = w.net.server_addresses(&[server]).await.unwrap();
    let list = &addrs[&server]["private"];
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|a| a.kind == "fixed" && a.version == 4));
    let found = w
        .net
        .metadata_lookup(&n, &ports[0].fixed_ips[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, (ports[0].port_id, server.to_string()));
    assert!(w
        .net
        .metadata_lookup(&n, &ip("10.7.0.200"))
        .await
        .unwrap()
        .is_none());

    w.net.release_ports_for_server(&server).await.unwrap();
    w.net.release_ports_for_server(&server).await.unwrap();
    assert_eq!(
        w.net
            .port_get(&c, &ports[0].port_id)
            .await
            .unwrap_err()
            .status(),
        404
    );
    let kept = w.net.port_get(&c, &own.id).await.unwrap();
    assert_eq!(kept.device_id, "");
    assert_eq!(kept.status, "DOWN");
    // `auto` with two networks of its own is ambiguous.
    w.network(&c, json!({})).await;
    let e = w
        .net
        .allocate_ports_for_server(&c, &ServerId::new(), &[RequestedNic::Auto], "host1")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);
}

#[tokio::test]
async fn public_network_is_made_once() {
    let w = world().await;
    let admin_project = ProjectId::new();
    let id = w.net.ensure_public_network(admin_project).await.unwrap();
    assert_eq!(
        w.net.ensure_public_network(admin_project).await.unwrap(),
        id
    );
    let a = ctx(admin_project, &["admin", "member"]);
    let n = w.net.network_get(&a, &id).await.unwrap();
    assert!(n.net.external && !n.net.shared);
    assert_eq!(n.net.physical_network.as_deref(), Some("br-public"));
    let s = w.net.subnet_get(&a, &n.subnets[0]).await.unwrap();
    assert_eq!(s.cidr, "172.24.4.0/24");
    assert!(!s.enable_dhcp);
    assert_eq!(s.allocation_pools[0].start, ip("172.24.4.10"));
    assert_eq!(s.allocation_pools[0].end, ip("172.24.4.250"));
}

/// A network agent that records the specs it is given.
#[derive(Default)]
struct RecordingAgent(std::sync::Mutex<Vec<oxistack_bus::network::HostNetworkSpec>>);

#[async_trait::async_trait]
impl oxistack_bus::network::NetworkAgentApi for RecordingAgent {
    async fn apply(
        &self,
        spec: oxistack_bus::network::HostNetworkSpec,
    ) -> oxistack_model::AppResult<oxistack_bus::network::ApplyReport> {
        self.0.lock().unwrap().push(spec);
        Ok(Default::default())
    }
}

#[tokio::test]
async fn host_spec_of_a_routed_network_with_a_floating_ip() {
    use oxistack_bus::network::{names, NetworkKind};
    let w = world().await;
    let a = admin();
    let c = member();
    let (ext, ext_subnet) = external_net(&w, &a).await;
    let n = w.network(&c, json!({})).await;
    let sid = w
        .subnet(
            &c,
            &n,
            "10.8.0.0/24",
            json!({"dns_nameservers": ["10.8.0.53"]}),
        )
        .await
        .unwrap();
    let s1 = ServerId::new();
    let s2 = ServerId::new();
    let p1 = w
        .net
        .allocate_ports_for_server(
            &c,
            &s1,
            &[RequestedNic::Network {
                network_id: n,
                fixed_ip: None,
            }],
            "h1",
        )
        .await
        .unwrap();
    let p2 = w
        .net
        .allocate_ports_for_server(
            &c,
            &s2,
            &[RequestedNic::Network {
                network_id: n,
                fixed_ip: Some(ip("10.8.0.99")),
            }],
            "h1",
        )
        .await
        .unwrap();
    for (s, p) in [(s1, &p1[0]), (s2, &p2[0])] {
        w.net
            .bind_port(
                &p.port_id,
                &PortBinding {
                    server_id: s,
                    host: "h1".into(),
                    tap: p.tap.clone(),
                    hostname: None,
                },
            )
            .await
            .unwrap();
    }
    let r = w
        .net
        .router_create(
            &c,
            body(json!({"external_gateway_info": {"network_id": ext.to_string()}})),
        )
        .await
        .unwrap();
    w.net
        .router_add_interface(
            &c,
            &r.router.id,
            body(json!({"subnet_id": sid.to_string()})),
        )
        .await
        .unwrap();
    let fip = w.net.floating_ip_create(&c, body(json!({"floating_network_id": ext.to_string(), "port_id": p1[0].port_id.to_string()}))).await.unwrap();

    let spec = w
        .net
        .host_spec("h1", Some("/run/meta.sock".into()))
        .await
        .unwrap();
    assert_eq!(spec.metadata_upstream.as_deref(), Some("/run/meta.sock"));
    assert_eq!(spec.networks.len(), 2);
    let e = spec.networks.iter().find(|x| x.id == ext).unwrap();
    assert_eq!(
        e.kind,
        NetworkKind::Flat {
            bridge: "br-ext".into()
        }
    );
    assert!(e.external);
    assert_eq!(e.subnets[0].id, ext_subnet);
    // The router's gateway port; the floating IP's own port is not a host.
    assert_eq!(e.ports.len(), 1);
    assert_eq!(e.ports[0].device_owner, "network:router_gateway");
    let t = spec.networks.iter().find(|x| x.id == n).unwrap();
    assert_eq!(t.kind, NetworkKind::Vxlan { vni: 1000 });
    assert_eq!(t.mtu, 1450);
    assert_eq!(t.subnets[0].gateway_ip, Some(ip("10.8.0.1")));
    assert_eq!(t.subnets[0].dns_nameservers, vec![ip("10.8.0.53")]);
    let owners: Vec<&str> = t.ports.iter().map(|p| p.device_owner.as_str()).collect();
    assert_eq!(
        owners,
        vec![
            "network:dhcp",
            "compute:nova",
            "compute:nova",
            "network:router_interface"
        ]
    );
    let vm1 = t.ports.iter().find(|p| p.id == p1[0].port_id).unwrap();
    assert_eq!(vm1.tap, Some(names::tap(&p1[0].port_id)));
    assert_eq!(vm1.fixed_ips[0].ip, ip("10.8.0.3"));
    assert!(vm1.port_security);
    let vm2 = t.ports.iter().find(|p| p.id == p2[0].port_id).unwrap();
    assert_eq!(vm2.fixed_ips[0].ip, ip("10.8.0.99"));
    assert!(t
        .ports
        .iter()
        .filter(|p| !p.device_owner.starts_with("compute:"))
        .all(|p| p.tap.is_none()));
    // Another host gets no taps.
    let other = w.net.host_spec("h2", None).await.unwrap();
    assert!(other
        .networks
        .iter()
        .flat_map(|n| &n.ports)
        .all(|p| p.tap.is_none()));

    assert_eq!(spec.routers.len(), 1);
    let rs = &spec.routers[0];
    assert_eq!(rs.interfaces.len(), 1);
    assert_eq!(rs.interfaces[0].ip, ip("10.8.0.1"));
    assert_eq!(rs.interfaces[0].cidr, "10.8.0.0/24");
    let gw = rs.gateway.as_ref().unwrap();
    assert_eq!(gw.ip, ip("172.24.4.10"));
    assert_eq!(gw.gateway_ip, Some(ip("172.24.4.1")));
    assert!(gw.enable_snat);
    assert_eq!(rs.floating_ips.len(), 1);
    assert_eq!(rs.floating_ips[0].floating_ip, fip.floating_ip_address);
    assert_eq!(rs.floating_ips[0].fixed_ip, ip("10.8.0.3"));

    // The default group, with both VMs' addresses as members.
    assert_eq!(spec.security_groups.len(), 1);
    let g = &spec.security_groups[0];
    assert_eq!(g.rules.len(), 4);
    let mut members = g.member_ips.clone();
    members.sort();
    assert_eq!(members, vec![ip("10.8.0.3"), ip("10.8.0.99")]);
    // Computing it twice gives the same spec.
    assert_eq!(
        w.net
            .host_spec("h1", Some("/run/meta.sock".into()))
            .await
            .unwrap(),
        spec
    );

    // converge hands it to the host's agent, and skips hosts without one.
    let bus = Arc::new(oxistack_bus::InProcessBus::new());
    let agent = Arc::new(RecordingAgent::default());
    bus.register_network("h1", agent.clone());
    let bus: Arc<dyn oxistack_bus::Bus> = bus;
    w.net.converge(&bus, "h1").await.unwrap();
    w.net.converge(&bus, "nowhere").await.unwrap();
    let got = agent.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].networks, spec.networks);
}

#[tokio::test]
async fn bulk_create_is_all_or_nothing() {
    let w = world().await;
    let c = member();
    let names = |list: Vec<oxistack_network::networks::NetworkView>| -> Vec<String> {
        list.into_iter().map(|n| n.net.name).collect()
    };

    // Networks: both made, in order; a refused second leaves no first.
    let made = w
        .net
        .network_create_bulk(
            &c,
            vec![body(json!({"name": "b1"})), body(json!({"name": "b2"}))],
        )
        .await
        .unwrap();
    assert_eq!(names(made), ["b1", "b2"]);
    let e = w
        .net
        .network_create_bulk(
            &c,
            vec![
                body(json!({"name": "b3"})),
                body(json!({"name": "b4", "shared": true})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (403, "PolicyNotAuthorized"));
    let seen = names(w.net.network_list(&c).await.unwrap());
    assert_eq!(seen, ["b1", "b2"]);

    // Subnets: the second overlaps the first; neither stays, nor the
    // DHCP port the first one made.
    let n = w.network(&c, json!({})).await;
    let e = w
        .net
        .subnet_create_bulk(
            &c,
            vec![
                body(json!({"network_id": n.to_string(), "ip_version": 4, "cidr": "10.7.0.0/24"})),
                body(json!({"network_id": n.to_string(), "ip_version": 4, "cidr": "10.7.0.0/25"})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "InvalidInput"));
    assert!(w.net.network_get(&c, &n).await.unwrap().subnets.is_empty());
    assert!(w.net.store.ports_of_network(&n).await.unwrap().is_empty());
    let made = w
        .net
        .subnet_create_bulk(
            &c,
            vec![
                body(json!({"network_id": n.to_string(), "ip_version": 4, "cidr": "10.7.0.0/24"})),
                body(json!({"network_id": n.to_string(), "ip_version": 6, "cidr": "2001:db8:7::/64"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 2);
    assert_eq!(w.net.network_get(&c, &n).await.unwrap().subnets.len(), 2);

    // Ports: the second asks for an address the first took; the first
    // goes and its address is free again.
    let sid = made[0].id;
    let fixed = |a: &str| json!([{"subnet_id": sid.to_string(), "ip_address": a}]);
    let e = w
        .net
        .port_create_bulk(
            &c,
            vec![
                body(json!({"network_id": n.to_string(), "name": "p1", "fixed_ips": fixed("10.7.0.50")})),
                body(json!({"network_id": n.to_string(), "name": "p2", "fixed_ips": fixed("10.7.0.50")})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "IpAddressAlreadyAllocated"));
    let left: Vec<String> = w
        .net
        .port_list(&c)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.device_owner != oxistack_network::OWNER_DHCP)
        .map(|p| p.name)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let made = w
        .net
        .port_create_bulk(
            &c,
            vec![
                body(json!({"network_id": n.to_string(), "name": "p1", "fixed_ips": fixed("10.7.0.50")})),
                body(json!({"network_id": n.to_string(), "name": "p2", "admin_state_up": false})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(made[0].fixed_ips[0].ip_address, ip("10.7.0.50"));
    assert!(made[0].admin_state_up && !made[1].admin_state_up);
}

#[tokio::test]
async fn subnets_of_external_networks_are_visible_and_marked() {
    let w = world().await;
    let a = admin();
    let c = member();
    let (ext, ext_subnet) = external_net(&w, &a).await;
    let n = w.network(&c, json!({})).await;
    let own = w.subnet(&c, &n, "10.8.0.0/24", json!({})).await.unwrap();
    let private = w.network(&a, json!({})).await;
    let hidden = w
        .subnet(&a, &private, "10.9.0.0/24", json!({}))
        .await
        .unwrap();

    let seen = w.net.subnet_list(&c).await.unwrap();
    let flag = |id: SubnetId| seen.iter().find(|s| s.id == id).map(|s| s.external);
    assert_eq!(flag(ext_subnet), Some(true));
    assert_eq!(flag(own), Some(false));
    assert_eq!(flag(hidden), None);
    assert!(w.net.subnet_get(&c, &ext_subnet).await.unwrap().external);
    // The flag follows the network.
    w.net
        .network_update(&a, &ext, body(json!({"router:external": false})))
        .await
        .unwrap();
    assert_eq!(
        code(w.net.subnet_get(&c, &ext_subnet).await.unwrap_err()),
        (404, "SubnetNotFound")
    );
    assert!(!w.net.subnet_get(&a, &ext_subnet).await.unwrap().external);
}

#[tokio::test]
async fn deleting_an_auto_address_subnet_takes_its_addresses_from_ports() {
    let w = world().await;
    let c = member();
    for mode in ["slaac", "dhcpv6-stateless"] {
        let n = w.network(&c, json!({})).await;
        let v4 = w.subnet(&c, &n, "10.10.0.0/24", json!({})).await.unwrap();
        let v6 = w
            .subnet(
                &c,
                &n,
                "2001:db8:10::/64",
                json!({"ipv6_ra_mode": mode, "ipv6_address_mode": mode}),
            )
            .await
            .unwrap();
        let p = w.port(&c, &n, json!({})).await.unwrap();
        assert_eq!(p.fixed_ips.len(), 2);
        w.net.subnet_delete(&c, &v6).await.unwrap();
        let after = w.net.port_get(&c, &p.id).await.unwrap();
        let subnets: Vec<SubnetId> = after.fixed_ips.iter().map(|f| f.subnet_id).collect();
        assert_eq!(subnets, [v4], "{mode}");
        assert_eq!(after.revision_number, p.revision_number + 1);
        assert_eq!(
            code(w.net.subnet_get(&c, &v6).await.unwrap_err()),
            (404, "SubnetNotFound")
        );
        // The port stays, so the network is still in use.
        assert_eq!(
            code(w.net.network_delete(&c, &n).await.unwrap_err()),
            (409, "NetworkInUse")
        );
    }

    // A stateful DHCPv6 subnet hands addresses out on request: in use.
    let n = w.network(&c, json!({})).await;
    let stateful = w
        .subnet(
            &c,
            &n,
            "2001:db8:11::/64",
            json!({"ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"}),
        )
        .await
        .unwrap();
    w.port(&c, &n, json!({})).await.unwrap();
    assert_eq!(
        code(w.net.subnet_delete(&c, &stateful).await.unwrap_err()),
        (409, "SubnetInUse")
    );

    // A router interface keeps even a SLAAC subnet in use.
    let n = w.network(&c, json!({})).await;
    let slaac = w
        .subnet(
            &c,
            &n,
            "2001:db8:12::/64",
            json!({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
        )
        .await
        .unwrap();
    let r = w
        .net
        .router_create(&c, body(json!({"name": "r"})))
        .await
        .unwrap();
    w.net
        .router_add_interface(
            &c,
            &r.router.id,
            body(json!({"subnet_id": slaac.to_string()})),
        )
        .await
        .unwrap();
    assert_eq!(
        code(w.net.subnet_delete(&c, &slaac).await.unwrap_err()),
        (409, "SubnetInUse")
    );
}

#[tokio::test]
async fn deleting_an_external_network_takes_its_unassociated_floating_ips() {
    let w = world().await;
    let a = admin();
    let c = member();
    let (ext, ext_subnet) = external_net(&w, &a).await;
    let free = w
        .net
        .floating_ip_create(&a, body(json!({"floating_network_id": ext.to_string()})))
        .await
        .unwrap();

    // An associated floating IP keeps the network in use.
    let n = w.network(&c, json!({})).await;
    let sid = w.subnet(&c, &n, "10.20.0.0/24", json!({})).await.unwrap();
    let vm = w.port(&c, &n, json!({})).await.unwrap();
    let r = w
        .net
        .router_create(&a, body(json!({"name": "r"})))
        .await
        .unwrap();
    let rid = r.router.id;
    w.net
        .router_add_interface(&a, &rid, body(json!({"subnet_id": sid.to_string()})))
        .await
        .unwrap();
    w.net
        .router_update(
            &a,
            &rid,
            body(json!({"external_gateway_info": {"network_id": ext.to_string()}})),
        )
        .await
        .unwrap();
    let used = w
        .net
        .floating_ip_create(
            &c,
            body(json!({"floating_network_id": ext.to_string(), "port_id": vm.id.to_string()})),
        )
        .await
        .unwrap();
    let e = w.net.network_delete(&a, &ext).await.unwrap_err();
    assert_eq!(code(e.clone()), (409, "NetworkInUse"));
    // The ports in the way are named: the gateway and the used floating IP's.
    let gw_port = w
        .net
        .router_get(&a, &rid)
        .await
        .unwrap()
        .router
        .gw_port_id
        .unwrap();
    assert!(e.message.contains(&gw_port.to_string()), "{}", e.message);
    assert!(
        e.message.contains(&used.floating_port_id.to_string()),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains(&free.floating_port_id.to_string()),
        "{}",
        e.message
    );
    // A refused delete takes nothing.
    w.net.floating_ip_get(&a, &free.id).await.unwrap();

    w.net.floating_ip_delete(&c, &used.id).await.unwrap();
    w.net
        .router_update(&a, &rid, body(json!({"external_gateway_info": {}})))
        .await
        .unwrap();
    w.net.network_delete(&a, &ext).await.unwrap();
    assert_eq!(
        code(w.net.floating_ip_get(&a, &free.id).await.unwrap_err()),
        (404, "FloatingIPNotFound")
    );
    assert_eq!(
        code(
            w.net
                .port_get(&a, &free.floating_port_id)
                .await
                .unwrap_err()
        ),
        (404, "PortNotFound")
    );
    assert_eq!(
        code(w.net.subnet_get(&a, &ext_subnet).await.unwrap_err()),
        (404, "SubnetNotFound")
    );
}

/// The address oslo's `get_ipv6_addr_by_EUI64` gives, written out.
fn eui64(prefix: &str, mac: &str) -> IpAddr {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let net: ipnet::Ipv6Net = prefix.parse().unwrap();
    let iid = u64::from_be_bytes([b[0] ^ 2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]]);
    IpAddr::V6((u128::from(net.network()) | u128::from(iid)).into())
}

#[tokio::test]
async fn auto_address_subnets_give_ports_their_eui64_address() {
    let w = world().await;
    let c = member();
    let a = admin();
    for mode in [
        json!({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
        json!({"ipv6_address_mode": "dhcpv6-stateless"}),
        json!({"ipv6_ra_mode": "dhcpv6-stateless"}),
    ] {
        let n = w.network(&c, json!({})).await;
        let v4 = w.subnet(&c, &n, "10.30.0.0/24", json!({})).await.unwrap();
        let stateful = w
            .subnet(
                &c,
                &n,
                "2001:db8:30::/64",
                json!({"ipv6_address_mode": "dhcpv6-stateful"}),
            )
            .await
            .unwrap();
        let auto = w
            .subnet(&c, &n, "2001:db8:31::/64", mode.clone())
            .await
            .unwrap();
        let mac = "fa:16:3e:12:34:56";
        let p = w.port(&a, &n, json!({"mac_address": mac})).await.unwrap();
        let got: HashSet<(SubnetId, IpAddr)> = p
            .fixed_ips
            .iter()
            .map(|f| (f.subnet_id, f.ip_address))
            .collect();
        assert_eq!(got.len(), 3, "{mode}: {got:?}");
        assert!(
            got.contains(&(auto, eui64("2001:db8:31::/64", mac))),
            "{mode}: {got:?}"
        );
        assert!(got.iter().any(|(s, _)| *s == v4));
        // The stateful subnet's address comes from its pool.
        assert!(
            got.contains(&(stateful, ip("2001:db8:30::3"))),
            "{mode}: {got:?}"
        );

        // Naming only the IPv4 subnet still gives the automatic address.
        let q = w
            .port(
                &c,
                &n,
                json!({"fixed_ips": [{"subnet_id": v4.to_string()}]}),
            )
            .await
            .unwrap();
        let auto_ip = q.fixed_ips.iter().find(|f| f.subnet_id == auto).unwrap();
        assert_eq!(
            auto_ip.ip_address,
            eui64("2001:db8:31::/64", &q.mac_address)
        );
        assert!(!q.fixed_ips.iter().any(|f| f.subnet_id == stateful));

        // Another address on the auto-address subnet is refused; the port's
        // own EUI-64 address may be named.
        let e = w
            .port(
                &a,
                &n,
                json!({"mac_address": "fa:16:3e:00:00:01",
                       "fixed_ips": [{"subnet_id": auto.to_string(), "ip_address": "2001:db8:31::99"}]}),
            )
            .await
            .unwrap_err();
        assert_eq!(code(e), (400, "AllocationOnAutoAddressSubnet"));
        let own = eui64("2001:db8:31::/64", "fa:16:3e:00:00:01");
        let r = w
            .port(
                &a,
                &n,
                json!({"mac_address": "fa:16:3e:00:00:01",
                       "fixed_ips": [{"ip_address": own.to_string()}]}),
            )
            .await
            .unwrap();
        assert_eq!(r.fixed_ips.len(), 1);
        assert_eq!(r.fixed_ips[0].ip_address, own);

        // A new MAC moves the address; the other addresses stay.
        let moved = w
            .net
            .port_update(&a, &p.id, body(json!({"mac_address": "fa:16:3e:65:43:21"})))
            .await
            .unwrap();
        let after: HashSet<(SubnetId, IpAddr)> = moved
            .fixed_ips
            .iter()
            .map(|f| (f.subnet_id, f.ip_address))
            .collect();
        assert!(after.contains(&(auto, eui64("2001:db8:31::/64", "fa:16:3e:65:43:21"))));
        assert_eq!(
            after
                .iter()
                .filter(|(s, _)| *s != auto)
                .collect::<HashSet<_>>(),
            got.iter()
                .filter(|(s, _)| *s != auto)
                .collect::<HashSet<_>>()
        );

        // An update naming only the IPv4 address keeps the automatic one.
        let v4_ip = moved.fixed_ips.iter().find(|f| f.subnet_id == v4).unwrap();
        let kept = w
            .net
            .port_update(
                &a,
                &p.id,
                body(json!({"fixed_ips": [{"subnet_id": v4.to_string(), "ip_address": v4_ip.ip_address.to_string()}]})),
            )
            .await
            .unwrap();
        assert_eq!(kept.fixed_ips.len(), 2);
        assert!(kept.fixed_ips.iter().any(|f| f.subnet_id == auto));

        // A router interface takes the gateway, not an EUI-64 address.
        let rt = w
            .net
            .router_create(&c, body(json!({"name": "r"})))
            .await
            .unwrap();
        let info = w
            .net
            .router_add_interface(
                &c,
                &rt.router.id,
                body(json!({"subnet_id": auto.to_string()})),
            )
            .await;
        if mode.get("ipv6_ra_mode").is_some() {
            let iface = w.net.port_get(&c, &info.unwrap().port_id).await.unwrap();
            assert_eq!(iface.fixed_ips.len(), 1);
            assert_eq!(iface.fixed_ips[0].ip_address, ip("2001:db8:31::1"));
        } else {
            // Addresses by another router's advertisements: not on ours.
            assert_eq!(code(info.unwrap_err()), (400, "BadRequest"));
        }
    }

    // The EUI-64 format needs a /64.
    let n = w.network(&c, json!({})).await;
    let e = w
        .subnet(
            &c,
            &n,
            "2001:db8:40::/80",
            json!({"ipv6_address_mode": "slaac"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("/64"), "{}", e.message);
    // And DHCP.
    let e = w
        .subnet(
            &c,
            &n,
            "2001:db8:40::/64",
            json!({"ipv6_address_mode": "slaac", "enable_dhcp": false}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test]
async fn a_new_auto_address_subnet_gives_existing_ports_their_address() {
    let w = world().await;
    let c = member();
    let n = w.network(&c, json!({})).await;
    let v4 = w.subnet(&c, &n, "10.31.0.0/24", json!({})).await.unwrap();
    let p = w.port(&c, &n, json!({})).await.unwrap();
    let r = w
        .net
        .router_create(&c, body(json!({"name": "r"})))
        .await
        .unwrap();
    let info = w
        .net
        .router_add_interface(&c, &r.router.id, body(json!({"subnet_id": v4.to_string()})))
        .await
        .unwrap();
    let slaac = w
        .subnet(
            &c,
            &n,
            "2001:db8:32::/64",
            json!({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
        )
        .await
        .unwrap();
    let p = w.net.port_get(&c, &p.id).await.unwrap();
    assert!(p.fixed_ips.contains(&oxistack_store::network::FixedIpRec {
        subnet_id: slaac,
        ip_address: eui64("2001:db8:32::/64", &p.mac_address),
    }));
    // The router interface is left alone.
    let iface = w.net.port_get(&c, &info.port_id).await.unwrap();
    assert_eq!(iface.fixed_ips.len(), 1);
    // A stateful subnet gives nothing unasked.
    w.subnet(
        &c,
        &n,
        "2001:db8:33::/64",
        json!({"ipv6_address_mode": "dhcpv6-stateful"}),
    )
    .await
    .unwrap();
    assert_eq!(w.net.port_get(&c, &p.id).await.unwrap().fixed_ips.len(), 2);
}

#[tokio::test]
async fn router_subnets_may_not_overlap() {
    let w = world().await;
    let a = admin();
    let c = member();
    let n1 = w.network(&c, json!({})).await;
    let n2 = w.network(&c, json!({})).await;
    let s1 = w.subnet(&c, &n1, "10.40.0.0/24", json!({})).await.unwrap();
    let s2 = w
        .subnet(&c, &n2, "10.40.0.128/25", json!({}))
        .await
        .unwrap();
    let r = w
        .net
        .router_create(&c, body(json!({"name": "r"})))
        .await
        .unwrap();
    let rid = r.router.id;
    w.net
        .router_add_interface(&c, &rid, body(json!({"subnet_id": s1.to_string()})))
        .await
        .unwrap();
    let e = w
        .net
        .router_add_interface(&c, &rid, body(json!({"subnet_id": s2.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.message,
        format!("Bad router request: Cidr 10.40.0.128/25 of subnet {s2} overlaps with cidr 10.40.0.0/24 of subnet {s1}.")
    );
    // Nothing was made for the refused interface.
    assert_eq!(w.net.store.ports_of_network(&n2).await.unwrap().len(), 1);
    // By port too.
    let p = w.port(&c, &n2, json!({})).await.unwrap();
    let e = w
        .net
        .router_add_interface(&c, &rid, body(json!({"port_id": p.id.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("overlaps"), "{}", e.message);
    assert_eq!(w.net.port_get(&c, &p.id).await.unwrap().device_owner, "");
    // The same subnet twice on one router.
    let e = w
        .net
        .router_add_interface(&c, &rid, body(json!({"subnet_id": s1.to_string()})))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        format!("Bad router request: Router already has a port on subnet {s1}.")
    );
    // Another router on the same subnet wants the gateway address, taken.
    let r2 = w
        .net
        .router_create(&c, body(json!({"name": "r2"})))
        .await
        .unwrap();
    let e = w
        .net
        .router_add_interface(
            &c,
            &r2.router.id,
            body(json!({"subnet_id": s1.to_string()})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "IpAddressAlreadyAllocated"));

    // A gateway whose external subnet overlaps an interface is refused,
    // and so is an interface overlapping the gateway's network.
    let ext = w.network(&a, json!({"router:external": true})).await;
    w.subnet(&a, &ext, "10.40.0.0/16", json!({"enable_dhcp": false}))
        .await
        .unwrap();
    let e = w
        .net
        .router_update(
            &c,
            &rid,
            body(json!({"external_gateway_info": {"network_id": ext.to_string()}})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("overlaps"), "{}", e.message);
    assert_eq!(
        w.net.router_get(&c, &rid).await.unwrap().router.gw_port_id,
        None
    );
    let r3 = w
        .net
        .router_create(
            &c,
            body(json!({"name": "r3", "external_gateway_info": {"network_id": ext.to_string()}})),
        )
        .await
        .unwrap();
    let e = w
        .net
        .router_add_interface(
            &c,
            &r3.router.id,
            body(json!({"subnet_id": s2.to_string()})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("overlaps"), "{}", e.message);
}

#[tokio::test]
async fn no_group_but_the_default_one_is_named_default() {
    let w = world().await;
    let c = member();
    let g = w
        .net
        .security_group_create(&c, body(json!({"name": "web"})))
        .await
        .unwrap();
    for name in ["default", "Default", "DEFAULT"] {
        let e = w
            .net
            .security_group_update(&c, &g.group.id, body(json!({"name": name})))
            .await
            .unwrap_err();
        assert_eq!(code(e), (409, "SecurityGroupDefaultAlreadyExists"));
        let e = w
            .net
            .security_group_create(&c, body(json!({"name": name})))
            .await
            .unwrap_err();
        assert_eq!(code(e), (409, "SecurityGroupDefaultAlreadyExists"));
    }
    assert_eq!(
        w.net
            .security_group_get(&c, &g.group.id)
            .await
            .unwrap()
            .group
            .name,
        "web"
    );
    // The default group keeps its name.
    let groups = w.net.security_group_list(&c).await.unwrap();
    let d = groups.iter().find(|g| g.group.name == "default").unwrap();
    let e = w
        .net
        .security_group_update(&c, &d.group.id, body(json!({"name": "other"})))
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "SecurityGroupCannotUpdateDefault"));
    // Its description may change.
    w.net
        .security_group_update(&c, &d.group.id, body(json!({"description": "d"})))
        .await
        .unwrap();
    assert_eq!(w.net.security_group_list(&c).await.unwrap().len(), 2);
}
