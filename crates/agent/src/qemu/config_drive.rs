//! The config drive: an ISO 9660 volume labelled `config-2` with the instance's metadata,
//! laid out as Nova writes it and as cloud-init and cloudbase-init read it:
//!
//! ```text
//! openstack/{2018-08-27,latest}/meta_data.json     uuid, name, hostname, keys, meta, ...
//! openstack/{2018-08-27,latest}/user_data          only when the server has user data
//! openstack/{2018-08-27,latest}/vendor_data.json   {}
//! openstack/{2018-08-27,latest}/vendor_data2.json  {}
//! openstack/{2018-08-27,latest}/network_data.json  no links/networks yet (--nic none)
//! ec2/{2009-04-04,latest}/meta-data.json           the EC2-style equivalent
//! ec2/{2009-04-04,latest}/user-data                only with user data
//! ```
//!
//! [`files`] is a pure function of the spec (plus the random seed, passed in so the
//! golden tests are deterministic); [`build_iso`] writes the tree and runs
//! `xorriso -as mkisofs` (or `genisoimage`) with Joliet and Rock Ridge, as Nova runs
//! genisoimage. Differences from Nova are in docs/design/0008-qemu-driver.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use oxistack_bus::InstanceSpec;
use oxistack_model::{AppError, AppResult, ErrorKind};
use serde_json::{json, Map, Value};
use tokio::process::Command;

use super::instance_dir::InstanceDir;

/// The dated OpenStack metadata version written beside `latest` (Rocky: `keys`,
/// `project_id`, `devices`, `vendor_data2.json` all exist by then).
pub const OPENSTACK_VERSION: &str = "2018-08-27";
/// The newest EC2 metadata version Nova serves.
pub const EC2_VERSION: &str = "2009-04-04";
/// The volume label cloud-init and cloudbase-init look for.
pub const LABEL: &str = "config-2";

/// The decoded user data, if any.
fn user_data(spec: &InstanceSpec) -> AppResult<Option<Vec<u8>>> {
    spec.user_data
        .as_deref()
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    AppError::new(
                        ErrorKind::BadRequest,
                        format!("User data is not valid base64: {e}"),
                    )
                })
        })
        .transpose()
}

/// Nova's keypair types, guessed from the public key itself (the spec carries the data).
fn key_type(data: &str) -> &'static str {
    if data.trim_start().starts_with("-----BEGIN CERTIFICATE") {
        "x509"
    } else {
        "ssh"
    }
}

/// `openstack/<version>/meta_data.json`, without `random_seed` (see [`files`]).
pub fn meta_data(spec: &InstanceSpec) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(spec.server_id.to_string()));
    if !spec.metadata.is_empty() {
        m.insert("meta".into(), json!(spec.metadata));
    }
    if let (Some(name), Some(data)) = (&spec.key_name, &spec.key_data) {
        m.insert("public_keys".into(), json!({ name: data }));
        m.insert(
            "keys".into(),
            json!([{ "name": name, "type": key_type(data), "data": data }]),
        );
    }
    // Nova appends `.<dhcp_domain>` when one is configured; we configure none.
    m.insert("hostname".into(), json!(spec.hostname));
    m.insert("name".into(), json!(spec.name));
    m.insert("launch_index".into(), json!(spec.launch_index));
    m.insert("availability_zone".into(), json!(spec.availability_zone));
    m.insert("project_id".into(), json!(spec.project_id.to_string()));
    m.insert("devices".into(), json!([]));
    Value::Object(m)
}

/// The guest's name for its n-th disk: virtio disks are `vdX`, IDE/SATA/SCSI disks `sdX`
/// under Linux's libata and SCSI drivers.
fn guest_disk(spec: &InstanceSpec, n: u8) -> String {
    let p = &spec.image.properties;
    let q35 = p.get("hw_machine_type").map(String::as_str) == Some("q35");
    let windows = p
        .get("os_type")
        .is_some_and(|o| o.eq_ignore_ascii_case("windows"));
    let virtio = match p.get("hw_disk_bus").map(String::as_str) {
        Some(bus) => bus == "virtio",
        None => q35 && !windows,
    };
    format!(
        "{}{}",
        if virtio { "vd" } else { "sd" },
        char::from(b'a' + n)
    )
}

/// EC2 ids are 8 hex digits; Nova derives them from integer ids, we from the uuids.
fn ec2_id(prefix: &str, uuid: uuid::Uuid) -> String {
    format!("{prefix}-{}", &uuid.simple().to_string()[..8])
}

/// `ec2/<version>/meta-data.json`.
pub fn ec2_meta_data(spec: &InstanceSpec) -> Value {
    let mut bdm = Map::new();
    let root = guest_disk(spec, 0);
    bdm.insert("ami".into(), json!(root));
    bdm.insert("root".into(), json!(format!("/dev/{root}")));
    let mut next = 1;
    if spec.ephemeral_gb > 0 {
        bdm.insert("ephemeral0".into(), json!(guest_disk(spec, next)));
        next += 1;
    }
    if spec.swap_mb > 0 {
        bdm.insert("swap".into(), json!(guest_disk(spec, next)));
    }
    let server = spec.server_id.as_uuid();
    let mut m = Map::new();
    m.insert(
        "ami-id".into(),
        json!(ec2_id("ami", spec.image.id.as_uuid())),
    );
    m.insert("ami-launch-index".into(), json!(spec.launch_index));
    m.insert("ami-manifest-path".into(), json!("FIXME"));
    m.insert("block-device-mapping".into(), Value::Object(bdm));
    m.insert("hostname".into(), json!(spec.hostname));
    m.insert("instance-action".into(), json!("none"));
    m.insert("instance-id".into(), json!(ec2_id("i", server)));
    m.insert("local-hostname".into(), json!(spec.hostname));
    m.insert("local-ipv4".into(), Value::Null);
    m.insert(
        "placement".into(),
        json!({ "availability-zone": spec.availability_zone }),
    );
    m.insert("public-hostname".into(), json!(spec.hostname));
    m.insert("public-ipv4".into(), json!(""));
    if let (Some(_), Some(data)) = (&spec.key_name, &spec.key_data) {
        m.insert(
            "public-keys".into(),
            json!({ "0": { "openssh-key": data } }),
        );
    }
    m.insert(
        "reservation-id".into(),
        json!(format!("r-{}", &server.simple().to_string()[8..16])),
    );
    m.insert("security-groups".into(), json!([]));
    Value::Object(m)
}

/// `network_data.json`: nothing until instances have ports.
pub fn network_data() -> Value {
    json!({ "links": [], "networks": [], "services": [] })
}

/// Every file of the config drive: path inside the volume → contents.
pub fn files(
    spec: &InstanceSpec,
    random_seed: Option<&str>,
) -> AppResult<BTreeMap<String, Vec<u8>>> {
    let user_data = user_data(spec)?;
    let mut meta = meta_data(spec);
    if let (Some(seed), Value::Object(m)) = (random_seed, &mut meta) {
        m.insert("random_seed".into(), json!(seed));
    }
    let compact = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let mut out = BTreeMap::new();
    for v in [OPENSTACK_VERSION, "latest"] {
        let d = format!("openstack/{v}");
        out.insert(format!("{d}/meta_data.json"), compact(&meta));
        out.insert(format!("{d}/vendor_data.json"), b"{}".to_vec());
        out.insert(format!("{d}/vendor_data2.json"), b"{}".to_vec());
        out.insert(format!("{d}/network_data.json"), compact(&network_data()));
        if let Some(ud) = &user_data {
            out.insert(format!("{d}/user_data"), ud.clone());
        }
    }
    let ec2 = ec2_meta_data(spec);
    for v in [EC2_VERSION, "latest"] {
        out.insert(format!("ec2/{v}/meta-data.json"), compact(&ec2));
        if let Some(ud) = &user_data {
            out.insert(format!("ec2/{v}/user-data"), ud.clone());
        }
    }
    Ok(out)
}

/// 512 random bytes, base64, as Nova's `random_seed`.
fn random_seed() -> AppResult<String> {
    use std::io::Read;
    let mut buf = [0u8; 512];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Writes the config drive ISO to `dest`, unless it exists.
pub async fn build_iso(spec: &InstanceSpec, dest: &Path) -> AppResult<()> {
    if dest.exists() {
        return Ok(());
    }
    let files = files(spec, Some(&random_seed()?))?;
    let tree = InstanceDir::scratch_for(&dest.with_file_name("config-tree"));
    let scratch = InstanceDir::scratch_for(dest);
    let result = async {
        for (path, data) in &files {
            let p = tree.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, data)?;
        }
        make_iso(&tree, &scratch).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&tree);
    match result {
        Ok(()) => {
            std::fs::rename(&scratch, dest)?;
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&scratch);
            Err(e)
        }
    }
}

/// The ISO tool: xorriso (what tools/install-deps installs), else genisoimage.
fn iso_tool() -> Option<(&'static str, &'static [&'static str])> {
    let in_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    if in_path("xorriso") {
        Some(("xorriso", &["-as", "mkisofs"]))
    } else if in_path("genisoimage") {
        Some(("genisoimage", &[]))
    } else {
        None
    }
}

async fn make_iso(tree: &Path, out: &Path) -> AppResult<()> {
    let (tool, prefix) = iso_tool().ok_or_else(|| {
        AppError::internal("neither xorriso nor genisoimage is installed (tools/install-deps)")
    })?;
    let child = Command::new(tool)
        .args(prefix)
        // Nova's genisoimage flags: relaxed ISO names, Joliet, Rock Ridge, the label.
        .arg("-o")
        .arg(out)
        .args([
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            "OxiStack",
            "-quiet",
            "-J",
            "-r",
            "-V",
            LABEL,
        ])
        .arg(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AppError::internal(format!("cannot run {tool}: {e}")))?;
    let bound = Duration::from_secs(60);
    let out = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .map_err(|_| AppError::internal(format!("{tool} did not finish within {bound:?}")))?
        .map_err(|e| AppError::internal(format!("{tool}: {e}")))?;
    if !out.status.success() {
        return Err(AppError::internal(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
