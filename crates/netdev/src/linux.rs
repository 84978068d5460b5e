//! [`Datapath`] on a real Linux host, through iproute2, nft, sysctl and
//! setsid (docs/design/0011-datapath.md says why commands, not netlink:
//! entering a namespace from Rust needs `setns`, and the workspace forbids
//! `unsafe`; `ip -json` gives structured state to read).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nftables::schema::Nftables;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::datapath::{
    DaemonSignal, Datapath, HostError, HostResult, Link, LinkChange, NewLink, Ns, Route,
    TableSummary,
};

/// The Linux host. Stateless: every call reads or changes the kernel.
#[derive(Debug, Clone, Default)]
pub struct LinuxDatapath {
    _private: (),
}

impl LinuxDatapath {
    pub fn new() -> Self {
        LinuxDatapath { _private: () }
    }
}

/// Runs a program (inside `ns` via `ip netns exec` when given) and returns
/// its stdout; a failure is classified by the kernel's message so callers
/// handle "exists" and "no such device" explicitly.
async fn run(ns: Ns<'_>, argv: &[&str], stdin: Option<&str>) -> HostResult<String> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let shown = format!(
        "{}{}",
        ns.map(|n| format!("[netns {n}] ")).unwrap_or_default(),
        argv.join(" ")
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::failed(format!("{shown}: {e}")))?;
    if let Some(input) = stdin {
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|e| HostError::failed(format!("{shown}: writing stdin: {e}")))?;
        }
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| HostError::failed(format!("{shown}: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let message = format!("{shown}: {stderr}");
    let lower = stderr.to_lowercase();
    Err(
        if lower.contains("file exists")
            || lower.contains("already exists")
            || lower.contains("already assigned")
        {
            HostError::exists(message)
        } else if lower.contains("cannot find device")
            || lower.contains("no such file or directory")
            || lower.contains("does not exist")
            || lower.contains("no such device")
            || lower.contains("no such process")
            || lower.contains("cannot assign requested address")
        {
            HostError::not_found(message)
        } else {
            HostError::failed(message)
        },
    )
}

/// `ip [-n NS] ARGS…`: iproute2 switches namespace itself, cheaper than
/// `ip netns exec`.
async fn ip(ns: Ns<'_>, args: &[&str]) -> HostResult<String> {
    let mut argv = vec!["ip"];
    if let Some(ns) = ns {
        argv.extend(["-n", ns]);
    }
    argv.extend_from_slice(args);
    run(None, &argv, None).await
}

fn parse_json(text: &str, what: &str) -> HostResult<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Array(vec![]));
    }
    serde_json::from_str(text)
        .map_err(|e| HostError::failed(format!("{what}: unreadable JSON: {e}")))
}

fn link_from_json(v: &Value) -> Option<Link> {
    let name = v.get("ifname")?.as_str()?.to_string();
    let info = v.get("linkinfo");
    let kind = info
        .and_then(|i| i.get("info_kind"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let flags: Vec<&str> = v
        .get("flags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(Link {
        name,
        kind: kind.clone(),
        master: v.get("master").and_then(Value::as_str).map(str::to_string),
        mtu: v.get("mtu").and_then(Value::as_u64).unwrap_or(0) as u32,
        mac: v
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_lowercase),
        up: flags.contains(&"UP"),
        vxlan_id: if kind.as_deref() == Some("vxlan") {
            info.and_then(|i| i.get("info_data"))
                .and_then(|d| d.get("id"))
                .and_then(Value::as_u64)
                .map(|n| n as u32)
        } else {
            None
        },
    })
}

#[async_trait]
impl Datapath for LinuxDatapath {
    async fn namespaces(&self) -> HostResult<Vec<String>> {
        let v = parse_json(
            &ip(None, &["-json", "netns", "list"]).await?,
            "ip netns list",
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.get("name")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn add_namespace(&self, name: &str) -> HostResult<()> {
        ip(None, &["netns", "add", name]).await?;
        // Loopback up: local services (the metadata proxy) need it.
        ip(Some(name), &["link", "set", "dev", "lo", "up"])
            .await
            .map(|_| ())
    }

    async fn delete_namespace(&self, name: &str) -> HostResult<()> {
        ip(None, &["netns", "delete", name]).await.map(|_| ())
    }

    async fn links(&self, ns: Ns<'_>) -> HostResult<Vec<Link>> {
        let v = parse_json(
            &ip(ns, &["-details", "-json", "link", "show"]).await?,
            "ip link show",
        )?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(link_from_json).collect())
            .unwrap_or_default())
    }

    async fn add_link(&self, ns: Ns<'_>, link: &NewLink) -> HostResult<()> {
        match link {
            NewLink::Bridge { name } => {
                ip(ns, &["link", "add", "name", name, "type", "bridge"]).await?;
            }
            NewLink::Vxlan {
                name,
                vni,
                local,
                dstport,
                learning,
                remotes,
            } => {
                let (vni, local, dstport) =
                    (vni.to_string(), local.to_string(), dstport.to_string());
                let mut args = vec![
                    "link", "add", "name", name, "type", "vxlan", "id", &vni, "local", &local,
                    "dstport", &dstport,
                ];
                if !learning {
                    args.push("nolearning");
                }
                ip(ns, &args).await?;
                for remote in remotes {
                    let mut argv = vec!["bridge"];
                    if let Some(ns) = ns {
                        argv.extend(["-n", ns]);
                    }
                    let remote = remote.to_string();
                    argv.extend([
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        name,
                        "dst",
                        &remote,
                    ]);
                    run(None, &argv, None).await?;
                }
            }
            NewLink::Tap { name } => {
                ip(ns, &["tuntap", "add", "dev", name, "mode", "tap"]).await?;
            }
            NewLink::Veth {
                name,
                peer,
                peer_ns,
            } => {
                let mut args = vec![
                    "link", "add", "name", name, "type", "veth", "peer", "name", peer,
                ];
                if let Some(p) = peer_ns {
                    args.extend(["netns", p]);
                }
                ip(ns, &args).await?;
            }
        }
        Ok(())
    }

    async fn set_link(&self, ns: Ns<'_>, name: &str, change: &LinkChange) -> HostResult<()> {
        let mtu = change.mtu.map(|m| m.to_string());
        let mut args = vec!["link", "set", "dev", name];
        if let Some(m) = &mtu {
            args.extend(["mtu", m]);
        }
        if let Some(mac) = &change.mac {
            args.extend(["address", mac]);
        }
        if let Some(master) = &change.master {
            args.extend(["master", master]);
        }
        match change.up {
            Some(true) => args.push("up"),
            Some(false) => args.push("down"),
            None => {}
        }
        ip(ns, &args).await.map(|_| ())
    }

    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> HostResult<()> {
        ip(ns, &["link", "delete", "dev", name]).await.map(|_| ())
    }

    async fn addresses(&self, ns: Ns<'_>, dev: &str) -> HostResult<Vec<String>> {
        let v = parse_json(
            &ip(ns, &["-json", "addr", "show", "dev", dev]).await?,
            "ip addr show",
        )?;
        let mut out = vec![];
        for link in v.as_array().into_iter().flatten() {
            for a in link
                .get("addr_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(local), Some(len)) =
                    (a.get("local").and_then(Value::as_str), a.get("prefixlen"))
                else {
                    continue;
                };
                if a.get("scope").and_then(Value::as_str) == Some("link")
                    && local.starts_with("fe80")
                {
                    continue;
                }
                out.push(format!("{local}/{len}"));
            }
        }
        Ok(out)
    }

    async fn add_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()> {
        ip(ns, &["addr", "add", cidr, "dev", dev]).await.map(|_| ())
    }

    async fn delete_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()> {
        ip(ns, &["addr", "delete", cidr, "dev", dev])
            .await
            .map(|_| ())
    }

    async fn routes(&self, ns: Ns<'_>) -> HostResult<Vec<Route>> {
        let mut out = vec![];
        for family in ["-4", "-6"] {
            let v = parse_json(
                &ip(ns, &[family, "-json", "route", "show", "proto", "static"]).await?,
                "ip route",
            )?;
            for r in v.as_array().into_iter().flatten() {
                let (Some(dst), Some(via)) = (
                    r.get("dst").and_then(Value::as_str),
                    r.get("gateway").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if let Ok(via) = via.parse() {
                    out.push(Route::new(dst, via));
                }
            }
        }
        Ok(out)
    }

    async fn replace_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()> {
        let via = route.via.to_string();
        let family = if route.via.is_ipv4() { "-4" } else { "-6" };
        ip(
            ns,
            &[
                family, "route", "replace", &route.dst, "via", &via, "proto", "static",
            ],
        )
        .await
        .map(|_| ())
    }

    async fn delete_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()> {
        let via = route.via.to_string();
        let family = if route.via.is_ipv4() { "-4" } else { "-6" };
        ip(
            ns,
            &[
                family, "route", "delete", &route.dst, "via", &via, "proto", "static",
            ],
        )
        .await
        .map(|_| ())
    }

    async fn sysctl(&self, ns: Ns<'_>, key: &str) -> HostResult<String> {
        Ok(run(ns, &["sysctl", "-n", key], None)
            .await?
            .trim()
            .to_string())
    }

    async fn set_sysctl(&self, ns: Ns<'_>, key: &str, value: &str) -> HostResult<()> {
        run(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")], None)
            .await
            .map(|_| ())
    }

    async fn nft_tables(&self, ns: Ns<'_>) -> HostResult<Vec<(String, String)>> {
        let v = parse_json(
            &run(ns, &["nft", "-j", "list", "tables"], None).await?,
            "nft list tables",
        )?;
        Ok(v.get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| {
                let t = o.get("table")?;
                Some((
                    t.get("family")?.as_str()?.to_string(),
                    t.get("name")?.as_str()?.to_string(),
                ))
            })
            .collect())
    }

    async fn nft_table(
        &self,
        ns: Ns<'_>,
        family: &str,
        name: &str,
    ) -> HostResult<Option<TableSummary>> {
        let text = match run(ns, &["nft", "-j", "list", "table", family, name], None).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let v = parse_json(&text, "nft list table")?;
        let mut summary = TableSummary::default();
        for o in v
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(c) = o
                .get("chain")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
            {
                summary.chains.entry(c.to_string()).or_insert(0);
            }
            if let Some(c) = o
                .get("rule")
                .and_then(|r| r.get("chain"))
                .and_then(Value::as_str)
            {
                *summary.chains.entry(c.to_string()).or_insert(0) += 1;
            }
        }
        Ok(Some(summary))
    }

    async fn nft_apply(&self, ns: Ns<'_>, batch: &Nftables<'_>) -> HostResult<()> {
        let json = serde_json::to_string(batch)
            .map_err(|e| HostError::failed(format!("nft batch: {e}")))?;
        run(ns, &["nft", "-j", "-f", "-"], Some(&json))
            .await
            .map(|_| ())
    }

    async fn read_file(&self, path: &Path) -> HostResult<Option<String>> {
        match tokio::fs::read_to_string(path).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::failed(format!("{}: {e}", path.display()))),
        }
    }

    async fn write_file(&self, path: &Path, contents: &str) -> HostResult<()> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| HostError::failed(format!("{}: {e}", dir.display())))?;
        }
        // Write then rename, so a daemon reloading never reads half a file.
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, contents)
            .await
            .map_err(|e| HostError::failed(format!("{}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| HostError::failed(format!("{}: {e}", path.display())))
    }

    async fn remove_dir(&self, path: &Path) -> HostResult<()> {
        match tokio::fs::remove_dir_all(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(HostError::not_found(path.display().to_string()))
            }
            Err(e) => Err(HostError::failed(format!("{}: {e}", path.display()))),
        }
    }

    async fn list_dir(&self, path: &Path) -> HostResult<Vec<String>> {
        let mut rd = match tokio::fs::read_dir(path).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(HostError::failed(format!("{}: {e}", path.display()))),
        };
        let mut out = vec![];
        while let Ok(Some(entry)) = rd.next_entry().await {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    async fn daemon(&self, pidfile: &Path) -> HostResult<Option<u32>> {
        let Some(text) = self.read_file(pidfile).await? else {
            return Ok(None);
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(None);
        };
        let proc_dir = Path::new("/proc").join(pid.to_string());
        let Ok(stat) = tokio::fs::read_to_string(proc_dir.join("stat")).await else {
            return Ok(None);
        };
        // Field 3 (after the parenthesised command) is the state; a zombie is gone.
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        if state == Some(Some('Z')) {
            return Ok(None);
        }
        let Ok(cmdline) = tokio::fs::read(proc_dir.join("cmdline")).await else {
            return Ok(None);
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        Ok(cmdline.contains(&*pidfile.to_string_lossy()).then_some(pid))
    }

    async fn spawn_daemon(&self, ns: Ns<'_>, argv: &[String], pidfile: &Path) -> HostResult<u32> {
        // A stale pidfile would be read as the new daemon's.
        let _ = tokio::fs::remove_file(pidfile).await;
        if let Some(dir) = pidfile.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| HostError::failed(format!("{}: {e}", dir.display())))?;
        }
        // `setsid -f` detaches the daemon from the agent (its own session,
        // reparented to init), so it outlives an agent restart and the agent
        // leaves no zombie behind.
        let mut cmd = Command::new("setsid");
        cmd.arg("-f");
        if let Some(ns) = ns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd
            .status()
            .await
            .map_err(|e| HostError::failed(format!("{}: {e}", argv.join(" "))))?;
        if !status.success() {
            return Err(HostError::failed(format!(
                "{}: exited with {status}",
                argv.join(" ")
            )));
        }
        for _ in 0..100 {
            if let Some(pid) = self.daemon(pidfile).await? {
                return Ok(pid);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(HostError::failed(format!(
            "{}: no live pid in {} after 10s",
            argv.join(" "),
            pidfile.display()
        )))
    }

    async fn signal(&self, pid: u32, signal: DaemonSignal) -> HostResult<()> {
        use nix::sys::signal::{kill, Signal};
        let sig = match signal {
            DaemonSignal::Hup => Signal::SIGHUP,
            DaemonSignal::Term => Signal::SIGTERM,
        };
        kill(nix::unistd::Pid::from_raw(pid as i32), sig).map_err(|e| match e {
            nix::errno::Errno::ESRCH => HostError::not_found(format!("pid {pid}: no such process")),
            e => HostError::failed(format!("kill {pid}: {e}")),
        })
    }
}
