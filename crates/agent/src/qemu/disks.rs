//! An instance's disks, made with `qemu-img` (and `mkswap`): the root disk is a qcow2
//! overlay on the cached image (never a full copy), grown to the flavor's size; the
//! ephemeral and swap disks come from the flavor.
//!
//! Every disk is created under a scratch name and renamed into place, so an existing file
//! is always a complete one and "exists" is the idempotence test.
//!
//! Ephemeral disks are left unformatted (Nova formats them vfat/ext4 with label
//! `ephemeral0`; cloud-init can format them with `fs_setup`). Swap disks are raw sparse
//! files with a swap signature, as Nova makes them, so a guest can `swapon` them as is.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use oxistack_model::{AppError, AppResult, ErrorKind};
use tokio::process::Command;

use super::instance_dir::InstanceDir;

/// Bound on one `qemu-img`/`mkswap` run: they only touch metadata.
const TOOL_BOUND: Duration = Duration::from_secs(120);

/// The QEMU block driver for an image's Glance `disk_format`, used as the overlay's
/// backing format (`-F`). Kernel and ramdisk images (aki/ari) are not bootable disks.
pub fn backing_format(disk_format: &str) -> AppResult<&'static str> {
    Ok(match disk_format {
        "qcow2" => "qcow2",
        "raw" | "iso" | "ami" => "raw",
        "vmdk" => "vmdk",
        "vdi" => "vdi",
        "vhd" => "vpc",
        "vhdx" => "vhdx",
        other => {
            return Err(AppError::new(
                ErrorKind::BadRequest,
                format!("Images of disk format '{other}' cannot be booted as a disk."),
            ))
        }
    })
}

/// What `qemu-img info` says about a cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub virtual_size: u64,
}

async fn run(program: &str, args: &[&std::ffi::OsStr]) -> AppResult<String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AppError::internal(format!("cannot run {program}: {e}")))?;
    let out = tokio::time::timeout(TOOL_BOUND, child.wait_with_output())
        .await
        .map_err(|_| AppError::internal(format!("{program} did not finish within {TOOL_BOUND:?}")))?
        .map_err(|e| AppError::internal(format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(AppError::internal(format!(
            "{program} {:?} failed ({}): {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads a cached image's virtual size, and refuses images that reference other files
/// (a backing file or external data file would expose host files to the guest).
pub async fn image_info(path: &Path, format: &str) -> AppResult<ImageInfo> {
    let out = run(
        "qemu-img",
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "--force-share".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            path.as_os_str(),
        ],
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    if v.get("backing-filename").is_some() || v.pointer("/format-specific/data/data-file").is_some()
    {
        return Err(AppError::new(
            ErrorKind::BadRequest,
            "The image references other files and cannot be booted.",
        )
        .with_context(format!("{} has a backing or data file", path.display())));
    }
    let virtual_size = v
        .get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| {
            AppError::internal(format!("qemu-img info {}: no virtual-size", path.display()))
        })?;
    Ok(ImageInfo { virtual_size })
}

/// The root disk size for a flavor of `root_gb` over an image of `virtual_size` bytes:
/// the flavor's size, or the image's own when the flavor says 0 (as Nova does). A flavor
/// disk smaller than the image is refused, as Nova's `FlavorDiskSmallerThanImage`.
pub fn root_disk_size(root_gb: i64, virtual_size: u64) -> AppResult<u64> {
    if root_gb <= 0 {
        return Ok(virtual_size);
    }
    let flavor = (root_gb as u64) << 30;
    if flavor < virtual_size {
        return Err(AppError::new(
            ErrorKind::BadRequest,
            format!(
                "Flavor's disk is too small for requested image. Flavor disk is {flavor} bytes, image is {virtual_size} bytes."
            ),
        ));
    }
    Ok(flavor)
}

/// `qemu-img create -f qcow2 -F <fmt> -b <base> <dest> <size>`, unless `dest` exists.
pub async fn create_overlay(
    base: &Path,
    base_format: &str,
    dest: &Path,
    size: u64,
) -> AppResult<()> {
    if dest.exists() {
        return Ok(());
    }
    let scratch = InstanceDir::scratch_for(dest);
    let size = size.to_string();
    let r = run(
        "qemu-img",
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            base_format.as_ref(),
            "-b".as_ref(),
            base.as_os_str(),
            scratch.as_os_str(),
            size.as_ref(),
        ],
    )
    .await;
    finish(r, &scratch, dest)
}

/// An empty qcow2 disk of `size` bytes, unless `dest` exists.
pub async fn create_blank_qcow2(dest: &Path, size: u64) -> AppResult<()> {
    if dest.exists() {
        return Ok(());
    }
    let scratch = InstanceDir::scratch_for(dest);
    let size = size.to_string();
    let r = run(
        "qemu-img",
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            scratch.as_os_str(),
            size.as_ref(),
        ],
    )
    .await;
    finish(r, &scratch, dest)
}

/// A sparse raw file of `size_mb` MiB with a swap signature, unless `dest` exists.
pub async fn create_swap(dest: &Path, size_mb: u64) -> AppResult<()> {
    if dest.exists() {
        return Ok(());
    }
    let scratch = InstanceDir::scratch_for(dest);
    let r = async {
        std::fs::File::create(&scratch)?.set_len(size_mb << 20)?;
        run("mkswap", &["-q".as_ref(), scratch.as_os_str()])
            .await
            .map(drop)
    }
    .await;
    finish(r.map(|_| String::new()), &scratch, dest)
}

fn finish(result: AppResult<String>, scratch: &Path, dest: &Path) -> AppResult<()> {
    match result {
        Ok(_) => {
            std::fs::rename(scratch, dest)?;
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(scratch);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_formats() {
        assert_eq!(backing_format("qcow2").unwrap(), "qcow2");
        assert_eq!(backing_format("raw").unwrap(), "raw");
        assert_eq!(backing_format("iso").unwrap(), "raw");
        assert_eq!(backing_format("vhd").unwrap(), "vpc");
        assert_eq!(
            backing_format("aki").unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn root_disk_follows_the_flavor_or_the_image() {
        assert_eq!(root_disk_size(0, 12345).unwrap(), 12345);
        assert_eq!(root_disk_size(1, 12345).unwrap(), 1 << 30);
        let e = root_disk_size(1, (1 << 30) + 1).unwrap_err();
        assert!(e.message.contains("too small"), "{e}");
    }
}
