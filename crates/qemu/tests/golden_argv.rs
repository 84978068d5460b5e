//! Full QEMU command lines for representative profiles, checked against
//! `tests/golden/*.argv` (one argument per line).
//!
//! After an intended change, regenerate and review the diff:
//! `UPDATE_GOLDEN=1 cargo test -p oxistack-qemu --test golden_argv`

use std::collections::BTreeMap;
use std::path::PathBuf;

use oxistack_qemu::{Accel, DiskFile, DiskFormat, ImageProperties, MachineProfile, Nic, UefiVars};
use uuid::Uuid;

fn profile(props: &[(&str, &str)]) -> MachineProfile {
    let dir = PathBuf::from("/var/lib/oxistack/instances/0b7e2f6a-3c1d-4e5f-9a8b-1c2d3e4f5a6b");
    let props: BTreeMap<String, String> = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    MachineProfile {
        uuid: Uuid::parse_str("0b7e2f6a-3c1d-4e5f-9a8b-1c2d3e4f5a6b").unwrap(),
        name: "vm1".into(),
        vcpus: 1,
        memory_mb: 512,
        accel: Accel::Tcg,
        root_disk: DiskFile {
            path: dir.join("disk"),
            format: DiskFormat::Qcow2,
        },
        ephemeral_disk: None,
        swap_disk: None,
        config_drive: Some(dir.join("disk.config")),
        nics: vec![],
        serial_log: dir.join("console.log"),
        qmp_socket: "/run/oxistack/0b7e2f6a-3c1d-4e5f-9a8b-1c2d3e4f5a6b.qmp".into(),
        pidfile: "/run/oxistack/0b7e2f6a-3c1d-4e5f-9a8b-1c2d3e4f5a6b.pid".into(),
        uefi_vars: None,
        vnc_listen: None,
        image: ImageProperties::from_properties(&props).unwrap(),
    }
}

fn nics() -> Vec<Nic> {
    vec![
        Nic {
            tap: "tap5e1f0c2a-7b".into(),
            mac: "fa:16:3e:12:34:56".into(),
        },
        Nic {
            tap: "tap9d8c7b6a-5f".into(),
            mac: "fa:16:3e:ab:cd:ef".into(),
        },
    ]
}

fn cases() -> Vec<(&'static str, MachineProfile)> {
    let dir = PathBuf::from("/var/lib/oxistack/instances/0b7e2f6a-3c1d-4e5f-9a8b-1c2d3e4f5a6b");

    let linux_pc = profile(&[]);

    let mut linux_pc_kvm_full = profile(&[("hw_vif_model", "virtio")]);
    linux_pc_kvm_full.accel = Accel::Kvm;
    linux_pc_kvm_full.vcpus = 4;
    linux_pc_kvm_full.memory_mb = 4096;
    linux_pc_kvm_full.ephemeral_disk = Some(DiskFile {
        path: dir.join("disk.eph0"),
        format: DiskFormat::Qcow2,
    });
    linux_pc_kvm_full.swap_disk = Some(DiskFile {
        path: dir.join("disk.swap"),
        format: DiskFormat::Raw,
    });
    linux_pc_kvm_full.nics = nics();
    linux_pc_kvm_full.vnc_listen = Some("127.0.0.1:5".into());

    let mut linux_q35_uefi = profile(&[
        ("hw_machine_type", "q35"),
        ("hw_firmware_type", "uefi"),
        ("hw_video_model", "virtio"),
    ]);
    linux_q35_uefi.uefi_vars = Some(UefiVars {
        vars_path: dir.join("OVMF_VARS.fd"),
    });
    linux_q35_uefi.nics = nics();

    let mut linux_scsi = profile(&[
        ("hw_disk_bus", "scsi"),
        ("hw_cdrom_bus", "scsi"),
        ("hw_video_model", "none"),
    ]);
    linux_scsi.config_drive = Some(dir.join("disk.config"));

    let mut windows_pc = profile(&[("os_type", "windows")]);
    windows_pc.vcpus = 2;
    windows_pc.memory_mb = 4096;
    windows_pc.nics = nics()[..1].to_vec();

    let mut windows_q35_uefi = profile(&[
        ("os_type", "windows"),
        ("hw_machine_type", "q35"),
        ("hw_firmware_type", "uefi"),
    ]);
    windows_q35_uefi.uefi_vars = Some(UefiVars {
        vars_path: dir.join("OVMF_VARS.fd"),
    });
    windows_q35_uefi.nics = nics()[..1].to_vec();

    vec![
        ("linux_pc_default", linux_pc),
        ("linux_pc_kvm_disks_nics_vnc", linux_pc_kvm_full),
        ("linux_q35_uefi_virtio", linux_q35_uefi),
        ("linux_pc_scsi_no_video", linux_scsi),
        ("windows_pc", windows_pc),
        ("windows_q35_uefi", windows_q35_uefi),
    ]
}

#[test]
fn argv_matches_golden_files() {
    let golden_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for (name, profile) in cases() {
        let argv = profile.argv().unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = argv.join("\n") + "\n";
        let path = golden_dir.join(format!("{name}.argv"));
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        if want != text {
            mismatches.push(format!("--- {name}: want\n{want}+++ got\n{text}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "argv differs from golden files (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}
