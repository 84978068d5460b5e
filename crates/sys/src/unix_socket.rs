//! Unix sockets at paths of any length.
//!
//! A unix socket address holds at most [`MAX_PATH`] bytes of path, so a socket inside a
//! deep data directory (a CI checkout, a long mount point) cannot be bound or reached by
//! its full path. Linux resolves `/proc/self/fd/N/NAME` through the open directory `N`,
//! so binding or connecting through an open handle on the socket's directory works for
//! any depth. Short paths are used as they are.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The longest path a `sockaddr_un` holds (108 bytes with the terminating NUL).
pub const MAX_PATH: usize = 107;

/// A path for `bind`/`connect` that names the same socket as the one it was made from
/// and fits a socket address. Keep it alive while the path is in use: it may hold the
/// directory open.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    _dir: Option<File>,
}

impl SocketPath {
    pub fn new(path: &Path) -> io::Result<SocketPath> {
        if path.as_os_str().len() <= MAX_PATH {
            return Ok(SocketPath {
                path: path.to_path_buf(),
                _dir: None,
            });
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no socket in a directory", path.display()),
            ));
        };
        let dir = File::open(parent)?;
        let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        short.push(name);
        if short.as_os_str().len() > MAX_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket name {:?} is too long", name),
            ));
        }
        Ok(SocketPath {
            path: short,
            _dir: Some(dir),
        })
    }

    /// The path to hand to `bind` or `connect` (valid in this process only).
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

/// Binds a listening socket at `path`, replacing a stale socket file left there.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let short = SocketPath::new(path)?;
    std::os::unix::net::UnixListener::bind(short.as_path())
}

/// Connects to the socket at `path`.
pub async fn connect(path: &Path) -> io::Result<tokio::net::UnixStream> {
    let short = SocketPath::new(path)?;
    tokio::net::UnixStream::connect(short.as_path()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn deep_dir(root: &Path) -> PathBuf {
        let mut d = root.to_path_buf();
        while d.as_os_str().len() <= MAX_PATH {
            d.push("a-directory-name-that-makes-the-path-long");
        }
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn sockets_bind_and_connect_at_any_depth() {
        let root = tempfile::tempdir().unwrap();
        let sock = deep_dir(root.path()).join("qmp.sock");
        assert!(sock.as_os_str().len() > MAX_PATH);
        let listener = bind(&sock).unwrap();
        assert!(sock.exists(), "the socket file is where it was asked");
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let mut c = connect(&sock).await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        server.await.unwrap();
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_short_paths_stay_as_they_are() {
        let root = tempfile::tempdir().unwrap();
        let sock = root.path().join("m.sock");
        drop(bind(&sock).unwrap());
        assert!(sock.exists());
        drop(bind(&sock).unwrap());
        assert_eq!(SocketPath::new(&sock).unwrap().as_path(), sock);
    }

    #[tokio::test]
    async fn nobody_listening_is_an_error_not_a_hang() {
        let root = tempfile::tempdir().unwrap();
        let sock = deep_dir(root.path()).join("none.sock");
        let e = connect(&sock).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
