//! QEMU processes: start them detached from the agent, find them again, stop them.
//!
//! Lifecycle of one instance's process, as seen from here:
//!
//! ```text
//!   launch() ──(QEMU daemonizes: pidfile + QMP socket exist)──▶ running
//!   running ──(agent restarts)──▶ find_instance_qemu(pidfile, uuid) ──▶ adopted
//!   running ──(guest powers off / quit / terminate())──▶ gone
//! ```
//!
//! QEMU runs with `-daemonize`: the launching process exits only once QEMU has created its
//! pidfile (or failed, with the reason on stderr), and the daemon has called
//! `setsid()`, so it is in no session or process group of the agent and outlives it.
//!
//! A pid read from a pidfile may be stale and now belong to another process. Before adopting
//! or signalling a pid we check `/proc/<pid>/cmdline`: it must be a `qemu-system-*` process
//! whose `-uuid` is this instance's. We never signal a pid that fails that check.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use uuid::Uuid;

/// The QEMU binary for x86-64 guests, looked up in `PATH`.
pub const QEMU_SYSTEM_X86_64: &str = "qemu-system-x86_64";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("QEMU failed to start ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("QEMU did not finish starting within {0:?}")]
    Timeout(Duration),
    #[error("process {pid} is not the QEMU of instance {uuid}")]
    NotOurs { pid: i32, uuid: Uuid },
    #[error("QMP socket {path}: {source}")]
    QmpSocket { path: String, source: io::Error },
    #[error("process {0} survived SIGKILL")]
    Unkillable(i32),
    #[error("signal to process {pid}: {errno}")]
    Signal { pid: i32, errno: Errno },
}

/// Runs QEMU with an argv from [`crate::MachineProfile::argv`] (which ends in `-daemonize`)
/// and waits, up to `bound`, for it to daemonize. On success the guest is running and its
/// pidfile exists.
///
/// The QMP socket is bound here, at `qmp_socket` (replacing a stale one, at any path
/// length), and QEMU inherits the listener as descriptor [`crate::profile::QMP_FD`]: so
/// the socket exists before QEMU runs, and connecting needs no retry.
///
/// On timeout the launching process is killed, but a daemon may already exist: the caller
/// cleans up through the pidfile ([`find_instance_qemu`] + [`terminate`]).
pub async fn launch(
    qemu: &Path,
    argv: &[String],
    qmp_socket: &Path,
    bound: Duration,
) -> Result<(), ProcessError> {
    let listener =
        oxistack_sys::unix_socket::bind(qmp_socket).map_err(|source| ProcessError::QmpSocket {
            path: qmp_socket.display().to_string(),
            source,
        })?;
    let mut command = Command::new(qemu);
    command
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Only the launcher is our child; the daemon it forks is not affected by this.
        .kill_on_drop(true);
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: OwnedFd::from(listener),
            child_fd: crate::profile::QMP_FD,
        }])
        .map_err(|e| ProcessError::QmpSocket {
            path: qmp_socket.display().to_string(),
            source: io::Error::other(e.to_string()),
        })?;
    let child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: qemu.display().to_string(),
        source,
    })?;
    // Our copy of the listener closes with `command`; QEMU holds its own.
    drop(command);
    // The daemon points its stdio at /dev/null once started, so the pipes close then.
    let output = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .map_err(|_| ProcessError::Timeout(bound))?
        .map_err(|source| ProcessError::Spawn {
            program: qemu.display().to_string(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ProcessError::Failed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The pid in a QEMU pidfile; `None` if the file does not exist or holds no pid.
pub fn read_pidfile(path: &Path) -> io::Result<Option<i32>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().ok().filter(|pid: &i32| *pid > 0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `pid` is alive (not a zombie) and is a QEMU started for instance `uuid`.
pub fn is_instance_qemu(pid: i32, uuid: Uuid) -> bool {
    if pid <= 0 || !is_alive(pid) {
        return false;
    }
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline_is_instance_qemu(&raw, uuid)
}

/// The check behind [`is_instance_qemu`], on the raw NUL-separated command line.
fn cmdline_is_instance_qemu(raw: &[u8], uuid: Uuid) -> bool {
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let Some(program) = args.first() else {
        return false;
    };
    let program = String::from_utf8_lossy(program);
    let base = program.rsplit('/').next().unwrap_or_default();
    if !base.starts_with("qemu-system-") {
        return false;
    }
    let want = uuid.hyphenated().to_string();
    args.windows(2)
        .any(|w| w[0] == b"-uuid" && w[1].eq_ignore_ascii_case(want.as_bytes()))
}

/// The running QEMU of instance `uuid`, found through its pidfile; `None` if there is none
/// (no pidfile, a dead pid, or a pid reused by some other process).
pub fn find_instance_qemu(pidfile: &Path, uuid: Uuid) -> io::Result<Option<i32>> {
    Ok(read_pidfile(pidfile)?.filter(|pid| is_instance_qemu(*pid, uuid)))
}

/// How a [`terminate`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Nothing to do: the process was already gone.
    AlreadyGone,
    /// It exited after SIGTERM (QEMU flushes its disks on SIGTERM).
    Terminated,
    /// It had to be killed.
    Killed,
}

/// Stops instance `uuid`'s QEMU: SIGTERM, up to `grace` to exit, then SIGKILL. Refuses to
/// signal a pid that is not this instance's QEMU.
pub async fn terminate(pid: i32, uuid: Uuid, grace: Duration) -> Result<Termination, ProcessError> {
    if !is_alive(pid) {
        return Ok(Termination::AlreadyGone);
    }
    if !is_instance_qemu(pid, uuid) {
        return Err(ProcessError::NotOurs { pid, uuid });
    }
    if !signal(pid, Signal::SIGTERM)? || wait_gone(pid, grace).await {
        return Ok(Termination::Terminated);
    }
    // Re-check: in the grace period the pid could have exited and been reused.
    if !is_instance_qemu(pid, uuid) {
        return Ok(Termination::Terminated);
    }
    signal(pid, Signal::SIGKILL)?;
    if wait_gone(pid, Duration::from_secs(10)).await {
        Ok(Termination::Killed)
    } else {
        Err(ProcessError::Unkillable(pid))
    }
}

/// Sends a signal; `false` if the process no longer exists.
fn signal(pid: i32, sig: Signal) -> Result<bool, ProcessError> {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(errno) => Err(ProcessError::Signal { pid, errno }),
    }
}

async fn wait_gone(pid: i32, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Alive and not a zombie. A daemonized QEMU is not our child, so once dead it is a zombie
/// only until init reaps it; for us that already counts as gone.
fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) S ...": the state follows the last ')' (comm may hold ')').
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122";

    fn cmdline(args: &[&str]) -> Vec<u8> {
        let mut v = args.join("\0").into_bytes();
        v.push(0);
        v
    }

    #[test]
    fn cmdline_must_be_qemu_with_our_uuid() {
        let uuid = Uuid::parse_str(UUID).unwrap();
        let ours = cmdline(&[
            "/usr/bin/qemu-system-x86_64",
            "-name",
            "guest=vm1",
            "-uuid",
            UUID,
        ]);
        assert!(cmdline_is_instance_qemu(&ours, uuid));
        let other_uuid = cmdline(&[
            "qemu-system-x86_64",
            "-uuid",
            "00000000-0000-0000-0000-000000000001",
        ]);
        assert!(!cmdline_is_instance_qemu(&other_uuid, uuid));
        // The uuid appearing elsewhere (e.g. a shell running a script about it) is not enough.
        let not_qemu = cmdline(&["/bin/bash", "-c", "echo", "-uuid", UUID]);
        assert!(!cmdline_is_instance_qemu(&not_qemu, uuid));
        let uuid_in_path = cmdline(&[
            "qemu-system-x86_64",
            "-pidfile",
            &format!("/run/{UUID}.pid"),
        ]);
        assert!(!cmdline_is_instance_qemu(&uuid_in_path, uuid));
        assert!(!cmdline_is_instance_qemu(b"", uuid));
    }

    #[test]
    fn pidfile_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.pid");
        assert_eq!(read_pidfile(&p).unwrap(), None);
        std::fs::write(&p, "4242\n").unwrap();
        assert_eq!(read_pidfile(&p).unwrap(), Some(4242));
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(read_pidfile(&p).unwrap(), None);
        std::fs::write(&p, "-1").unwrap();
        assert_eq!(read_pidfile(&p).unwrap(), None);
    }

    #[test]
    fn this_process_is_alive_but_not_a_qemu() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(!is_instance_qemu(me, Uuid::parse_str(UUID).unwrap()));
        assert!(!is_alive(-1));
    }

    #[tokio::test]
    async fn terminate_refuses_a_process_that_is_not_ours() {
        let me = std::process::id() as i32;
        let err = terminate(
            me,
            Uuid::parse_str(UUID).unwrap(),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProcessError::NotOurs { .. }));
    }
}
