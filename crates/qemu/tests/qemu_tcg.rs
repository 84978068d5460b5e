//! Real QEMU under TCG (never KVM in tests: /dev/kvm exists on these hosts but ordinary
//! guests hang under it). Needs `qemu-system-x86_64` (tools/install-deps).
//!
//! The guest is the KVM probe's boot sector: it prints a marker on the serial port and
//! halts, which is enough to exercise launch, QMP, adoption and termination.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oxistack_qemu::probe::{probe_boot, probe_boot_sector};
use oxistack_qemu::{
    find_instance_qemu, is_instance_qemu, launch, probe_accel, terminate, Accel, AccelRequest,
    DiskFile, DiskFormat, ImageProperties, MachineProfile, QmpClient, QmpEvent, RunState,
    Termination, PROBE_MARKER, QEMU_SYSTEM_X86_64,
};
use uuid::Uuid;

/// Generous bound for anything under TCG on a loaded 2-core machine; a guard against hangs,
/// not a performance assertion.
const BOUND: Duration = Duration::from_secs(60);

fn qemu() -> PathBuf {
    PathBuf::from(QEMU_SYSTEM_X86_64)
}

async fn wait_for<F: FnMut() -> bool>(what: &str, mut done: F) {
    tokio::time::timeout(BOUND, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn serial_has(path: &Path, marker: &str) -> bool {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).contains(marker))
        .unwrap_or(false)
}

#[tokio::test]
async fn probe_guest_prints_its_marker_under_tcg() {
    probe_boot(&qemu(), Accel::Tcg, BOUND)
        .await
        .expect("the probe boot sector runs under TCG");
}

#[tokio::test]
async fn probe_accel_settles_without_hanging() {
    let outcome = tokio::time::timeout(BOUND, probe_accel(&qemu(), AccelRequest::Auto))
        .await
        .expect("probe_accel is bounded");
    // Either is right on some host; TCG must come with its warning.
    if outcome.accel == Accel::Tcg {
        assert!(outcome.warning.as_deref().unwrap_or("").contains("TCG"));
    } else {
        assert_eq!(outcome.warning, None);
    }
    let tcg = probe_accel(&qemu(), AccelRequest::Tcg).await;
    assert_eq!((tcg.accel, tcg.warning), (Accel::Tcg, None));
}

/// Kills the instance's QEMU if a test fails half-way.
struct Cleanup {
    pidfile: PathBuf,
    uuid: Uuid,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(Some(pid)) = find_instance_qemu(&self.pidfile, self.uuid) {
            let _ = kill_now(pid);
        }
    }
}

fn kill_now(pid: i32) -> std::io::Result<()> {
    // Only reached for a pid that find_instance_qemu confirmed is this test's QEMU.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map(drop)
}

#[tokio::test]
async fn launch_control_adopt_and_terminate_a_real_qemu() {
    let top = tempfile::Builder::new().prefix("oxq").tempdir().unwrap();
    // Deeper than a unix socket address holds (107 bytes), as a data dir in a deep
    // checkout is: the QMP socket must still work.
    let deep = top.path().join("x".repeat(60)).join("y".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let disk = deep.join("disk.raw");
    let mut image = probe_boot_sector().to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let uuid = Uuid::new_v4();
    let profile = MachineProfile {
        uuid,
        name: "probe-vm".into(),
        vcpus: 1,
        memory_mb: 64,
        accel: Accel::Tcg,
        root_disk: DiskFile {
            path: disk,
            format: DiskFormat::Raw,
        },
        ephemeral_disk: None,
        swap_disk: None,
        config_drive: None,
        nics: vec![],
        serial_log: deep.join("console.log"),
        qmp_socket: deep.join("qmp.sock"),
        pidfile: deep.join("qemu.pid"),
        uefi_vars: None,
        vnc_listen: None,
        image: ImageProperties::default(),
    };
    let _cleanup = Cleanup {
        pidfile: profile.pidfile.clone(),
        uuid,
    };

    launch(
        &qemu(),
        &profile.argv().unwrap(),
        &profile.qmp_socket,
        BOUND,
    )
    .await
    .expect("QEMU starts");
    let pid = find_instance_qemu(&profile.pidfile, uuid)
        .unwrap()
        .expect("pidfile names our QEMU");
    assert!(
        !is_instance_qemu(pid, Uuid::new_v4()),
        "another instance's uuid must not match"
    );
    wait_for("the guest's serial output", || {
        serial_has(&profile.serial_log, PROBE_MARKER)
    })
    .await;

    let qmp = QmpClient::connect(&profile.qmp_socket, BOUND)
        .await
        .unwrap();
    let mut events = qmp.subscribe();
    assert_eq!(qmp.query_status().await.unwrap(), RunState::Running);
    qmp.stop().await.unwrap();
    assert_eq!(qmp.query_status().await.unwrap(), RunState::Paused);
    qmp.cont().await.unwrap();
    assert_eq!(qmp.query_status().await.unwrap(), RunState::Running);
    qmp.system_reset().await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        while !seen
            .iter()
            .any(|e| matches!(e, QmpEvent::Reset { guest: false }))
        {
            seen.push(events.recv().await.unwrap());
        }
    })
    .await
    .expect("RESET event");
    // The reset guest runs the boot sector again: a second marker in the appended log.
    wait_for("the second boot", || {
        std::fs::read_to_string(&profile.serial_log)
            .map(|s| s.matches(PROBE_MARKER).count() >= 2)
            .unwrap_or(false)
    })
    .await;
    qmp.system_powerdown().await.unwrap();
    tokio::time::timeout(BOUND, async {
        while events.recv().await.unwrap() != QmpEvent::Powerdown {}
    })
    .await
    .expect("POWERDOWN event");

    // A second client after the first is gone: what an agent restart does.
    drop(qmp);
    let qmp = QmpClient::connect(&profile.qmp_socket, BOUND)
        .await
        .unwrap();
    assert_eq!(qmp.query_status().await.unwrap(), RunState::Running);
    assert_eq!(
        find_instance_qemu(&profile.pidfile, uuid).unwrap(),
        Some(pid)
    );

    // quit: QEMU exits, the client sees the connection close.
    let mut events = qmp.subscribe();
    qmp.quit().await.unwrap();
    let _ = tokio::time::timeout(BOUND, events.recv()).await;
    wait_for("QEMU to exit", || !is_instance_qemu(pid, uuid)).await;
    assert!(matches!(
        qmp.query_status().await,
        Err(oxistack_qemu::QmpError::Disconnected)
    ));
    assert_eq!(
        terminate(pid, uuid, Duration::from_secs(5)).await.unwrap(),
        Termination::AlreadyGone
    );

    // Relaunch and stop it with a signal this time.
    launch(
        &qemu(),
        &profile.argv().unwrap(),
        &profile.qmp_socket,
        BOUND,
    )
    .await
    .unwrap();
    let pid = find_instance_qemu(&profile.pidfile, uuid).unwrap().unwrap();
    let how = terminate(pid, uuid, Duration::from_secs(20)).await.unwrap();
    assert_ne!(how, Termination::AlreadyGone);
    assert!(!is_instance_qemu(pid, uuid));
}

#[tokio::test]
async fn launch_reports_qemu_errors() {
    let dir = tempfile::tempdir().unwrap();
    let argv = vec![
        "-nodefaults".to_owned(),
        "-display".to_owned(),
        "none".to_owned(),
        "-drive".to_owned(),
        format!(
            "file={},format=qcow2,if=ide",
            dir.path().join("missing.qcow2").display()
        ),
        "-daemonize".to_owned(),
    ];
    let err = launch(&qemu(), &argv, &dir.path().join("qmp.sock"), BOUND)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.qcow2"), "{err}");
}

#[tokio::test]
async fn connecting_to_a_missing_socket_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let err = QmpClient::connect(&dir.path().join("nope.sock"), BOUND)
        .await
        .err()
        .expect("no socket");
    assert!(
        matches!(err, oxistack_qemu::QmpError::Connect { .. }),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "diagnostic: prints what this host's probe decides"]
async fn show_probe_outcome() {
    let outcome = probe_accel(&qemu(), AccelRequest::Auto).await;
    eprintln!("probe outcome: {outcome:?}");
    let kvm = probe_boot(&qemu(), Accel::Kvm, Duration::from_secs(8)).await;
    eprintln!("kvm probe boot: {kvm:?}");
}
