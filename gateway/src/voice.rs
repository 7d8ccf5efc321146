//! The gateway's adapters of the voice crate's ports, and the SIP listener's start.
//!
//! ```text
//!  SIP INVITE ─▶ voice::ua ─▶ CallRouter ─▶ voice_routes (DID → org, app)
//!                    │
//!                    └─▶ CallStore ─▶ committer: WriteOp::CallTransition (the UA's machine
//!                                     event, re-stepped on the stored state: calls +
//!                                     call_history + dartwing.call.state_changed.v1, one
//!                                     transaction)
//!                         ◀── acknowledged after COMMIT; only then does the UA act on it
//!  REGISTER ─▶ Registrar ─▶ sip_agents (HA1, per org) ; sip_registrations (every node)
//! ```
//!
//! The `receptionist` application gets its engines here ([`crate::receptionist`]): local
//! speech (whisper loaded on the first such call), the database store, the local responder.
//!
//! Routes and agent credentials are read through bounded one-second caches: an INVITE or
//! REGISTER flood costs a query per distinct number or address per second, not per
//! request. Registrations are rows, so an agent registered on one node is reached by a call
//! that arrives at another.
//!
//! Every call row carries the node that ran it (`sip.node_id`); at start-up the calls this
//! node left live (it crashed), and any node's calls older than the longest call can last,
//! are ended with the `interrupt` event, cause `interrupted` ([`end_interrupted`]).

use crate::cache::TtlCache;
use crate::commit::{Committer, WriteOp, WriteResult};
use crate::config::SipConfig;
use crate::db::{calls, sip_agents, Db};
use state_machines::call::CallEvent;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use voice::ua::{
    self, AdmissionConfig, AgentCredentials, Binding, BoxFuture, CallRouter, CallStore, Registrar,
    RegistrarError, Route, RouteError, SipServer, StoreError, UaConfig, UaPorts,
};

/// How long a route (or an org's agent credentials) is served from memory: a route or
/// agent changed by the CLI reaches every node within this long.
const LOOKUP_TTL: Duration = Duration::from_secs(1);
/// Most numbers (or agent addresses) remembered at once; misses included, so a flood of
/// unrouted numbers costs one query per number per TTL and bounded memory.
const LOOKUP_CAPACITY: usize = 10_000;

/// Dialled number → org and application, from `voice_routes` (and the org's settings),
/// remembered for [`LOOKUP_TTL`] in a bounded cache.
pub struct DbRouter {
    db: Db,
    cache: TtlCache<Option<Route>>,
}

impl DbRouter {
    /// A router over `db` with an empty cache.
    pub fn new(db: Db) -> DbRouter {
        DbRouter {
            db,
            cache: TtlCache::new(LOOKUP_TTL, LOOKUP_CAPACITY),
        }
    }

    async fn lookup(&self, number: &str) -> Result<Option<Route>, crate::db::StoreError> {
        let Some(r) = calls::find_route(&self.db.pool, number).await? else {
            return Ok(None);
        };
        // An org switched out of voice has no numbers: the caller gets what an unrouted
        // number gets.
        let settings = crate::db::org_settings::get(&self.db.pool, &r.org_id).await?;
        if !settings.enabled("voice")
            || (r.app.trim() == "receptionist" && !settings.enabled("receptionist"))
        {
            tracing::info!(org_id = %r.org_id, app = %r.app, "call to an org whose voice (or receptionist) feature is off");
            return Ok(None);
        }
        // A receptionist route without an agent of its own hands over to the org's
        // receptionist agent (`receptionist set --agent`).
        let agent = match (&r.agent, r.app.trim()) {
            (None, "receptionist") => {
                crate::db::receptionist::settings(&self.db.pool, &r.org_id)
                    .await?
                    .agent
            }
            _ => r.agent,
        };
        Ok(Some(Route {
            org: r.org_id,
            app: r.app,
            agent,
            allow_refer: r.allow_refer,
        }))
    }
}

impl CallRouter for DbRouter {
    fn route<'a>(&'a self, number: &'a str) -> BoxFuture<'a, Result<Option<Route>, RouteError>> {
        Box::pin(async move {
            if let Some(known) = self.cache.get(number) {
                return Ok(known);
            }
            let found = self
                .lookup(number)
                .await
                .map_err(|e| RouteError::Unavailable {
                    source: Box::new(e),
                })?;
            self.cache.insert(number, found.clone());
            Ok(found)
        })
    }
}

/// Call steps through the committer (acknowledged after COMMIT). The user agent's machine
/// and the stored one must agree: a step the stored state refuses is an error the call
/// acts on (it ends), never a live call whose stored state silently differs.
pub struct DbCallStore {
    committer: Committer,
    /// This node, written on every call it starts (see [`end_interrupted`]).
    node: String,
}

impl CallStore for DbCallStore {
    fn record(&self, t: ua::CallTransition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let op = WriteOp::CallTransition(calls::CallTransition {
                call_id: t.call_id,
                org_id: t.org,
                sip_call_id: t.sip_call_id,
                from: t.from,
                to: t.to,
                outbound: t.outbound,
                event: t.event,
                detail: t.detail,
                node: Some(self.node.clone()),
            });
            match self.committer.submit_wait(op).await {
                Ok(WriteResult::Call(calls::CallRecorded::Stored { state }))
                    if state == t.state =>
                {
                    Ok(())
                }
                Ok(WriteResult::Call(
                    calls::CallRecorded::Stored { state } | calls::CallRecorded::Refused { state },
                )) => Err(StoreError::Diverged {
                    stored: state,
                    stepped: t.state,
                }),
                Ok(_) => unreachable!("CallTransition answers Call"),
                Err(e) => Err(StoreError::Unavailable {
                    source: Box::new(e),
                }),
            }
        })
    }

    fn lag(&self) -> Duration {
        self.committer.lag()
    }
}

/// Ends, with the `interrupt` event (cause `interrupted`), every call this node left live
/// (it stopped without ending them: a crash, a kill), and every call of any node that is
/// still live though it started more than `max_call` (plus five minutes of ringing and
/// slack) ago: no node can still be running it, since the longest call is hung up at
/// `max_call` — its node died and did not come back. Returns how many.
pub async fn end_interrupted(
    db: &Db,
    committer: &Committer,
    node: &str,
    max_call: Duration,
) -> Result<usize, crate::commit::CommitError> {
    let started_before =
        crate::db::now_ms() - i64::try_from(max_call.as_millis()).unwrap_or(i64::MAX / 2) - 300_000;
    let live = calls::live_on_node(&db.pool, node, started_before)
        .await
        .map_err(crate::commit::CommitError::from)?;
    let n = live.len();
    for mut t in live {
        t.event = Some(CallEvent::Interrupt);
        t.detail = Some("left live by a gateway that stopped; ended at start-up".into());
        committer.submit_wait(WriteOp::CallTransition(t)).await?;
    }
    if n > 0 {
        tracing::warn!(
            calls = n,
            node,
            "ended calls left live by the last run (interrupted)"
        );
    }
    Ok(n)
}

/// This node's name in `calls.node`: `sip.node_id`, or the host name and SIP address.
pub fn node_id(sip: &SipConfig) -> String {
    if !sip.node_id.trim().is_empty() {
        return sip.node_id.trim().to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    format!("{}/{}", host.trim(), sip.addr)
}

/// Agent credentials (HA1) from `sip_agents`, remembered for [`LOOKUP_TTL`] in a bounded
/// cache (a REGISTER flood costs one query per address per TTL); registrations in
/// `sip_registrations`, so every node reaches every registered agent.
pub struct DbRegistrar {
    db: Db,
    agents: TtlCache<Option<AgentCredentials>>,
}

impl DbRegistrar {
    /// A registrar over `db` with an empty cache.
    pub fn new(db: Db) -> DbRegistrar {
        DbRegistrar {
            db,
            agents: TtlCache::new(LOOKUP_TTL, LOOKUP_CAPACITY),
        }
    }
}

fn registrar_error(e: crate::db::StoreError) -> RegistrarError {
    RegistrarError::Unavailable {
        source: Box::new(e),
    }
}

impl Registrar for DbRegistrar {
    fn agent<'a>(
        &'a self,
        user: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentCredentials>, RegistrarError>> {
        Box::pin(async move {
            // The domain matters only through its label (the rest may be anything).
            let label = ua::domain_label(domain).unwrap_or_default();
            let key = format!("{user}\n{label}");
            if let Some(known) = self.agents.get(&key) {
                return Ok(known);
            }
            let candidates = sip_agents::candidates(&self.db.pool, user)
                .await
                .map_err(registrar_error)?;
            let found = ua::pick_agent(candidates, domain);
            self.agents.insert(&key, found.clone());
            Ok(found)
        })
    }

    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>> {
        Box::pin(async move {
            sip_agents::bind(&self.db.pool, &binding)
                .await
                .map_err(registrar_error)
        })
    }

    fn unbind_all<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>> {
        Box::pin(async move {
            sip_agents::unbind_all(&self.db.pool, org, user)
                .await
                .map_err(registrar_error)
        })
    }

    fn bindings<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>> {
        Box::pin(async move {
            sip_agents::bindings(&self.db.pool, org, user)
                .await
                .map_err(registrar_error)
        })
    }
}

/// File descriptors one call may hold: RTP and RTCP sockets of the caller's leg and of an
/// agent leg, and a SIP TCP connection.
const FDS_PER_CALL: u64 = 5;
/// Descriptors kept for everything else: HTTP clients, the database, Kafka, files.
const FDS_RESERVED: u64 = 1024;

/// The open-file limit `max_calls` needs (see [`FDS_PER_CALL`]).
pub fn fds_needed(max_calls: u64) -> u64 {
    max_calls * FDS_PER_CALL + FDS_RESERVED
}

/// The most calls a limit of `fds` descriptors carries.
pub fn calls_that_fit(fds: u64) -> u64 {
    fds.saturating_sub(FDS_RESERVED) / FDS_PER_CALL
}

/// Raises the soft open-file limit to the hard one and checks it against `max_calls`: too
/// low, and a warning says how many calls fit. Returns the limit in force.
pub fn raise_fd_limit(max_calls: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if got != 0 {
        tracing::warn!("cannot read the open-file limit");
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let limit: u64 = lim.rlim_cur;
    let needed = fds_needed(max_calls);
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            calls_that_fit = calls_that_fit(limit),
            "the open-file limit is too low for sip.max_calls: raise it (ulimit -n, LimitNOFILE=) \
             or set sip.max_calls to what fits"
        );
    } else {
        tracing::info!(limit, max_calls, "open-file limit checked");
    }
    limit
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
        agent_ring_timeout: Duration::from_secs(sip.agent_ring_secs.max(1)),
        admission: AdmissionConfig {
            max_calls: sip.max_calls as usize,
            per_source_rate: sip.invites_per_second_per_source,
            max_calls_per_source: sip.max_calls_per_source as usize,
            max_store_lag: Duration::from_millis(sip.max_store_lag_ms),
            // Checked by the config's validation.
            trusted: ua::Cidr::parse_list(&sip.trusted_sources).unwrap_or_default(),
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
    raise_fd_limit(u64::from(sip.max_calls));
    let node = node_id(sip);
    let max_call = Duration::from_secs(sip.max_call_secs);
    if let Err(e) = end_interrupted(db, committer, &node, max_call).await {
        tracing::warn!(error = %e, "could not end the calls left live by the last run");
    }
    let ports = UaPorts {
        router: Arc::new(DbRouter::new(db.clone())),
        store: Arc::new(DbCallStore {
            committer: committer.clone(),
            node,
        }),
        registrar: Some(Arc::new(DbRegistrar::new(db.clone()))),
    };
    let server = ua::start_with(ua_config(sip, bind), ports).await?;
    let model_timeout = Duration::from_millis(sip.responder_timeout_ms.clamp(100, 60_000));
    server.host_receptionist(Arc::new(voice::receptionist::Host {
        speech: Arc::new(crate::receptionist::LocalSpeech::new(
            crate::receptionist::LocalSpeech::model_path(&sip.whisper_model),
            sip.tts_voice.clone(),
        )
        .with_vocabulary_prompt(sip.whisper_prompt)),
        store: Arc::new(crate::receptionist::DbReceptionistStore {
            db: db.clone(),
            committer: committer.clone(),
        }),
        responder: Arc::new(voice::receptionist::responder::LocalResponder),
        model: match crate::receptionist::chat::OpenAiChat::new(model_timeout) {
            Ok(chat) => Some(Arc::new(chat)),
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for remote responders: every org answers locally");
                None
            }
        },
        config: voice::receptionist::ReceptionistConfig {
            reprompt_after: Duration::from_secs(sip.reprompt_secs.max(1)),
            voicemail_max: Duration::from_secs(sip.voicemail_max_secs.max(5)),
            // The adapter's own timeouts come first; this only catches an adapter that hangs.
            model_wait: model_timeout + Duration::from_secs(1),
            early_end: sip.early_end,
            ..Default::default()
        },
        runtime: tokio::runtime::Handle::current(),
    }));
    tracing::info!(addr = %server.local_addr(), "SIP listening (UDP and TCP)");
    Ok(Some(Arc::new(server)))
}

/// The dialer of outbound calls, when SIP runs and `sip.trunk` names a trunk.
pub fn dialer(
    sip: &SipConfig,
    server: Option<&Arc<SipServer>>,
    committer: &Committer,
) -> Option<Arc<crate::voice_out::Dialer>> {
    let trunk = sip.trunk.trim().parse().ok()?;
    Some(Arc::new(crate::voice_out::Dialer {
        sip: Arc::clone(server?),
        speech: Arc::new(crate::receptionist::LocalSpeech::new(
            crate::receptionist::LocalSpeech::model_path(&sip.whisper_model),
            sip.tts_voice.clone(),
        )),
        committer: committer.clone(),
        trunk,
        ring: Duration::from_secs(sip.ring_secs),
        max_call: Duration::from_secs(sip.outbound_max_call_secs),
        calls_per_second: sip.calls_per_second,
        account: sip.trunk_account(),
        thanks: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit_and_sized_for_the_calls() {
        assert_eq!(calls_that_fit(fds_needed(2_000)), 2_000);
        assert_eq!(calls_that_fit(100), 0);
        let limit = raise_fd_limit(1);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads the limit into the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(
            lim.rlim_cur, lim.rlim_max,
            "soft limit raised to the hard one"
        );
        assert_eq!(limit, lim.rlim_cur);
    }
}
