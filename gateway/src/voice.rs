//! The gateway's adapters of the voice crate's ports, and the SIP listener's start.
//!
//! ```text
//!  SIP INVITE ─▶ voice::ua ─▶ CallRouter ─▶ voice_routes (DID → org, app)
//!                    │
//!                    └─▶ CallStore ─▶ committer: WriteOp::CallTransition
//!                                     (state_machines::call::step, calls + call_history
//!                                      + dartwing.call.state_changed.v1, one transaction)
//!                         ◀── acknowledged after COMMIT; only then does the UA send 200
//!  REGISTER ─▶ Registrar ─▶ sip_agents (HA1) ; bindings in this node's memory
//! ```
//!
//! Registrations live in memory on the node that took them (an agent phone re-registers
//! every few minutes); sharing them across nodes is future work, noted in the README.

use crate::commit::{Committer, WriteOp, WriteResult};
use crate::config::SipConfig;
use crate::db::{calls, Db};
use state_machines::call::CallEvent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voice::ua::{
    self, AdmissionConfig, Binding, BoxFuture, CallRouter, CallState, CallStore, EndCause,
    InMemoryRegistrar, Registrar, RegistrarError, Route, RouteError, SipServer, StoreError,
    UaConfig, UaPorts,
};

/// Dialled number → org and application, from `voice_routes`.
pub struct DbRouter {
    db: Db,
}

impl CallRouter for DbRouter {
    fn route<'a>(&'a self, number: &'a str) -> BoxFuture<'a, Result<Option<Route>, RouteError>> {
        Box::pin(async move {
            let found = calls::find_route(&self.db.pool, number)
                .await
                .map_err(|e| RouteError::Unavailable {
                    source: Box::new(e),
                })?;
            Ok(found.map(|r| Route {
                org: r.org_id,
                app: r.app,
            }))
        })
    }
}

/// Call transitions through the committer (acknowledged after COMMIT).
pub struct DbCallStore {
    committer: Committer,
    /// The last state the user agent reported per live call: an `Answered` after
    /// `Transferring` is the transfer failing, not a second answer.
    last: Mutex<HashMap<String, CallState>>,
}

/// The call machine's event for what the user agent reported, and its detail.
pub fn event_for(
    previous: Option<CallState>,
    state: CallState,
    cause: Option<EndCause>,
) -> (Option<CallEvent>, Option<String>) {
    match (state, cause) {
        (CallState::Ringing, _) => (None, None),
        (CallState::Answered, _) if previous == Some(CallState::Transferring) => {
            (Some(CallEvent::TransferFailed), None)
        }
        (CallState::Answered, _) => (Some(CallEvent::Answer), None),
        (CallState::Transferring, _) => (Some(CallEvent::Transfer), None),
        (CallState::Bridged, _) => (Some(CallEvent::TransferAnswered), None),
        (CallState::Ended, cause) => match cause {
            Some(EndCause::RemoteHangup) => (Some(CallEvent::CallerHangup), None),
            Some(EndCause::LocalHangup) => (Some(CallEvent::CalleeHangup), None),
            Some(EndCause::AgentHangup) => {
                (Some(CallEvent::CalleeHangup), Some("agent hung up".into()))
            }
            Some(EndCause::Cancelled) => (Some(CallEvent::Cancel), None),
            Some(EndCause::MaxDuration) => (Some(CallEvent::MaxDuration), None),
            Some(EndCause::MediaTimeout) => (Some(CallEvent::MediaTimeout), None),
            Some(EndCause::Rejected { status }) if status == 486 || status == 503 => {
                (Some(CallEvent::Busy), Some(format!("status {status}")))
            }
            Some(EndCause::Rejected { status }) => (
                Some(CallEvent::Reject { status }),
                Some(format!("status {status}")),
            ),
            Some(EndCause::NoAck) => (Some(CallEvent::Fail), Some("no ACK for our 200".into())),
            Some(EndCause::StoreFailed) => (
                Some(CallEvent::Fail),
                Some("store did not acknowledge".into()),
            ),
            Some(EndCause::Shutdown) => (Some(CallEvent::Fail), Some("gateway shut down".into())),
            None => (Some(CallEvent::Fail), None),
        },
    }
}

impl CallStore for DbCallStore {
    fn record(&self, t: ua::CallTransition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let previous = {
                let mut last = self.last.lock().expect("not poisoned");
                if t.state == CallState::Ended {
                    last.remove(&t.call_id)
                } else {
                    last.insert(t.call_id.clone(), t.state)
                }
            };
            let (event, detail) = event_for(previous, t.state, t.cause);
            let op = WriteOp::CallTransition(calls::CallTransition {
                call_id: t.call_id,
                org_id: t.org,
                sip_call_id: t.sip_call_id,
                from: t.from,
                to: t.to,
                event,
                detail,
            });
            match self.committer.submit_wait(op).await {
                Ok(WriteResult::Call(_)) => Ok(()),
                Ok(_) => unreachable!("CallTransition answers Call"),
                Err(e) => Err(StoreError::Unavailable {
                    source: Box::new(e),
                }),
            }
        })
    }
}

/// Agent credentials (HA1) from `sip_agents`; registrations in memory.
pub struct DbRegistrar {
    db: Db,
    bindings: InMemoryRegistrar,
}

impl Registrar for DbRegistrar {
    fn ha1<'a>(
        &'a self,
        realm: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistrarError>> {
        Box::pin(async move {
            let found = calls::agent(&self.db.pool, user).await.map_err(|e| {
                RegistrarError::Unavailable {
                    source: Box::new(e),
                }
            })?;
            Ok(found.and_then(|(_org, r, ha1)| (r == realm).then_some(ha1)))
        })
    }

    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>> {
        self.bindings.bind(binding)
    }

    fn unbind_all<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RegistrarError>> {
        self.bindings.unbind_all(user)
    }

    fn bindings<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>> {
        self.bindings.bindings(user)
    }
}

/// Why voice did not start.
#[derive(Debug, thiserror::Error)]
pub enum VoiceStartError {
    /// `sip.addr` is not IP:PORT (config validation normally catches it first).
    #[error("sip.addr `{0}` is not IP:PORT")]
    Addr(String),
    /// The listeners could not bind.
    #[error("SIP: {0}")]
    Ua(#[from] ua::StartError),
}

/// The user agent's settings from ours.
pub fn ua_config(sip: &SipConfig, bind: SocketAddr) -> UaConfig {
    UaConfig {
        bind,
        realm: sip.realm.clone(),
        rtp_ports: sip.rtp_port_min..=sip.rtp_port_max,
        max_call_duration: Duration::from_secs(sip.max_call_secs),
        admission: AdmissionConfig {
            max_calls: sip.max_calls as usize,
            per_source_rate: sip.invites_per_second_per_source,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    }
}

/// Starts SIP (UDP and TCP on `sip.addr`) over this gateway's storage; `None` when
/// `sip.addr` is empty.
pub async fn start(
    sip: &SipConfig,
    db: &Db,
    committer: &Committer,
) -> Result<Option<Arc<SipServer>>, VoiceStartError> {
    if sip.addr.trim().is_empty() {
        return Ok(None);
    }
    let bind: SocketAddr = sip
        .addr
        .parse()
        .map_err(|_| VoiceStartError::Addr(sip.addr.clone()))?;
    let ports = UaPorts {
        router: Arc::new(DbRouter { db: db.clone() }),
        store: Arc::new(DbCallStore {
            committer: committer.clone(),
            last: Mutex::default(),
        }),
        registrar: Some(Arc::new(DbRegistrar {
            db: db.clone(),
            bindings: InMemoryRegistrar::default(),
        })),
    };
    let server = ua::start_with(ua_config(sip, bind), ports).await?;
    tracing::info!(addr = %server.local_addr(), "SIP listening (UDP and TCP)");
    Ok(Some(Arc::new(server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_maps_to_a_machine_event() {
        use CallEvent as E;
        assert_eq!(event_for(None, CallState::Ringing, None).0, None);
        assert_eq!(
            event_for(Some(CallState::Ringing), CallState::Answered, None).0,
            Some(E::Answer)
        );
        assert_eq!(
            event_for(Some(CallState::Transferring), CallState::Answered, None).0,
            Some(E::TransferFailed)
        );
        assert_eq!(
            event_for(None, CallState::Ended, Some(EndCause::RemoteHangup)).0,
            Some(E::CallerHangup)
        );
        assert_eq!(
            event_for(
                None,
                CallState::Ended,
                Some(EndCause::Rejected { status: 404 })
            )
            .0,
            Some(E::Reject { status: 404 })
        );
        assert_eq!(
            event_for(
                None,
                CallState::Ended,
                Some(EndCause::Rejected { status: 503 })
            )
            .0,
            Some(E::Busy)
        );
    }
}
