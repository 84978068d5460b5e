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
}

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
