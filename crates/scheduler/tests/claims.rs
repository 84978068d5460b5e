//! The scheduler's claims on a real store (SQLite by default, PostgreSQL
//! with OXISTACK_TEST_DATABASE=postgres).

use std::sync::Arc;

use oxistack_model::config::Settings;
use oxistack_model::{ConsumerId, ErrorKind, ProjectId, UserId};
use oxistack_scheduler::{
    ConsumerWrite, HostCapacity, InventorySpec, Placement, ProviderFilter, ResourceRequest,
};
use oxistack_store::test_db::TestDb;
use oxistack_store::Store;

async fn placement(settings: Settings) -> (TestDb, Arc<Placement>) {
    let db = TestDb::new().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    (db, Arc::new(Placement::new(store, Arc::new(settings))))
}

fn req(vcpus: i64, memory_mb: i64, disk_gb: i64) -> ResourceRequest {
    ResourceRequest {
        vcpus,
        memory_mb,
        disk_gb,
    }
}

async fn claim(p: &Placement, r: ResourceRequest) -> Result<String, oxistack_model::AppError> {
    p.claim(ConsumerId::new(), ProjectId::new(), UserId::new(), r)
        .await
}

#[tokio::test]
async fn cpu_ratio_lets_eight_vcpus_fit_on_two_cores() {
    let (_db, p) = placement(Settings {
        reserved_host_memory_mb: 0,
        ..Settings::default()
    })
    .await;
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 2,
            memory_mb: 100_000,
            disk_gb: 1000,
        },
    )
    .await
    .unwrap();
    for _ in 0..8 {
        assert_eq!(claim(&p, req(1, 10, 1)).await.unwrap(), "host1");
    }
    let e = claim(&p, req(1, 10, 1)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoValidHost);
    assert_eq!(
        e.message,
        "No valid host was found. There are not enough hosts available."
    );
}

#[tokio::test]
async fn reserved_memory_is_not_offered() {
    let (_db, p) = placement(Settings {
        reserved_host_memory_mb: 512,
        ..Settings::default()
    })
    .await;
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 8,
            memory_mb: 2048,
            disk_gb: 10,
        },
    )
    .await
    .unwrap();
    // 2048 - 512 = 1536 MB: 1024 + 512 fit, then nothing more.
    claim(&p, req(1, 1024, 1)).await.unwrap();
    claim(&p, req(1, 512, 1)).await.unwrap();
    assert_eq!(
        claim(&p, req(1, 1, 0)).await.unwrap_err().kind,
        ErrorKind::NoValidHost
    );
    let rps = p.list_providers(&ProviderFilter::default()).await.unwrap();
    let (_, usages) = p.provider_usages(&rps[0].uuid).await.unwrap();
    assert_eq!(usages["MEMORY_MB"], 1536);
    assert_eq!(usages["VCPU"], 2);
}

#[tokio::test]
async fn concurrent_claims_never_overcommit() {
    let (_db, p) = placement(Settings {
        reserved_host_memory_mb: 0,
        ..Settings::default()
    })
    .await;
    // Ten 1 GB servers fit, not eleven.
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 64,
            memory_mb: 10 * 1024,
            disk_gb: 1000,
        },
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { claim(&p, req(1, 1024, 1)).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(host) => {
                assert_eq!(host, "host1");
                ok += 1;
            }
            Err(e) => assert_eq!(e.kind, ErrorKind::NoValidHost, "{e}"),
        }
    }
    assert_eq!(ok, 10);
    let rp = &p.list_providers(&ProviderFilter::default()).await.unwrap()[0];
    assert_eq!(
        p.provider_usages(&rp.uuid).await.unwrap().1["MEMORY_MB"],
        10 * 1024
    );
}

#[tokio::test]
async fn claim_and_release_are_idempotent() {
    let (_db, p) = placement(Settings {
        reserved_host_memory_mb: 0,
        ..Settings::default()
    })
    .await;
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 4,
            memory_mb: 4096,
            disk_gb: 10,
        },
    )
    .await
    .unwrap();
    let (c, proj, user) = (ConsumerId::new(), ProjectId::new(), UserId::new());
    let a = p.claim(c, proj, user, req(2, 2048, 5)).await.unwrap();
    let b = p.claim(c, proj, user, req(2, 2048, 5)).await.unwrap();
    assert_eq!(a, b);
    let rp = &p.list_providers(&ProviderFilter::default()).await.unwrap()[0];
    assert_eq!(
        p.provider_usages(&rp.uuid).await.unwrap().1["MEMORY_MB"],
        2048,
        "second claim added nothing"
    );
    let view = p.consumer_allocations(&c.to_string()).await.unwrap();
    assert_eq!(view.consumer.unwrap().project_id, proj.to_string());
    p.release(c).await.unwrap();
    p.release(c).await.unwrap();
    let usages = p.provider_usages(&rp.uuid).await.unwrap().1;
    assert!(usages.values().all(|v| *v == 0), "{usages:?}");
    assert!(p
        .consumer_allocations(&c.to_string())
        .await
        .unwrap()
        .by_provider
        .is_empty());
}

#[tokio::test]
async fn zero_disk_allocates_no_disk_and_spread_prefers_free_ram() {
    let (_db, p) = placement(Settings {
        reserved_host_memory_mb: 0,
        ..Settings::default()
    })
    .await;
    p.ensure_host_provider(
        "small",
        HostCapacity {
            vcpus: 4,
            memory_mb: 2048,
            disk_gb: 10,
        },
    )
    .await
    .unwrap();
    p.ensure_host_provider(
        "big",
        HostCapacity {
            vcpus: 4,
            memory_mb: 8192,
            disk_gb: 10,
        },
    )
    .await
    .unwrap();
    let c = ConsumerId::new();
    assert_eq!(
        p.claim(c, ProjectId::new(), UserId::new(), req(1, 512, 0))
            .await
            .unwrap(),
        "big"
    );
    let view = p.consumer_allocations(&c.to_string()).await.unwrap();
    let classes: Vec<_> = view.by_provider[0].1.keys().cloned().collect();
    assert_eq!(classes, ["MEMORY_MB", "VCPU"]);
    // big has 7680 free, small 2048: big again until it drops below small.
    assert_eq!(claim(&p, req(1, 5632, 0)).await.unwrap(), "big");
    // Now both have 2048 free: tie broken by name.
    assert_eq!(claim(&p, req(1, 1, 0)).await.unwrap(), "big");
    assert_eq!(claim(&p, req(1, 1, 0)).await.unwrap(), "small");
}

#[tokio::test]
async fn ensure_host_provider_keeps_uuid_and_allocations() {
    let (_db, p) = placement(Settings::default()).await;
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 2,
            memory_mb: 4096,
            disk_gb: 10,
        },
    )
    .await
    .unwrap();
    let before = p
        .list_providers(&ProviderFilter::default())
        .await
        .unwrap()
        .remove(0);
    claim(&p, req(1, 1024, 1)).await.unwrap();
    p.ensure_host_provider(
        "host1",
        HostCapacity {
            vcpus: 4,
            memory_mb: 8192,
            disk_gb: 20,
        },
    )
    .await
    .unwrap();
    let after = p
        .list_providers(&ProviderFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(before.uuid, after.uuid);
    assert!(after.generation > before.generation + 1);
    let (_, inv) = p.inventories(&after.uuid).await.unwrap();
    let vcpu = inv.iter().find(|i| i.resource_class == "VCPU").unwrap();
    assert_eq!((vcpu.total, vcpu.allocation_ratio), (4, 4.0));
    let mem = inv
        .iter()
        .find(|i| i.resource_class == "MEMORY_MB")
        .unwrap();
    assert_eq!((mem.total, mem.reserved), (8192, 512));
    assert_eq!(p.provider_usages(&after.uuid).await.unwrap().1["VCPU"], 1);
}

#[tokio::test]
async fn stale_generation_is_a_concurrent_update() {
    let (_db, p) = placement(Settings::default()).await;
    let rp = p.create_provider(None, "rp1", None).await.unwrap();
    let spec = InventorySpec {
        total: 8,
        reserved: 0,
        min_unit: 1,
        max_unit: 8,
        step_size: 1,
        allocation_ratio: 1.0,
    };
    let (rp2, _) = p
        .set_inventories(
            &rp.uuid,
            rp.generation,
            &[("VCPU".into(), spec.clone())],
            true,
            false,
        )
        .await
        .unwrap();
    assert_eq!(rp2.generation, rp.generation + 1);
    let e = p
        .set_inventories(
            &rp.uuid,
            rp.generation,
            &[("VCPU".into(), spec)],
            true,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409);
    assert_eq!(e.code, Some("placement.concurrent_update"));
}

#[tokio::test]
async fn allocation_writes_check_capacity_and_consumer_generation() {
    let (_db, p) = placement(Settings::default()).await;
    let rp = p.create_provider(None, "rp1", None).await.unwrap();
    let spec = InventorySpec {
        total: 4,
        reserved: 0,
        min_unit: 1,
        max_unit: 4,
        step_size: 1,
        allocation_ratio: 1.0,
    };
    p.set_inventories(
        &rp.uuid,
        rp.generation,
        &[("VCPU".into(), spec)],
        true,
        false,
    )
    .await
    .unwrap();
    let w = |c: &str, n: i64, g: Option<Option<i64>>| ConsumerWrite {
        consumer: c.to_string(),
        project_id: "p".into(),
        user_id: "u".into(),
        consumer_generation: g,
        allocations: vec![(rp.uuid.clone(), "VCPU".into(), n)],
    };
    let (c1, c2) = (ConsumerId::new().to_string(), ConsumerId::new().to_string());
    p.set_allocations(&[w(&c1, 3, Some(None))]).await.unwrap();
    // Consumer generation: a new consumer must say null; an old one its own.
    let e = p
        .set_allocations(&[w(&c1, 2, Some(None))])
        .await
        .unwrap_err();
    assert_eq!(e.code, Some("placement.concurrent_update"));
    p.set_allocations(&[w(&c1, 2, Some(Some(0)))])
        .await
        .unwrap();
    // 2 + 3 > 4.
    let e = p.set_allocations(&[w(&c2, 3, None)]).await.unwrap_err();
    assert_eq!(e.status(), 409);
    assert!(e.message.contains("exceed the capacity"), "{}", e.message);
    p.set_allocations(&[w(&c2, 2, None)]).await.unwrap();
    // Inventory in use cannot go.
    let e = p
        .delete_inventory(&rp.uuid, Some("VCPU"))
        .await
        .unwrap_err();
    assert_eq!(e.code, Some("placement.inventory.inuse"));
    let e = p.delete_provider(&rp.uuid).await.unwrap_err();
    assert_eq!(e.code, Some("placement.resource_provider.inuse"));
    p.delete_allocations(&c1).await.unwrap();
    assert_eq!(p.delete_allocations(&c1).await.unwrap_err().status(), 404);
    assert_eq!(p.project_usages("p", None).await.unwrap()["VCPU"], 2);
}
