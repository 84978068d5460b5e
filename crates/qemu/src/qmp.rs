//! QMP client for one QEMU instance, over its unix socket.
//!
//! Built on the `qapi` crate (typed commands and events generated from QEMU's own QAPI
//! schema; docs/design/0006-qemu-direct.md says why). [`QmpClient::connect`] opens the
//! socket and negotiates capabilities; a background task reads the socket, completes
//! command replies and forwards the events we act on to a broadcast channel.
//!
//! Every call is bounded by the client's timeout: a wedged QEMU makes a call fail with
//! [`QmpError::Timeout`], never hang the agent. When QEMU exits, or sends a line the schema
//! does not know, the reader stops; calls then fail with [`QmpError::Disconnected`] and the
//! caller reconnects (QEMU accepts a new client once the old one is gone).

use std::io;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

type Writer = QmpStreamTokio<WriteHalf<UnixStream>>;

/// Default bound on one QMP exchange.
pub const DEFAULT_QMP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to QMP socket {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("QMP {0} timed out")]
    Timeout(&'static str),
    #[error("QMP connection closed")]
    Disconnected,
    #[error("QMP I/O error: {0}")]
    Io(#[from] io::Error),
    /// QEMU answered with an error (class and description).
    #[error("QEMU refused {command}: {class}: {desc}")]
    Command {
        command: &'static str,
        class: String,
        desc: String,
    },
}

impl QmpError {
    /// QEMU said the device (or netdev) named in the command does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, QmpError::Command { class, desc, .. }
            if class == "DeviceNotFound" || desc.contains("not found"))
    }
}

/// QEMU's run state (`query-status`), reduced to what decides a power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Stopped by `stop` or waiting to start (`prelaunch`, `inmigrate`...).
    Paused,
    /// The guest shut down and QEMU was told not to exit (`-no-shutdown`).
    Shutdown,
    Suspended,
    /// Guest panic, internal or I/O error, watchdog: the guest is not making progress.
    Crashed,
    /// Saving, migrating, debugging: a transient state.
    Other,
}

impl From<qmp::RunState> for RunState {
    fn from(s: qmp::RunState) -> Self {
        use qmp::RunState as Q;
        match s {
            Q::running => RunState::Running,
            Q::paused | Q::prelaunch | Q::inmigrate | Q::postmigrate | Q::restore_vm => {
                RunState::Paused
            }
            Q::shutdown => RunState::Shutdown,
            Q::suspended => RunState::Suspended,
            Q::guest_panicked | Q::internal_error | Q::io_error | Q::watchdog => RunState::Crashed,
            Q::debug | Q::finish_migrate | Q::save_vm | Q::colo => RunState::Other,
        }
    }
}

/// The asynchronous events the virt driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEvent {
    /// QEMU is about to exit (`guest`: the guest asked for it, e.g. ACPI power off).
    Shutdown {
        guest: bool,
        reason: String,
    },
    /// ACPI power button pressed (by `system_powerdown`).
    Powerdown,
    Reset {
        guest: bool,
    },
    Stop,
    Resume,
    GuestPanicked,
    /// A device is gone (after `device_del`, once the guest let go of it).
    /// `device` is its id; devices without an id, and a device's own
    /// children, have none.
    DeviceDeleted {
        device: Option<String>,
        path: String,
    },
}

/// A NIC the running QEMU has: its device id, MAC, and the netdev behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    pub id: String,
    /// Lower case, as QEMU prints it.
    pub mac: String,
    pub netdev: Option<String>,
}

/// Where QEMU keeps the devices that were given an id.
const PERIPHERALS: &str = "/machine/peripheral";

impl QmpEvent {
    fn from_qapi(e: qmp::Event) -> Option<Self> {
        Some(match e {
            qmp::Event::SHUTDOWN { data, .. } => QmpEvent::Shutdown {
                guest: data.guest,
                reason: serde_json::to_value(data.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            },
            qmp::Event::POWERDOWN { .. } => QmpEvent::Powerdown,
            qmp::Event::RESET { data, .. } => QmpEvent::Reset { guest: data.guest },
            qmp::Event::STOP { .. } => QmpEvent::Stop,
            qmp::Event::RESUME { .. } => QmpEvent::Resume,
            qmp::Event::GUEST_PANICKED { .. } => QmpEvent::GuestPanicked,
            qmp::Event::DEVICE_DELETED { data, .. } => QmpEvent::DeviceDeleted {
                device: data.device,
                path: data.path,
            },
            _ => return None,
        })
    }
}

/// A negotiated QMP connection to one QEMU.
pub struct QmpClient {
    service: QapiService<Writer>,
    events: broadcast::Sender<QmpEvent>,
    reader: JoinHandle<()>,
    timeout: Duration,
}

impl QmpClient {
    /// Connects and negotiates capabilities, all within `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let negotiated = tokio::time::timeout(timeout, async {
            let connected = oxistack_sys::unix_socket::connect(socket)
                .await
                .map_err(|source| QmpError::Connect {
                    path: socket.display().to_string(),
                    source,
                })?;
            let negotiation =
                QmpStreamTokio::open(connected)
                    .await
                    .map_err(|source| QmpError::Connect {
                        path: socket.display().to_string(),
                        source,
                    })?;
            negotiation.negotiate().await.map_err(QmpError::Io)
        })
        .await
        .map_err(|_| QmpError::Timeout("connect"))??;

        let (service, stream) = negotiated.into_parts();
        // Tell qapi the reader is driven elsewhere, so dropping the service ends it.
        let _ = stream.release();
        let (events, _) = broadcast::channel(64);
        let tx = events.clone();
        let reader = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        if let Some(event) = QmpEvent::from_qapi(event) {
                            tracing::debug!(?event, "QMP event");
                            // No subscriber is fine: events are a hint, query-status the truth.
                            let _ = tx.send(event);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "QMP stream error, closing");
                        break;
                    }
                }
            }
        });
        Ok(Self {
            service,
            events,
            reader,
            timeout,
        })
    }

    /// Events from now on. Events are not replayed: after (re)connecting, ask
    /// [`QmpClient::query_status`] for the current state.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Whether the reader still has the socket open.
    pub fn is_connected(&self) -> bool {
        !self.reader.is_finished()
    }

    pub async fn query_status(&self) -> Result<RunState, QmpError> {
        let info = self.execute("query-status", qmp::query_status {}).await?;
        Ok(info.status.into())
    }

    /// Presses the ACPI power button; the guest decides whether and when to power off.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", qmp::system_powerdown {})
            .await
            .map(drop)
    }

    /// Hard reset, like the reset button.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute("system_reset", qmp::system_reset {})
            .await
            .map(drop)
    }

    /// Pauses the vCPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", qmp::stop {}).await.map(drop)
    }

    /// Resumes the vCPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", qmp::cont {}).await.map(drop)
    }

    /// Makes QEMU exit now (the power cord). QEMU may close the socket before or after it
    /// answers; both mean the command was taken.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", qmp::quit {}).await {
            Ok(_) | Err(QmpError::Disconnected) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds a tap backend named `id` on the existing (or, with the right to, new) tap
    /// `ifname`, as the boot command line's `-netdev tap,…,script=no,downscript=no`.
    pub async fn netdev_add_tap(&self, id: &str, ifname: &str) -> Result<(), QmpError> {
        let netdev = qmp::Netdev::tap {
            id: id.to_string(),
            tap: qmp::NetdevTapOptions {
                ifname: Some(ifname.to_string()),
                script: Some("no".into()),
                downscript: Some("no".into()),
                ..Default::default()
            },
        };
        self.execute("netdev_add", qmp::netdev_add(netdev))
            .await
            .map(drop)
    }

    pub async fn netdev_del(&self, id: &str) -> Result<(), QmpError> {
        self.execute("netdev_del", qmp::netdev_del { id: id.to_string() })
            .await
            .map(drop)
    }

    /// `device_add` of `driver` with id `id` on `bus` (None: QEMU's choice) and the
    /// driver's own properties.
    pub async fn device_add(
        &self,
        driver: &str,
        id: &str,
        bus: Option<&str>,
        properties: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), QmpError> {
        let command = qmp::device_add {
            driver: driver.to_string(),
            id: Some(id.to_string()),
            bus: bus.map(str::to_string),
            arguments: properties,
        };
        self.execute("device_add", command).await.map(drop)
    }

    /// Asks for a device to be removed. For a PCI device the guest must let go of it
    /// first: the device is gone when [`QmpEvent::DeviceDeleted`] names it (see
    /// [`QmpClient::device_del_wait`]).
    pub async fn device_del(&self, id: &str) -> Result<(), QmpError> {
        self.execute("device_del", qmp::device_del { id: id.to_string() })
            .await
            .map(drop)
    }

    /// `device_del`, then waits up to `bound` for the device to be gone. A device that
    /// does not exist is gone already; a request repeated while the guest has not yet
    /// answered the first one keeps waiting for it.
    pub async fn device_del_wait(&self, id: &str, bound: Duration) -> Result<(), QmpError> {
        // Subscribed before asking, so the event cannot slip by.
        let mut events = self.subscribe();
        match self.device_del(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            // e.g. "… is already in the process of unplug": wait for that one.
            Err(QmpError::Command { .. }) if self.device_exists(id).await? => {}
            Err(e) => return Err(e),
        }
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(QmpEvent::DeviceDeleted {
                    device: Some(d), ..
                })) if d == id => return Ok(()),
                Ok(Ok(_)) => {}
                // Missed events (lagged) or a closed reader: ask QEMU instead.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if !self.device_exists(id).await? {
                        return Ok(());
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(QmpError::Disconnected),
                Err(_) => {
                    return if self.device_exists(id).await? {
                        Err(QmpError::Timeout(
                            "device_del (the guest did not release the device)",
                        ))
                    } else {
                        Ok(())
                    };
                }
            }
        }
    }

    /// Whether a device with this id exists.
    pub async fn device_exists(&self, id: &str) -> Result<bool, QmpError> {
        Ok(self
            .qom_list(PERIPHERALS)
            .await?
            .iter()
            .any(|(name, ty)| name == id && ty.starts_with("child<")))
    }

    /// The names and types of an object's properties (children are `child<type>`).
    pub async fn qom_list(&self, path: &str) -> Result<Vec<(String, String)>, QmpError> {
        let props = self
            .execute(
                "qom-list",
                qmp::qom_list {
                    path: path.to_string(),
                },
            )
            .await?;
        Ok(props.into_iter().map(|p| (p.name, p.type_)).collect())
    }

    pub async fn qom_get(&self, path: &str, property: &str) -> Result<serde_json::Value, QmpError> {
        self.execute(
            "qom-get",
            qmp::qom_get {
                path: path.to_string(),
                property: property.to_string(),
            },
        )
        .await
    }

    /// Every NIC device that has an id (those of the command line and those
    /// hot-plugged), whatever its model: a device is a NIC when it has a `mac`.
    pub async fn nics(&self) -> Result<Vec<GuestNic>, QmpError> {
        let mut out = Vec::new();
        for (name, ty) in self.qom_list(PERIPHERALS).await? {
            if !ty.starts_with("child<") {
                continue;
            }
            let path = format!("{PERIPHERALS}/{name}");
            let mac = match self.qom_get(&path, "mac").await {
                Ok(v) => v.as_str().unwrap_or_default().to_ascii_lowercase(),
                // Not a NIC (no such property), or gone since the listing.
                Err(QmpError::Command { .. }) => continue,
                Err(e) => return Err(e),
            };
            let netdev = match self.qom_get(&path, "netdev").await {
                Ok(v) => v.as_str().filter(|s| !s.is_empty()).map(str::to_string),
                Err(QmpError::Command { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(GuestNic {
                id: name,
                mac,
                netdev,
            });
        }
        Ok(out)
    }

    async fn execute<C>(&self, name: &'static str, command: C) -> Result<C::Ok, QmpError>
    where
        C: qapi::Command,
        Writer: futures::Sink<qapi::Execute<C, u32>, Error = io::Error> + Unpin,
    {
        if !self.is_connected() {
            return Err(QmpError::Disconnected);
        }
        match tokio::time::timeout(self.timeout, self.service.execute(command)).await {
            Err(_) => Err(QmpError::Timeout(name)),
            Ok(Ok(ok)) => Ok(ok),
            Ok(Err(qapi::ExecuteError::Qapi(e))) => Err(QmpError::Command {
                command: name,
                class: format!("{:?}", e.class),
                desc: e.desc,
            }),
            Ok(Err(qapi::ExecuteError::Io(e))) => Err(match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset => QmpError::Disconnected,
                _ => QmpError::Io(e),
            }),
        }
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
