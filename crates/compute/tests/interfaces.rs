//! Interface attachments through compute's application layer, as the API
//! calls it: what is refused (and with which status), what an attach and a
//! detach leave behind, and what the metadata service then describes. Real
//! store (SQLite or PostgreSQL), real conductor, fake virt driver.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxistack_agent::fake::{FakeDriver, FakeOp};
use oxistack_agent::ComputeAgent;
use oxistack_bus::{ImageSpec, InProcessBus};
use oxistack_compute::interfaces::AttachRequest;
use oxistack_compute::Compute;
use oxistack_conductor::{boot, Conductor};
use oxistack_model::config::Settings;
use oxistack_model::server_state::{PowerState, TaskState, VmState};
use oxistack_model::time::now;
use oxistack_model::{AuthContext, ImageId, NetworkId, PortId, ProjectId, Scope, ServerId, UserId};
use oxistack_network::networks::NetworkCreate;
use oxistack_network::ports::PortCreate;
use oxistack_network::subnets::SubnetCreate;
use oxistack_network::Network;
use oxistack_scheduler::{HostCapacity, Placement};
use oxistack_store::compute::{ComputeUsage, Flavor, Server, ServerUpdate};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;

const HOST: &str = "host-a";

struct World {
    _db: TestDb,
    _dir: tempfile::TempDir,
    store: Store,
    driver: Arc<FakeDriver>,
    network: Arc<Network>,
    conductor: Arc<Conductor>,
    compute: Compute,
}

async fn world() -> World {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(Settings::default());
    let driver = Arc::new(FakeDriver::new(HOST, None, (8, 16384, 100)).unwrap());
    let bus = Arc::new(InProcessBus::new());
    bus.register(HOST, Arc::new(ComputeAgent::new(driver.clone())));
    let placement = Arc::new(Placement::new(store.clone(), settings.clone()));
    placement
        .ensure_host_provider(
            HOST,
            HostCapacity {
                vcpus: 8,
                memory_mb: 16384,
                disk_gb: 100,
            },
        )
        .await
        .unwrap();
    let network = Arc::new(Network::new(store.clone(), settings.clone()));
    let conductor = Conductor::new(
        store.clone(),
        bus,
        placement,
        network.clone(),
        settings.clone(),
    );
    let images = Arc::new(oxistack_images::Images::new(
        store.clone(),
        dir.path().to_path_buf(),
        settings.clone(),
    ));
    let compute = Compute::new(
        store.clone(),
        conductor.clone(),
        images,
        network.clone(),
        settings,
    );
    World {
        _db: db,
        _dir: dir,
        store,
        driver,
        network,
        conductor,
        compute,
    }
}

/// A member of a fresh project, with a network `private` (10.9.0.0/24).
async fn tenant(w: &World) -> (AuthContext, NetworkId) {
    let ctx = AuthContext::acting_for(ProjectId::new(), UserId::new());
    let net = network(w, &ctx, "private", "10.9.0.0/24").await;
    (ctx, net)
}

async fn network(w: &World, ctx: &AuthContext, name: &str, cidr: &str) -> NetworkId {
    let net = w
        .network
        .network_create(
            ctx,
            NetworkCreate {
                name: Some(name.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.network
        .subnet_create(
            ctx,
            SubnetCreate {
                network_id: net.net.id.to_string(),
                ip_version: 4,
                cidr: Some(cidr.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    net.net.id
}

async fn free_port(w: &World, ctx: &AuthContext, net: NetworkId) -> PortId {
    w.network
        .port_create(
            ctx,
            PortCreate {
                network_id: net.to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

/// A server of the caller's project, booted by the boot saga (no NICs).
async fn server(w: &World, ctx: &AuthContext) -> ServerId {
    let id = ServerId::new();
    let t = now();
    let s = Server {
        id,
        project_id: ctx.project().unwrap(),
        user_id: ctx.user_id,
        name: "vm".into(),
        hostname: "vm".into(),
        description: None,
        image_id: ImageId::new().to_string(),
        flavor: Flavor {
            id: "1".into(),
            name: "m1.tiny".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: None,
            extra_specs: BTreeMap::new(),
        },
        key_name: None,
        key_data: None,
        user_data: None,
        config_drive: false,
        requested_networks: serde_json::json!("none"),
        availability_zone: Some("nova".into()),
        host: None,
        node: None,
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: PowerState::NoState,
        access_ipv4: String::new(),
        access_ipv6: String::new(),
        reservation_id: "r-1".into(),
        launch_index: 0,
        locked: false,
        generation: 1,
        launched_at: None,
        terminated_at: None,
        created_at: t,
        updated_at: t,
        deleted: false,
        metadata: BTreeMap::new(),
        tags: vec![],
        fault: None,
    };
    let unlimited = ComputeUsage {
        instances: -1,
        cores: -1,
        ram_mb: -1,
    };
    w.store.servers_create(&[s], unlimited).await.unwrap();
    let rec = boot::record(&boot::BootParams {
        server_id: id,
        image: ImageSpec {
            id: ImageId::new(),
            disk_format: "qcow2".into(),
            size: 1024,
            os_hash_value: None,
            properties: BTreeMap::new(),
        },
        nics: vec![],
        security_groups: vec![],
    })
    .unwrap();
    w.store.saga_insert(&rec).await.unwrap();
    w.conductor.run(rec, Default::default()).await.unwrap();
    id
}

fn by_port(port_id: PortId) -> AttachRequest {
    AttachRequest {
        port_id: Some(port_id),
        ..Default::default()
    }
}

fn by_net(net_id: NetworkId, ip: Option<&str>) -> AttachRequest {
    AttachRequest {
        net_id: Some(net_id),
        fixed_ip: ip.map(|i| i.parse().unwrap()),
        ..Default::default()
    }
}

fn plugged(w: &World, id: ServerId) -> Vec<PortId> {
    w.driver
        .nics(id)
        .unwrap_or_default()
        .iter()
        .map(|n| n.port_id)
        .collect()
}

fn status<T>(r: Result<T, oxistack_model::AppError>) -> u16 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.status(),
    }
}

#[tokio::test]
async fn attach_list_show_and_detach() {
    let w = world().await;
    let (ctx, net) = tenant(&w).await;
    let id = server(&w, &ctx).await;
    let c = &w.compute;
    assert!(c.interface_list(&ctx, &id).await.unwrap().is_empty());

    let mine = free_port(&w, &ctx, net).await;
    let a = c.interface_attach(&ctx, &id, by_port(mine)).await.unwrap();
    assert_eq!((a.port_id, a.net_id), (mine, net));
    assert_eq!(a.port_state, "ACTIVE");
    assert_eq!(a.fixed_ips.len(), 1);

    let b = c
        .interface_attach(&ctx, &id, by_net(net, Some("10.9.0.42")))
        .await
        .unwrap();
    assert_eq!(b.fixed_ips[0].ip_address.to_string(), "10.9.0.42");
    assert_eq!(b.net_id, net);
    assert!(b.mac_addr.starts_with("fa:16:3e"), "{}", b.mac_addr);
    assert_eq!(plugged(&w, id), vec![mine, b.port_id]);

    let list = c.interface_list(&ctx, &id).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(c.interface_get(&ctx, &id, &b.port_id).await.unwrap(), b);

    // The metadata service describes the NICs the server has now.
    let spec = c
        .metadata_spec(&net, &"10.9.0.42".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(spec.server_id, id);
    let described: Vec<PortId> = spec.nics.iter().map(|n| n.port_id).collect();
    assert_eq!(described.len(), 2);
    assert!(described.contains(&mine) && described.contains(&b.port_id));

    // Detach answers at once; the saga unplugs and releases in the background.
    c.interface_detach(&ctx, &id, &b.port_id).await.unwrap();
    c.interface_detach(&ctx, &id, &mine).await.unwrap();
    w.conductor.drain().await;
    assert!(c.interface_list(&ctx, &id).await.unwrap().is_empty());
    assert!(plugged(&w, id).is_empty());
    let kept = w.network.port_get(&ctx, &mine).await.unwrap();
    assert_eq!(
        (kept.device_id.as_str(), kept.status.as_str()),
        ("", "DOWN")
    );
    assert_eq!(
        status(w.network.port_get(&ctx, &b.port_id).await),
        404,
        "the port made by the attach is deleted by the detach"
    );
    assert!(c
        .metadata_spec(&net, &"10.9.0.42".parse().unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn attach_without_port_or_network_takes_the_only_network() {
    let w = world().await;
    let ctx = AuthContext::acting_for(ProjectId::new(), UserId::new());
    let id = server(&w, &ctx).await;
    let c = &w.compute;
    let e = c
        .interface_attach(&ctx, &id, AttachRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    assert!(e.message.contains("none are available"), "{e}");
    let net = network(&w, &ctx, "only", "10.7.0.0/24").await;
    let a = c
        .interface_attach(&ctx, &id, AttachRequest::default())
        .await
        .unwrap();
    assert_eq!(a.net_id, net);
    network(&w, &ctx, "second", "10.8.0.0/24").await;
    let e = c
        .interface_attach(&ctx, &id, AttachRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    assert!(e.message.contains("Multiple possible networks"), "{e}");
}

#[tokio::test]
async fn bad_requests_are_refused_with_novas_codes_and_change_nothing() {
    let w = world().await;
    let (ctx, net) = tenant(&w).await;
    let id = server(&w, &ctx).await;
    let c = &w.compute;
    let mine = free_port(&w, &ctx, net).await;

    // Malformed combinations.
    let both = AttachRequest {
        port_id: Some(mine),
        net_id: Some(net),
        fixed_ip: None,
    };
    assert_eq!(status(c.interface_attach(&ctx, &id, both).await), 400);
    let ip_alone = AttachRequest {
        fixed_ip: Some("10.9.0.5".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(status(c.interface_attach(&ctx, &id, ip_alone).await), 400);
    // Unknown things: 404.
    assert_eq!(
        status(
            c.interface_attach(&ctx, &ServerId::new(), by_port(mine))
                .await
        ),
        404
    );
    assert_eq!(
        status(c.interface_attach(&ctx, &id, by_port(PortId::new())).await),
        404
    );
    assert_eq!(
        status(
            c.interface_attach(&ctx, &id, by_net(NetworkId::new(), None))
                .await
        ),
        404
    );
    assert_eq!(
        status(c.interface_get(&ctx, &id, &PortId::new()).await),
        404
    );
    assert_eq!(
        status(c.interface_get(&ctx, &id, &mine).await),
        404,
        "a port the server does not have"
    );
    assert_eq!(status(c.interface_detach(&ctx, &id, &mine).await), 404);
    assert_eq!(status(c.interface_list(&ctx, &ServerId::new()).await), 404);

    // Another project sees neither the server nor the port.
    let (other, other_net) = tenant(&w).await;
    assert_eq!(status(c.interface_list(&other, &id).await), 404);
    assert_eq!(
        status(
            c.interface_attach(&other, &id, by_net(other_net, None))
                .await
        ),
        404
    );
    let theirs = free_port(&w, &other, other_net).await;
    assert_eq!(
        status(c.interface_attach(&ctx, &id, by_port(theirs)).await),
        404
    );
    // Readers may look, not change.
    let mut reader = ctx.clone();
    reader.roles = vec!["reader".into()];
    assert_eq!(
        status(c.interface_attach(&reader, &id, by_port(mine)).await),
        403
    );
    assert!(c.interface_list(&reader, &id).await.unwrap().is_empty());

    // A port in use: 409, for another server's port and for the server's own.
    let id2 = server(&w, &ctx).await;
    c.interface_attach(&ctx, &id2, by_port(mine)).await.unwrap();
    assert_eq!(
        status(c.interface_attach(&ctx, &id, by_port(mine)).await),
        409
    );
    assert_eq!(
        status(c.interface_attach(&ctx, &id2, by_port(mine)).await),
        409
    );
    // A fixed IP in use is a 409, one outside the network a 400.
    let taken = w.network.port_get(&ctx, &mine).await.unwrap().fixed_ips[0].ip_address;
    assert_eq!(
        status(
            c.interface_attach(&ctx, &id, by_net(net, Some(&taken.to_string())))
                .await
        ),
        409
    );
    assert_eq!(
        status(
            c.interface_attach(&ctx, &id, by_net(net, Some("192.168.1.1")))
                .await
        ),
        400
    );

    // Building, deleting, errored and locked servers are refused with a 409.
    for (vm, task) in [
        (VmState::Building, Some(TaskState::Spawning)),
        (VmState::Active, Some(TaskState::Deleting)),
        (VmState::Error, None),
    ] {
        w.store
            .server_update_state(
                &id,
                None,
                &ServerUpdate {
                    vm_state: Some(vm),
                    task_state: Some(task),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let e = c
            .interface_attach(&ctx, &id, by_net(net, None))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 409, "{vm:?}/{task:?}: {e}");
        assert!(
            e.message.starts_with("Cannot 'attach_interface' instance"),
            "{e}"
        );
    }
    w.store
        .server_update_state(
            &id,
            None,
            &ServerUpdate {
                vm_state: Some(VmState::Stopped),
                task_state: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.store.server_set_locked(&id, true).await.unwrap();
    assert_eq!(
        status(c.interface_attach(&ctx, &id, by_net(net, None)).await),
        409
    );
    w.store.server_set_locked(&id, false).await.unwrap();

    // Nothing of the above left a port on the server, a NIC in its guest,
    // or a port on the network besides the user's.
    assert!(w
        .store
        .ports_of_device(&id.to_string())
        .await
        .unwrap()
        .is_empty());
    assert!(plugged(&w, id).is_empty());
    let on_net = w
        .store
        .port_list(Scope::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.network_id == net && p.device_owner.starts_with("compute:"))
        .count();
    assert_eq!(on_net, 1, "only the user's port (on the other server)");

    // A stopped server takes a port (for its next start).
    let another = free_port(&w, &ctx, net).await;
    c.interface_attach(&ctx, &id, by_port(another))
        .await
        .unwrap();
    assert_eq!(plugged(&w, id), vec![another]);
}

#[tokio::test]
async fn a_host_that_cannot_plug_is_a_500_and_leaves_the_port_free() {
    let w = world().await;
    let (ctx, net) = tenant(&w).await;
    let id = server(&w, &ctx).await;
    let mine = free_port(&w, &ctx, net).await;
    w.driver.fail_next(FakeOp::AttachNic, "no slot");
    let e = w
        .compute
        .interface_attach(&ctx, &id, by_port(mine))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500);
    assert_eq!(
        e.message,
        format!("Failed to attach network adapter device to {id}")
    );
    let p = w.network.port_get(&ctx, &mine).await.unwrap();
    assert_eq!((p.device_id.as_str(), p.status.as_str()), ("", "DOWN"));
    w.driver.fail_next(FakeOp::AttachNic, "no slot");
    let e = w
        .compute
        .interface_attach(&ctx, &id, by_net(net, None))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500);
    assert!(w
        .store
        .ports_of_device(&id.to_string())
        .await
        .unwrap()
        .is_empty());
    assert!(plugged(&w, id).is_empty());
    // The next attempt works.
    w.compute
        .interface_attach(&ctx, &id, by_port(mine))
        .await
        .unwrap();
    assert_eq!(plugged(&w, id), vec![mine]);
}

#[tokio::test]
async fn a_repeated_delete_is_accepted_and_left_to_the_delete_in_progress() {
    // Nova's delete checks no state: a delete while one runs is accepted (204) and
    // starts nothing more; the delete in progress finishes the job.
    let w = world().await;
    let (ctx, _net) = tenant(&w).await;
    let id = server(&w, &ctx).await;
    let s = w.compute.server_get(&ctx, &id).await.unwrap();
    // A delete in progress (its saga not run yet).
    assert!(w
        .store
        .server_update_state(
            &id,
            Some(s.generation),
            &ServerUpdate {
                task_state: Some(Some(TaskState::Deleting)),
                ..Default::default()
            },
        )
        .await
        .unwrap());
    w.compute.server_delete(&ctx, &id).await.unwrap();
    let after = w.compute.server_get(&ctx, &id).await.unwrap();
    assert_eq!(after.task_state, Some(TaskState::Deleting));
    assert!(w.driver.nics(id).is_some(), "a second delete was started");

    // A delete of a server not being deleted starts one, which removes it.
    let other = server(&w, &ctx).await;
    w.compute.server_delete(&ctx, &other).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while w.compute.server_get(&ctx, &other).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        w.driver.nics(other).is_none(),
        "the instance is still on the host"
    );
    assert_eq!(status(w.compute.server_delete(&ctx, &other).await), 404);
}
