//! The host layer for networking: the few operations the agent's network
//! role needs on a Linux host, behind one narrow trait ([`Datapath`]).
//!
//! - [`LinuxDatapath`] drives the kernel through iproute2 (`ip -json`),
//!   `nft -j` (JSON batches built with the `nftables` crate's types, applied
//!   atomically), `sysctl` and daemons started with `setsid -f`, each inside
//!   a network namespace through `ip netns exec` where asked. Why commands
//!   and not netlink: docs/design/0011-datapath.md.
//! - [`FakeDatapath`] keeps the same state in memory, checks the same
//!   preconditions ("exists", "no such device") and can inject failures, so
//!   the agent's convergence logic is tested in milliseconds.
//! - [`metadata_proxy`] is the small HTTP forwarder that runs inside tenant
//!   namespaces and relays guests' metadata requests to the control plane's
//!   unix socket, adding who is asking.
//!
//! Nothing here knows about Neutron resources: the agent maps its spec onto
//! these primitives.

mod datapath;
mod fake;
mod linux;
pub mod metadata_proxy;
pub mod nft;

/// The `nftables` crate, so users build statements with the same version.
pub use nftables;

pub use datapath::{
    DaemonSignal, Datapath, HostError, HostErrorKind, HostResult, Link, LinkChange, NewLink, Ns,
    Route, TableSummary,
};
pub use fake::{FakeDaemon, FakeDatapath};
pub use linux::LinuxDatapath;
