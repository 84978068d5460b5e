//! [`QemuDriver`]: the [`VirtDriver`] over real QEMU processes.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oxistack_bus::{HostFacts, HostInstance, InstanceSpec, NicSpec, PowerCommand};
use oxistack_model::server_state::PowerState;
use oxistack_model::{AppError, AppResult, ErrorKind, PortId, ServerId};
use oxistack_qemu::{
    find_instance_qemu, is_instance_qemu, launch, probe_accel, terminate, Accel, AccelRequest,
    DiskFile, DiskFormat, FirmwareType, ImageProperties, MachineProfile, MachineType, Nic,
    ProbeOutcome, QmpClient, QmpError, RunState, UefiVars, VifModel, OVMF_VARS_TEMPLATE_PATH,
    QEMU_SYSTEM_X86_64,
};
use tokio::sync::Mutex as AsyncMutex;
use uuid::Uuid;

use super::image_cache::{ImageCache, ImageSource};
use super::instance_dir::{self, InstanceDir};
use super::{config_drive, disks};
use crate::{tail_lines, VirtDriver};

/// How long a guest gets to power off after the ACPI power button (stop, soft reboot)
/// before it is powered off by force; Nova's `shutdown_timeout` is 60 s.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);
/// Bound on QEMU's own start-up (until it has daemonized).
const LAUNCH_BOUND: Duration = Duration::from_secs(60);
/// Bound on QMP answering `running` after launch.
const RUNNING_BOUND: Duration = Duration::from_secs(30);
/// SIGTERM to SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// Bound on one QMP exchange from the driver.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// The console API returns at most this much of the log's end, as Nova's
/// `MAX_CONSOLE_BYTES`.
const MAX_CONSOLE_BYTES: u64 = 100 * 1024;
/// Bound on the guest letting go of an unplugged NIC: a PCI hot-unplug completes only
/// when the guest's ACPI code ejects the device (Nova's libvirt driver waits about as
/// long before it reports the detach as failed).
pub const UNPLUG_BOUND: Duration = Duration::from_secs(30);

/// What the driver is built from.
pub struct QemuConfig {
    /// This host's name, as the scheduler knows it.
    pub host: String,
    /// Instances go to `<data_dir>/instances`, cached images to `<data_dir>/image-cache`.
    pub data_dir: PathBuf,
    pub accel: AccelRequest,
    pub image_source: Arc<dyn ImageSource>,
    /// (vCPUs, memory MB, disk GB) to report instead of the host's real capacity.
    pub capacity: Option<(i64, i64, i64)>,
    /// ACPI grace period for stop and soft reboot.
    pub stop_grace: Duration,
    pub qemu_binary: PathBuf,
}

impl QemuConfig {
    pub fn new(host: &str, data_dir: PathBuf, image_source: Arc<dyn ImageSource>) -> Self {
        QemuConfig {
            host: host.to_string(),
            data_dir,
            accel: AccelRequest::Auto,
            image_source,
            capacity: None,
            stop_grace: DEFAULT_STOP_GRACE,
            qemu_binary: PathBuf::from(QEMU_SYSTEM_X86_64),
        }
    }
}

/// Per-instance serialisation: `op` is held by spawn/power/destroy for their whole run;
/// `qmp` caches the one QMP connection (QEMU serves one client at a time), shared by the
/// running operation and by `instances()`, which never takes `op`.
#[derive(Default)]
struct Slot {
    op: AsyncMutex<()>,
    qmp: AsyncMutex<Option<Arc<QmpClient>>>,
}

pub struct QemuDriver {
    host: String,
    instances_root: PathBuf,
    data_dir: PathBuf,
    cache: ImageCache,
    probe: ProbeOutcome,
    capacity: Option<(i64, i64, i64)>,
    stop_grace: Duration,
    qemu: PathBuf,
    slots: Mutex<HashMap<ServerId, Arc<Slot>>>,
}

fn host_error(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("{what}: {e}"))
}

impl QemuDriver {
    /// Settles the accelerator (one probe, bounded) and prepares the data dir. Guests
    /// already running from an earlier agent are adopted as they are: nothing is launched
    /// or stopped here.
    pub async fn new(config: QemuConfig) -> AppResult<Self> {
        let instances_root = config.data_dir.join("instances");
        std::fs::create_dir_all(&instances_root)?;
        let probe = probe_accel(&config.qemu_binary, config.accel).await;
        let driver = QemuDriver {
            host: config.host,
            cache: ImageCache::new(config.data_dir.join("image-cache"), config.image_source),
            instances_root,
            data_dir: config.data_dir,
            probe,
            capacity: config.capacity,
            stop_grace: config.stop_grace,
            qemu: config.qemu_binary,
            slots: Mutex::new(HashMap::new()),
        };
        let dirs = instance_dir::list(&driver.instances_root)?;
        let running = dirs
            .iter()
            .filter(|d| running_pid(d).ok().flatten().is_some())
            .count();
        tracing::info!(
            accel = %driver.probe.accel,
            instances = dirs.len(),
            running,
            "qemu driver ready (running guests adopted)"
        );
        Ok(driver)
    }

    /// The accelerator guests run under.
    pub fn accel(&self) -> Accel {
        self.probe.accel
    }

    /// The probe's warning (e.g. TCG fallback), if any.
    pub fn accel_warning(&self) -> Option<&str> {
        self.probe.warning.as_deref()
    }

    pub fn instance_dir(&self, id: ServerId) -> InstanceDir {
        InstanceDir::new(&self.instances_root, id)
    }

    /// The pid of the instance's QEMU, if one runs (verified to be ours).
    pub fn qemu_pid(&self, id: ServerId) -> AppResult<Option<i32>> {
        running_pid(&self.instance_dir(id))
    }

    fn slot(&self, id: ServerId) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// The instance's QMP connection, (re)connecting when there is none or it closed.
    async fn qmp(&self, slot: &Slot, dir: &InstanceDir) -> Result<Arc<QmpClient>, QmpError> {
        let mut cell = slot.qmp.lock().await;
        if let Some(c) = cell.as_ref().filter(|c| c.is_connected()) {
            return Ok(c.clone());
        }
        let c = Arc::new(QmpClient::connect(&dir.qmp_socket(), QMP_TIMEOUT).await?);
        *cell = Some(c.clone());
        Ok(c)
    }

    async fn forget_qmp(&self, slot: &Slot) {
        slot.qmp.lock().await.take();
    }

    /// QEMU's run state; a stale cached connection (QEMU relaunched) is retried once.
    async fn query_status(&self, slot: &Slot, dir: &InstanceDir) -> Result<RunState, QmpError> {
        match self.qmp(slot, dir).await?.query_status().await {
            Err(QmpError::Disconnected) => {
                self.forget_qmp(slot).await;
                self.qmp(slot, dir).await?.query_status().await
            }
            r => r,
        }
    }

    /// Everything the instance needs on disk, then its machine profile. Each artefact is
    /// made only if missing, so a replayed spawn or a start after a crash completes the
    /// work instead of redoing it.
    async fn prepare(&self, dir: &InstanceDir, spec: &InstanceSpec) -> AppResult<MachineProfile> {
        dir.create(spec)?;
        let image = ImageProperties::from_properties(&spec.image.properties)
            .map_err(|e| AppError::new(ErrorKind::BadRequest, e.to_string()))?;
        let base_format = disks::backing_format(&spec.image.disk_format)?;
        let base = self.cache.ensure(&spec.image).await?;
        let info = disks::image_info(&base, base_format).await?;
        let size = disks::root_disk_size(spec.root_gb, info.virtual_size)?;
        disks::create_overlay(&base, base_format, &dir.root_disk(), size).await?;
        let ephemeral_disk = if spec.ephemeral_gb > 0 {
            disks::create_blank_qcow2(&dir.ephemeral_disk(), (spec.ephemeral_gb as u64) << 30)
                .await?;
            Some(DiskFile {
                path: dir.ephemeral_disk(),
                format: DiskFormat::Qcow2,
            })
        } else {
            None
        };
        let swap_disk = if spec.swap_mb > 0 {
            disks::create_swap(&dir.swap_disk(), spec.swap_mb as u64).await?;
            Some(DiskFile {
                path: dir.swap_disk(),
                format: DiskFormat::Raw,
            })
        } else {
            None
        };
        let config_drive = if spec.config_drive {
            config_drive::build_iso(spec, &dir.config_drive()).await?;
            Some(dir.config_drive())
        } else {
            None
        };
        let uefi_vars = if image.firmware_type == FirmwareType::Uefi {
            let vars = dir.uefi_vars();
            if !vars.exists() {
                let scratch = InstanceDir::scratch_for(&vars);
                std::fs::copy(OVMF_VARS_TEMPLATE_PATH, &scratch).map_err(|e| {
                    host_error(
                        &format!("copying {OVMF_VARS_TEMPLATE_PATH} (package ovmf)"),
                        e,
                    )
                })?;
                std::fs::rename(&scratch, &vars)?;
            }
            Some(UefiVars { vars_path: vars })
        } else {
            None
        };
        Ok(MachineProfile {
            uuid: spec.server_id.as_uuid(),
            name: spec.name.clone(),
            vcpus: u32::try_from(spec.vcpus).unwrap_or(0),
            memory_mb: u64::try_from(spec.memory_mb).unwrap_or(0),
            accel: self.probe.accel,
            root_disk: DiskFile {
                path: dir.root_disk(),
                format: DiskFormat::Qcow2,
            },
            ephemeral_disk,
            swap_disk,
            config_drive,
            nics: spec
                .nics
                .iter()
                .map(|n| Nic {
                    tap: n.tap.clone(),
                    mac: n.mac.clone(),
                })
                .collect(),
            serial_log: dir.console_log(),
            qmp_socket: dir.qmp_socket(),
            pidfile: dir.pidfile(),
            uefi_vars,
            vnc_listen: None,
            image,
        })
    }

    /// Prepares and launches the instance unless its QEMU already runs, then waits for
    /// QMP to report `running`.
    async fn ensure_running(
        &self,
        slot: &Slot,
        dir: &InstanceDir,
        spec: &InstanceSpec,
    ) -> AppResult<()> {
        if running_pid(dir)?.is_some() {
            return Ok(());
        }
        let profile = self.prepare(dir, spec).await?;
        let argv = machine_argv(&profile)?;
        self.forget_qmp(slot).await;
        dir.clear_runtime_files()?;
        let uuid = spec.server_id.as_uuid();
        tracing::info!(server_id = %spec.server_id, accel = %profile.accel, "launching QEMU");
        if let Err(e) = launch(&self.qemu, &argv, &profile.qmp_socket, LAUNCH_BOUND).await {
            // A timed-out launcher may have left a daemon behind.
            if let Ok(Some(pid)) = find_instance_qemu(&dir.pidfile(), uuid) {
                let _ = terminate(pid, uuid, TERM_GRACE).await;
            }
            return Err(AppError::new(
                ErrorKind::Internal,
                "The hypervisor failed to start the instance.",
            )
            .with_context(e.to_string()));
        }
        self.wait_running(slot, dir, uuid).await
    }

    async fn wait_running(&self, slot: &Slot, dir: &InstanceDir, uuid: Uuid) -> AppResult<()> {
        let deadline = tokio::time::Instant::now() + RUNNING_BOUND;
        loop {
            let last = match self.query_status(slot, dir).await {
                Ok(RunState::Running) => return Ok(()),
                Ok(other) => format!("QEMU reports {other:?}"),
                Err(e) => e.to_string(),
            };
            if running_pid(dir)?.is_none() {
                return Err(AppError::new(
                    ErrorKind::Internal,
                    "The instance stopped right after it started.",
                )
                .with_context(format!("QEMU of {uuid} exited; last: {last}")));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AppError::new(
                    ErrorKind::Internal,
                    "The instance did not start running.",
                )
                .with_context(format!(
                    "QEMU of {uuid} not running within {RUNNING_BOUND:?}: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Presses the ACPI power button and waits up to the grace period for QEMU to exit.
    /// Whether the guest went by itself.
    async fn acpi_shutdown(&self, slot: &Slot, dir: &InstanceDir, pid: i32) -> bool {
        let uuid = dir.id().as_uuid();
        match self.qmp(slot, dir).await {
            Ok(qmp) => {
                if let Err(e) = qmp.system_powerdown().await {
                    tracing::warn!(server_id = %dir.id(), error = %e, "ACPI power button failed");
                    return !is_instance_qemu(pid, uuid);
                }
            }
            Err(e) => {
                tracing::warn!(server_id = %dir.id(), error = %e, "no QMP for the ACPI power button");
                return !is_instance_qemu(pid, uuid);
            }
        }
        let deadline = tokio::time::Instant::now() + self.stop_grace;
        while is_instance_qemu(pid, uuid) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    /// Stops the QEMU for good (SIGTERM, then SIGKILL) and clears what it left behind.
    async fn power_off(&self, slot: &Slot, dir: &InstanceDir, pid: i32) -> AppResult<()> {
        terminate(pid, dir.id().as_uuid(), TERM_GRACE)
            .await
            .map_err(|e| host_error("stopping QEMU", e))?;
        self.forget_qmp(slot).await;
        dir.clear_runtime_files()?;
        Ok(())
    }

    fn recorded_spec(dir: &InstanceDir) -> AppResult<InstanceSpec> {
        dir.read_spec()?
            .ok_or_else(|| AppError::missing("Instance", dir.id()))
    }

    /// A QMP connection that answers: a cached one left from before a relaunch is
    /// replaced first.
    async fn live_qmp(&self, slot: &Slot, dir: &InstanceDir) -> Result<Arc<QmpClient>, QmpError> {
        self.query_status(slot, dir).await?;
        self.qmp(slot, dir).await
    }

    /// The NICs the instance's running QEMU has (device id, MAC, netdev); empty when it
    /// does not run. For inspection and tests: the spec says what should be plugged,
    /// this says what is.
    pub async fn guest_nics(&self, id: ServerId) -> AppResult<Vec<oxistack_qemu::qmp::GuestNic>> {
        let slot = self.slot(id);
        let dir = self.instance_dir(id);
        if running_pid(&dir)?.is_none() {
            return Ok(vec![]);
        }
        let qmp = self
            .live_qmp(&slot, &dir)
            .await
            .map_err(|e| host_error("connecting to QMP", e))?;
        qmp.nics().await.map_err(|e| host_error("listing NICs", e))
    }
}

/// The QEMU ids of a hot-plugged NIC (device, netdev), derived from its port, so a
/// replayed attach finds what an interrupted one made. NICs of the command line are
/// `net<i>`/`hostnet<i>` instead (and a relaunch turns a hot-plugged NIC into one of
/// them): a detach finds any NIC by its MAC and asks QEMU for its netdev.
fn hotplug_ids(port: &PortId) -> (String, String) {
    let p = port.as_uuid().simple().to_string();
    (format!("nic-{p}"), format!("hostnic-{p}"))
}

/// QEMU's device for the guest's NICs: the same model as the NICs of the command line.
fn nic_device(image: &ImageProperties) -> &'static str {
    VifModel::for_image(image).device()
}

/// Hot-plugs a NIC on the root PCI bus (`pc` has ACPI hot-plug on `pci.0`) with a tap
/// backend, unless a NIC with its MAC is there already. A netdev left behind by an attach
/// interrupted before its `device_add` is replaced.
async fn hotplug_nic(qmp: &QmpClient, nic: &NicSpec, device: &str) -> Result<(), QmpError> {
    let mac = nic.mac.to_ascii_lowercase();
    if qmp.nics().await?.iter().any(|n| n.mac == mac) {
        return Ok(());
    }
    let (id, netdev) = hotplug_ids(&nic.port_id);
    match qmp.netdev_del(&netdev).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    qmp.netdev_add_tap(&netdev, &nic.tap).await?;
    let mut props = serde_json::Map::new();
    props.insert("netdev".into(), netdev.clone().into());
    props.insert("mac".into(), mac.into());
    if let Err(e) = qmp.device_add(device, &id, Some("pci.0"), props).await {
        let _ = qmp.netdev_del(&netdev).await;
        return Err(e);
    }
    Ok(())
}

/// Unplugs the NIC with this MAC, if the QEMU has one: `device_del`, wait for the guest
/// to let go of it, then remove its netdev. With no such NIC, a netdev an interrupted
/// attach left under the port's id is removed.
async fn unplug_nic(qmp: &QmpClient, port: &PortId, mac: &str) -> Result<(), QmpError> {
    let mac = mac.to_ascii_lowercase();
    let netdev = match qmp.nics().await?.into_iter().find(|n| n.mac == mac) {
        Some(found) => {
            qmp.device_del_wait(&found.id, UNPLUG_BOUND).await?;
            found.netdev
        }
        None => Some(hotplug_ids(port).1),
    };
    if let Some(netdev) = netdev {
        match qmp.netdev_del(&netdev).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The profile's argv, plus `-machine graphics=off` when the guest has no display: then
/// SeaBIOS mirrors its messages to the serial console (as under `-nographic`), so the
/// console log says "No bootable device." instead of staying empty for an image that does
/// not boot. QEMU merges repeated `-machine` options. (This belongs in `MachineProfile`;
/// see docs/design/0008-qemu-driver.md.)
fn machine_argv(profile: &MachineProfile) -> AppResult<Vec<String>> {
    let mut argv = profile
        .argv()
        .map_err(|e| AppError::new(ErrorKind::BadRequest, e.to_string()))?;
    if profile.vnc_listen.is_none() {
        let at = argv
            .iter()
            .position(|a| a == "-daemonize")
            .unwrap_or(argv.len());
        argv.splice(at..at, ["-machine".to_string(), "graphics=off".to_string()]);
    }
    Ok(argv)
}

/// The instance's QEMU pid when one runs and is verifiably this instance's.
fn running_pid(dir: &InstanceDir) -> AppResult<Option<i32>> {
    find_instance_qemu(&dir.pidfile(), dir.id().as_uuid())
        .map_err(|e| host_error("reading the QEMU pidfile", e))
}

fn power_state(s: RunState) -> PowerState {
    match s {
        RunState::Running => PowerState::Running,
        RunState::Paused | RunState::Other => PowerState::Paused,
        // Not reached without -no-shutdown; a QEMU holding a shut-down guest is off.
        RunState::Shutdown => PowerState::Shutdown,
        RunState::Suspended => PowerState::Suspended,
        RunState::Crashed => PowerState::Crashed,
    }
}

/// (vCPUs, memory MB, disk GB) of this machine; the disk is the data dir's file system.
fn real_capacity(dir: &Path) -> (i64, i64, i64) {
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let disk = nix::sys::statvfs::statvfs(dir)
        .map(|s| (s.blocks() as i64 * s.fragment_size() as i64) >> 30)
        .unwrap_or(0);
    (vcpus, memory, disk)
}

/// The end of a console log: at most [`MAX_CONSOLE_BYTES`], from a line start.
fn read_console(path: &Path) -> AppResult<String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(MAX_CONSOLE_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if start > 0 {
        // Drop the partial first line.
        if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            buf.drain(..=nl);
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[async_trait]
impl VirtDriver for QemuDriver {
    async fn facts(&self) -> AppResult<HostFacts> {
        let (vcpus, memory_mb, disk_gb) = self
            .capacity
            .unwrap_or_else(|| real_capacity(&self.data_dir));
        Ok(HostFacts {
            host: self.host.clone(),
            virt_type: "qemu".into(),
            vcpus,
            memory_mb,
            disk_gb,
            accel: self.probe.accel.to_string(),
            warnings: self.probe.warning.iter().cloned().collect(),
        })
    }

    async fn spawn(&self, spec: &InstanceSpec) -> AppResult<()> {
        let slot = self.slot(spec.server_id);
        let _op = slot.op.lock().await;
        let dir = self.instance_dir(spec.server_id);
        self.ensure_running(&slot, &dir, spec).await
    }

    async fn destroy(&self, id: ServerId) -> AppResult<()> {
        let slot = self.slot(id);
        let _op = slot.op.lock().await;
        let dir = self.instance_dir(id);
        if let Some(pid) = running_pid(&dir)? {
            self.power_off(&slot, &dir, pid).await?;
        }
        self.forget_qmp(&slot).await;
        dir.remove()
            .map_err(|e| host_error("removing the instance directory", e))
    }

    async fn power(&self, id: ServerId, cmd: PowerCommand) -> AppResult<()> {
        let slot = self.slot(id);
        let _op = slot.op.lock().await;
        let dir = self.instance_dir(id);
        if !dir.exists() {
            return Err(AppError::missing("Instance", id));
        }
        let pid = running_pid(&dir)?;
        match (cmd, pid) {
            (PowerCommand::Start, Some(_)) | (PowerCommand::Stop, None) => Ok(()),
            (PowerCommand::Start, None)
            | (PowerCommand::RebootSoft, None)
            | (PowerCommand::RebootHard, None) => {
                let spec = Self::recorded_spec(&dir)?;
                self.ensure_running(&slot, &dir, &spec).await
            }
            (PowerCommand::Stop, Some(pid)) => {
                if !self.acpi_shutdown(&slot, &dir, pid).await {
                    tracing::info!(server_id = %id, grace = ?self.stop_grace, "guest ignored ACPI power off; forcing");
                    self.power_off(&slot, &dir, pid).await?;
                }
                self.forget_qmp(&slot).await;
                dir.clear_runtime_files()?;
                Ok(())
            }
            (PowerCommand::RebootSoft, Some(pid)) => {
                // Nova's soft reboot: a clean shutdown, then power on; a guest that does
                // not shut down within the grace period gets a hard reboot instead.
                if self.acpi_shutdown(&slot, &dir, pid).await {
                    let spec = Self::recorded_spec(&dir)?;
                    self.ensure_running(&slot, &dir, &spec).await
                } else {
                    tracing::info!(server_id = %id, "guest ignored ACPI power off; hard reboot");
                    self.hard_reset(&slot, &dir, pid).await
                }
            }
            (PowerCommand::RebootHard, Some(pid)) => self.hard_reset(&slot, &dir, pid).await,
        }
    }

    async fn instances(&self) -> AppResult<Vec<HostInstance>> {
        let dirs = instance_dir::list(&self.instances_root)
            .map_err(|e| host_error("listing instances", e))?;
        let mut out = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let power_state = match running_pid(&dir)? {
                None => PowerState::Shutdown,
                Some(pid) => {
                    let slot = self.slot(dir.id());
                    match self.query_status(&slot, &dir).await {
                        Ok(s) => power_state(s),
                        // QEMU is alive but QMP did not answer (busy, or it just exited):
                        // the process is the truth, never report a live guest as off.
                        Err(e) if is_instance_qemu(pid, dir.id().as_uuid()) => {
                            tracing::warn!(server_id = %dir.id(), error = %e, "QMP status unavailable");
                            PowerState::Running
                        }
                        Err(_) => PowerState::Shutdown,
                    }
                }
            };
            out.push(HostInstance {
                server_id: dir.id(),
                power_state,
            });
        }
        Ok(out)
    }

    async fn console_output(&self, id: ServerId, lines: Option<usize>) -> AppResult<String> {
        let dir = self.instance_dir(id);
        if !dir.exists() {
            return Err(AppError::missing("Instance", id));
        }
        Ok(tail_lines(&read_console(&dir.console_log())?, lines))
    }

    async fn attach_nic(&self, id: ServerId, nic: &NicSpec) -> AppResult<()> {
        let slot = self.slot(id);
        let _op = slot.op.lock().await;
        let dir = self.instance_dir(id);
        let mut spec = Self::recorded_spec(&dir)?;
        let image = ImageProperties::from_properties(&spec.image.properties)
            .map_err(|e| AppError::new(ErrorKind::BadRequest, e.to_string()))?;
        if image.machine_type != MachineType::Pc {
            return Err(AppError::bad_request(
                "Network adapters can be hot-plugged only into guests of machine type pc: \
                 a q35 guest has no free hot-plug slot.",
            ));
        }
        // The spec first: a guest relaunched from here on has the NIC, and a detach
        // (the saga's undo) finds it there.
        if !spec.nics.iter().any(|n| n.port_id == nic.port_id) {
            spec.nics.push(nic.clone());
            dir.write_spec(&spec)?;
        }
        if running_pid(&dir)?.is_none() {
            // Stopped: the next start builds the machine with it.
            return Ok(());
        }
        let plugged = match self.live_qmp(&slot, &dir).await {
            Ok(qmp) => hotplug_nic(&qmp, nic, nic_device(&image)).await,
            Err(e) => Err(e),
        };
        plugged.map_err(|e| {
            AppError::new(
                ErrorKind::Internal,
                "The hypervisor failed to plug the network adapter.",
            )
            .with_context(format!("hot-plug of port {} into {id}: {e}", nic.port_id))
        })
    }

    async fn detach_nic(&self, id: ServerId, port_id: PortId) -> AppResult<()> {
        let slot = self.slot(id);
        let _op = slot.op.lock().await;
        let dir = self.instance_dir(id);
        let Some(mut spec) = dir.read_spec()? else {
            return Ok(());
        };
        let Some(nic) = spec.nics.iter().find(|n| n.port_id == port_id).cloned() else {
            return Ok(());
        };
        if running_pid(&dir)?.is_some() {
            let unplugged = match self.live_qmp(&slot, &dir).await {
                Ok(qmp) => unplug_nic(&qmp, &port_id, &nic.mac).await,
                Err(e) => Err(e),
            };
            unplugged.map_err(|e| {
                AppError::new(
                    ErrorKind::Internal,
                    "The hypervisor failed to unplug the network adapter.",
                )
                .with_context(format!("hot-unplug of port {port_id} from {id}: {e}"))
            })?;
        }
        // Only once the guest let go: a failed unplug leaves the NIC recorded, so a
        // retried detach finds it again.
        spec.nics.retain(|n| n.port_id != port_id);
        dir.write_spec(&spec)
    }
}

impl QemuDriver {
    /// `system_reset`; when QMP cannot do it, power off and relaunch.
    async fn hard_reset(&self, slot: &Slot, dir: &InstanceDir, pid: i32) -> AppResult<()> {
        let reset = match self.qmp(slot, dir).await {
            Ok(qmp) => qmp.system_reset().await,
            Err(e) => Err(e),
        };
        if let Err(e) = reset {
            tracing::warn!(server_id = %dir.id(), error = %e, "system_reset failed; relaunching");
            if is_instance_qemu(pid, dir.id().as_uuid()) {
                self.power_off(slot, dir, pid).await?;
            }
            let spec = Self::recorded_spec(dir)?;
            return self.ensure_running(slot, dir, &spec).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tail_is_bounded_and_starts_on_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        assert_eq!(read_console(&p).unwrap(), "");
        let mut log = String::new();
        for i in 0..20_000 {
            log.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &log).unwrap();
        let out = read_console(&p).unwrap();
        assert!(out.len() as u64 <= MAX_CONSOLE_BYTES);
        assert!(out.starts_with("line "), "{}", &out[..20]);
        assert!(out.ends_with("line 19999\n"));
    }

    #[test]
    fn power_states_from_qemu_run_states() {
        assert_eq!(power_state(RunState::Running), PowerState::Running);
        assert_eq!(power_state(RunState::Paused), PowerState::Paused);
        assert_eq!(power_state(RunState::Crashed), PowerState::Crashed);
    }
}
