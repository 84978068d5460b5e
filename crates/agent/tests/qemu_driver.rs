//! The QEMU virt driver against real QEMU under TCG, booting the tiny guest image
//! (tools/build-guest-image). Slow (tens of seconds per boot), so these run only with
//! `OXISTACK_QEMU_TESTS=1`; the image is built into `target/oxistack-guest/` unless
//! `OXISTACK_GUEST_IMAGE` names one already built.
//!
//! Every wait is bounded. A guard kills the QEMUs a test started (only pids the driver
//! verified as that instance's QEMU) even when the test fails half-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxistack_agent::qemu::{AccelRequest, ImagePathFn, LocalImageSource, QemuConfig, QemuDriver};
use oxistack_agent::VirtDriver;
use oxistack_bus::{ImageSpec, InstanceSpec, PowerCommand};
use oxistack_model::server_state::PowerState;
use oxistack_model::{ImageId, ServerId};

/// One boot of the tiny guest under TCG on a loaded 2-core machine takes ~20-60 s; this
/// guards against hangs, it is not a performance assertion.
const BOOT_BOUND: Duration = Duration::from_secs(240);
const BOOTED: &str = "oxistack-guest: booted";

fn enabled() -> bool {
    if std::env::var_os("OXISTACK_QEMU_TESTS").is_some_and(|v| v == "1") {
        return true;
    }
    eprintln!("skipped: set OXISTACK_QEMU_TESTS=1 to run the QEMU driver against real guests");
    false
}

static BUILD: Mutex<()> = Mutex::new(());

fn guest_image() -> PathBuf {
    if let Some(p) = std::env::var_os("OXISTACK_GUEST_IMAGE") {
        return PathBuf::from(p);
    }
    let _one_build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = root.join("target/oxistack-guest/tiny.qcow2");
    if !out.is_file() {
        let status = Command::new("bash")
            .arg(root.join("tools/build-guest-image"))
            .arg("tiny")
            .arg(&out)
            .status()
            .expect("run build-guest-image");
        assert!(status.success(), "build-guest-image failed");
    }
    out
}

/// A host: a fresh data dir, an image store beside it, and the driver over both.
struct Host {
    data: tempfile::TempDir,
    store: PathBuf,
    spawned: Mutex<Vec<ServerId>>,
}

impl Host {
    fn new() -> Host {
        // Under /tmp: the QMP socket path must stay under 108 bytes.
        let data = tempfile::Builder::new()
            .prefix("oxq")
            .tempdir_in("/tmp")
            .unwrap();
        let store = data.path().join("images");
        std::fs::create_dir_all(&store).unwrap();
        Host {
            data,
            store,
            spawned: Mutex::new(vec![]),
        }
    }

    async fn driver(&self) -> QemuDriver {
        let store = self.store.clone();
        let path_for: ImagePathFn = Arc::new(move |id: ImageId| store.join(id.to_string()));
        let mut config = QemuConfig::new(
            "test-host",
            self.data.path().to_path_buf(),
            Arc::new(LocalImageSource::new(path_for)),
        );
        config.accel = AccelRequest::Tcg;
        config.stop_grace = Duration::from_secs(90);
        QemuDriver::new(config).await.unwrap()
    }

    /// Puts `data` (a file) into the image store as a new image.
    fn add_image(&self, file: &Path, disk_format: &str) -> ImageSpec {
        let id = ImageId::new();
        std::fs::copy(file, self.store.join(id.to_string())).unwrap();
        ImageSpec {
            id,
            disk_format: disk_format.into(),
            size: std::fs::metadata(file).unwrap().len() as i64,
            os_hash_value: Some(oxistack_agent::qemu::image_cache::sha512_file(file).unwrap()),
            properties: Default::default(),
        }
    }

    fn spec(&self, name: &str, image: &ImageSpec) -> InstanceSpec {
        let id = ServerId::new();
        self.spawned.lock().unwrap().push(id);
        InstanceSpec {
            server_id: id,
            name: name.into(),
            hostname: name.into(),
            project_id: Default::default(),
            user_id: Default::default(),
            vcpus: 1,
            memory_mb: 256,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: image.clone(),
            key_name: Some("k".into()),
            key_data: Some(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxiStackTestKey test@oxistack\n".into(),
            ),
            user_data: None,
            config_drive: true,
            metadata: Default::default(),
            availability_zone: "nova".into(),
            launch_index: 0,
            nics: vec![],
        }
    }

    fn instance_path(&self, id: ServerId) -> PathBuf {
        self.data
            .path()
            .join("instances")
            .join(id.as_uuid().hyphenated().to_string())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for id in self
            .spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let pidfile = self.instance_path(*id).join("qemu.pid");
            if let Ok(Some(pid)) = oxistack_qemu::find_instance_qemu(&pidfile, id.as_uuid()) {
                // Verified above to be this test's instance QEMU.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Waits until the console holds `n` occurrences of each of `needles`.
async fn wait_console(d: &QemuDriver, id: ServerId, needles: &[&str], n: usize) -> String {
    let r = tokio::time::timeout(BOOT_BOUND, async {
        loop {
            let log = d.console_output(id, None).await.unwrap();
            if needles.iter().all(|w| count(&log, w) >= n) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    match r {
        Ok(log) => log,
        Err(_) => {
            let log = d.console_output(id, None).await.unwrap_or_default();
            panic!("console did not show {needles:?} x{n} within {BOOT_BOUND:?}:\n{log}");
        }
    }
}

async fn state(d: &QemuDriver, id: ServerId) -> Option<PowerState> {
    d.instances()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.server_id == id)
        .map(|i| i.power_state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_of_a_real_guest() {
    if !enabled() {
        return;
    }
    let host = Host::new();
    let image = host.add_image(&guest_image(), "qcow2");
    let d = host.driver().await;
    let spec = host.spec("vm1", &image);
    let id = spec.server_id;

    // Spawn with a config drive: the guest boots and takes its hostname from it.
    d.spawn(&spec).await.unwrap();
    let pid = d.qemu_pid(id).unwrap().expect("QEMU runs after spawn");
    assert_eq!(state(&d, id).await, Some(PowerState::Running));
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=vm1"], 1).await;
    let dir = host.instance_path(id);
    for f in [
        "disk.qcow2",
        "disk.config",
        "console.log",
        "qmp.sock",
        "qemu.pid",
        "spec.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // The root disk is an overlay on the cached image, grown to the flavor's 1 GB.
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", "--force-share"])
        .arg(dir.join("disk.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 1u64 << 30);
    assert!(info["backing-filename"]
        .as_str()
        .unwrap()
        .contains("image-cache"));
    // The console API's line limit, cut as Nova cuts it: the log split on
    // newlines, the last pieces joined (a final newline leaves an empty piece).
    let last = d.console_output(id, Some(2)).await.unwrap();
    assert_eq!(last.split('\n').count(), 2, "{last:?}");
    assert!(last.trim_end().lines().count() <= 2, "{last:?}");

    // Spawn again: nothing happens (same QEMU).
    d.spawn(&spec).await.unwrap();
    assert_eq!(d.qemu_pid(id).unwrap(), Some(pid));

    // Stop: ACPI power off, QEMU exits, the instance is Shutdown; stop again is a no-op.
    d.power(id, PowerCommand::Stop).await.unwrap();
    assert_eq!(d.qemu_pid(id).unwrap(), None);
    assert!(!oxistack_qemu::is_instance_qemu(pid, id.as_uuid()));
    assert_eq!(state(&d, id).await, Some(PowerState::Shutdown));
    d.power(id, PowerCommand::Stop).await.unwrap();

    // Start: a second boot, appended to the same console log.
    d.power(id, PowerCommand::Start).await.unwrap();
    d.power(id, PowerCommand::Start).await.unwrap();
    assert_eq!(state(&d, id).await, Some(PowerState::Running));
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=vm1"], 2).await;

    // Hard reboot: system_reset, same QEMU, a third boot.
    let pid = d.qemu_pid(id).unwrap().unwrap();
    d.power(id, PowerCommand::RebootHard).await.unwrap();
    // The hostname line comes after the guest's acpid started, which the soft reboot
    // below needs (a guest that ignores the power button gets a hard reboot instead).
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=vm1"], 3).await;
    assert_eq!(d.qemu_pid(id).unwrap(), Some(pid));

    // Soft reboot: ACPI power off then power on: a new QEMU, a fourth boot.
    d.power(id, PowerCommand::RebootSoft).await.unwrap();
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=vm1"], 4).await;
    let new_pid = d.qemu_pid(id).unwrap().unwrap();
    assert_ne!(
        new_pid, pid,
        "soft reboot relaunches QEMU after the guest powered off"
    );

    // QEMU killed behind the driver's back: the instance reads as Shutdown (the
    // conductor's power sync then marks the server SHUTOFF), and start recovers it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        while state(&d, id).await != Some(PowerState::Shutdown) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "killed QEMU still reported as running");
    d.power(id, PowerCommand::Stop).await.unwrap();
    d.power(id, PowerCommand::Start).await.unwrap();
    wait_console(&d, id, &[BOOTED], 5).await;
    let pid = d.qemu_pid(id).unwrap().unwrap();

    // Agent restart: a new driver over the same data dir adopts the running guest.
    drop(d);
    let d = host.driver().await;
    assert_eq!(d.qemu_pid(id).unwrap(), Some(pid));
    assert_eq!(state(&d, id).await, Some(PowerState::Running));
    d.spawn(&spec).await.unwrap();
    assert_eq!(
        d.qemu_pid(id).unwrap(),
        Some(pid),
        "spawn after restart must not relaunch"
    );
    d.power(id, PowerCommand::Start).await.unwrap();
    assert_eq!(d.qemu_pid(id).unwrap(), Some(pid));

    // Destroy: no QEMU, no directory (overlay, ISO, socket, pidfile, log); twice is fine.
    d.destroy(id).await.unwrap();
    assert!(!oxistack_qemu::is_instance_qemu(pid, id.as_uuid()));
    assert!(!dir.exists());
    assert_eq!(state(&d, id).await, None);
    d.destroy(id).await.unwrap();
    assert!(d.console_output(id, None).await.is_err());
    assert!(d.power(id, PowerCommand::Start).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbootable_image_runs_and_says_so() {
    if !enabled() {
        return;
    }
    let host = Host::new();
    let junk = host.data.path().join("junk.raw");
    let mut bytes = vec![0u8; 1 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut bytes,
    )
    .unwrap();
    // No boot signature: the BIOS finds nothing to boot.
    bytes[510] = 0;
    bytes[511] = 0;
    std::fs::write(&junk, &bytes).unwrap();
    let image = host.add_image(&junk, "raw");
    let d = host.driver().await;
    let spec = host.spec("junk", &image);
    let id = spec.server_id;
    d.spawn(&spec).await.unwrap();
    assert_eq!(state(&d, id).await, Some(PowerState::Running));
    let log = wait_console(&d, id, &["No bootable device"], 1).await;
    assert!(!log.contains(BOOTED), "{log}");
    d.destroy(id).await.unwrap();
    assert!(!host.instance_path(id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_guests_at_once_all_boot() {
    if !enabled() {
        return;
    }
    let host = Host::new();
    let image = host.add_image(&guest_image(), "qcow2");
    let d = Arc::new(host.driver().await);
    let specs: Vec<InstanceSpec> = (1..=3)
        .map(|i| host.spec(&format!("multi{i}"), &image))
        .collect();
    let mut tasks = vec![];
    for s in specs.clone() {
        let d = d.clone();
        tasks.push(tokio::spawn(async move { d.spawn(&s).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for s in &specs {
        wait_console(
            &d,
            s.server_id,
            &[BOOTED, &format!("oxistack-guest: hostname={}", s.name)],
            1,
        )
        .await;
    }
    // One cached image for the three.
    assert_eq!(
        std::fs::read_dir(host.data.path().join("image-cache"))
            .unwrap()
            .count(),
        1
    );
    for s in &specs {
        d.destroy(s.server_id).await.unwrap();
    }
    assert!(d.instances().await.unwrap().is_empty());
}

/// Taps made for one test (persistent, as the network agent makes them), with names
/// no one else uses; removed again even when the test fails.
struct Taps(Vec<String>);

impl Taps {
    fn new(n: usize) -> Taps {
        let suffix = ServerId::new().as_uuid().simple().to_string();
        let mut taps = Taps(vec![]);
        for i in 0..n {
            let name = format!("oxthp{}{i}", &suffix[..8]);
            let out = Command::new("ip")
                .args(["tuntap", "add", "dev", &name, "mode", "tap"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ip tuntap add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            taps.0.push(name);
        }
        taps
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("ip").args(["link", "del", t]).output();
        }
    }
}

fn nic(tap: &str, last: u8) -> oxistack_bus::NicSpec {
    oxistack_bus::NicSpec {
        port_id: oxistack_model::PortId::new(),
        network_id: Default::default(),
        mac: format!("fa:16:3e:5a:00:{last:02x}"),
        tap: tap.into(),
        mtu: 1500,
        fixed_ips: vec![],
    }
}

/// (device id, MAC) of each NIC QEMU has, sorted by MAC.
async fn guest_nics(d: &QemuDriver, id: ServerId) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = d
        .guest_nics(id)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, n.mac))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn recorded_macs(host: &Host, id: ServerId) -> Vec<String> {
    let spec: InstanceSpec =
        serde_json::from_slice(&std::fs::read(host.instance_path(id).join("spec.json")).unwrap())
            .unwrap();
    spec.nics.into_iter().map(|n| n.mac).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nics_hot_plug_into_a_running_guest_and_survive_a_relaunch() {
    if !enabled() {
        return;
    }
    let taps = Taps::new(2);
    let host = Host::new();
    let image = host.add_image(&guest_image(), "qcow2");
    let d = host.driver().await;
    let (a, b) = (nic(&taps.0[0], 1), nic(&taps.0[1], 2));
    let mut spec = host.spec("hotplug", &image);
    spec.nics = vec![a.clone()];
    let id = spec.server_id;
    d.spawn(&spec).await.unwrap();
    // Past the hostname line the guest's kernel runs, and with it ACPI hot-plug.
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=hotplug"], 1).await;
    assert_eq!(
        guest_nics(&d, id).await,
        vec![("net0".to_string(), a.mac.clone())]
    );

    // Attach: the NIC appears in QEMU, once, and in the recorded spec.
    d.attach_nic(id, &b).await.unwrap();
    d.attach_nic(id, &b).await.unwrap();
    let port = b.port_id.as_uuid().simple().to_string();
    assert_eq!(
        guest_nics(&d, id).await,
        vec![
            ("net0".to_string(), a.mac.clone()),
            (format!("nic-{port}"), b.mac.clone())
        ]
    );
    assert_eq!(recorded_macs(&host, id), vec![a.mac.clone(), b.mac.clone()]);

    // Detach: the guest lets go of it, QEMU drops it and its netdev; twice is fine.
    d.detach_nic(id, b.port_id).await.unwrap();
    d.detach_nic(id, b.port_id).await.unwrap();
    assert_eq!(
        guest_nics(&d, id).await,
        vec![("net0".to_string(), a.mac.clone())]
    );
    assert_eq!(recorded_macs(&host, id), vec![a.mac.clone()]);
    // The same port again (its netdev id is free again).
    d.attach_nic(id, &b).await.unwrap();
    assert_eq!(guest_nics(&d, id).await.len(), 2);

    // A relaunch builds both NICs from the spec; either can be detached then, the
    // boot one (net0) included.
    d.power(id, PowerCommand::RebootSoft).await.unwrap();
    wait_console(&d, id, &[BOOTED, "oxistack-guest: hostname=hotplug"], 2).await;
    assert_eq!(
        guest_nics(&d, id).await,
        vec![
            ("net0".to_string(), a.mac.clone()),
            ("net1".to_string(), b.mac.clone())
        ]
    );
    d.detach_nic(id, a.port_id).await.unwrap();
    assert_eq!(
        guest_nics(&d, id).await,
        vec![("net1".to_string(), b.mac.clone())]
    );
    assert_eq!(recorded_macs(&host, id), vec![b.mac.clone()]);

    // Stopped: only the spec changes, and the next start has the NIC.
    d.power(id, PowerCommand::Stop).await.unwrap();
    d.attach_nic(id, &a).await.unwrap();
    assert!(guest_nics(&d, id).await.is_empty());
    assert_eq!(recorded_macs(&host, id), vec![b.mac.clone(), a.mac.clone()]);
    d.power(id, PowerCommand::Start).await.unwrap();
    assert_eq!(
        guest_nics(&d, id).await,
        vec![
            ("net1".to_string(), a.mac.clone()),
            ("net0".to_string(), b.mac.clone())
        ]
    );
    d.destroy(id).await.unwrap();
    d.detach_nic(id, a.port_id).await.unwrap();
    assert!(d.attach_nic(id, &a).await.is_err(), "no instance any more");
}
