//! The call's one lifecycle: `state_machines::call`, stepped here and nowhere else.
//!
//! ```text
//!  call task ── step(event) ──▶ call::step(state, event) ──▶ CallStore::record (commit)
//!                                     │ refused: nothing changes        │ refused: the call ends (failed)
//!                                     ▼                                  ▼
//!      the task answers SIP (a refused INVITE's status from the effects, a BYE's 200, a
//!      REFER's 202) only after the commit
//! ```
//!
//! The call task owns one [`Lifecycle`]; the state it holds is the state the store has
//! committed (a step the store refuses is not taken, and the task ends the call). A call
//! that is never routed (404, bad request) is never recorded: its steps stay local.
//! Timers, media, the agent leg and BYEs are the task's own (the machine's effects are only
//! the change and a refused INVITE's status; see `state_machines::call::CallEffect`).

use super::ports::{CallEvent, CallState, CallStore, CallTransition, StoreError};
use state_machines::call::{self, CallEffect};
use state_machines::InvalidTransition;
use std::sync::Arc;
use std::time::SystemTime;

/// Who the call is, as the store records it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Our id of the call.
    pub id: String,
    /// The caller's SIP Call-ID.
    pub sip_call_id: String,
    /// The org that owns the dialled number.
    pub org: String,
    /// The caller's From URI.
    pub from: String,
    /// The dialled number.
    pub to: String,
    /// A call we placed (`from` is our caller id, `to` the party called).
    pub outbound: bool,
}

/// Why a step was not taken.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The machine refuses the event in this state (a late or duplicate report): nothing
    /// changed, the call goes on.
    #[error(transparent)]
    Refused(#[from] InvalidTransition),
    /// The store did not commit the step: nothing was acknowledged, and the call must end.
    #[error("the call store refused the step")]
    Store(#[from] StoreError),
}

/// One call's machine and the store that persists it.
pub struct Lifecycle {
    store: Arc<dyn CallStore>,
    identity: Option<Identity>,
    state: CallState,
}

impl Lifecycle {
    /// A call that has just arrived (ringing), not recorded yet.
    pub fn new(store: Arc<dyn CallStore>) -> Self {
        Self {
            store,
            identity: None,
            state: call::start().0,
        }
    }

    /// Where the call stands (as committed).
    pub fn state(&self) -> CallState {
        self.state
    }

    /// Whether the call has ended.
    pub fn is_over(&self) -> bool {
        self.state.is_terminal()
    }

    /// The call's identity, once recorded.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Records the call's start (ringing); from now on every step is committed.
    pub async fn begin(&mut self, identity: Identity) -> Result<(), StoreError> {
        self.identity = Some(identity);
        self.commit(None, self.state, None).await
    }

    /// Steps the machine and commits the step; returns the effects to act on.
    pub async fn step(
        &mut self,
        event: CallEvent,
        detail: Option<String>,
    ) -> Result<Vec<CallEffect>, StepError> {
        let (next, effects) = call::step(self.state, event)?;
        self.commit(Some(event), next, detail).await?;
        self.state = next;
        Ok(effects)
    }

    /// Ends the call with `event` unless it has ended already; returns the effects (none
    /// when it had ended). The call is over here even if the store refuses the end (the
    /// refusal is logged: there is nothing left to undo).
    pub async fn end(&mut self, event: CallEvent, detail: Option<String>) -> Vec<CallEffect> {
        if self.is_over() {
            return Vec::new();
        }
        let (next, effects) = match call::step(self.state, event) {
            Ok(stepped) => stepped,
            Err(refused) => {
                // An end the machine does not take in this state (a bug): fail instead.
                tracing::warn!(%refused, "ending the call as failed");
                call::step(self.state, CallEvent::Fail).expect("every live state can fail")
            }
        };
        let _ = self.commit(Some(event), next, detail).await;
        self.state = next;
        effects
    }

    async fn commit(
        &self,
        event: Option<CallEvent>,
        state: CallState,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(who) = &self.identity else {
            return Ok(());
        };
        let transition = CallTransition {
            call_id: who.id.clone(),
            sip_call_id: who.sip_call_id.clone(),
            org: who.org.clone(),
            from: who.from.clone(),
            to: who.to.clone(),
            outbound: who.outbound,
            event,
            state,
            detail,
            at: SystemTime::now(),
        };
        let result = self.store.record(transition).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, call = %who.id, ?event, "call store refused a step");
        }
        result
    }
}

/// The status a refusing step answers the INVITE with, from its effects.
pub fn reject_status(effects: &[CallEffect]) -> Option<u16> {
    effects.iter().find_map(|e| match e {
        CallEffect::RejectInvite { status } => Some(*status),
        _ => None,
    })
}
