//! The boot, delete, power and interface sagas, tested the three ways STYLE.md asks:
//! a failure injected at every step unwinds cleanly; every action run twice
//! is safe; every undo run twice is safe. Plus crash-resume and the power
//! sync reconciler. Real store (SQLite or PostgreSQL), fake virt driver.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxistack_agent::fake::{FakeDriver, FakeOp};
use oxistack_agent::{ComputeAgent, VirtDriver};
use oxistack_bus::{ImageSpec, InProcessBus, PowerCommand};
use oxistack_conductor::saga::SagaKind;
use oxistack_conductor::{boot, delete, interface, power, Conductor, ExecOptions};
use oxistack_model::config::Settings;
use oxistack_model::server_state::{PowerState, TaskState, VmState};
use oxistack_model::time::now;
use oxistack_model::{ImageId, ProjectId, Scope, ServerId, UserId};
use oxistack_network::networks::NetworkCreate;
use oxistack_network::servers::RequestedNic;
use oxistack_network::subnets::SubnetCreate;
use oxistack_network::Network;
use oxistack_scheduler::{HostCapacity, Placement};
use oxistack_store::compute::{ComputeUsage, Flavor, Server};
use oxistack_store::sagas::SagaState;
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;

const HOST: &str = "host-a";

struct World {
    _db: TestDb,
    store: Store,
    driver: Arc<FakeDriver>,
    placement: Arc<Placement>,
    network: Arc<Network>,
    conductor: Arc<Conductor>,
}

async fn world() -> World {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let settings = Arc::new(Settings::default());
    let driver = Arc::new(FakeDriver::new(HOST, None, (4, 8192, 100)).unwrap());
    let bus = Arc::new(InProcessBus::new());
    bus.register(HOST, Arc::new(ComputeAgent::new(driver.clone())));
    let placement = Arc::new(Placement::new(store.clone(), settings.clone()));
    placement
        .ensure_host_provider(
            HOST,
            HostCapacity {
                vcpus: 4,
                memory_mb: 8192,
                disk_gb: 100,
            },
        )
        .await
        .unwrap();
    let network = Arc::new(Network::new(store.clone(), settings.clone()));
    let conductor = Conductor::new(
        store.clone(),
        bus,
        placement.clone(),
        network.clone(),
        settings,
    );
    World {
        _db: db,
        store,
        driver,
        placement,
        network,
        conductor,
    }
}

fn flavor(ram: i64) -> Flavor {
    Flavor {
        id: "1".into(),
        name: "m1.tiny".into(),
        vcpus: 1,
        ram_mb: ram,
        disk_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        disabled: false,
        description: None,
        extra_specs: BTreeMap::new(),
    }
}

async fn new_server(w: &World, ram: i64) -> ServerId {
    new_server_in(w, ram, ProjectId::new()).await
}

async fn new_server_in(w: &World, ram: i64, project: ProjectId) -> ServerId {
    let id = ServerId::new();
    let t = now();
    let s = Server {
        id,
        project_id: project,
        user_id: UserId::new(),
        name: "vm".into(),
        hostname: "vm".into(),
        description: None,
        image_id: ImageId::new().to_string(),
        flavor: flavor(ram),
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
    id
}

fn image(fail: bool) -> ImageSpec {
    let mut properties = BTreeMap::new();
    if fail {
        properties.insert("oxistack_fake_fail".into(), "spawn".into());
    }
    ImageSpec {
        id: ImageId::new(),
        disk_format: "qcow2".into(),
        size: 1024,
        os_hash_value: None,
        properties,
    }
}

async fn boot_with(w: &World, id: ServerId, img: ImageSpec, opts: ExecOptions) -> SagaState {
    boot_nics(w, id, img, vec![], opts).await
}

async fn boot_nics(
    w: &World,
    id: ServerId,
    img: ImageSpec,
    nics: Vec<RequestedNic>,
    opts: ExecOptions,
) -> SagaState {
    let rec = boot::record(&boot::BootParams {
        server_id: id,
        image: img,
        nics,
        security_groups: vec![],
    })
    .unwrap();
    w.store.saga_insert(&rec).await.unwrap();
    w.conductor.run(rec, opts).await.unwrap()
}

async fn allocations(w: &World, id: ServerId) -> usize {
    w.placement
        .consumer_allocations(&id.to_string())
        .await
        .map(|v| v.by_provider.len())
        .unwrap_or(0)
}

async fn server(w: &World, id: ServerId) -> Server {
    w.store.server_get(Scope::All, &id, true).await.unwrap()
}

#[tokio::test]
async fn boot_reaches_active_with_allocations() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    assert_eq!(
        boot_with(&w, id, image(false), ExecOptions::default()).await,
        SagaState::Done
    );
    let s = server(&w, id).await;
    assert_eq!(
        (s.vm_state, s.task_state, s.power_state),
        (VmState::Active, None, PowerState::Running)
    );
    assert_eq!(s.host.as_deref(), Some(HOST));
    assert!(s.launched_at.is_some());
    assert_eq!(allocations(&w, id).await, 1);
    assert_eq!(w.driver.instances().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failure_at_every_step_unwinds_to_error_and_leaves_nothing() {
    let w = world().await;
    for step in 0..4 {
        for repeat_undos in [false, true] {
            let id = new_server(&w, 512).await;
            let opts = ExecOptions {
                fail_at: Some(step),
                repeat_undos,
                ..Default::default()
            };
            assert_eq!(
                boot_with(&w, id, image(false), opts).await,
                SagaState::Failed,
                "step {step}"
            );
            let s = server(&w, id).await;
            assert_eq!(s.vm_state, VmState::Error, "step {step}");
            assert_eq!(s.task_state, None);
            let fault = w.store.server_fault(&id).await.unwrap().expect("a fault");
            assert!(
                fault.message.contains("injected failure"),
                "{}",
                fault.message
            );
            assert_eq!(
                allocations(&w, id).await,
                0,
                "allocations left at step {step}"
            );
            assert!(
                w.driver.instances().await.unwrap().is_empty(),
                "instance left at step {step}"
            );
        }
    }
}

#[tokio::test]
async fn every_action_twice_is_safe() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    let opts = ExecOptions {
        repeat_actions: true,
        ..Default::default()
    };
    assert_eq!(boot_with(&w, id, image(false), opts).await, SagaState::Done);
    assert_eq!(w.driver.instances().await.unwrap().len(), 1);
    assert_eq!(allocations(&w, id).await, 1);

    let rec = delete::record(id);
    w.store.saga_insert(&rec).await.unwrap();
    assert_eq!(w.conductor.run(rec, opts).await.unwrap(), SagaState::Done);
    let s = server(&w, id).await;
    assert!(s.deleted);
    assert_eq!(s.vm_state, VmState::Deleted);
    assert_eq!(allocations(&w, id).await, 0);
    assert!(w.driver.instances().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unbootable_image_ends_in_error_with_a_fault() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    assert_eq!(
        boot_with(&w, id, image(true), ExecOptions::default()).await,
        SagaState::Failed
    );
    let s = server(&w, id).await;
    assert_eq!(s.vm_state, VmState::Error);
    let fault = w.store.server_fault(&id).await.unwrap().unwrap();
    assert!(fault.message.contains("not bootable"), "{}", fault.message);
    assert_eq!(allocations(&w, id).await, 0);
}

#[tokio::test]
async fn no_room_anywhere_is_no_valid_host() {
    let w = world().await;
    let id = new_server(&w, 64 * 1024).await;
    assert_eq!(
        boot_with(&w, id, image(false), ExecOptions::default()).await,
        SagaState::Failed
    );
    let s = server(&w, id).await;
    assert_eq!(s.vm_state, VmState::Error);
    assert!(s.host.is_none());
    let fault = w.store.server_fault(&id).await.unwrap().unwrap();
    assert!(
        fault.message.contains("No valid host was found"),
        "{}",
        fault.message
    );
}

#[tokio::test]
async fn a_saga_left_running_by_a_crash_resumes() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    // A boot saga recorded but never run, as if the process died right after the API call.
    let rec = boot::record(&boot::BootParams {
        server_id: id,
        image: image(false),
        nics: vec![],
        security_groups: vec![],
    })
    .unwrap();
    w.store.saga_insert(&rec).await.unwrap();
    assert_eq!(w.conductor.resume_unfinished().await.unwrap(), 1);
    w.conductor.drain().await;
    assert_eq!(server(&w, id).await.vm_state, VmState::Active);
    assert!(w.store.sagas_unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn power_actions_move_the_state_machine() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    boot_with(&w, id, image(false), ExecOptions::default()).await;
    for (cmd, vm, ps) in [
        (PowerCommand::Stop, VmState::Stopped, PowerState::Shutdown),
        (PowerCommand::Start, VmState::Active, PowerState::Running),
        (
            PowerCommand::RebootHard,
            VmState::Active,
            PowerState::Running,
        ),
        (
            PowerCommand::RebootSoft,
            VmState::Active,
            PowerState::Running,
        ),
    ] {
        let rec = power::record(&power::PowerParams {
            server_id: id,
            command: cmd,
        })
        .unwrap();
        w.store.saga_insert(&rec).await.unwrap();
        let opts = ExecOptions {
            repeat_actions: true,
            ..Default::default()
        };
        assert_eq!(w.conductor.run(rec, opts).await.unwrap(), SagaState::Done);
        let s = server(&w, id).await;
        assert_eq!(
            (s.vm_state, s.power_state, s.task_state),
            (vm, ps, None),
            "{cmd:?}"
        );
    }
    let log = w.driver.console_output(id, None).await.unwrap();
    assert!(log.contains("boot 4"), "{log}");
}

#[tokio::test]
async fn power_sync_marks_dead_guests_shutoff_and_removes_orphans() {
    let w = world().await;
    let id = new_server(&w, 512).await;
    boot_with(&w, id, image(false), ExecOptions::default()).await;
    w.driver.guest_power_off(id);
    let r = w.conductor.sync_power_states().await.unwrap();
    assert_eq!(r.marked_shutoff, vec![id]);
    let s = server(&w, id).await;
    assert_eq!(
        (s.vm_state, s.power_state),
        (VmState::Stopped, PowerState::Shutdown)
    );

    // An instance whose server was deleted while nobody watched is destroyed.
    let orphan = new_server(&w, 512).await;
    boot_with(&w, orphan, image(false), ExecOptions::default()).await;
    w.store
        .server_update_state(
            &orphan,
            None,
            &oxistack_store::compute::ServerUpdate {
                deleted: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = w.conductor.sync_power_states().await.unwrap();
    assert_eq!(r.orphans_destroyed, vec![orphan]);
    assert_eq!(w.driver.instances().await.unwrap().len(), 1);
    // A second run finds nothing to do.
    let r = w.conductor.sync_power_states().await.unwrap();
    assert!(r.marked_shutoff.is_empty() && r.orphans_destroyed.is_empty() && r.errors.is_empty());
}

/// A project network with a /24 subnet, made through the network app layer.
async fn project_network(w: &World, project: ProjectId) -> oxistack_model::NetworkId {
    let ctx = oxistack_model::AuthContext::acting_for(project, UserId::new());
    let net = w
        .network
        .network_create(
            &ctx,
            NetworkCreate {
                name: Some("private".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.network
        .subnet_create(
            &ctx,
            SubnetCreate {
                network_id: net.net.id.to_string(),
                ip_version: 4,
                cidr: Some("10.9.0.0/24".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    net.net.id
}

#[tokio::test]
async fn boot_allocates_and_binds_ports_and_every_undo_releases_them() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let nic = vec![RequestedNic::Network {
        network_id: net,
        fixed_ip: None,
    }];

    let id = new_server_in(&w, 512, project).await;
    assert_eq!(
        boot_nics(
            &w,
            id,
            image(false),
            nic.clone(),
            ExecOptions {
                repeat_actions: true,
                ..Default::default()
            }
        )
        .await,
        SagaState::Done
    );
    let ports = w.store.ports_of_device(&id.to_string()).await.unwrap();
    assert_eq!(ports.len(), 1, "one port, even with every action run twice");
    assert!(ports[0].fixed_ips[0]
        .ip_address
        .to_string()
        .starts_with("10.9.0."));

    // A failure after the network step releases the port.
    for step in 1..4 {
        let id = new_server_in(&w, 512, project).await;
        let opts = ExecOptions {
            fail_at: Some(step),
            repeat_undos: true,
            ..Default::default()
        };
        assert_eq!(
            boot_nics(&w, id, image(false), nic.clone(), opts).await,
            SagaState::Failed
        );
        assert!(
            w.store
                .ports_of_device(&id.to_string())
                .await
                .unwrap()
                .is_empty(),
            "port left after a failure at step {step}"
        );
    }

    // Delete releases it too.
    let rec = delete::record(id);
    w.store.saga_insert(&rec).await.unwrap();
    assert_eq!(
        w.conductor
            .run(
                rec,
                ExecOptions {
                    repeat_actions: true,
                    ..Default::default()
                }
            )
            .await
            .unwrap(),
        SagaState::Done
    );
    assert!(w
        .store
        .ports_of_device(&id.to_string())
        .await
        .unwrap()
        .is_empty());
}

// ------------------------------------------------------------ interfaces

/// A booted server of `project` (no NICs) and a free port of the project on `net`.
async fn server_and_port(
    w: &World,
    project: ProjectId,
    net: oxistack_model::NetworkId,
) -> (ServerId, oxistack_model::PortId) {
    let id = new_server_in(w, 512, project).await;
    assert_eq!(
        boot_with(w, id, image(false), ExecOptions::default()).await,
        SagaState::Done
    );
    let ctx = oxistack_model::AuthContext::acting_for(project, UserId::new());
    let port = w
        .network
        .port_create(
            &ctx,
            oxistack_network::ports::PortCreate {
                network_id: net.to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (id, port.id)
}

async fn run_saga(
    w: &World,
    rec: oxistack_store::sagas::SagaRecord,
    opts: ExecOptions,
) -> SagaState {
    w.store.saga_insert(&rec).await.unwrap();
    w.conductor.run(rec, opts).await.unwrap()
}

fn attach(
    id: ServerId,
    nic: RequestedNic,
    port_id: oxistack_model::PortId,
) -> oxistack_store::sagas::SagaRecord {
    interface::attach_record(&interface::AttachParams {
        server_id: id,
        nic,
        port_id,
    })
    .unwrap()
}

fn detach(id: ServerId, port_id: oxistack_model::PortId) -> oxistack_store::sagas::SagaRecord {
    interface::detach_record(&interface::DetachParams {
        server_id: id,
        port_id,
    })
    .unwrap()
}

async fn port(w: &World, id: oxistack_model::PortId) -> Option<oxistack_store::network::Port> {
    w.store.port_get(Scope::All, &id).await.ok()
}

fn plugged(w: &World, id: ServerId) -> Vec<oxistack_model::PortId> {
    w.driver
        .nics(id)
        .unwrap_or_default()
        .iter()
        .map(|n| n.port_id)
        .collect()
}

#[tokio::test]
async fn interfaces_attach_by_port_and_by_network_and_detach() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let (id, user_port) = server_and_port(&w, project, net).await;
    let twice = ExecOptions {
        repeat_actions: true,
        ..Default::default()
    };

    // The user's port: bound to the server's host, plugged, once.
    let rec = attach(id, RequestedNic::Port(user_port), user_port);
    assert_eq!(run_saga(&w, rec, twice).await, SagaState::Done);
    let p = port(&w, user_port).await.unwrap();
    assert_eq!(p.device_id, id.to_string());
    assert_eq!(p.device_owner, "compute:nova");
    assert_eq!(p.binding_host_id, HOST);
    assert_eq!(p.status, "ACTIVE");
    assert!(p.tap.is_some());
    assert!(!p.auto_delete);
    assert_eq!(plugged(&w, id), vec![user_port]);

    // A new port on the network, with the fixed IP asked for, made once.
    let new_port = oxistack_model::PortId::new();
    let rec = attach(
        id,
        RequestedNic::Network {
            network_id: net,
            fixed_ip: Some("10.9.0.77".parse().unwrap()),
        },
        new_port,
    );
    assert_eq!(run_saga(&w, rec, twice).await, SagaState::Done);
    let p = port(&w, new_port).await.unwrap();
    assert_eq!(p.device_id, id.to_string());
    assert!(p.auto_delete);
    assert_eq!(p.fixed_ips[0].ip_address.to_string(), "10.9.0.77");
    assert_eq!(
        w.store
            .ports_of_device(&id.to_string())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(plugged(&w, id), vec![user_port, new_port]);
    let addrs = w.network.server_addresses(&[id]).await.unwrap();
    assert_eq!(addrs[&id]["private"].len(), 2, "{addrs:?}");

    // Detach: the user's port is unbound and kept, the one made here deleted.
    assert_eq!(
        run_saga(&w, detach(id, user_port), twice).await,
        SagaState::Done
    );
    let p = port(&w, user_port).await.unwrap();
    assert_eq!((p.device_id.as_str(), p.status.as_str()), ("", "DOWN"));
    assert!(p.binding_host_id.is_empty() && p.tap.is_none());
    assert_eq!(plugged(&w, id), vec![new_port]);
    assert_eq!(
        run_saga(&w, detach(id, new_port), twice).await,
        SagaState::Done
    );
    assert!(
        port(&w, new_port).await.is_none(),
        "the port made for the server is deleted"
    );
    assert!(plugged(&w, id).is_empty());
    // Detaching again changes nothing.
    assert_eq!(
        run_saga(&w, detach(id, new_port), ExecOptions::default()).await,
        SagaState::Done
    );

    // A port attached to a stopped server is recorded for its next start.
    let rec = power::record(&power::PowerParams {
        server_id: id,
        command: PowerCommand::Stop,
    })
    .unwrap();
    assert_eq!(
        run_saga(&w, rec, ExecOptions::default()).await,
        SagaState::Done
    );
    let rec = attach(id, RequestedNic::Port(user_port), user_port);
    assert_eq!(
        run_saga(&w, rec, ExecOptions::default()).await,
        SagaState::Done
    );
    assert_eq!(plugged(&w, id), vec![user_port]);

    // Delete releases attached ports as it releases booted ones.
    assert_eq!(
        run_saga(&w, delete::record(id), ExecOptions::default()).await,
        SagaState::Done
    );
    assert_eq!(port(&w, user_port).await.unwrap().device_id, "");
}

#[tokio::test]
async fn a_failure_at_every_attach_step_leaves_the_port_as_it_was() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let (id, user_port) = server_and_port(&w, project, net).await;
    for step in 0..2 {
        for repeat_undos in [false, true] {
            let opts = ExecOptions {
                fail_at: Some(step),
                repeat_undos,
                ..Default::default()
            };
            let rec = attach(id, RequestedNic::Port(user_port), user_port);
            assert_eq!(
                run_saga(&w, rec, opts).await,
                SagaState::Failed,
                "step {step}"
            );
            let p = port(&w, user_port).await.unwrap();
            assert_eq!(
                (
                    p.device_id.as_str(),
                    p.binding_host_id.as_str(),
                    p.status.as_str()
                ),
                ("", "", "DOWN"),
                "user port still bound after a failure at step {step}"
            );
            assert!(p.tap.is_none());
            assert!(plugged(&w, id).is_empty(), "NIC left at step {step}");

            let new_port = oxistack_model::PortId::new();
            let rec = attach(
                id,
                RequestedNic::Network {
                    network_id: net,
                    fixed_ip: None,
                },
                new_port,
            );
            assert_eq!(
                run_saga(&w, rec, opts).await,
                SagaState::Failed,
                "step {step}"
            );
            assert!(
                port(&w, new_port).await.is_none(),
                "new port left at step {step}"
            );
            assert!(plugged(&w, id).is_empty());
        }
    }
    // The server itself is untouched by a failed attach.
    let s = server(&w, id).await;
    assert_eq!((s.vm_state, s.task_state), (VmState::Active, None));
    assert!(w
        .store
        .ports_of_device(&id.to_string())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_agent_that_cannot_plug_unwinds_the_attach_with_its_error() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let (id, user_port) = server_and_port(&w, project, net).await;
    w.driver.fail_next(FakeOp::AttachNic, "no free PCI slot");
    let rec = attach(id, RequestedNic::Port(user_port), user_port);
    w.store.saga_insert(&rec).await.unwrap();
    let (state, err) = w
        .conductor
        .run_reporting(rec, ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(state, SagaState::Failed);
    assert!(err.unwrap().message.contains("no free PCI slot"));
    assert_eq!(port(&w, user_port).await.unwrap().device_id, "");
    assert!(plugged(&w, id).is_empty());
    let fault = w.store.server_fault(&id).await.unwrap().expect("a fault");
    assert!(
        fault.message.contains("Failed to attach network adapter"),
        "{}",
        fault.message
    );
    assert_eq!(server(&w, id).await.vm_state, VmState::Active);

    // A port another server took meanwhile is refused, and left to it.
    let (other, _) = server_and_port(&w, project, net).await;
    let rec = attach(other, RequestedNic::Port(user_port), user_port);
    assert_eq!(
        run_saga(&w, rec, ExecOptions::default()).await,
        SagaState::Done
    );
    let rec = attach(id, RequestedNic::Port(user_port), user_port);
    w.store.saga_insert(&rec).await.unwrap();
    let (state, err) = w
        .conductor
        .run_reporting(rec, ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(state, SagaState::Failed);
    assert_eq!(err.unwrap().status(), 409);
    assert_eq!(
        port(&w, user_port).await.unwrap().device_id,
        other.to_string()
    );
    assert_eq!(plugged(&w, other), vec![user_port]);
}

#[tokio::test]
async fn a_failed_detach_keeps_the_port_and_a_second_one_succeeds() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let (id, user_port) = server_and_port(&w, project, net).await;
    let rec = attach(id, RequestedNic::Port(user_port), user_port);
    assert_eq!(
        run_saga(&w, rec, ExecOptions::default()).await,
        SagaState::Done
    );

    w.driver
        .fail_next(FakeOp::DetachNic, "guest did not let go");
    assert_eq!(
        run_saga(&w, detach(id, user_port), ExecOptions::default()).await,
        SagaState::Failed
    );
    assert_eq!(port(&w, user_port).await.unwrap().device_id, id.to_string());
    assert_eq!(plugged(&w, id), vec![user_port]);
    let fault = w.store.server_fault(&id).await.unwrap().expect("a fault");
    assert!(
        fault.message.contains("Failed to detach"),
        "{}",
        fault.message
    );

    // A failure after the unplug: the release is retried by the next detach.
    assert_eq!(
        run_saga(
            &w,
            detach(id, user_port),
            ExecOptions {
                fail_at: Some(0),
                repeat_undos: true,
                ..Default::default()
            }
        )
        .await,
        SagaState::Failed
    );
    assert!(plugged(&w, id).is_empty());
    assert_eq!(port(&w, user_port).await.unwrap().device_id, id.to_string());
    assert_eq!(
        run_saga(&w, detach(id, user_port), ExecOptions::default()).await,
        SagaState::Done
    );
    assert_eq!(port(&w, user_port).await.unwrap().device_id, "");
}

#[tokio::test]
async fn attach_and_detach_sagas_left_by_a_crash_resume() {
    let w = world().await;
    let project = ProjectId::new();
    let net = project_network(&w, project).await;
    let (id, user_port) = server_and_port(&w, project, net).await;

    // Crashed after its first step: the port bound, the NIC not yet plugged.
    let new_port = oxistack_model::PortId::new();
    let mut rec = attach(
        id,
        RequestedNic::Network {
            network_id: net,
            fixed_ip: None,
        },
        new_port,
    );
    let out = interface::AttachSaga
        .action(&w.conductor, "port", &rec.params, &serde_json::json!({}))
        .await
        .unwrap();
    rec.step = 1;
    rec.outputs = serde_json::json!({ "port": out });
    w.store.saga_insert(&rec).await.unwrap();
    // Recorded, never run (a crash right after the API call).
    let rec2 = attach(id, RequestedNic::Port(user_port), user_port);
    w.store.saga_insert(&rec2).await.unwrap();

    assert_eq!(w.conductor.resume_unfinished().await.unwrap(), 2);
    w.conductor.drain().await;
    assert!(w.store.sagas_unfinished().await.unwrap().is_empty());
    let mut got = plugged(&w, id);
    got.sort();
    let mut want = vec![new_port, user_port];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        w.store
            .ports_of_device(&id.to_string())
            .await
            .unwrap()
            .len(),
        2
    );

    // A detach recorded but never run.
    w.store.saga_insert(&detach(id, new_port)).await.unwrap();
    assert_eq!(w.conductor.resume_unfinished().await.unwrap(), 1);
    w.conductor.drain().await;
    assert_eq!(plugged(&w, id), vec![user_port]);
    assert!(port(&w, new_port).await.is_none());
}
