//! Boots the tiny guest image (tools/build-guest-image) under TCG with a config drive and
//! waits for its console lines, then presses the ACPI power button and waits for QEMU to
//! exit. Slow (tens of seconds), so it runs only with `OXISTACK_QEMU_TESTS=1`; it builds the
//! image itself unless `OXISTACK_GUEST_IMAGE` names one already built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oxistack_qemu::{
    find_instance_qemu, is_instance_qemu, launch, terminate, Accel, DiskFile, DiskFormat,
    ImageProperties, MachineProfile, QmpClient, QEMU_SYSTEM_X86_64,
};
use uuid::Uuid;

const BOOT_BOUND: Duration = Duration::from_secs(180);

fn enabled() -> bool {
    if std::env::var_os("OXISTACK_QEMU_TESTS").is_some_and(|v| v == "1") {
        return true;
    }
    eprintln!("skipped: set OXISTACK_QEMU_TESTS=1 to boot the guest image");
    false
}

fn guest_image(scratch: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("OXISTACK_GUEST_IMAGE") {
        return PathBuf::from(p);
    }
    let out = scratch.join("tiny.qcow2");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/build-guest-image");
    let status = Command::new("bash")
        .arg(script)
        .arg("tiny")
        .arg(&out)
        .status()
        .expect("run build-guest-image");
    assert!(status.success(), "build-guest-image failed");
    out
}

fn config_drive(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join("cd");
    std::fs::create_dir_all(root.join("openstack/latest")).unwrap();
    let meta = serde_json::json!({
        "uuid": Uuid::new_v4(),
        "name": name,
        "hostname": name,
        "public_keys": {"k": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxiStackTestKey test@oxistack\n"},
        "launch_index": 0,
    });
    std::fs::write(
        root.join("openstack/latest/meta_data.json"),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    let iso = dir.join("disk.config");
    let status = Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-V", "config-2", "-J", "-R", "-o",
        ])
        .arg(&iso)
        .arg(&root)
        .status()
        .expect("run xorriso (tools/install-deps)");
    assert!(status.success());
    iso
}

async fn boot_and_check(props: &[(&str, &str)], name: &str) {
    let dir = tempfile::Builder::new().prefix("oxg").tempdir().unwrap();
    let base = guest_image(dir.path());
    let overlay = dir.path().join("disk");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success());
    let uuid = Uuid::new_v4();
    let props = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let profile = MachineProfile {
        uuid,
        name: name.into(),
        vcpus: 1,
        memory_mb: 256,
        accel: Accel::Tcg,
        root_disk: DiskFile {
            path: overlay,
            format: DiskFormat::Qcow2,
        },
        ephemeral_disk: None,
        swap_disk: None,
        config_drive: Some(config_drive(dir.path(), name)),
        nics: vec![],
        serial_log: dir.path().join("console.log"),
        qmp_socket: dir.path().join("qmp.sock"),
        pidfile: dir.path().join("qemu.pid"),
        uefi_vars: None,
        vnc_listen: None,
        image: ImageProperties::from_properties(&props).unwrap(),
    };
    let qemu = PathBuf::from(QEMU_SYSTEM_X86_64);
    launch(
        &qemu,
        &profile.argv().unwrap(),
        &profile.qmp_socket,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let pid = find_instance_qemu(&profile.pidfile, uuid).unwrap().unwrap();

    let want = [
        "oxistack-guest: booted".to_owned(),
        format!("oxistack-guest: hostname={name}"),
    ];
    let booted = tokio::time::timeout(BOOT_BOUND, async {
        loop {
            let log = std::fs::read(&profile.serial_log).unwrap_or_default();
            let log = String::from_utf8_lossy(&log);
            if want.iter().all(|w| log.contains(w.as_str())) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let log = String::from_utf8_lossy(&std::fs::read(&profile.serial_log).unwrap_or_default())
        .into_owned();
    if booted.is_err() {
        let _ = terminate(pid, uuid, Duration::from_secs(5)).await;
        panic!("guest did not print {want:?} within {BOOT_BOUND:?}; console:\n{log}");
    }
    assert!(log.contains("installed ssh key for root"), "{log}");

    // ACPI power button: the guest powers off and QEMU (no -no-shutdown) exits.
    let qmp = QmpClient::connect(&profile.qmp_socket, Duration::from_secs(10))
        .await
        .unwrap();
    qmp.system_powerdown().await.unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(60), async {
        while is_instance_qemu(pid, uuid) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if exited.is_err() {
        let _ = terminate(pid, uuid, Duration::from_secs(5)).await;
        panic!("guest ignored the ACPI power button");
    }
}

#[tokio::test]
async fn tiny_image_boots_on_pc_with_ide_disk_and_cdrom() {
    if enabled() {
        boot_and_check(&[], "vm1").await;
    }
}

#[tokio::test]
async fn tiny_image_boots_on_q35_with_virtio_disk_and_scsi_cdrom() {
    if enabled() {
        boot_and_check(&[("hw_machine_type", "q35")], "vm-q35").await;
    }
}
