//! The config drive's metadata, checked against golden files in `tests/golden/`
//! (regenerate with `UPDATE_GOLDEN=1 cargo test -p oxistack-agent --test qemu_config_drive`
//! and review the diff), and the ISO itself read back with xorriso.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use oxistack_agent::qemu::config_drive;
use oxistack_bus::{ImageSpec, InstanceSpec};
use oxistack_model::{ImageId, ProjectId, ServerId, UserId};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the golden file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"
    );
}

fn spec() -> InstanceSpec {
    let mut metadata = BTreeMap::new();
    metadata.insert("role".to_string(), "web".to_string());
    metadata.insert("tier".to_string(), "1".to_string());
    InstanceSpec {
        server_id: ServerId("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122".parse().unwrap()),
        name: "Web Server 1".into(),
        hostname: "web-server-1".into(),
        project_id: ProjectId("0123456789abcdef0123456789abcdef".parse().unwrap()),
        user_id: UserId("fedcba9876543210fedcba9876543210".parse().unwrap()),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        ephemeral_gb: 1,
        swap_mb: 512,
        image: ImageSpec {
            id: ImageId("a1b2c3d4-0000-4000-8000-000000000001".parse().unwrap()),
            disk_format: "qcow2".into(),
            size: 1,
            os_hash_value: None,
            properties: BTreeMap::new(),
        },
        key_name: Some("k1".into()),
        key_data: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxiStackGoldenKey user@host\n".into()),
        user_data: Some(
            base64::engine::general_purpose::STANDARD.encode("#cloud-config\nruncmd: [echo hi]\n"),
        ),
        config_drive: true,
        metadata,
        availability_zone: "nova".into(),
        launch_index: 0,
        nics: vec![],
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn meta_data_json_matches_golden() {
    check_golden("meta_data.json", &pretty(&config_drive::meta_data(&spec())));
}

#[test]
fn meta_data_without_key_or_metadata_matches_golden() {
    let mut s = spec();
    s.key_name = None;
    s.key_data = None;
    s.metadata.clear();
    s.launch_index = 2;
    s.image
        .properties
        .insert("hw_machine_type".into(), "q35".into());
    s.ephemeral_gb = 0;
    check_golden(
        "meta_data_minimal.json",
        &pretty(&config_drive::meta_data(&s)),
    );
    check_golden(
        "ec2_meta_data_minimal.json",
        &pretty(&config_drive::ec2_meta_data(&s)),
    );
}

#[test]
fn ec2_meta_data_json_matches_golden() {
    check_golden(
        "ec2_meta_data.json",
        &pretty(&config_drive::ec2_meta_data(&spec())),
    );
}

#[test]
fn file_tree_matches_golden() {
    let files = config_drive::files(&spec(), Some("c2VlZA==")).unwrap();
    let mut listing = String::new();
    for (path, data) in &files {
        listing.push_str(&format!("{path} ({} bytes)\n", data.len()));
    }
    check_golden("config_drive_tree.txt", &listing);
    let ud = &files["openstack/latest/user_data"];
    assert_eq!(ud, b"#cloud-config\nruncmd: [echo hi]\n");
    assert_eq!(&files["ec2/latest/user-data"], ud);
    let meta: serde_json::Value =
        serde_json::from_slice(&files["openstack/2018-08-27/meta_data.json"]).unwrap();
    assert_eq!(meta["random_seed"], "c2VlZA==");
    assert_eq!(
        files["openstack/latest/meta_data.json"],
        files["openstack/2018-08-27/meta_data.json"]
    );

    let mut none = spec();
    none.user_data = None;
    let files = config_drive::files(&none, None).unwrap();
    assert!(!files
        .keys()
        .any(|k| k.ends_with("user_data") || k.ends_with("user-data")));

    none.user_data = Some("not base64!".into());
    assert!(config_drive::files(&none, None).is_err());
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

#[tokio::test]
async fn iso_has_the_label_and_the_tree() {
    if !have("xorriso") {
        eprintln!("skipped: xorriso is not installed (tools/install-deps)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("disk.config");
    config_drive::build_iso(&spec(), &iso).await.unwrap();
    // Idempotent: an existing drive is kept as is.
    let before = std::fs::metadata(&iso).unwrap().modified().unwrap();
    config_drive::build_iso(&spec(), &iso).await.unwrap();
    assert_eq!(std::fs::metadata(&iso).unwrap().modified().unwrap(), before);
    // No scratch files are left next to it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let pvd = Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .arg("-pvd_info")
        .output()
        .unwrap();
    let pvd = String::from_utf8_lossy(&pvd.stdout);
    assert!(pvd.contains("Volume Id    : config-2"), "{pvd}");

    let out = dir.path().join("extracted");
    let st = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("openstack/latest/meta_data.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["hostname"], "web-server-1");
    assert_eq!(meta["public_keys"]["k1"], spec().key_data.unwrap());
    let seed = base64::engine::general_purpose::STANDARD
        .decode(meta["random_seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 512);
    assert_eq!(
        std::fs::read(out.join("openstack/latest/user_data")).unwrap(),
        b"#cloud-config\nruncmd: [echo hi]\n"
    );
    assert!(out.join("ec2/latest/meta-data.json").is_file());
    assert!(out.join("openstack/2018-08-27/vendor_data2.json").is_file());
}
