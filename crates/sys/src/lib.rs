//! Small Linux helpers shared by the host-layer crates (`qemu`, `netdev`) and the binary.
//! No domain types, no policy: only what the operating system makes awkward.

pub mod unix_socket;
