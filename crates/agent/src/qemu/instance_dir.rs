//! One instance's directory on the host: `<data_dir>/instances/<uuid>/`.
//!
//! Everything the host holds for an instance lives here, so deleting the directory removes
//! every trace of it, and listing `instances/` is the list of instances this host has:
//!
//! | file          | what                                                            |
//! |---------------|-----------------------------------------------------------------|
//! | `spec.json`   | the [`InstanceSpec`], written first: a restarted agent relaunches from it |
//! | `disk.qcow2`  | root disk, a qcow2 overlay on the cached image                  |
//! | `disk.eph0`   | ephemeral disk (qcow2, unformatted) when the flavor has one     |
//! | `disk.swap`   | swap disk (raw, sparse, `mkswap`ed) when the flavor has one     |
//! | `disk.config` | config drive ISO (label `config-2`) when asked for              |
//! | `uefi_vars.fd`| the instance's copy of the OVMF variable store (UEFI images)    |
//! | `console.log` | serial console, appended across reboots and relaunches          |
//! | `qmp.sock`    | QMP socket of the running QEMU                                  |
//! | `qemu.pid`    | pidfile of the running QEMU                                     |

use std::io;
use std::path::{Path, PathBuf};

use oxistack_bus::InstanceSpec;
use oxistack_model::{AppError, AppResult, ServerId};

#[derive(Debug, Clone)]
pub struct InstanceDir {
    id: ServerId,
    root: PathBuf,
}

impl InstanceDir {
    pub fn new(instances_root: &Path, id: ServerId) -> Self {
        InstanceDir {
            id,
            root: instances_root.join(id.as_uuid().hyphenated().to_string()),
        }
    }

    pub fn id(&self) -> ServerId {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    pub fn spec_file(&self) -> PathBuf {
        self.root.join("spec.json")
    }
    pub fn root_disk(&self) -> PathBuf {
        self.root.join("disk.qcow2")
    }
    pub fn ephemeral_disk(&self) -> PathBuf {
        self.root.join("disk.eph0")
    }
    pub fn swap_disk(&self) -> PathBuf {
        self.root.join("disk.swap")
    }
    pub fn config_drive(&self) -> PathBuf {
        self.root.join("disk.config")
    }
    pub fn uefi_vars(&self) -> PathBuf {
        self.root.join("uefi_vars.fd")
    }
    pub fn console_log(&self) -> PathBuf {
        self.root.join("console.log")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.root.join("qmp.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.root.join("qemu.pid")
    }

    /// A scratch path next to `target`, renamed over it once complete, so a crash never
    /// leaves a half-written file under the final name.
    pub fn scratch_for(target: &Path) -> PathBuf {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()))
    }

    /// Creates the directory and records the spec (atomically). The directory may be at
    /// any depth: the QMP socket is bound and reached through a short path
    /// (`oxistack_sys::unix_socket`).
    pub fn create(&self, spec: &InstanceSpec) -> AppResult<()> {
        std::fs::create_dir_all(&self.root)?;
        self.write_spec(spec)
    }

    /// Replaces the recorded spec (atomically) of an existing instance, e.g. when a NIC is
    /// attached or detached: the next launch builds the machine from it.
    pub fn write_spec(&self, spec: &InstanceSpec) -> AppResult<()> {
        let tmp = Self::scratch_for(&self.spec_file());
        std::fs::write(&tmp, serde_json::to_vec_pretty(spec)?)?;
        std::fs::rename(&tmp, self.spec_file())?;
        Ok(())
    }

    /// The recorded spec; `None` when the directory or its spec does not exist.
    pub fn read_spec(&self) -> AppResult<Option<InstanceSpec>> {
        match std::fs::read(self.spec_file()) {
            Ok(data) => Ok(Some(serde_json::from_slice(&data).map_err(|e| {
                AppError::internal(format!("instance spec {}: {e}", self.spec_file().display()))
            })?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the pidfile and socket a dead QEMU left behind.
    pub fn clear_runtime_files(&self) -> io::Result<()> {
        for f in [self.pidfile(), self.qmp_socket()] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes the directory and everything in it; gone already is fine.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The instances that have a directory under `instances_root` (names that are not a uuid,
/// such as scratch files, are skipped).
pub fn list(instances_root: &Path) -> io::Result<Vec<InstanceDir>> {
    let entries = match std::fs::read_dir(instances_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = vec![];
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if let Ok(uuid) = uuid::Uuid::parse_str(&name.to_string_lossy()) {
            // Only the canonical spelling we create, so one instance never has two dirs.
            if uuid.hyphenated().to_string() == name.to_string_lossy() {
                out.push(InstanceDir::new(instances_root, ServerId(uuid)));
            }
        }
    }
    out.sort_by_key(|d| d.id());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_finds_instance_dirs_only() {
        let root = tempfile::tempdir().unwrap();
        let a = InstanceDir::new(root.path(), ServerId::new());
        std::fs::create_dir_all(a.path()).unwrap();
        std::fs::create_dir_all(root.path().join("not-an-instance")).unwrap();
        std::fs::write(root.path().join("stray-file"), b"x").unwrap();
        let found: Vec<ServerId> = list(root.path()).unwrap().iter().map(|d| d.id()).collect();
        assert_eq!(found, vec![a.id()]);
        a.remove().unwrap();
        a.remove().unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        assert!(list(&root.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn instance_dirs_at_any_depth_are_created() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("d".repeat(90));
        let dir = InstanceDir::new(&deep, ServerId::new());
        // Longer than a unix socket address holds (107 bytes).
        assert!(dir.qmp_socket().as_os_str().len() > 107);
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "server_id": dir.id(), "name": "a", "hostname": "a",
            "project_id": "00000000000000000000000000000001", "user_id": "00000000000000000000000000000002",
            "vcpus": 1, "memory_mb": 64, "root_gb": 1, "ephemeral_gb": 0, "swap_mb": 0,
            "image": {"id": "00000000-0000-0000-0000-000000000003", "disk_format": "raw", "size": 1,
                      "os_hash_value": null, "properties": {}},
            "key_name": null, "key_data": null, "user_data": null, "config_drive": false,
            "metadata": {}, "availability_zone": "nova", "launch_index": 0
        }))
        .unwrap();
        dir.create(&spec).unwrap();
        assert_eq!(dir.read_spec().unwrap().unwrap().server_id, dir.id());
    }
}
