//! The config drive: an ISO 9660 volume labelled `config-2` with the instance's metadata,
//! laid out as Nova writes it and as cloud-init and cloudbase-init read it:
//!
//! ```text
//! openstack/{2018-08-27,latest}/meta_data.json     uuid, name, hostname, keys, meta, ...
//! openstack/{2018-08-27,latest}/user_data          only when the server has user data
//! openstack/{2018-08-27,latest}/vendor_data.json   {}
//! openstack/{2018-08-27,latest}/vendor_data2.json  {}
//! openstack/{2018-08-27,latest}/network_data.json  links and networks of the NICs
//! ec2/{2009-04-04,latest}/meta-data.json           the EC2-style equivalent
//! ec2/{2009-04-04,latest}/user-data                only with user data
//! ```
//!
//! [`files`] (in `oxistack_bus::metadata`, shared with the metadata service) is a pure
//! function of the spec (plus the random seed, passed in so the golden tests are
//! deterministic); [`build_iso`] writes the tree and runs
//! `xorriso -as mkisofs` (or `genisoimage`) with Joliet and Rock Ridge, as Nova runs
//! genisoimage. Differences from Nova are in docs/design/0008-qemu-driver.md.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use oxistack_bus::InstanceSpec;
use oxistack_model::{AppError, AppResult};
use tokio::process::Command;

use super::instance_dir::InstanceDir;

/// The volume label cloud-init and cloudbase-init look for.
pub const LABEL: &str = "config-2";

pub use oxistack_bus::metadata::{
    ec2_meta_data, files, meta_data, network_data, EC2_VERSION, OPENSTACK_VERSION,
};

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
