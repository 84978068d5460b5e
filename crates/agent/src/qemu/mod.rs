//! The QEMU virt driver: real virtual machines, with QEMU driven directly over QMP.
//!
//! Host state lives in files, so the agent holds nothing that a restart could lose:
//! `<data_dir>/instances/<uuid>/` per instance ([`instance_dir`]) and
//! `<data_dir>/image-cache/<image id>` per image ([`image_cache`]). The QEMU processes run
//! detached (`-daemonize`), outlive the agent and are found again through their pidfiles.
//!
//! Power states, per instance (QEMU runs without `-no-shutdown`, so a guest that powers
//! off takes its QEMU with it; docs/design/0006-qemu-direct.md):
//!
//! ```text
//!            spawn / start / hard reboot (not running)
//!   Shutdown ───────────────────────────────────────────▶ Running ◀─┐ hard reboot: system_reset
//!   (no live QEMU;     ◀──────────────────────────────────   │   ──┘ soft reboot: ACPI off, relaunch
//!    dir + spec.json)   stop: ACPI power button, grace,      │
//!                       then SIGTERM/SIGKILL;                 │ QMP says paused / crashed
//!                       guest power-off; QEMU killed or dies  ▼
//!                                                         Paused / Crashed
//!   destroy (from any state): kill QEMU (verified ours), remove the directory.
//! ```
//!
//! NICs attached after the boot (Nova's os-interface) go into `spec.json` first, then into
//! a running guest over QMP: `netdev_add` of the port's tap and `device_add` of a NIC of the
//! image's model with the port's MAC on the root PCI bus (`pc` machines only: i440fx has
//! ACPI hot-plug on `pci.0`; q35 has no free hot-plug slot). A detach finds the NIC by its
//! MAC, `device_del`s it, waits (bounded) for the guest to eject it (`DEVICE_DELETED`),
//! removes its netdev, and only then drops it from the spec. A stopped guest only has its
//! spec changed; the next start builds the machine from it.
//!
//! Every operation is idempotent and serialised per instance; `instances()` never waits
//! for an operation. Design notes: docs/design/0008-qemu-driver.md.

pub mod config_drive;
pub mod disks;
mod driver;
pub mod image_cache;
pub mod instance_dir;

pub use driver::{QemuConfig, QemuDriver, DEFAULT_STOP_GRACE};
pub use image_cache::{ImageCache, ImagePathFn, ImageSource, LocalImageSource};
pub use oxistack_qemu::AccelRequest;
