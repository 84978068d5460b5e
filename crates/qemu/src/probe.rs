//! Choosing the accelerator: KVM only when a real guest is seen running under it.
//!
//! `/dev/kvm` being present and openable is not enough: on some hosts (nested
//! virtualisation without the right CPU features, for one) ordinary guests hang under KVM
//! forever. So [`probe_accel`] boots a tiny guest under KVM — one boot sector that writes
//! [`PROBE_MARKER`] to the first serial port and halts — and uses KVM only if the marker shows
//! up within a short bound. Otherwise it falls back to TCG with one warning, which the agent
//! logs and reports as the hypervisor's state. The same probe guest runs under TCG in the
//! tests, which proves the probe program itself works.

use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::profile::Accel;

/// What the probe guest prints on its serial port.
pub const PROBE_MARKER: &str = "OXISTACK-PROBE-OK";
/// How long the KVM probe guest gets. A working KVM runs it in well under a second.
pub const KVM_PROBE_BOUND: Duration = Duration::from_secs(8);

/// The operator's `--accel` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelRequest {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(format!(
                "unknown accelerator '{s}' (supported: auto, kvm, tcg)"
            )),
        }
    }
}

/// The accelerator to use, and the warning to show when it is not what one would expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub accel: Accel,
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot prepare the probe guest: {0}")]
    Setup(#[from] std::io::Error),
    #[error("QEMU exited before the probe guest printed its marker: {0}")]
    Exited(String),
    #[error("the probe guest printed nothing within {0:?}")]
    NoOutput(Duration),
}

/// 16-bit real-mode code loaded by the BIOS at 0000:7C00: print the marker on COM1
/// (port 0x3F8) byte by byte, then halt forever.
pub fn probe_boot_sector() -> [u8; 512] {
    #[rustfmt::skip]
    let code: [u8; 0x17] = [
        0x31, 0xC0,             // 00: xor ax, ax
        0x8E, 0xD8,             // 02: mov ds, ax
        0xFC,                   // 04: cld
        0xBE, 0x17, 0x7C,       // 05: mov si, 0x7C17 (the message below)
        0xBA, 0xF8, 0x03,       // 08: mov dx, 0x3F8
        0xAC,                   // 0B: lodsb
        0x84, 0xC0,             // 0C: test al, al
        0x74, 0x03,             // 0E: jz 0x13
        0xEE,                   // 10: out dx, al
        0xEB, 0xF8,             // 11: jmp 0x0B
        0xFA,                   // 13: cli
        0xF4,                   // 14: hlt
        0xEB, 0xFC,             // 15: jmp 0x13
    ];
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    let msg = format!("{PROBE_MARKER}\r\n");
    sector[code.len()..code.len() + msg.len()].copy_from_slice(msg.as_bytes());
    // The byte after the message stays 0: the loop's terminator.
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Boots the probe guest under `accel` and waits up to `bound` for its marker.
pub async fn probe_boot(qemu: &Path, accel: Accel, bound: Duration) -> Result<(), ProbeError> {
    let dir = tempfile::Builder::new()
        .prefix("oxistack-probe")
        .tempdir()?;
    let disk = dir.path().join("probe.img");
    let serial = dir.path().join("serial.log");
    // One sector is a valid disk, but pad to 1 MiB so the BIOS sees a sane geometry.
    let mut image = probe_boot_sector().to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image)?;

    let cpu = match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let mut child = Command::new(qemu)
        .args(["-nodefaults", "-no-user-config", "-machine"])
        .arg(format!("pc,accel={accel}"))
        .args(["-cpu", cpu, "-m", "32M", "-display", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=ide,index=0",
            disk.display().to_string().replace(',', ",,")
        ))
        .arg("-chardev")
        .arg(format!(
            "file,id=probe,path={}",
            serial.display().to_string().replace(',', ",,")
        ))
        .args(["-device", "isa-serial,chardev=probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;

    let result = tokio::time::timeout(bound, async {
        loop {
            if let Ok(out) = tokio::fs::read(&serial).await {
                if String::from_utf8_lossy(&out).contains(PROBE_MARKER) {
                    return Ok(());
                }
            }
            if let Some(_status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err).await;
                }
                return Err(ProbeError::Exited(err.trim().to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or(Err(ProbeError::NoOutput(bound)));

    // The guest halts forever once done; this QEMU is ours (we spawned it), stop it.
    let _ = child.kill().await;
    result
}

/// Settles the accelerator for this host. Never hangs: the KVM attempt is bounded by
/// [`KVM_PROBE_BOUND`].
pub async fn probe_accel(qemu: &Path, requested: AccelRequest) -> ProbeOutcome {
    let outcome = match requested {
        AccelRequest::Tcg => ProbeOutcome {
            accel: Accel::Tcg,
            warning: None,
        },
        // An explicit choice is obeyed; only say when it cannot work.
        AccelRequest::Kvm => ProbeOutcome {
            accel: Accel::Kvm,
            warning: kvm_device_error().map(|e| format!("KVM requested but {e}")),
        },
        AccelRequest::Auto => match kvm_device_error() {
            Some(e) => tcg_fallback(&e),
            None => match probe_boot(qemu, Accel::Kvm, KVM_PROBE_BOUND).await {
                Ok(()) => ProbeOutcome {
                    accel: Accel::Kvm,
                    warning: None,
                },
                Err(e) => tcg_fallback(&format!("a probe guest did not run under KVM ({e})")),
            },
        },
    };
    if let Some(w) = &outcome.warning {
        tracing::warn!(accel = %outcome.accel, "{w}");
    }
    outcome
}

fn tcg_fallback(reason: &str) -> ProbeOutcome {
    ProbeOutcome {
        accel: Accel::Tcg,
        warning: Some(format!(
            "using TCG software emulation (much slower than KVM): {reason}"
        )),
    }
}

/// Why `/dev/kvm` cannot be used, if it cannot.
fn kvm_device_error() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm cannot be opened: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_points_at_its_message() {
        let s = probe_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // `mov si, imm16` loads the message's address at 0x7C00 + offset.
        let si = u16::from_le_bytes([s[6], s[7]]) as usize;
        let offset = si - 0x7C00;
        let end = offset + PROBE_MARKER.len();
        assert_eq!(&s[offset..end], PROBE_MARKER.as_bytes());
        assert!(s[end..].contains(&0), "message is NUL terminated");
    }

    #[test]
    fn accel_request_parses() {
        assert_eq!("auto".parse(), Ok(AccelRequest::Auto));
        assert_eq!("kvm".parse(), Ok(AccelRequest::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelRequest::Tcg));
        assert!("hvf".parse::<AccelRequest>().is_err());
    }
}
