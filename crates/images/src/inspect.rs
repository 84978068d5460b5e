//! What the uploaded bytes really are, asked of `qemu-img info`, and whether
//! that matches the `disk_format` the user declared.
//!
//! Glance (2024.2 on, `require_image_format_match`) refuses data whose
//! format does not match the declared one, and refuses qcow2 images that
//! point outside themselves (a backing file or an external data file): such
//! a file would let a guest read host files once booted. OxiStack goes one
//! step further than Glance and also refuses rich formats declared as `raw`
//! (see docs/design/0004-image-store.md).

use std::path::Path;
use std::time::Duration;

use oxistack_model::{AppError, AppResult, ErrorKind};
use serde_json::Value;

/// The facts `qemu-img info` reports about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    /// qemu's format name: raw, qcow2, vmdk, vpc, vhdx, vdi, …
    pub format: String,
    pub virtual_size: Option<i64>,
    pub backing_file: Option<String>,
    pub data_file: Option<String>,
}

/// How long `qemu-img info` may run: it only reads headers, so a longer run
/// means a hostile or broken file.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `qemu-img info --output=json` on `path` (format probed, not given).
pub async fn inspect(path: &Path, timeout: Duration) -> AppResult<DiskFacts> {
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.arg("info")
        .arg("--output=json")
        .arg(path)
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| AppError::internal(format!("qemu-img info on {} timed out", path.display())))?
        .map_err(|e| AppError::internal(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        // qemu-img could not make sense of the file (e.g. a qcow2 whose
        // external data file is missing): it is not an image we can serve.
        return Err(AppError::new(
            ErrorKind::UnsupportedMediaType,
            "Image data could not be inspected: it is not a valid disk image.",
        )
        .with_context(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(facts_of(&v))
}

fn facts_of(v: &Value) -> DiskFacts {
    DiskFacts {
        format: v["format"].as_str().unwrap_or("").to_string(),
        virtual_size: v["virtual-size"].as_i64(),
        backing_file: v["backing-filename"].as_str().map(str::to_string),
        data_file: v["format-specific"]["data"]["data-file"]
            .as_str()
            .map(str::to_string),
    }
}

/// The qemu format name expected for a declared Glance `disk_format`;
/// `None` for formats qemu-img does not tell apart from raw (ami, ari, aki
/// are raw kernels and disks; an ISO is raw to qemu-img) or cannot read.
fn expected_qemu_format(disk_format: &str) -> Option<&'static str> {
    Some(match disk_format {
        "qcow2" => "qcow2",
        "raw" | "iso" | "ami" | "ari" | "aki" => "raw",
        "vmdk" => "vmdk",
        "vdi" => "vdi",
        "vhd" => "vpc",
        "vhdx" => "vhdx",
        "ploop" => "parallels",
        _ => return None,
    })
}

/// Accepts the data or says why not (415, as Glance answers a mismatch).
pub fn check(disk_format: &str, facts: &DiskFacts) -> AppResult<()> {
    let refuse = |why: String| Err(AppError::new(ErrorKind::UnsupportedMediaType, why));
    if let Some(expected) = expected_qemu_format(disk_format) {
        if facts.format != expected {
            return refuse(format!(
                "Image disk_format {disk_format} does not match stream data {}",
                facts.format
            ));
        }
    } else if facts.format != "raw" {
        return refuse(format!(
            "Image disk_format {disk_format} does not match stream data {}",
            facts.format
        ));
    }
    if facts.backing_file.is_some() {
        return refuse("Image data has a backing file, which is not allowed.".into());
    }
    if facts.data_file.is_some() {
        return refuse("Image data has an external data-file, which is not allowed.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(format: &str) -> DiskFacts {
        DiskFacts {
            format: format.into(),
            virtual_size: Some(1),
            backing_file: None,
            data_file: None,
        }
    }

    #[test]
    fn declared_format_must_match_what_qemu_sees() {
        assert!(check("qcow2", &facts("qcow2")).is_ok());
        assert!(check("raw", &facts("raw")).is_ok());
        assert!(check("iso", &facts("raw")).is_ok());
        assert!(check("vhd", &facts("vpc")).is_ok());
        let e = check("qcow2", &facts("raw")).unwrap_err();
        assert_eq!(e.status(), 415);
        assert!(check("raw", &facts("qcow2")).is_err());
        assert!(check("iso", &facts("vmdk")).is_err());
    }

    #[test]
    fn images_pointing_outside_themselves_are_refused() {
        let mut f = facts("qcow2");
        f.backing_file = Some("/etc/passwd".into());
        assert!(check("qcow2", &f).is_err());
        let mut f = facts("qcow2");
        f.data_file = Some("/dev/sda".into());
        assert!(check("qcow2", &f).is_err());
    }

    #[test]
    fn qemu_img_json_is_read() {
        let v: Value = serde_json::from_str(
            r#"{"virtual-size": 1048576, "format": "qcow2", "backing-filename": "b.img",
                "format-specific": {"type": "qcow2", "data": {"data-file": "d.raw"}}}"#,
        )
        .unwrap();
        let f = facts_of(&v);
        assert_eq!(f.format, "qcow2");
        assert_eq!(f.virtual_size, Some(1048576));
        assert_eq!(f.backing_file.as_deref(), Some("b.img"));
        assert_eq!(f.data_file.as_deref(), Some("d.raw"));
    }
}
