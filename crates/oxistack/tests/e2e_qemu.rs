//! Real virtual machines, as a user sees them: `oxistack serve --virt qemu`
//! (TCG) driven by the official `openstack` CLI, booting the tiny guest
//! image with a config drive. Needs qemu-system-x86_64: runs when
//! `OXISTACK_QEMU_TESTS=1` (tools/test sets it).

mod common;

use std::time::{Duration, Instant};

use common::{guest_image, qemu_pids, Cloud, Creds};

fn enabled() -> bool {
    if std::env::var("OXISTACK_QEMU_TESTS").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipped: set OXISTACK_QEMU_TESTS=1 to boot real guests");
        false
    }
}

/// Waits (bounded) until the console log of `server` holds `line` at least `count` times.
fn wait_console(cloud: &Cloud, server: &str, line: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = cloud.os_ok(&Creds::Admin, &["console", "log", "show", server]);
        if log.matches(line).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{server}: {line:?} x{count} not seen in the console:\n{log}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn upload_tiny(cloud: &Cloud) {
    let img = guest_image();
    cloud.os_json(
        &Creds::Admin,
        &[
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            img.to_str().unwrap(),
            "tiny",
        ],
    );
}

#[test]
fn a_real_guest_boots_takes_its_identity_and_survives_a_restart() {
    if !enabled() {
        return;
    }
    let mut cloud = Cloud::start_virt("qemu", &[]);
    let admin = Creds::Admin;
    upload_tiny(&cloud);
    let key = cloud.data_dir().join("k");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    cloud.os_json(
        &admin,
        &[
            "keypair",
            "create",
            "--public-key",
            &format!("{}.pub", key.display()),
            "k",
        ],
    );

    let vm = cloud.os_json(
        &admin,
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "tiny",
            "--key-name",
            "k",
            "--config-drive",
            "true",
            "--nic",
            "none",
            "--wait",
            "vm1",
        ],
    );
    assert_eq!(vm["status"], "ACTIVE", "{vm}");
    let id = vm["id"].as_str().unwrap().to_string();
    let log = wait_console(&cloud, "vm1", "oxistack-guest: hostname=vm1", 1);
    assert!(log.contains("oxistack-guest: booted"), "{log}");
    let pids = qemu_pids(&id);
    assert_eq!(pids.len(), 1, "one QEMU for vm1: {pids:?}");

    // stop -> SHUTOFF, QEMU gone; start -> a second boot.
    cloud.os_ok(&admin, &["server", "stop", "vm1"]);
    cloud.wait_status(&admin, "vm1", "SHUTOFF");
    assert!(qemu_pids(&id).is_empty(), "QEMU still runs after stop");
    cloud.os_ok(&admin, &["server", "start", "vm1"]);
    cloud.wait_status(&admin, "vm1", "ACTIVE");
    wait_console(&cloud, "vm1", "oxistack-guest: hostname=vm1", 2);

    // Hard and soft reboots each give another boot.
    cloud.os_ok(&admin, &["server", "reboot", "--hard", "--wait", "vm1"]);
    wait_console(&cloud, "vm1", "oxistack-guest: hostname=vm1", 3);
    cloud.os_ok(&admin, &["server", "reboot", "--soft", "--wait", "vm1"]);
    wait_console(&cloud, "vm1", "oxistack-guest: hostname=vm1", 4);
    let tail = cloud.os_ok(&admin, &["console", "log", "show", "--lines", "5", "vm1"]);
    assert!(tail.lines().count() <= 5, "{tail}");

    // A QEMU that dies turns the server SHUTOFF within the sync period.
    let pid = qemu_pids(&id)[0];
    std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let s = cloud.wait_status(&admin, "vm1", "SHUTOFF");
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");

    // A restart of oxistack keeps the running guest's QEMU (same pid, no duplicate).
    cloud.os_ok(&admin, &["server", "start", "vm1"]);
    cloud.wait_status(&admin, "vm1", "ACTIVE");
    wait_console(&cloud, "vm1", "oxistack-guest: hostname=vm1", 5);
    let before = qemu_pids(&id);
    assert_eq!(before.len(), 1);
    cloud.restart();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        qemu_pids(&id),
        before,
        "the guest's QEMU changed across a restart"
    );
    let s = cloud.wait_status(&admin, "vm1", "ACTIVE");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);

    // Delete leaves no QEMU, disk, socket or log behind.
    cloud.os_ok(&admin, &["server", "delete", "--wait", "vm1"]);
    assert!(qemu_pids(&id).is_empty(), "QEMU left after delete");
    let leftovers: Vec<_> = walk(cloud.data_dir())
        .into_iter()
        .filter(|p| p.contains(&id))
        .collect();
    assert!(
        leftovers.is_empty(),
        "files of the deleted server remain: {leftovers:?}"
    );
}

#[test]
fn three_guests_at_once_and_an_unbootable_image() {
    if !enabled() {
        return;
    }
    let cloud = Cloud::start_virt("qemu", &[]);
    let admin = Creds::Admin;
    upload_tiny(&cloud);
    cloud.os_ok(
        &admin,
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "tiny",
            "--config-drive",
            "true",
            "--nic",
            "none",
            "--min",
            "3",
            "--max",
            "3",
            "--wait",
            "many",
        ],
    );
    let list = cloud.os_json(&admin, &["server", "list"]);
    let names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        assert_eq!(
            cloud.os_json(&admin, &["server", "show", n])["status"],
            "ACTIVE"
        );
        wait_console(&cloud, n, &format!("oxistack-guest: hostname={n}"), 1);
    }

    // Random bytes declared raw: the server is ACTIVE and its console says why it does not boot.
    let junk = cloud.data_dir().join("junk.raw");
    std::fs::write(
        &junk,
        (0..1024 * 1024)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    cloud.os_json(
        &admin,
        &[
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            junk.to_str().unwrap(),
            "junk",
        ],
    );
    let out = cloud.os_as(
        &admin,
        &[
            "server", "create", "--flavor", "m1.tiny", "--image", "junk", "--nic", "none",
            "--wait", "nb", "-f", "json",
        ],
    );
    let s = cloud.os_json(&admin, &["server", "show", "nb"]);
    match s["status"].as_str() {
        Some("ACTIVE") => {
            wait_console(&cloud, "nb", "No bootable device", 1);
        }
        Some("ERROR") => assert!(
            s["fault"].to_string().len() > 10,
            "ERROR without a fault: {s}"
        ),
        other => panic!(
            "unbootable server in {other:?} ({}): {s}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    for n in names.iter().map(String::as_str).chain(["nb"]) {
        cloud.os_ok(&admin, &["server", "delete", "--wait", n]);
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn the_accelerator_and_its_warning_show_in_hypervisor_show() {
    if !enabled() {
        return;
    }
    // `auto` boots a probe guest under KVM; where that fails (as on the
    // project's CI machines) the host falls back to TCG and says so.
    let cloud = Cloud::start_virt("qemu", &[("OXISTACK_ACCEL", "auto")]);
    let h = cloud.os_json(&Creds::Admin, &["hypervisor", "show", "e2e-host"]);
    let cpu_info = h["cpu_info"].to_string();
    assert_eq!(h["hypervisor_type"], "QEMU", "{h}");
    if cpu_info.contains("tcg") {
        assert!(
            cpu_info.contains("using TCG software emulation"),
            "TCG without its warning: {cpu_info}"
        );
        assert!(
            cloud.log().contains("using TCG software emulation"),
            "no TCG warning in the log"
        );
    } else {
        assert!(cpu_info.contains("kvm"), "{cpu_info}");
    }
}
