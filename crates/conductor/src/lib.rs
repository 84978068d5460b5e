//! The conductor: drives every multi-step server workflow as a persisted
//! saga (boot, delete, power actions, interface attach and detach) and runs
//! the reconcilers that make the recorded state and the hosts agree.
//!
//! Sagas on one server never run at once: each takes the server's lock for
//! its whole run, so a delete asked during a build waits for the build to
//! finish (or unwind) and then removes what it made. On start,
//! [`Conductor::resume_unfinished`] resumes or unwinds whatever a crash left.

pub mod boot;
pub mod delete;
pub mod interface;
pub mod power;
pub mod saga;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oxistack_bus::Bus;
use oxistack_model::config::Settings;
use oxistack_model::{AppError, AppResult, SagaId};
use oxistack_network::Network;
use oxistack_scheduler::Placement;
use oxistack_store::sagas::{SagaRecord, SagaState};
use oxistack_store::Store;

pub use saga::ExecOptions;

pub struct Conductor {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub placement: Arc<Placement>,
    pub network: Arc<Network>,
    pub settings: Arc<Settings>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    running: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl Conductor {
    pub fn new(
        store: Store,
        bus: Arc<dyn Bus>,
        placement: Arc<Placement>,
        network: Arc<Network>,
        settings: Arc<Settings>,
    ) -> Arc<Self> {
        Arc::new(Conductor {
            store,
            bus,
            placement,
            network,
            settings,
            locks: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    fn target_lock(&self, target: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(target.to_string()).or_default().clone()
    }

    fn kind_of(&self, kind: &str) -> AppResult<&'static dyn saga::SagaKind<Conductor>> {
        Ok(match kind {
            boot::KIND => &boot::BootSaga,
            delete::KIND => &delete::DeleteSaga,
            power::KIND => &power::PowerSaga,
            interface::ATTACH => &interface::AttachSaga,
            interface::DETACH => &interface::DetachSaga,
            other => return Err(AppError::internal(format!("unknown saga kind {other}"))),
        })
    }

    /// Records a saga and runs it in the background; returns at once.
    pub async fn start(self: &Arc<Self>, rec: SagaRecord) -> AppResult<SagaId> {
        self.kind_of(&rec.kind)?;
        self.store.saga_insert(&rec).await?;
        let id = rec.id;
        let me = self.clone();
        let mut set = self.running.lock().await;
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            if let Err(e) = me.run(rec, ExecOptions::default()).await {
                tracing::error!(saga_id = %id, error = %e, "saga stopped; it resumes at next start");
            }
        });
        Ok(id)
    }

    /// Records a saga, runs it in the background and waits for its end:
    /// `Ok(Ok(()))` when it is done, `Ok(Err(e))` with the error that made
    /// it unwind. The saga runs on if the caller stops waiting (a client
    /// that hangs up), so it never stops half-way.
    pub async fn start_and_wait(
        self: &Arc<Self>,
        rec: SagaRecord,
    ) -> AppResult<Result<(), AppError>> {
        self.kind_of(&rec.kind)?;
        self.store.saga_insert(&rec).await?;
        let id = rec.id;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        {
            let mut set = self.running.lock().await;
            while set.try_join_next().is_some() {}
            set.spawn(async move {
                let outcome = me.run_reporting(rec, ExecOptions::default()).await;
                if let Err(e) = &outcome {
                    tracing::error!(saga_id = %id, error = %e, "saga stopped; it resumes at next start");
                }
                let _ = tx.send(outcome);
            });
        }
        match rx.await {
            Ok(Ok((SagaState::Done, _))) => Ok(Ok(())),
            Ok(Ok((_, error))) => {
                Ok(Err(error.unwrap_or_else(|| {
                    AppError::internal(format!("saga {id} failed"))
                })))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AppError::internal(format!(
                "saga {id} ended without an outcome"
            ))),
        }
    }

    /// Runs a recorded saga to its end under its target's lock.
    pub async fn run(&self, rec: SagaRecord, opts: ExecOptions) -> AppResult<SagaState> {
        self.run_reporting(rec, opts).await.map(|(state, _)| state)
    }

    /// [`Conductor::run`], also handing back the error the saga unwound for.
    pub async fn run_reporting(
        &self,
        rec: SagaRecord,
        opts: ExecOptions,
    ) -> AppResult<(SagaState, Option<AppError>)> {
        let lock = self.target_lock(&rec.target_id);
        let _held = lock.lock().await;
        let kind = self.kind_of(&rec.kind)?;
        saga::execute_reporting(&self.store, kind, self, rec, opts).await
    }

    /// Resumes (or unwinds) every saga a previous run left unfinished.
    pub async fn resume_unfinished(self: &Arc<Self>) -> AppResult<usize> {
        let sagas = self.store.sagas_unfinished().await?;
        let n = sagas.len();
        for rec in sagas {
            tracing::info!(saga_id = %rec.id, kind = %rec.kind, state = ?rec.state, "resuming saga");
            let me = self.clone();
            self.running.lock().await.spawn(async move {
                let id = rec.id;
                if let Err(e) = me.run(rec, ExecOptions::default()).await {
                    tracing::error!(saga_id = %id, error = %e, "resumed saga stopped");
                }
            });
        }
        Ok(n)
    }

    /// Waits for every saga started by this conductor (tests, shutdown).
    pub async fn drain(&self) {
        let mut set = self.running.lock().await;
        while set.join_next().await.is_some() {}
    }
}
