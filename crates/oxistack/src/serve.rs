//! `oxistack serve`: opens the store, builds every role, and serves the API
//! until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oxistack_agent::fake::FakeDriver;
use oxistack_agent::{ComputeAgent, VirtDriver};
use oxistack_api::{AppState, SERVED};
use oxistack_bus::{Bus, InProcessBus};
use oxistack_compute::Compute;
use oxistack_conductor::Conductor;
use oxistack_identity::{CatalogService, Identity};
use oxistack_images::Images;
use oxistack_model::config::Settings;
use oxistack_scheduler::{HostCapacity, Placement};
use oxistack_store::Store;

use crate::config::{self, ServeArgs, Virt};

fn host_name(settings: &Settings) -> String {
    settings.host.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// The host's real capacity, where settings do not override it.
fn host_capacity(settings: &Settings, dir: &Path) -> (i64, i64, i64) {
    let vcpus = settings.host_vcpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1)
    });
    let memory = settings.host_memory_mb.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<i64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(1024)
    });
    let disk = settings.host_disk_gb.unwrap_or_else(|| {
        nix::sys::statvfs::statvfs(dir)
            .map(|s| (s.blocks() as i64 * s.fragment_size() as i64) >> 30)
            .unwrap_or(10)
    });
    (vcpus, memory, disk)
}

/// `DIR/clouds.yaml` (mode 0600) with the admin's credentials, for
/// `OS_CLIENT_CONFIG_FILE=DIR/clouds.yaml openstack --os-cloud oxistack`.
fn write_clouds_yaml(dir: &Path, settings: &Settings, password: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // JSON strings are valid YAML double-quoted scalars, and escape safely.
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let text = format!(
        "clouds:\n  oxistack:\n    auth:\n      auth_url: {}\n      username: \"admin\"\n      password: {}\n      project_name: \"admin\"\n      user_domain_name: \"Default\"\n      project_domain_name: \"Default\"\n    region_name: {}\n    interface: \"public\"\n    identity_api_version: 3\n",
        q(&format!("{}/identity/v3", settings.public_url())),
        q(password),
        q(&settings.region),
    );
    let path = dir.join("clouds.yaml");
    let tmp = dir.join(".clouds.yaml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let settings = Arc::new(config::load(&args)?);
    let db_url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/oxistack.db", dir.display()));
    let store = Store::open(&db_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let catalog = SERVED
        .iter()
        .map(|(ty, name, path)| CatalogService {
            service_type: ty.to_string(),
            name: name.to_string(),
            path: path.to_string(),
        })
        .collect();
    let identity = Arc::new(Identity::new(store.clone(), settings.clone(), catalog));
    let boot = identity
        .bootstrap(
            std::env::var("OXISTACK_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("identity bootstrap: {e}"))?;
    // The password is known when it was just generated or given; otherwise
    // the clouds.yaml written at first start stays as it is.
    if !boot.admin_password.is_empty() {
        write_clouds_yaml(&dir, &settings, &boot.admin_password)?;
    }

    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir)?;
    let images = Arc::new(Images::new(store.clone(), images_dir, settings.clone()));
    let placement = Arc::new(Placement::new(store.clone(), settings.clone()));

    let host = host_name(&settings);
    let driver: Arc<dyn VirtDriver> = match args.virt {
        Virt::Fake => Arc::new(
            FakeDriver::new(
                &host,
                Some(dir.join("fake-virt.json")),
                host_capacity(&settings, &dir),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        Virt::Qemu => {
            use oxistack_agent::qemu::{ImagePathFn, LocalImageSource, QemuConfig, QemuDriver};
            // The all-in-one host reads base images straight from the image store.
            let store = images.clone();
            let path_for: ImagePathFn =
                Arc::new(move |id: oxistack_model::ImageId| store.data_path(id));
            let mut qemu =
                QemuConfig::new(&host, dir.clone(), Arc::new(LocalImageSource::new(path_for)));
            qemu.accel = args.accel.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            qemu.capacity = Some(host_capacity(&settings, &dir));
            // Runs the accelerator probe once; a TCG fallback is logged there, once.
            Arc::new(QemuDriver::new(qemu).await.map_err(|e| anyhow::anyhow!("{e}"))?)
        }
    };
    let facts = driver.facts().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .host_upsert(&host, &facts.virt_type, &serde_json::to_value(&facts)?)
        .await
        .map_err(|e| anyhow::anyhow!("recording host {host}: {e}"))?;
    let bus = Arc::new(InProcessBus::new());
    bus.register(&host, Arc::new(ComputeAgent::new(driver)));
    placement
        .ensure_host_provider(
            &host,
            HostCapacity {
                vcpus: facts.vcpus,
                memory_mb: facts.memory_mb,
                disk_gb: facts.disk_gb,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("placement: {e}"))?;

    let bus_dyn: Arc<dyn Bus> = bus;
    let bus_for_network = bus_dyn.clone();
    let conductor = Conductor::new(store.clone(), bus_dyn, placement.clone(), settings.clone());
    let compute = Arc::new(Compute::new(
        store.clone(),
        conductor.clone(),
        images.clone(),
        settings.clone(),
    ));
    compute
        .ensure_default_flavors()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let resumed = conductor
        .resume_unfinished()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished workflows");
    }
    let sync = conductor.spawn_power_sync(Duration::from_secs(
        settings.power_sync_interval_secs.max(1),
    ));

    let network = Arc::new(oxistack_network::Network::new(store.clone(), settings.clone()));
    let admin_project = store
        .project_by_name(oxistack_model::DEFAULT_DOMAIN, "admin")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .and_then(|p| p.id.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the admin project is missing after bootstrap"))?;
    network
        .ensure_public_network(admin_project)
        .await
        .map_err(|e| anyhow::anyhow!("public network: {e}"))?;
    let network_reconciler = network.spawn_reconciler(
        bus_for_network.clone(),
        host.clone(),
        Duration::from_secs(settings.network_reconcile_interval_secs.max(1)),
        None,
    );

    let state = AppState {
        settings: settings.clone(),
        identity,
        images,
        compute,
        placement,
        network,
    };
    let app = oxistack_api::router(state);
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let url = settings.public_url();
    println!(
        "OxiStack is serving the cloud at {url} (listening on {})",
        listener.local_addr()?
    );
    println!("  data:     {}", dir.display());
    println!(
        "  database: {}",
        if db_url.starts_with("sqlite") {
            db_url.as_str()
        } else {
            "postgres (from --database)"
        }
    );
    println!(
        "  host:     {host} (virt: {}, {} vCPU, {} MB, {} GB)",
        facts.virt_type, facts.vcpus, facts.memory_mb, facts.disk_gb
    );
    println!("  CLI:      export OS_CLIENT_CONFIG_FILE={}/clouds.yaml OS_CLOUD=oxistack; openstack server list", dir.display());

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    sync.abort();
    network_reconciler.abort();
    tracing::info!("stopping: waiting for running workflows");
    // Running sagas finish their current step; unfinished ones resume at next start.
    let _ = tokio::time::timeout(Duration::from_secs(10), conductor.drain()).await;
    store.close().await;
    println!("OxiStack stopped.");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
