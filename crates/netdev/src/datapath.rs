//! The [`Datapath`] trait and the facts it reports.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use async_trait::async_trait;
use nftables::schema::Nftables;

/// A network namespace by name; `None` is the host's (root) namespace.
pub type Ns<'a> = Option<&'a str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The object to create is already there.
    Exists,
    /// The object to change or delete is not there.
    NotFound,
    /// Anything else (the message says what).
    Failed,
}

/// A failed host operation. "Exists" and "not found" are told apart so the
/// caller handles them explicitly instead of matching messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: String,
}

impl HostError {
    pub fn failed(message: impl Into<String>) -> Self {
        HostError {
            kind: HostErrorKind::Failed,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        HostError {
            kind: HostErrorKind::NotFound,
            message: message.into(),
        }
    }
    pub fn exists(message: impl Into<String>) -> Self {
        HostError {
            kind: HostErrorKind::Exists,
            message: message.into(),
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.kind == HostErrorKind::NotFound
    }
    pub fn is_exists(&self) -> bool {
        self.kind == HostErrorKind::Exists
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostError {}

pub type HostResult<T> = Result<T, HostError>;

/// A network interface as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `bridge`, `vxlan`, `tun`, `veth`, … (None for plain devices).
    pub kind: Option<String>,
    /// The bridge this interface is a port of.
    pub master: Option<String>,
    pub mtu: u32,
    /// Lower-case `aa:bb:…`.
    pub mac: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// The VNI of a VXLAN device.
    pub vxlan_id: Option<u32>,
}

/// An interface to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewLink {
    Bridge {
        name: String,
    },
    /// A VXLAN device. On one host `local 127.0.0.1` with no remotes is
    /// enough; `remotes` is where multi-host VTEPs go (FDB entries to
    /// 00:00:00:00:00:00 for flooding).
    Vxlan {
        name: String,
        vni: u32,
        local: IpAddr,
        dstport: u16,
        learning: bool,
        remotes: Vec<IpAddr>,
    },
    /// A persistent tap (`ip tuntap add mode tap`), which QEMU opens by name.
    Tap {
        name: String,
    },
    /// A veth pair: `name` in the namespace of the call, `peer` created
    /// directly in `peer_ns`.
    Veth {
        name: String,
        peer: String,
        peer_ns: Option<String>,
    },
}

impl NewLink {
    pub fn name(&self) -> &str {
        match self {
            NewLink::Bridge { name }
            | NewLink::Vxlan { name, .. }
            | NewLink::Tap { name }
            | NewLink::Veth { name, .. } => name,
        }
    }
}

/// Settings to change on an interface; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    /// Make the interface a port of this bridge.
    pub master: Option<String>,
    pub up: Option<bool>,
}

impl LinkChange {
    pub fn is_empty(&self) -> bool {
        self == &LinkChange::default()
    }
}

/// A route through a gateway, as OxiStack adds them (`proto static`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// `default` or a CIDR; host routes without their `/32` or `/128`.
    pub dst: String,
    pub via: IpAddr,
}

impl Route {
    /// Normalises a destination the way `ip route` prints it.
    pub fn new(dst: &str, via: IpAddr) -> Route {
        let dst = match dst {
            "0.0.0.0/0" | "::/0" => "default",
            d => d
                .strip_suffix("/32")
                .or_else(|| d.strip_suffix("/128"))
                .unwrap_or(d),
        };
        Route {
            dst: dst.to_string(),
            via,
        }
    }
}

/// What a table holds, enough to tell whether it is still what was applied:
/// chain name -> number of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSummary {
    pub chains: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonSignal {
    /// Reload (dnsmasq re-reads its hosts and options files).
    Hup,
    /// Stop.
    Term,
}

/// The host operations of the agent's network role. Every call is one
/// small, checkable step; the agent decides what to do from what the
/// listing calls report.
#[async_trait]
pub trait Datapath: Send + Sync {
    async fn namespaces(&self) -> HostResult<Vec<String>>;
    async fn add_namespace(&self, name: &str) -> HostResult<()>;
    async fn delete_namespace(&self, name: &str) -> HostResult<()>;

    async fn links(&self, ns: Ns<'_>) -> HostResult<Vec<Link>>;
    async fn add_link(&self, ns: Ns<'_>, link: &NewLink) -> HostResult<()>;
    async fn set_link(&self, ns: Ns<'_>, name: &str, change: &LinkChange) -> HostResult<()>;
    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> HostResult<()>;

    /// The addresses (`ip/prefix`) of an interface, without the IPv6
    /// link-local ones the kernel adds by itself.
    async fn addresses(&self, ns: Ns<'_>, dev: &str) -> HostResult<Vec<String>>;
    async fn add_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()>;
    async fn delete_address(&self, ns: Ns<'_>, dev: &str, cidr: &str) -> HostResult<()>;

    /// The gateway routes OxiStack added (`proto static`), IPv4 and IPv6.
    async fn routes(&self, ns: Ns<'_>) -> HostResult<Vec<Route>>;
    async fn replace_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()>;
    async fn delete_route(&self, ns: Ns<'_>, route: &Route) -> HostResult<()>;

    /// A sysctl by its dotted key, e.g. `net.ipv4.ip_forward`.
    async fn sysctl(&self, ns: Ns<'_>, key: &str) -> HostResult<String>;
    async fn set_sysctl(&self, ns: Ns<'_>, key: &str, value: &str) -> HostResult<()>;

    /// The nftables tables of a namespace as (family, name).
    async fn nft_tables(&self, ns: Ns<'_>) -> HostResult<Vec<(String, String)>>;
    async fn nft_table(
        &self,
        ns: Ns<'_>,
        family: &str,
        name: &str,
    ) -> HostResult<Option<TableSummary>>;
    /// Applies a batch atomically (all of it or nothing).
    async fn nft_apply(&self, ns: Ns<'_>, batch: &Nftables<'_>) -> HostResult<()>;

    async fn read_file(&self, path: &Path) -> HostResult<Option<String>>;
    /// Writes a file, creating its parent directories.
    async fn write_file(&self, path: &Path, contents: &str) -> HostResult<()>;
    async fn remove_dir(&self, path: &Path) -> HostResult<()>;
    /// The names in a directory (empty when it does not exist).
    async fn list_dir(&self, path: &Path) -> HostResult<Vec<String>>;

    /// The pid written in `pidfile` when that process is alive and is the
    /// one that wrote it (its command line names the pidfile), so a reused
    /// pid is never taken for ours.
    async fn daemon(&self, pidfile: &Path) -> HostResult<Option<u32>>;
    /// Starts a daemon (detached, in `ns`) whose command line names
    /// `pidfile` and which writes its pid there; waits for that pid.
    async fn spawn_daemon(&self, ns: Ns<'_>, argv: &[String], pidfile: &Path) -> HostResult<u32>;
    async fn signal(&self, pid: u32, signal: DaemonSignal) -> HostResult<()>;
}
