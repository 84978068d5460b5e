//! A small saga engine with every step persisted in the store.
//!
//! A saga is a list of named steps, each with an action and an undo. After
//! each action the engine records the step's output and the next step index,
//! so a conductor that crashes resumes the saga at its next start (actions
//! must be idempotent: the one in flight at the crash runs again). When an
//! action fails for good, the engine undoes the failed step and every step
//! before it, newest first (undos are idempotent too), then calls the saga's
//! `unwound` hook, which records the outcome (e.g. the server goes to ERROR
//! with a fault).
//!
//! ```text
//!   running(step i) --ok--> running(i+1) ... --> done
//!        | error (after retries of transient errors)
//!        v
//!   unwinding(i) --undo--> unwinding(i-1) ... --> failed  (+ unwound hook)
//! ```

use std::time::Duration;

use async_trait::async_trait;
use oxistack_model::{AppError, AppResult, ErrorKind, SagaId};
use oxistack_store::sagas::{SagaRecord, SagaState};
use oxistack_store::Store;
use serde_json::{json, Value};

/// One kind of saga: its steps and what each does.
#[async_trait]
pub trait SagaKind<C: Sync>: Send + Sync {
    fn kind(&self) -> &'static str;
    fn steps(&self) -> &'static [&'static str];
    /// Runs step `step`; its output is kept under `outputs[step]`.
    async fn action(
        &self,
        ctx: &C,
        step: &str,
        params: &Value,
        outputs: &Value,
    ) -> AppResult<Value>;
    /// Undoes step `step` (which may have run partly, or not at all).
    async fn undo(&self, ctx: &C, step: &str, params: &Value, outputs: &Value) -> AppResult<()>;
    /// Called once the saga has unwound, with the error that caused it.
    async fn unwound(&self, ctx: &C, params: &Value, error: &AppError) -> AppResult<()>;
}

/// Test knobs: the three ways every saga is tested (STYLE.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    /// Fail the action of this step index (after running it), as if it had crashed.
    pub fail_at: Option<usize>,
    pub repeat_actions: bool,
    pub repeat_undos: bool,
}

/// How many times a transient (`Unavailable`) error is retried per step.
const TRANSIENT_RETRIES: u32 = 3;

pub fn new_record(kind: &str, target: &str, params: Value) -> SagaRecord {
    SagaRecord {
        id: SagaId::new(),
        kind: kind.to_string(),
        target_id: target.to_string(),
        state: SagaState::Running,
        step: 0,
        params,
        outputs: json!({}),
        error: None,
    }
}

async fn retry<F, Fut, T>(mut f: F) -> AppResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = AppResult<T>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if e.kind == ErrorKind::Unavailable && attempt < TRANSIENT_RETRIES => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "transient error in saga step; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            r => return r,
        }
    }
}

/// Runs (or resumes) a saga to its end: done, or unwound and failed.
pub async fn execute<C: Sync>(
    store: &Store,
    kind: &dyn SagaKind<C>,
    ctx: &C,
    rec: SagaRecord,
    opts: ExecOptions,
) -> AppResult<SagaState> {
    execute_reporting(store, kind, ctx, rec, opts)
        .await
        .map(|(state, _)| state)
}

/// [`execute`], also handing back the error that made the saga unwind (for
/// a caller that waits for the outcome, e.g. an interface attach, whose API
/// answers with it). A saga resumed while unwinding only has the message
/// it recorded.
pub async fn execute_reporting<C: Sync>(
    store: &Store,
    kind: &dyn SagaKind<C>,
    ctx: &C,
    mut rec: SagaRecord,
    opts: ExecOptions,
) -> AppResult<(SagaState, Option<AppError>)> {
    let steps = kind.steps();
    let span =
        tracing::info_span!("saga", saga_id = %rec.id, kind = kind.kind(), target = %rec.target_id);
    let _guard = span.enter();
    let mut failure: Option<AppError> = rec
        .error
        .as_ref()
        .map(|m| AppError::new(ErrorKind::Internal, m.clone()));
    if rec.state == SagaState::Running {
        while (rec.step as usize) < steps.len() {
            let i = rec.step as usize;
            let name = steps[i];
            let runs = if opts.repeat_actions { 2 } else { 1 };
            let mut result = Ok(Value::Null);
            for _ in 0..runs {
                result = retry(|| kind.action(ctx, name, &rec.params, &rec.outputs)).await;
                if result.is_err() {
                    break;
                }
            }
            if opts.fail_at == Some(i) && result.is_ok() {
                result = Err(AppError::new(
                    ErrorKind::Internal,
                    format!("injected failure at step {name}"),
                ));
            }
            match result {
                Ok(out) => {
                    if let Value::Object(m) = &mut rec.outputs {
                        m.insert(name.to_string(), out);
                    }
                    rec.step += 1;
                    store.saga_save(&rec).await?;
                    tracing::debug!(step = name, "saga step done");
                }
                Err(e) => {
                    tracing::warn!(step = name, error = %e, "saga step failed; unwinding");
                    rec.state = SagaState::Unwinding;
                    rec.error = Some(e.message.clone());
                    store.saga_save(&rec).await?;
                    failure = Some(e);
                    break;
                }
            }
        }
        if rec.state == SagaState::Running {
            rec.state = SagaState::Done;
            store.saga_save(&rec).await?;
            return Ok((SagaState::Done, None));
        }
    }
    // Unwinding: undo the failed step and every one before it.
    while rec.step >= 0 {
        let i = rec.step as usize;
        if i < steps.len() {
            let name = steps[i];
            let runs = if opts.repeat_undos { 2 } else { 1 };
            for _ in 0..runs {
                if let Err(e) = retry(|| kind.undo(ctx, name, &rec.params, &rec.outputs)).await {
                    // An undo that fails leaves the saga unwinding: the next
                    // start (or reconciler) tries again; nothing is forgotten.
                    tracing::error!(step = name, error = %e, "saga undo failed; will retry at next start");
                    return Err(e);
                }
            }
        }
        rec.step -= 1;
        store.saga_save(&rec).await?;
    }
    rec.state = SagaState::Failed;
    store.saga_save(&rec).await?;
    let err = failure.unwrap_or_else(|| AppError::internal("saga failed"));
    kind.unwound(ctx, &rec.params, &err).await?;
    Ok((SagaState::Failed, Some(err)))
}
