//! Machine profile → QEMU command line.
//!
//! A [`MachineProfile`] is everything the agent knows about one instance's virtual hardware:
//! the flavor (vCPUs, RAM), the disks and NICs it prepared, the host paths it chose, the
//! accelerator the probe settled on, and the image properties (`hw_machine_type`,
//! `hw_firmware_type`, `hw_disk_bus`, `hw_cdrom_bus`, `hw_vif_model`, `hw_video_model`,
//! `os_type`). [`MachineProfile::argv`] turns it into QEMU's arguments with no I/O, so every
//! rule is a unit test and the full command lines are golden files (`tests/golden/`).
//!
//! Unsupported values are refused with a [`ProfileError`] instead of being passed through:
//! a typo in an image property should fail the boot with a clear fault, not start a guest
//! that cannot see its disk. Design: docs/design/0006-qemu-direct.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use uuid::Uuid;

/// UEFI firmware code from Debian's `ovmf` package (4 MiB flash layout, no Secure Boot).
pub const OVMF_CODE_PATH: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Template of the UEFI variable store matching [`OVMF_CODE_PATH`]; each instance gets its own
/// writable copy (the agent copies it to [`Firmware::Uefi::vars_path`] before the first boot).
pub const OVMF_VARS_TEMPLATE_PATH: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The descriptor number under which QEMU inherits its listening QMP socket.
pub const QMP_FD: i32 = 3;

/// Why a profile cannot become a command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// An image property (or other option) has a value we do not support.
    #[error("unsupported {property} '{value}' (supported: {allowed})")]
    Unsupported {
        property: &'static str,
        value: String,
        allowed: &'static str,
    },
    /// A combination or value that cannot work (e.g. IDE on q35, zero vCPUs).
    #[error("invalid machine profile: {0}")]
    Invalid(String),
}

fn unsupported(property: &'static str, value: &str, allowed: &'static str) -> ProfileError {
    ProfileError::Unsupported {
        property,
        value: value.to_owned(),
        allowed,
    }
}

/// The accelerator a guest runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `hw_machine_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineType {
    /// i440FX + PIIX: has IDE, which the Debian cloud kernel drives (`ata_piix`).
    #[default]
    Pc,
    /// Q35 + ICH9: no IDE controller; its built-in controller is AHCI.
    Q35,
}

impl FromStr for MachineType {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Versioned names (pc-i440fx-9.2, pc-q35-9.2) pin a machine ABI we do not track yet.
        match s {
            "pc" | "i440fx" => Ok(Self::Pc),
            "q35" => Ok(Self::Q35),
            _ => Err(unsupported("hw_machine_type", s, "pc, q35")),
        }
    }
}

/// `hw_disk_bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Ide,
    Virtio,
    /// virtio-scsi.
    Scsi,
    /// AHCI. Only when asked for: the Debian cloud kernel has no AHCI driver.
    Sata,
}

impl FromStr for DiskBus {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ide" => Ok(Self::Ide),
            "virtio" => Ok(Self::Virtio),
            "scsi" => Ok(Self::Scsi),
            "sata" => Ok(Self::Sata),
            _ => Err(unsupported("hw_disk_bus", s, "ide, virtio, scsi, sata")),
        }
    }
}

/// `hw_cdrom_bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdromBus {
    Ide,
    Scsi,
    Sata,
}

impl FromStr for CdromBus {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ide" => Ok(Self::Ide),
            "scsi" => Ok(Self::Scsi),
            "sata" => Ok(Self::Sata),
            _ => Err(unsupported("hw_cdrom_bus", s, "ide, scsi, sata")),
        }
    }
}

/// `hw_vif_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VifModel {
    Virtio,
    E1000,
    Rtl8139,
}

impl VifModel {
    /// The model a guest's NICs get: `hw_vif_model`, else e1000 for Windows (which has
    /// an inbox driver for it) and virtio otherwise. Hot-plugged NICs use it too.
    pub fn for_image(img: &ImageProperties) -> VifModel {
        img.vif_model.unwrap_or(if img.os_type == OsType::Windows {
            VifModel::E1000
        } else {
            VifModel::Virtio
        })
    }

    /// QEMU's device name for the model.
    pub fn device(self) -> &'static str {
        match self {
            VifModel::Virtio => "virtio-net-pci",
            VifModel::E1000 => "e1000",
            VifModel::Rtl8139 => "rtl8139",
        }
    }
}

impl FromStr for VifModel {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "virtio" => Ok(Self::Virtio),
            "e1000" => Ok(Self::E1000),
            "rtl8139" => Ok(Self::Rtl8139),
            _ => Err(unsupported("hw_vif_model", s, "virtio, e1000, rtl8139")),
        }
    }
}

/// `hw_video_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoModel {
    /// Standard VGA (`-device VGA`); Nova calls it `vga` or `std`.
    #[default]
    Vga,
    Virtio,
    Cirrus,
    Qxl,
    None,
}

impl FromStr for VideoModel {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vga" | "std" => Ok(Self::Vga),
            "virtio" => Ok(Self::Virtio),
            "cirrus" => Ok(Self::Cirrus),
            "qxl" => Ok(Self::Qxl),
            "none" => Ok(Self::None),
            _ => Err(unsupported(
                "hw_video_model",
                s,
                "vga, std, virtio, cirrus, qxl, none",
            )),
        }
    }
}

/// `os_type`: only Windows changes the virtual hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OsType {
    #[default]
    Linux,
    Windows,
}

impl FromStr for OsType {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Glance's os_type is free text in practice; anything but windows boots as Linux does.
        Ok(if s.eq_ignore_ascii_case("windows") {
            Self::Windows
        } else {
            Self::Linux
        })
    }
}

/// `hw_firmware_type` as given by the image (the vars path is the agent's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirmwareType {
    #[default]
    Bios,
    Uefi,
}

impl FromStr for FirmwareType {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bios" => Ok(Self::Bios),
            "uefi" => Ok(Self::Uefi),
            _ => Err(unsupported("hw_firmware_type", s, "bios, uefi")),
        }
    }
}

/// The image properties that shape the virtual hardware; `None` means "the default for this
/// machine type and OS".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProperties {
    pub machine_type: MachineType,
    pub firmware_type: FirmwareType,
    pub disk_bus: Option<DiskBus>,
    pub cdrom_bus: Option<CdromBus>,
    pub vif_model: Option<VifModel>,
    pub video_model: VideoModel,
    pub os_type: OsType,
}

impl ImageProperties {
    /// Reads the hardware properties out of an image's property map. Properties that do not
    /// describe hardware are ignored (Glance images carry many); a known property with an
    /// unsupported value is an error.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self, ProfileError> {
        let get = |key: &str| props.get(key).map(String::as_str);
        Ok(Self {
            machine_type: get("hw_machine_type")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            firmware_type: get("hw_firmware_type")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            disk_bus: get("hw_disk_bus").map(str::parse).transpose()?,
            cdrom_bus: get("hw_cdrom_bus").map(str::parse).transpose()?,
            vif_model: get("hw_vif_model").map(str::parse).transpose()?,
            video_model: get("hw_video_model")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            os_type: get("os_type")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Format of a disk file as QEMU's block layer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

impl FromStr for DiskFormat {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qcow2" => Ok(Self::Qcow2),
            "raw" => Ok(Self::Raw),
            _ => Err(unsupported("disk format", s, "qcow2, raw")),
        }
    }
}

/// A disk file on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub path: PathBuf,
    pub format: DiskFormat,
}

/// A NIC: the tap device the agent plugged, the port's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: String,
    pub mac: String,
}

/// UEFI variable store location (a per-instance writable copy of the OVMF template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiVars {
    pub vars_path: PathBuf,
}

/// Everything that decides one instance's QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineProfile {
    pub uuid: Uuid,
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub accel: Accel,
    pub root_disk: DiskFile,
    pub ephemeral_disk: Option<DiskFile>,
    pub swap_disk: Option<DiskFile>,
    /// The config drive ISO (label `config-2`), attached as a read-only CD-ROM.
    pub config_drive: Option<PathBuf>,
    pub nics: Vec<Nic>,
    pub serial_log: PathBuf,
    /// Where the QMP socket lives; [`crate::process::launch`] binds it.
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
    /// Required when the image asks for UEFI.
    pub uefi_vars: Option<UefiVars>,
    /// `host:display` for `-vnc`, e.g. `127.0.0.1:5`; `None` runs without any display.
    pub vnc_listen: Option<String>,
    pub image: ImageProperties,
}

/// Largest vCPU count of the `pc` and `q35` machines without an IOMMU (x2APIC limit).
const MAX_VCPUS: u32 = 255;
/// Below this even a tiny guest's firmware does not fit.
const MIN_MEMORY_MB: u64 = 16;

/// Virtual hardware after the defaults are applied: what the argv is actually built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedHardware {
    pub disk_bus: DiskBus,
    pub cdrom_bus: CdromBus,
    pub vif_model: VifModel,
}

impl MachineProfile {
    /// Fills the defaults that depend on the machine type and OS.
    ///
    /// IDE on `pc` because it boots anything, including the Debian cloud kernel (ata_piix) and
    /// Windows without extra drivers. `q35` has no IDE, so Linux gets virtio and Windows AHCI
    /// (Windows has an inbox AHCI driver, no inbox virtio driver). CD-ROMs on `q35` go on
    /// virtio-scsi for the same reason. Windows gets an e1000 NIC (inbox driver).
    pub fn resolve(&self) -> ResolvedHardware {
        let img = &self.image;
        let windows = img.os_type == OsType::Windows;
        let disk_bus = img.disk_bus.unwrap_or(match (img.machine_type, windows) {
            (MachineType::Pc, _) => DiskBus::Ide,
            (MachineType::Q35, true) => DiskBus::Sata,
            (MachineType::Q35, false) => DiskBus::Virtio,
        });
        let cdrom_bus = img.cdrom_bus.unwrap_or(match (img.machine_type, windows) {
            (MachineType::Pc, _) => CdromBus::Ide,
            (MachineType::Q35, true) => CdromBus::Sata,
            (MachineType::Q35, false) => CdromBus::Scsi,
        });
        let vif_model = VifModel::for_image(img);
        ResolvedHardware {
            disk_bus,
            cdrom_bus,
            vif_model,
        }
    }

    /// The QEMU arguments (without the program name). Pure: no file is read or checked.
    pub fn argv(&self) -> Result<Vec<String>, ProfileError> {
        self.validate()?;
        let hw = self.resolve();
        let img = &self.image;
        let uuid = self.uuid.hyphenated().to_string();
        let mut a = Args::default();

        a.push(["-nodefaults", "-no-user-config"]);
        a.pair(
            "-name",
            format!("guest={},debug-threads=on", opt(&self.name)),
        );
        a.pair("-uuid", &uuid);
        a.pair(
            "-smbios",
            format!("type=1,manufacturer=OxiStack,product=OxiStack,serial={uuid},uuid={uuid}"),
        );
        let machine = match img.machine_type {
            MachineType::Pc => "pc",
            MachineType::Q35 => "q35",
        };
        a.pair("-machine", format!("{machine},accel={}", self.accel));
        a.pair("-cpu", self.cpu_model());
        a.pair(
            "-smp",
            format!("{0},sockets={0},cores=1,threads=1", self.vcpus),
        );
        a.pair("-m", format!("{}M", self.memory_mb));
        a.pair(
            "-rtc",
            if img.os_type == OsType::Windows {
                "base=localtime,driftfix=slew"
            } else {
                "base=utc"
            },
        );

        if img.firmware_type == FirmwareType::Uefi {
            let vars = self.uefi_vars.as_ref().ok_or_else(|| {
                ProfileError::Invalid("hw_firmware_type=uefi needs a UEFI vars path".into())
            })?;
            a.pair(
                "-drive",
                format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    path_opt(Path::new(OVMF_CODE_PATH))
                ),
            );
            a.pair(
                "-drive",
                format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    path_opt(&vars.vars_path)
                ),
            );
        }

        // Serial console: appended so that a reboot or a restart adds to the same log, which
        // is what `openstack console log show` returns.
        a.pair(
            "-chardev",
            format!(
                "file,id=charserial0,path={},append=on",
                path_opt(&self.serial_log)
            ),
        );
        a.pair("-device", "isa-serial,chardev=charserial0,id=serial0");
        // QMP listens on a socket the launcher binds at `qmp_socket` and hands over as
        // descriptor QMP_FD (crate::process::launch): it exists before QEMU runs, and
        // its path may be longer than a socket address holds.
        a.pair(
            "-chardev",
            format!("socket,id=charqmp,fd={QMP_FD},server=on,wait=off"),
        );
        a.pair("-mon", "chardev=charqmp,mode=control");

        self.push_disks(&mut a, hw)?;

        for (i, nic) in self.nics.iter().enumerate() {
            a.pair(
                "-netdev",
                format!(
                    "tap,id=hostnet{i},ifname={},script=no,downscript=no",
                    opt(&nic.tap)
                ),
            );
            a.pair(
                "-device",
                format!(
                    "{},netdev=hostnet{i},id=net{i},mac={}",
                    hw.vif_model.device(),
                    nic.mac.to_ascii_lowercase()
                ),
            );
        }

        match img.video_model {
            VideoModel::Vga => a.pair("-device", "VGA,id=video0"),
            VideoModel::Virtio => a.pair("-device", "virtio-vga,id=video0"),
            VideoModel::Cirrus => a.pair("-device", "cirrus-vga,id=video0"),
            VideoModel::Qxl => a.pair("-device", "qxl-vga,id=video0"),
            VideoModel::None => {}
        }
        a.pair("-display", "none");
        if let Some(vnc) = &self.vnc_listen {
            a.pair("-vnc", opt(vnc));
        }

        a.pair("-boot", "strict=on");
        a.pair("-pidfile", path_opt(&self.pidfile));
        a.push(["-daemonize"]);
        Ok(a.0)
    }

    fn cpu_model(&self) -> String {
        let base = match self.accel {
            Accel::Kvm => "host",
            // `max` gives a TCG guest every feature QEMU can emulate (Windows 11 needs more
            // than qemu64's baseline).
            Accel::Tcg => "max",
        };
        if self.image.os_type == OsType::Windows {
            format!("{base},hv_relaxed,hv_spinlocks=0x1fff,hv_vapic,hv_time")
        } else {
            base.to_owned()
        }
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ProfileError::Invalid(format!(
                "vCPUs must be between 1 and {MAX_VCPUS}, got {}",
                self.vcpus
            )));
        }
        if self.memory_mb < MIN_MEMORY_MB {
            return Err(ProfileError::Invalid(format!(
                "RAM must be at least {MIN_MEMORY_MB} MB, got {}",
                self.memory_mb
            )));
        }
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(ProfileError::Invalid(
                "instance name must be non-empty without control characters".into(),
            ));
        }
        for nic in &self.nics {
            if !valid_mac(&nic.mac) {
                return Err(ProfileError::Invalid(format!(
                    "bad MAC address '{}'",
                    nic.mac
                )));
            }
            // Linux interface names: at most 15 bytes, no '/', no whitespace.
            if nic.tap.is_empty()
                || nic.tap.len() > 15
                || nic
                    .tap
                    .chars()
                    .any(|c| c == '/' || c == ',' || c.is_whitespace())
            {
                return Err(ProfileError::Invalid(format!("bad tap name '{}'", nic.tap)));
            }
        }
        if self.image.machine_type == MachineType::Q35 {
            let hw = self.resolve();
            let ide = |what: &str| {
                ProfileError::Invalid(format!(
                    "q35 has no IDE controller for the {what}; use virtio, scsi or sata"
                ))
            };
            if hw.disk_bus == DiskBus::Ide {
                return Err(ide("disks"));
            }
            if self.config_drive.is_some() && hw.cdrom_bus == CdromBus::Ide {
                return Err(ide("CD-ROM"));
            }
        }
        Ok(())
    }

    fn push_disks(&self, a: &mut Args, hw: ResolvedHardware) -> Result<(), ProfileError> {
        let mut hds: Vec<(&str, &DiskFile)> = vec![("root", &self.root_disk)];
        if let Some(d) = &self.ephemeral_disk {
            hds.push(("ephemeral", d));
        }
        if let Some(d) = &self.swap_disk {
            hds.push(("swap", d));
        }
        let q35 = self.image.machine_type == MachineType::Q35;
        let mut slots = Slots::default();
        // Whether any device (disks always exist: the root disk) sits on `bus`.
        let uses = |bus: DiskBus| {
            hw.disk_bus == bus
                || (self.config_drive.is_some()
                    && matches!(
                        (bus, hw.cdrom_bus),
                        (DiskBus::Scsi, CdromBus::Scsi) | (DiskBus::Sata, CdromBus::Sata)
                    ))
        };
        // q35's ICH9 AHCI is built in (buses ide.0..ide.5); `pc` needs one added.
        if uses(DiskBus::Sata) && !q35 {
            a.pair("-device", "ich9-ahci,id=sata0");
        }
        if uses(DiskBus::Scsi) {
            a.pair("-device", "virtio-scsi-pci,id=scsi0");
        }

        for (i, (role, disk)) in hds.iter().enumerate() {
            let id = format!("drive-{role}");
            a.pair(
                "-drive",
                format!(
                    "file={},format={},if=none,id={id},discard=unmap",
                    path_opt(&disk.path),
                    disk.format.as_str()
                ),
            );
            // Disk first in the boot order; nothing else is bootable (`-boot strict=on`).
            let boot = if i == 0 { ",bootindex=1" } else { "" };
            let dev = match hw.disk_bus {
                DiskBus::Ide => format!("ide-hd,{},drive={id},id={role}{boot}", slots.ide()?),
                DiskBus::Sata => format!("ide-hd,{},drive={id},id={role}{boot}", slots.sata(q35)?),
                DiskBus::Virtio => format!("virtio-blk-pci,drive={id},id={role}{boot}"),
                DiskBus::Scsi => format!("scsi-hd,{},drive={id},id={role}{boot}", slots.scsi()),
            };
            a.pair("-device", dev);
        }

        if let Some(iso) = &self.config_drive {
            a.pair(
                "-drive",
                format!(
                    "file={},format=raw,if=none,id=drive-config,media=cdrom,readonly=on",
                    path_opt(iso)
                ),
            );
            let dev = match hw.cdrom_bus {
                CdromBus::Ide => format!("ide-cd,{},drive=drive-config,id=config", slots.ide()?),
                CdromBus::Sata => {
                    format!("ide-cd,{},drive=drive-config,id=config", slots.sata(q35)?)
                }
                CdromBus::Scsi => {
                    format!("scsi-cd,{},drive=drive-config,id=config", slots.scsi())
                }
            };
            a.pair("-device", dev);
        }
        Ok(())
    }
}

/// Hands out controller slots in a fixed order, so the same profile always gives the same
/// guest device names (root disk = first disk).
#[derive(Default)]
struct Slots {
    ide: u32,
    sata: u32,
    scsi: u32,
}

impl Slots {
    /// PIIX IDE: two buses of two units.
    fn ide(&mut self) -> Result<String, ProfileError> {
        let n = self.ide;
        if n >= 4 {
            return Err(ProfileError::Invalid(
                "more than 4 IDE devices (the PIIX controller has 2 buses of 2 units)".into(),
            ));
        }
        self.ide += 1;
        Ok(format!("bus=ide.{},unit={}", n / 2, n % 2))
    }

    /// AHCI: six ports, one device each.
    fn sata(&mut self, q35: bool) -> Result<String, ProfileError> {
        let n = self.sata;
        if n >= 6 {
            return Err(ProfileError::Invalid("more than 6 SATA devices".into()));
        }
        self.sata += 1;
        Ok(if q35 {
            format!("bus=ide.{n}")
        } else {
            format!("bus=sata0.{n}")
        })
    }

    fn scsi(&mut self) -> String {
        let n = self.scsi;
        self.scsi += 1;
        format!("bus=scsi0.0,channel=0,scsi-id={n},lun=0")
    }
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push<const N: usize>(&mut self, items: [&str; N]) {
        self.0.extend(items.iter().map(|s| (*s).to_owned()));
    }
    fn pair(&mut self, flag: &str, value: impl Into<String>) {
        self.0.push(flag.to_owned());
        self.0.push(value.into());
    }
}

/// QEMU option values are comma separated; a literal comma is written twice.
fn opt(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_opt(path: &Path) -> String {
    opt(&path.to_string_lossy())
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        // A multicast MAC cannot be a NIC's address.
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> MachineProfile {
        MachineProfile {
            uuid: Uuid::parse_str("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122").unwrap(),
            name: "vm1".into(),
            vcpus: 2,
            memory_mb: 512,
            accel: Accel::Tcg,
            root_disk: DiskFile {
                path: "/var/lib/oxistack/instances/i/disk".into(),
                format: DiskFormat::Qcow2,
            },
            ephemeral_disk: None,
            swap_disk: None,
            config_drive: None,
            nics: vec![],
            serial_log: "/var/lib/oxistack/instances/i/console.log".into(),
            qmp_socket: "/run/oxistack/i.qmp".into(),
            pidfile: "/run/oxistack/i.pid".into(),
            uefi_vars: None,
            vnc_listen: None,
            image: ImageProperties::default(),
        }
    }

    fn argv(p: &MachineProfile) -> Vec<String> {
        p.argv().expect("valid profile")
    }

    /// The value following each occurrence of `flag`.
    fn values(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    fn value(argv: &[String], flag: &str) -> String {
        let v = values(argv, flag);
        assert_eq!(v.len(), 1, "{flag} expected once in {argv:?}");
        v[0].clone()
    }

    fn has_device(argv: &[String], prefix: &str) -> bool {
        values(argv, "-device")
            .iter()
            .any(|d| d.starts_with(prefix))
    }

    fn with_props(pairs: &[(&str, &str)]) -> Result<MachineProfile, ProfileError> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut p = base();
        p.image = ImageProperties::from_properties(&map)?;
        Ok(p)
    }

    #[test]
    fn always_present_flags() {
        let a = argv(&base());
        for flag in ["-nodefaults", "-no-user-config", "-daemonize"] {
            assert!(a.contains(&flag.to_owned()), "{flag} missing");
        }
        assert_eq!(value(&a, "-name"), "guest=vm1,debug-threads=on");
        assert_eq!(value(&a, "-uuid"), "6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122");
        let smbios = value(&a, "-smbios");
        assert!(smbios.starts_with("type=1,"));
        assert!(smbios.contains("serial=6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122"));
        assert!(smbios.contains("uuid=6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122"));
        assert!(smbios.contains("product=OxiStack"));
        assert_eq!(value(&a, "-smp"), "2,sockets=2,cores=1,threads=1");
        assert_eq!(value(&a, "-m"), "512M");
        assert_eq!(value(&a, "-display"), "none");
        assert_eq!(value(&a, "-pidfile"), "/run/oxistack/i.pid");
        assert_eq!(value(&a, "-mon"), "chardev=charqmp,mode=control");
        let chardevs = values(&a, "-chardev");
        assert!(chardevs.contains(&"socket,id=charqmp,fd=3,server=on,wait=off".to_owned()));
        assert!(chardevs.contains(
            &"file,id=charserial0,path=/var/lib/oxistack/instances/i/console.log,append=on"
                .to_owned()
        ));
        assert!(has_device(&a, "isa-serial,chardev=charserial0"));
        assert!(values(&a, "-vnc").is_empty());
    }

    #[test]
    fn accel_selects_machine_and_cpu() {
        let a = argv(&base());
        assert_eq!(value(&a, "-machine"), "pc,accel=tcg");
        assert_eq!(value(&a, "-cpu"), "max");
        let mut p = base();
        p.accel = Accel::Kvm;
        let a = argv(&p);
        assert_eq!(value(&a, "-machine"), "pc,accel=kvm");
        assert_eq!(value(&a, "-cpu"), "host");
    }

    #[test]
    fn default_pc_uses_ide_for_disk_and_cdrom_and_boots_from_disk() {
        let mut p = base();
        p.config_drive = Some("/x/disk.config".into());
        let a = argv(&p);
        let devices = values(&a, "-device");
        assert!(devices
            .contains(&"ide-hd,bus=ide.0,unit=0,drive=drive-root,id=root,bootindex=1".to_owned()));
        assert!(
            devices.contains(&"ide-cd,bus=ide.0,unit=1,drive=drive-config,id=config".to_owned())
        );
        assert_eq!(value(&a, "-boot"), "strict=on");
        // Only the root disk has a boot index.
        assert_eq!(a.iter().filter(|s| s.contains("bootindex")).count(), 1);
        assert!(!devices.iter().any(|d| d.contains("ahci")));
        let drives = values(&a, "-drive");
        assert!(drives.contains(
            &"file=/var/lib/oxistack/instances/i/disk,format=qcow2,if=none,id=drive-root,discard=unmap"
                .to_owned()
        ));
        assert!(drives.contains(
            &"file=/x/disk.config,format=raw,if=none,id=drive-config,media=cdrom,readonly=on"
                .to_owned()
        ));
    }

    #[test]
    fn q35_defaults_to_virtio_disk_and_scsi_cdrom_never_ahci() {
        let mut p = with_props(&[("hw_machine_type", "q35")]).unwrap();
        p.config_drive = Some("/x/cd.iso".into());
        let a = argv(&p);
        assert_eq!(value(&a, "-machine"), "q35,accel=tcg");
        assert!(has_device(
            &a,
            "virtio-blk-pci,drive=drive-root,id=root,bootindex=1"
        ));
        assert!(has_device(&a, "virtio-scsi-pci,id=scsi0"));
        assert!(has_device(&a, "scsi-cd,bus=scsi0.0"));
        assert!(!a.iter().any(|s| s.contains("ahci") || s.contains("ide-")));
    }

    #[test]
    fn ide_on_q35_is_refused() {
        let p = with_props(&[("hw_machine_type", "q35"), ("hw_disk_bus", "ide")]).unwrap();
        assert!(matches!(p.argv(), Err(ProfileError::Invalid(m)) if m.contains("q35")));
        let mut p = with_props(&[("hw_machine_type", "q35"), ("hw_cdrom_bus", "ide")]).unwrap();
        p.config_drive = Some("/x/cd.iso".into());
        assert!(p.argv().is_err());
    }

    #[test]
    fn disk_bus_virtio_and_scsi() {
        let a = argv(&with_props(&[("hw_disk_bus", "virtio")]).unwrap());
        assert!(has_device(
            &a,
            "virtio-blk-pci,drive=drive-root,id=root,bootindex=1"
        ));
        assert!(!has_device(&a, "virtio-scsi-pci"));
        let a = argv(&with_props(&[("hw_disk_bus", "scsi")]).unwrap());
        assert!(has_device(&a, "virtio-scsi-pci,id=scsi0"));
        assert!(has_device(
            &a,
            "scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,drive=drive-root,id=root,bootindex=1"
        ));
    }

    #[test]
    fn explicit_sata_adds_ahci_on_pc_and_uses_builtin_on_q35() {
        let a = argv(&with_props(&[("hw_disk_bus", "sata")]).unwrap());
        assert!(has_device(&a, "ich9-ahci,id=sata0"));
        assert!(has_device(&a, "ide-hd,bus=sata0.0,drive=drive-root"));
        let a = argv(&with_props(&[("hw_machine_type", "q35"), ("hw_disk_bus", "sata")]).unwrap());
        assert!(!has_device(&a, "ich9-ahci"));
        assert!(has_device(&a, "ide-hd,bus=ide.0,drive=drive-root"));
    }

    #[test]
    fn ephemeral_and_swap_follow_root_on_the_same_bus() {
        let mut p = base();
        p.ephemeral_disk = Some(DiskFile {
            path: "/x/disk.eph0".into(),
            format: DiskFormat::Qcow2,
        });
        p.swap_disk = Some(DiskFile {
            path: "/x/disk.swap".into(),
            format: DiskFormat::Raw,
        });
        p.config_drive = Some("/x/cd.iso".into());
        let a = argv(&p);
        let devices = values(&a, "-device");
        assert!(devices
            .contains(&"ide-hd,bus=ide.0,unit=1,drive=drive-ephemeral,id=ephemeral".to_owned()));
        assert!(devices.contains(&"ide-hd,bus=ide.1,unit=0,drive=drive-swap,id=swap".to_owned()));
        assert!(
            devices.contains(&"ide-cd,bus=ide.1,unit=1,drive=drive-config,id=config".to_owned())
        );
        assert!(values(&a, "-drive")
            .iter()
            .any(|d| d.starts_with("file=/x/disk.swap,format=raw,")));
    }

    #[test]
    fn nics_get_tap_netdev_and_model() {
        let mut p = base();
        p.nics = vec![
            Nic {
                tap: "tap0a1b2c3d-4e".into(),
                mac: "FA:16:3E:00:00:01".into(),
            },
            Nic {
                tap: "tap11111111-22".into(),
                mac: "fa:16:3e:00:00:02".into(),
            },
        ];
        let a = argv(&p);
        assert_eq!(
            values(&a, "-netdev"),
            vec![
                "tap,id=hostnet0,ifname=tap0a1b2c3d-4e,script=no,downscript=no",
                "tap,id=hostnet1,ifname=tap11111111-22,script=no,downscript=no"
            ]
        );
        assert!(has_device(
            &a,
            "virtio-net-pci,netdev=hostnet0,id=net0,mac=fa:16:3e:00:00:01"
        ));
        assert!(has_device(
            &a,
            "virtio-net-pci,netdev=hostnet1,id=net1,mac=fa:16:3e:00:00:02"
        ));
        for (model, dev) in [
            ("e1000", "e1000,"),
            ("rtl8139", "rtl8139,"),
            ("virtio", "virtio-net-pci,"),
        ] {
            let mut q = with_props(&[("hw_vif_model", model)]).unwrap();
            q.nics = p.nics.clone();
            assert!(has_device(&argv(&q), dev), "{model}");
        }
    }

    #[test]
    fn no_nics_means_no_network_devices() {
        let a = argv(&base());
        assert!(values(&a, "-netdev").is_empty());
        assert!(!has_device(&a, "virtio-net"));
    }

    #[test]
    fn bad_mac_or_tap_is_refused() {
        let mut p = base();
        p.nics = vec![Nic {
            tap: "tap0".into(),
            mac: "zz:16:3e:00:00:01".into(),
        }];
        assert!(p.argv().is_err());
        p.nics = vec![Nic {
            tap: "tap0".into(),
            mac: "01:16:3e:00:00:01".into(),
        }];
        assert!(p.argv().is_err(), "multicast MAC");
        p.nics = vec![Nic {
            tap: "a-very-long-tap-name".into(),
            mac: "fa:16:3e:00:00:01".into(),
        }];
        assert!(p.argv().is_err());
    }

    #[test]
    fn video_models() {
        for (value_, dev) in [
            ("vga", Some("VGA,id=video0")),
            ("std", Some("VGA,id=video0")),
            ("virtio", Some("virtio-vga,id=video0")),
            ("cirrus", Some("cirrus-vga,id=video0")),
            ("qxl", Some("qxl-vga,id=video0")),
            ("none", None),
        ] {
            let a = argv(&with_props(&[("hw_video_model", value_)]).unwrap());
            let videos: Vec<_> = values(&a, "-device")
                .into_iter()
                .filter(|d| d.contains("id=video0"))
                .collect();
            assert_eq!(
                videos,
                dev.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                "{value_}"
            );
        }
        // Default: standard VGA.
        assert!(has_device(&argv(&base()), "VGA,id=video0"));
    }

    #[test]
    fn vnc_listen_when_given() {
        let mut p = base();
        p.vnc_listen = Some("127.0.0.1:5".into());
        let a = argv(&p);
        assert_eq!(value(&a, "-vnc"), "127.0.0.1:5");
        assert_eq!(value(&a, "-display"), "none");
    }

    #[test]
    fn uefi_uses_ovmf_pflash_with_per_instance_vars() {
        let mut p = with_props(&[("hw_firmware_type", "uefi")]).unwrap();
        assert!(
            matches!(p.argv(), Err(ProfileError::Invalid(_))),
            "vars path required"
        );
        p.uefi_vars = Some(UefiVars {
            vars_path: "/x/OVMF_VARS.fd".into(),
        });
        let drives = values(&argv(&p), "-drive");
        assert_eq!(
            drives[..2],
            [
                format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_PATH}"),
                "if=pflash,format=raw,unit=1,file=/x/OVMF_VARS.fd".to_owned()
            ]
        );
        let bios = argv(&base());
        assert!(!bios.iter().any(|s| s.contains("pflash")));
    }

    #[test]
    fn windows_gets_enlightenments_localtime_ide_and_e1000() {
        let mut p = with_props(&[("os_type", "windows")]).unwrap();
        p.nics = vec![Nic {
            tap: "tap0".into(),
            mac: "fa:16:3e:00:00:01".into(),
        }];
        let a = argv(&p);
        assert_eq!(
            value(&a, "-cpu"),
            "max,hv_relaxed,hv_spinlocks=0x1fff,hv_vapic,hv_time"
        );
        assert_eq!(value(&a, "-rtc"), "base=localtime,driftfix=slew");
        assert!(has_device(&a, "ide-hd,bus=ide.0,unit=0,drive=drive-root"));
        assert!(has_device(&a, "e1000,netdev=hostnet0"));
        // Explicit properties still win.
        let mut p = with_props(&[
            ("os_type", "windows"),
            ("hw_disk_bus", "virtio"),
            ("hw_vif_model", "virtio"),
        ])
        .unwrap();
        p.nics = vec![Nic {
            tap: "tap0".into(),
            mac: "fa:16:3e:00:00:01".into(),
        }];
        p.accel = Accel::Kvm;
        let a = argv(&p);
        assert_eq!(
            value(&a, "-cpu"),
            "host,hv_relaxed,hv_spinlocks=0x1fff,hv_vapic,hv_time"
        );
        assert!(has_device(&a, "virtio-blk-pci,drive=drive-root"));
        assert!(has_device(&a, "virtio-net-pci,netdev=hostnet0"));
        // Linux keeps a UTC clock.
        assert_eq!(value(&argv(&base()), "-rtc"), "base=utc");
    }

    #[test]
    fn unknown_property_values_are_refused() {
        for (k, v) in [
            ("hw_disk_bus", "floppy"),
            ("hw_disk_bus", "usb"),
            ("hw_cdrom_bus", "virtio"),
            ("hw_vif_model", "ne2k_pci"),
            ("hw_video_model", "vmvga"),
            ("hw_machine_type", "isapc"),
            ("hw_firmware_type", "coreboot"),
        ] {
            let err = with_props(&[(k, v)]).unwrap_err();
            assert!(
                matches!(&err, ProfileError::Unsupported { property, value, .. } if *property == k && value == v),
                "{k}={v}: {err}"
            );
        }
        // Properties that do not describe hardware are ignored.
        assert!(with_props(&[("os_distro", "debian"), ("hw_qemu_guest_agent", "yes")]).is_ok());
    }

    #[test]
    fn vcpus_and_memory_are_bounded() {
        let mut p = base();
        p.vcpus = 0;
        assert!(p.argv().is_err());
        p.vcpus = 256;
        assert!(p.argv().is_err());
        p.vcpus = 1;
        p.memory_mb = 8;
        assert!(p.argv().is_err());
    }

    #[test]
    fn commas_in_values_are_escaped() {
        let mut p = base();
        p.name = "web,1".into();
        p.serial_log = "/tmp/a,b/console.log".into();
        let a = argv(&p);
        assert_eq!(value(&a, "-name"), "guest=web,,1,debug-threads=on");
        assert!(values(&a, "-chardev")
            .iter()
            .any(|c| c.contains("path=/tmp/a,,b/console.log,")));
    }

    #[test]
    fn four_ide_devices_fit_on_pc() {
        let mut p = base();
        let d = DiskFile {
            path: "/x/d".into(),
            format: DiskFormat::Qcow2,
        };
        p.ephemeral_disk = Some(d.clone());
        p.swap_disk = Some(d);
        p.config_drive = Some("/x/cd".into());
        assert!(p.argv().is_ok(), "4 devices fit");
    }
}
