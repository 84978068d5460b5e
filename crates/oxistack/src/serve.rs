//! `oxistack serve`: opens the store, builds every role, and serves the API
//! until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oxistack_agent::fake::FakeDriver;
use oxistack_agent::network::{NetworkAgent, NetworkAgentConfig};
use oxistack_agent::{ComputeAgent, VirtDriver};
use oxistack_api::AppState;
use oxistack_bus::{Bus, InProcessBus};
use oxistack_model::config::Settings;
use oxistack_netdev::{Datapath, FakeDatapath, LinuxDatapath};
use oxistack_scheduler::HostCapacity;
use oxistack_store::Store;

use crate::config::{self, DatapathKind, ServeArgs, Virt};

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
    let store = Store::open(&db_url).await.map_err(anyhow_err)?;
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir)?;
    let bus = Arc::new(InProcessBus::new());
    let bus_dyn: Arc<dyn Bus> = bus.clone();
    let state = AppState::assemble(
        store.clone(),
        settings.clone(),
        images_dir,
        bus_dyn.clone(),
        AppState::served_catalog(),
    );

    // First start: identity bootstrap (and the clouds.yaml for the CLI).
    let boot = state
        .identity
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

    // This host's agent: the compute role with its virt driver, and the
    // network role with its datapath.
    let host = host_name(&settings);
    let driver: Arc<dyn VirtDriver> = match args.virt {
        Virt::Fake => Arc::new(
            FakeDriver::new(
                &host,
                Some(dir.join("fake-virt.json")),
                host_capacity(&settings, &dir),
            )
            .map_err(anyhow_err)?,
        ),
        Virt::Qemu => {
            use oxistack_agent::qemu::{ImagePathFn, LocalImageSource, QemuConfig, QemuDriver};
            // The all-in-one host reads base images straight from the image store.
            let images = state.images.clone();
            let path_for: ImagePathFn =
                Arc::new(move |id: oxistack_model::ImageId| images.data_path(id));
            let mut qemu = QemuConfig::new(
                &host,
                dir.clone(),
                Arc::new(LocalImageSource::new(path_for)),
            );
            qemu.accel = args.accel.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            qemu.capacity = Some(host_capacity(&settings, &dir));
            // Runs the accelerator probe once; a TCG fallback is logged there, once.
            Arc::new(QemuDriver::new(qemu).await.map_err(anyhow_err)?)
        }
    };
    let facts = driver.facts().await.map_err(anyhow_err)?;
    store
        .host_upsert(&host, &facts.virt_type, &serde_json::to_value(&facts)?)
        .await
        .map_err(|e| anyhow::anyhow!("recording host {host}: {e}"))?;
    bus.register(&host, Arc::new(ComputeAgent::new(driver)));
    let datapath: Arc<dyn Datapath> = match args.datapath {
        DatapathKind::Linux => Arc::new(LinuxDatapath::new()),
        DatapathKind::Fake => Arc::new(FakeDatapath::new()),
    };
    bus.register_network(
        &host,
        Arc::new(NetworkAgent::new(
            datapath,
            NetworkAgentConfig::new(dir.join("network")),
        )),
    );
    state
        .placement
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

    state
        .compute
        .ensure_default_flavors()
        .await
        .map_err(anyhow_err)?;
    let admin_project = store
        .project_by_name(oxistack_model::DEFAULT_DOMAIN, "admin")
        .await
        .map_err(anyhow_err)?
        .and_then(|p| p.id.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the admin project is missing after bootstrap"))?;
    state
        .network
        .ensure_public_network(admin_project)
        .await
        .map_err(|e| anyhow::anyhow!("public network: {e}"))?;

    // The metadata service, for the metadata proxies in tenant networks.
    let metadata_sock = dir.join("metadata.sock");
    let metadata_listener = oxistack_sys::unix_socket::bind(&metadata_sock)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(l)
        })
        .with_context(|| format!("listening on {}", metadata_sock.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&metadata_sock, std::fs::Permissions::from_mode(0o600))?;
    }
    let metadata_app = oxistack_api::metadata::router(state.clone());
    let metadata = tokio::spawn(async move {
        if let Err(e) = axum::serve(metadata_listener, metadata_app).await {
            tracing::error!(error = %e, "the metadata service stopped");
        }
    });

    // The reconciler first: it also sets the metadata upstream that every
    // converge (a resumed boot saga's too) puts in the spec; a converge
    // without it would tear the metadata proxies down.
    let network_reconciler = state.network.spawn_reconciler(
        bus_dyn,
        host.clone(),
        Duration::from_secs(settings.network_reconcile_interval_secs.max(1)),
        Some(metadata_sock.display().to_string()),
    );
    let conductor = state.compute.conductor.clone();
    let resumed = conductor.resume_unfinished().await.map_err(anyhow_err)?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished workflows");
    }
    let sync = conductor.spawn_power_sync(Duration::from_secs(
        settings.power_sync_interval_secs.max(1),
    ));

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
        "  host:     {host} (virt: {}, accel: {}, {} vCPU, {} MB, {} GB)",
        facts.virt_type, facts.accel, facts.vcpus, facts.memory_mb, facts.disk_gb
    );
    for w in &facts.warnings {
        println!("  WARNING:  {w}");
    }
    println!(
        "  CLI:      export OS_CLIENT_CONFIG_FILE={}/clouds.yaml OS_CLOUD=oxistack; openstack server list",
        dir.display()
    );

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    sync.abort();
    network_reconciler.abort();
    metadata.abort();
    let _ = std::fs::remove_file(&metadata_sock);
    tracing::info!("stopping: waiting for running workflows");
    // Running sagas finish their current step; unfinished ones resume at next start.
    let _ = tokio::time::timeout(Duration::from_secs(10), conductor.drain()).await;
    store.close().await;
    println!("OxiStack stopped.");
    Ok(())
}

fn anyhow_err(e: oxistack_model::AppError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
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
