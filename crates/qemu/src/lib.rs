//! The host layer for real virtual machines: QEMU driven directly.
//!
//! - [`profile`]: machine profile (flavor + image properties + host paths) → QEMU argv.
//! - [`qmp`]: a QMP client over the instance's unix socket, with a timeout on every call.
//! - [`process`]: launch QEMU detached from the agent, find it again by pidfile, make sure a
//!   pid really is this instance's QEMU, and stop it.
//! - [`probe`]: decide KVM or TCG by booting a real tiny guest.
//!
//! This crate never touches the database: the agent's virt driver owns the state machine and
//! calls in here. Design notes: docs/design/0006-qemu-direct.md.

pub mod profile;

pub use profile::{
    Accel, CdromBus, DiskBus, DiskFile, DiskFormat, FirmwareType, ImageProperties, MachineProfile,
    MachineType, Nic, OsType, ProfileError, ResolvedHardware, UefiVars, VideoModel, VifModel,
    OVMF_CODE_PATH, OVMF_VARS_TEMPLATE_PATH,
};
pub mod qmp;

pub use qmp::{QmpClient, QmpError, QmpEvent, RunState, DEFAULT_QMP_TIMEOUT};
pub mod probe;
pub mod process;

pub use probe::{probe_accel, AccelRequest, ProbeOutcome, KVM_PROBE_BOUND, PROBE_MARKER};
pub use process::{
    find_instance_qemu, is_instance_qemu, launch, read_pidfile, terminate, ProcessError,
    Termination, QEMU_SYSTEM_X86_64,
};
