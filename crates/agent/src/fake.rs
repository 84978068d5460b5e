//! The fake virt driver: a hypervisor that keeps its instances in memory and
//! in a JSON file (so a restarted agent finds its "guests" again, as the QEMU
//! driver finds its processes), moves them through real power states, writes
//! a console log per boot, and can be told to fail.
//!
//! Failure injection, for tests of the sagas and the API: an image property
//! `oxistack_fake_fail=spawn` makes every spawn of that image fail, as an
//! unbootable image would; [`FakeDriver::fail_next`] fails the next call of a
//! given operation.
//!
//! Each instance keeps its NICs (those it was spawned with, plus those
//! attached later, minus those detached), as the QEMU driver keeps them in
//! its spec: [`FakeDriver::nics`] shows them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use oxistack_bus::{HostFacts, HostInstance, InstanceSpec, NicSpec, PowerCommand};
use oxistack_model::server_state::PowerState;
use oxistack_model::{AppError, AppResult, ErrorKind, PortId, ServerId};
use serde::{Deserialize, Serialize};

use crate::{tail_lines, VirtDriver};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FakeInstance {
    name: String,
    hostname: String,
    running: bool,
    boots: u64,
    vcpus: i64,
    memory_mb: i64,
    console: String,
    /// The command line the QEMU driver would have run, for inspection.
    would_run: Vec<String>,
    /// The NICs plugged in, in order.
    #[serde(default)]
    nics: Vec<NicSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FakeOp {
    Spawn,
    Destroy,
    Power,
    AttachNic,
    DetachNic,
}

pub struct FakeDriver {
    host: String,
    state_file: Option<PathBuf>,
    capacity: (i64, i64, i64),
    inner: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    instances: BTreeMap<ServerId, FakeInstance>,
    fail_next: BTreeMap<FakeOp, String>,
}

impl FakeDriver {
    /// `state_file`: where instances persist across restarts (None: memory only).
    /// `capacity`: (vcpus, memory_mb, disk_gb) the host reports.
    pub fn new(
        host: &str,
        state_file: Option<PathBuf>,
        capacity: (i64, i64, i64),
    ) -> AppResult<Self> {
        let mut instances = BTreeMap::new();
        if let Some(f) = &state_file {
            if let Ok(data) = std::fs::read(f) {
                instances = serde_json::from_slice(&data).map_err(|e| {
                    AppError::internal(format!("fake driver state {}: {e}", f.display()))
                })?;
            }
        }
        Ok(FakeDriver {
            host: host.to_string(),
            state_file,
            capacity,
            inner: Mutex::new(FakeState {
                instances,
                fail_next: BTreeMap::new(),
            }),
        })
    }

    /// Makes the next call of `op` fail with `message`.
    pub fn fail_next(&self, op: FakeOp, message: &str) {
        self.lock().fail_next.insert(op, message.to_string());
    }

    /// Simulates a guest that powered itself off (or a hypervisor crash).
    pub fn guest_power_off(&self, id: ServerId) {
        let mut st = self.lock();
        if let Some(i) = st.instances.get_mut(&id) {
            i.running = false;
            i.console
                .push_str("fake-virt: guest powered off by itself\n");
        }
        let _ = self.persist(&st);
    }

    /// The command line the QEMU driver would have run for an instance.
    pub fn would_run(&self, id: ServerId) -> Option<Vec<String>> {
        self.lock().instances.get(&id).map(|i| i.would_run.clone())
    }

    /// The NICs plugged into an instance (None: no such instance).
    pub fn nics(&self, id: ServerId) -> Option<Vec<NicSpec>> {
        self.lock().instances.get(&id).map(|i| i.nics.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, st: &FakeState) -> AppResult<()> {
        if let Some(f) = &self.state_file {
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&st.instances)?)?;
            std::fs::rename(&tmp, f)?;
        }
        Ok(())
    }

    fn injected(st: &mut FakeState, op: FakeOp) -> AppResult<()> {
        match st.fail_next.remove(&op) {
            Some(msg) => Err(AppError::new(
                ErrorKind::Internal,
                format!("injected failure: {msg}"),
            )),
            None => Ok(()),
        }
    }
}

fn boot(i: &mut FakeInstance) {
    i.running = true;
    i.boots += 1;
    i.console.push_str(&format!(
        "fake-virt: power on {} ({} vCPU, {} MB), boot {}\nfake-virt: hostname={}\n",
        i.name, i.vcpus, i.memory_mb, i.boots, i.hostname
    ));
}

#[async_trait]
impl VirtDriver for FakeDriver {
    async fn facts(&self) -> AppResult<HostFacts> {
        Ok(HostFacts {
            host: self.host.clone(),
            virt_type: "fake".into(),
            vcpus: self.capacity.0,
            memory_mb: self.capacity.1,
            disk_gb: self.capacity.2,
            accel: "none".into(),
            warnings: vec![],
        })
    }

    async fn spawn(&self, spec: &InstanceSpec) -> AppResult<()> {
        let mut st = self.lock();
        Self::injected(&mut st, FakeOp::Spawn)?;
        if st.instances.contains_key(&spec.server_id) {
            return Ok(());
        }
        if spec
            .image
            .properties
            .get("oxistack_fake_fail")
            .map(String::as_str)
            == Some("spawn")
        {
            return Err(
                AppError::new(ErrorKind::Internal, "the image is not bootable")
                    .with_context(format!("fake driver refused image {}", spec.image.id)),
            );
        }
        let mut inst = FakeInstance {
            name: spec.name.clone(),
            hostname: spec.hostname.clone(),
            running: false,
            boots: 0,
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            console: String::new(),
            would_run: vec![
                "qemu-system-x86_64".into(),
                "-name".into(),
                format!("guest={}", spec.server_id),
                "-smp".into(),
                spec.vcpus.to_string(),
                "-m".into(),
                spec.memory_mb.to_string(),
            ],
            nics: spec.nics.clone(),
        };
        boot(&mut inst);
        st.instances.insert(spec.server_id, inst);
        self.persist(&st)
    }

    async fn destroy(&self, id: ServerId) -> AppResult<()> {
        let mut st = self.lock();
        Self::injected(&mut st, FakeOp::Destroy)?;
        if st.instances.remove(&id).is_some() {
            self.persist(&st)?;
        }
        Ok(())
    }

    async fn power(&self, id: ServerId, cmd: PowerCommand) -> AppResult<()> {
        let mut st = self.lock();
        Self::injected(&mut st, FakeOp::Power)?;
        let inst = st
            .instances
            .get_mut(&id)
            .ok_or_else(|| AppError::missing("Instance", id))?;
        match cmd {
            PowerCommand::Start => {
                if !inst.running {
                    boot(inst);
                }
            }
            PowerCommand::Stop => {
                if inst.running {
                    inst.running = false;
                    inst.console.push_str("fake-virt: power off\n");
                }
            }
            PowerCommand::RebootSoft | PowerCommand::RebootHard => {
                inst.console.push_str(match cmd {
                    PowerCommand::RebootSoft => "fake-virt: reboot (soft)\n",
                    _ => "fake-virt: reset (hard)\n",
                });
                boot(inst);
            }
        }
        self.persist(&st)
    }

    async fn instances(&self) -> AppResult<Vec<HostInstance>> {
        Ok(self
            .lock()
            .instances
            .iter()
            .map(|(id, i)| HostInstance {
                server_id: *id,
                power_state: if i.running {
                    PowerState::Running
                } else {
                    PowerState::Shutdown
                },
            })
            .collect())
    }

    async fn console_output(&self, id: ServerId, lines: Option<usize>) -> AppResult<String> {
        let st = self.lock();
        let inst = st
            .instances
            .get(&id)
            .ok_or_else(|| AppError::missing("Instance", id))?;
        Ok(tail_lines(&inst.console, lines))
    }

    async fn attach_nic(&self, id: ServerId, nic: &NicSpec) -> AppResult<()> {
        let mut st = self.lock();
        Self::injected(&mut st, FakeOp::AttachNic)?;
        let inst = st
            .instances
            .get_mut(&id)
            .ok_or_else(|| AppError::missing("Instance", id))?;
        if inst.nics.iter().any(|n| n.port_id == nic.port_id) {
            return Ok(());
        }
        inst.nics.push(nic.clone());
        inst.console
            .push_str(&format!("fake-virt: NIC {} plugged\n", nic.mac));
        self.persist(&st)
    }

    async fn detach_nic(&self, id: ServerId, port_id: PortId) -> AppResult<()> {
        let mut st = self.lock();
        Self::injected(&mut st, FakeOp::DetachNic)?;
        let Some(inst) = st.instances.get_mut(&id) else {
            return Ok(());
        };
        let Some(at) = inst.nics.iter().position(|n| n.port_id == port_id) else {
            return Ok(());
        };
        let nic = inst.nics.remove(at);
        inst.console
            .push_str(&format!("fake-virt: NIC {} unplugged\n", nic.mac));
        self.persist(&st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxistack_bus::ImageSpec;

    fn spec(id: ServerId) -> InstanceSpec {
        InstanceSpec {
            server_id: id,
            name: "vm1".into(),
            hostname: "vm1".into(),
            project_id: Default::default(),
            user_id: Default::default(),
            vcpus: 1,
            memory_mb: 512,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image: ImageSpec {
                id: Default::default(),
                disk_format: "qcow2".into(),
                size: 1,
                os_hash_value: None,
                properties: Default::default(),
            },
            key_name: None,
            key_data: None,
            user_data: None,
            config_drive: false,
            metadata: Default::default(),
            availability_zone: "nova".into(),
            launch_index: 0,
            nics: vec![],
        }
    }

    #[tokio::test]
    async fn lifecycle_is_idempotent_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fake.json");
        let d = FakeDriver::new("h", Some(file.clone()), (2, 4096, 10)).unwrap();
        let id = ServerId::new();
        d.spawn(&spec(id)).await.unwrap();
        d.spawn(&spec(id)).await.unwrap();
        assert_eq!(d.instances().await.unwrap().len(), 1);
        d.power(id, PowerCommand::Stop).await.unwrap();
        d.power(id, PowerCommand::Stop).await.unwrap();
        assert_eq!(
            d.instances().await.unwrap()[0].power_state,
            PowerState::Shutdown
        );
        d.power(id, PowerCommand::Start).await.unwrap();
        d.power(id, PowerCommand::RebootHard).await.unwrap();
        let log = d.console_output(id, None).await.unwrap();
        assert!(log.contains("boot 3"), "{log}");
        assert_eq!(
            d.console_output(id, Some(2)).await.unwrap(),
            "fake-virt: hostname=vm1\n"
        );

        // A new driver on the same file finds the instance again.
        let d2 = FakeDriver::new("h", Some(file), (2, 4096, 10)).unwrap();
        assert_eq!(
            d2.instances().await.unwrap()[0].power_state,
            PowerState::Running
        );
        d2.destroy(id).await.unwrap();
        d2.destroy(id).await.unwrap();
        assert!(d2.instances().await.unwrap().is_empty());
    }

    fn nic(n: u8) -> NicSpec {
        NicSpec {
            port_id: PortId::new(),
            network_id: Default::default(),
            mac: format!("fa:16:3e:00:00:{n:02x}"),
            tap: format!("tap{n}"),
            mtu: 1500,
            fixed_ips: vec![],
        }
    }

    #[tokio::test]
    async fn nics_attach_and_detach_idempotently_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fake.json");
        let d = FakeDriver::new("h", Some(file.clone()), (2, 4096, 10)).unwrap();
        let id = ServerId::new();
        let mut s = spec(id);
        let (a, b) = (nic(1), nic(2));
        s.nics = vec![a.clone()];
        assert_eq!(
            d.attach_nic(id, &b).await.unwrap_err().status(),
            404,
            "no instance yet"
        );
        d.spawn(&s).await.unwrap();
        d.attach_nic(id, &b).await.unwrap();
        d.attach_nic(id, &b).await.unwrap();
        assert_eq!(d.nics(id).unwrap(), vec![a.clone(), b.clone()]);

        let d2 = FakeDriver::new("h", Some(file), (2, 4096, 10)).unwrap();
        assert_eq!(d2.nics(id).unwrap(), vec![a.clone(), b.clone()]);
        d2.detach_nic(id, a.port_id).await.unwrap();
        d2.detach_nic(id, a.port_id).await.unwrap();
        assert_eq!(d2.nics(id).unwrap(), vec![b.clone()]);
        d2.fail_next(FakeOp::AttachNic, "boom");
        assert!(d2.attach_nic(id, &a).await.is_err());
        assert_eq!(d2.nics(id).unwrap(), vec![b]);
        d2.destroy(id).await.unwrap();
        d2.detach_nic(id, a.port_id).await.unwrap();
    }

    #[tokio::test]
    async fn failures_can_be_injected() {
        let d = FakeDriver::new("h", None, (2, 4096, 10)).unwrap();
        let id = ServerId::new();
        d.fail_next(FakeOp::Spawn, "boom");
        assert!(d.spawn(&spec(id)).await.is_err());
        d.spawn(&spec(id)).await.unwrap();
        let mut bad = spec(ServerId::new());
        bad.image
            .properties
            .insert("oxistack_fake_fail".into(), "spawn".into());
        let e = d.spawn(&bad).await.unwrap_err();
        assert!(e.message.contains("not bootable"));
    }
}
