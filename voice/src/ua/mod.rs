//! The user agent that answers calls: a dispatcher owning transactions, dialogs and
//! admission, and one task per call owning its dialog. It reaches the rest of the system
//! through ports that `gateway` implements: [`CallRouter`] (dialled number → org and
//! application), [`CallStore`] (every call transition, durable before SIP acknowledges it)
//! and, for agent phones, [`Registrar`] (HA1 credentials and bindings).
//!
//! Starting it (what `gateway serve` does, with its own adapters):
//!
//! ```no_run
//! # async fn f() -> Result<(), voice::ua::StartError> {
//! use std::sync::Arc;
//! use voice::ua::{start_with, InMemoryCallStore, InMemoryRegistrar, StaticRouter, UaConfig, UaPorts};
//! let ports = UaPorts {
//!     router: Arc::new(StaticRouter::new().with("100", "acme", "echo")),
//!     store: Arc::new(InMemoryCallStore::new()),
//!     registrar: Some(Arc::new(InMemoryRegistrar::new())),
//! };
//! let config = UaConfig { bind: "0.0.0.0:5060".parse().unwrap(), ..UaConfig::default() };
//! let server = start_with(config, ports).await?;
//! println!("SIP on {} (UDP and TCP), {} calls", server.local_addr(), server.active_calls());
//! server.shutdown(); // drain: 503 to new calls, BYE to the others
//! # Ok(()) }
//! ```
//!
//! The running [`SipServer`] also takes call control from outside: [`SipServer::hang_up`]
//! and [`SipServer::transfer`] by SIP Call-ID, and places calls ([`SipServer::dial`],
//! [`outbound`]: an INVITE to a trunk, the application on the answered call).
//!
//! The call's state is `state_machines::call`, stepped by the call task's [`lifecycle`]
//! and committed through [`CallStore`] before the task acts on a step.
//!
//! Invariant: a caller gets 200 OK only after the store committed `answer`, a BYE its 200
//! only after the end is committed, a REFER its 202 only after the transfer is; a
//! retransmitted INVITE is absorbed by its transaction (kept 64·T1 after the final
//! response) and never starts a second call.
//!
//! On a public address (see the README's voice section): admission refuses untrusted
//! sources (403), too many calls overall or per source (503); a refused INVITE frees its
//! slot when its final goes out; RTP starts only after the ACK and only toward the latched
//! source or the signalling host; REFER needs the route's permission; digest nonces are
//! bound to the client's IP and each `nc` is good once; failed authentications are
//! throttled; the server transaction table and REGISTERs in flight are bounded.
//!
//! Media: each answered call runs a media session with the route's application
//! ([`media_leg`]); its Hangup and Transfer actions and media timeouts end or transfer the
//! call; DTMF by SIP INFO reaches the application like RFC 4733 digits; a transfer
//! ([`transfer`]) bridges the caller's and the agent's RTP; an INVITE without SDP (late
//! offer) gets our offer in the 200 and the media starts on the answer in the ACK. Not yet:
//! agents are reached over UDP only.

pub mod agent_leg;
pub mod apps;
pub mod call;
pub mod client;
pub mod dialog;
pub mod dispatcher;
pub mod dtmf_info;
mod in_dialog;
pub mod lifecycle;
pub mod limits;
pub mod media_leg;
pub mod outbound;
pub mod ports;
pub mod register;
pub mod registrar;
pub mod transfer;

pub use limits::{AdmissionConfig, Cidr};
pub use ports::{
    BoxFuture, CallEvent, CallRouter, CallState, CallStore, CallTransition, EndCause,
    InMemoryCallStore, Route, RouteError, StaticRouter, StoreError,
};
pub use registrar::{
    domain_label, pick_agent, AgentCredentials, Binding, InMemoryRegistrar, Registrar,
    RegistrarError,
};

use crate::sip::timers::Timers;
use crate::sip::transport::{self, Transport, TransportConfig, TransportError, TransportStats};
use dispatcher::Dispatcher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Settings of the user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// UDP and TCP listen address (port 0: any free port, the same for both).
    pub bind: SocketAddr,
    /// The address written into Via, Contact and SDP; by default the bound address, or,
    /// when bound to a wildcard, the local address the OS routes toward the caller.
    pub advertised_ip: Option<IpAddr>,
    pub transport: TransportConfig,
    pub admission: AdmissionConfig,
    pub timers: Timers,
    /// A call is ended with BYE after this long.
    pub max_call_duration: Duration,
    /// How long a call rings (180) before it is answered.
    pub answer_delay: Duration,
    /// The realm of the challenge to a REGISTER that names no agent (each agent is
    /// challenged in the realm its HA1 was made in; see [`registrar`]).
    pub realm: String,
    /// RTP ports (even ones are used) for calls and agent legs.
    pub rtp_ports: std::ops::RangeInclusive<u16>,
    /// The IP the RTP sockets bind to (the SIP bind IP when None).
    pub rtp_bind_ip: Option<IpAddr>,
    pub media: crate::media::MediaConfig,
    /// Threads that drive the calls' RTP (one per core is the media side's advice).
    pub media_workers: usize,
    /// How long a shutdown waits for calls to end after sending their BYEs.
    pub drain_timeout: Duration,
    /// How long a transfer lets the agent's phone ring before it CANCELs and reports
    /// "no answer" to the application (capped by Timer B, 64·T1).
    pub agent_ring_timeout: Duration,
}

impl Default for UaConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 5060)),
            advertised_ip: None,
            transport: TransportConfig::default(),
            admission: AdmissionConfig::default(),
            timers: Timers::default(),
            max_call_duration: Duration::from_secs(4 * 3600),
            answer_delay: Duration::ZERO,
            realm: "dartwing".to_owned(),
            rtp_ports: 20_000..=39_999,
            rtp_bind_ip: None,
            media: crate::media::MediaConfig::default(),
            media_workers: 2,
            drain_timeout: Duration::from_secs(5),
            agent_ring_timeout: Duration::from_secs(20),
        }
    }
}

/// Why the user agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot read the bound address")]
    LocalAddr(#[source] std::io::Error),
    #[error("RTP port range")]
    RtpPorts(#[source] crate::media::PortPoolError),
    #[error("cannot start the media workers")]
    MediaWorkers(#[source] crate::media::MediaError),
    #[error("no randomness from the OS for the digest secret")]
    Secret(#[source] getrandom::Error),
}

/// How long a digest nonce is good for (a phone answers a challenge at once).
const NONCE_SECS: u64 = 60;
/// Failed authentications a minute per source IP and per user before refusing outright.
const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// Replay and guessing defences of digest authentication.
pub struct AuthGuard {
    /// The `nc` last used with each live nonce.
    pub counts: crate::sip::digest::NonceCounts,
    /// Failures per source and per user.
    pub throttle: crate::sip::digest::AuthThrottle,
}

/// What the dispatcher and every call share.
pub struct Shared {
    pub config: UaConfig,
    pub router: Arc<dyn CallRouter>,
    pub store: Arc<dyn CallStore>,
    /// Agent credentials and bindings; without it REGISTER is answered 405.
    pub registrar: Option<Arc<dyn Registrar>>,
    /// RTP ports for the calls' media sessions.
    pub rtp_pool: crate::media::PortPool,
    pub media_workers: crate::media::MediaWorkers,
    /// The routes' applications, each parsed (its WAV read) once.
    pub apps: apps::AppCache,
    /// Digest nonces, signed with a secret drawn from the OS's CSPRNG at start.
    pub nonces: crate::sip::digest::Nonces,
    pub auth: std::sync::Mutex<AuthGuard>,
    /// The bound address (with the chosen port).
    pub local: SocketAddr,
    pub active_calls: AtomicUsize,
}

impl Shared {
    /// The IP to advertise to a peer at `toward`.
    pub fn advertised_ip(&self, toward: SocketAddr) -> IpAddr {
        if let Some(ip) = self.config.advertised_ip {
            return ip;
        }
        if !self.local.ip().is_unspecified() {
            return self.local.ip();
        }
        route_probe(toward).unwrap_or(self.local.ip())
    }

    /// Our Via sent-by and Contact host:port toward a peer.
    pub fn via_addr(&self, toward: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.advertised_ip(toward), self.local.port())
    }
}

/// The local address the OS would use toward `peer` (a connected UDP socket sends nothing).
fn route_probe(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(peer).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// A running user agent; dropping it stops the listeners and the dispatcher.
pub struct SipServer {
    shared: Arc<Shared>,
    transport: Transport,
    commands: mpsc::Sender<dispatcher::Command>,
    shutdown: watch::Sender<bool>,
}

impl SipServer {
    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Calls admitted and not yet ended.
    pub fn active_calls(&self) -> usize {
        self.shared.active_calls.load(Ordering::Relaxed)
    }

    /// What the listeners accepted, refused and dropped.
    pub fn stats(&self) -> &TransportStats {
        &self.transport.stats
    }

    /// Ends the call with this SIP Call-ID from our side, as an application hangup does:
    /// BYE when answered, 480 while ringing. Unknown ids are ignored.
    pub async fn hang_up(&self, sip_call_id: &str) {
        let command = dispatcher::Command::HangUp {
            sip_call_id: sip_call_id.to_owned(),
            event: CallEvent::CalleeHangup,
        };
        let _ = self.commands.send(command).await;
    }

    /// Transfers the call with this SIP Call-ID to a registered agent (B2BUA), as the
    /// application's Transfer action does. Unknown ids are ignored.
    pub async fn transfer(&self, sip_call_id: &str, agent: &str) {
        let command = dispatcher::Command::Transfer {
            sip_call_id: sip_call_id.to_owned(),
            agent: agent.to_owned(),
        };
        let _ = self.commands.send(command).await;
    }

    /// Places a call through a trunk and runs `dial.app` on it once answered (see
    /// [`outbound`]); resolves when it is answered or why it was not.
    pub async fn dial(&self, dial: outbound::Dial) -> outbound::Outcome {
        let core = dispatcher::CoreHandle {
            commands: self.commands.clone(),
            transport: self.transport.clone(),
        };
        outbound::place(Arc::clone(&self.shared), core, dial).await
    }

    /// Gives the `receptionist` application its engines (speech, store, responder); until
    /// then a route to it refuses calls (500).
    pub fn host_receptionist(&self, host: Arc<crate::receptionist::Host>) {
        self.shared.apps.attach_receptionist(host);
    }

    /// Starts a drain: new calls get 503, calls in progress are ended with BYE (cause
    /// `Shutdown`); the listeners stop once the calls are gone or `drain_timeout` passed.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for SipServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The ports the user agent is started with.
pub struct UaPorts {
    pub router: Arc<dyn CallRouter>,
    pub store: Arc<dyn CallStore>,
    /// Optional: without it, REGISTER gets 405.
    pub registrar: Option<Arc<dyn Registrar>>,
}

/// Binds the listeners and starts the dispatcher, without a registrar.
pub async fn start(
    config: UaConfig,
    router: Arc<dyn CallRouter>,
    store: Arc<dyn CallStore>,
) -> Result<SipServer, StartError> {
    let ports = UaPorts {
        router,
        store,
        registrar: None,
    };
    start_with(config, ports).await
}

/// Binds the listeners and starts the dispatcher.
pub async fn start_with(config: UaConfig, ports: UaPorts) -> Result<SipServer, StartError> {
    let (udp, tcp) = transport::bind(config.bind).await?;
    let local = udp.local_addr().map_err(StartError::LocalAddr)?;
    let mut local_vias = vec![local];
    if let Some(ip) = config.advertised_ip {
        local_vias.push(SocketAddr::new(ip, local.port()));
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (stop_listeners, listeners_rx) = watch::channel(false);
    let (inbound_tx, inbound_rx) = mpsc::channel(8192);
    let transport = transport::spawn(
        udp,
        tcp,
        config.transport.clone(),
        local_vias,
        inbound_tx,
        listeners_rx,
    )
    .map_err(StartError::LocalAddr)?;
    let rtp_ip = config.rtp_bind_ip.unwrap_or(local.ip());
    let rtp_pool = crate::media::PortPool::new(rtp_ip, config.rtp_ports.clone())
        .map_err(StartError::RtpPorts)?;
    let media_workers = crate::media::MediaWorkers::new(config.media_workers.max(1))
        .map_err(StartError::MediaWorkers)?;
    let secret = crate::sip::digest::random_secret().map_err(StartError::Secret)?;
    let shared = Arc::new(Shared {
        config,
        router: ports.router,
        store: ports.store,
        registrar: ports.registrar,
        rtp_pool,
        media_workers,
        apps: apps::AppCache::default(),
        nonces: crate::sip::digest::Nonces::new(secret, NONCE_SECS),
        auth: std::sync::Mutex::new(AuthGuard {
            counts: crate::sip::digest::NonceCounts::new(100_000),
            throttle: crate::sip::digest::AuthThrottle::new(AUTH_FAILURES_PER_MINUTE, 100_000),
        }),
        local,
        active_calls: AtomicUsize::new(0),
    });
    let (commands_tx, commands_rx) = mpsc::channel(8192);
    let dispatcher = Dispatcher::new(Arc::clone(&shared), transport.clone(), commands_tx.clone());
    let drain = shared.config.drain_timeout;
    tokio::spawn(dispatcher.run(inbound_rx, commands_rx, shutdown_rx, stop_listeners, drain));
    Ok(SipServer {
        shared,
        transport,
        commands: commands_tx,
        shutdown,
    })
}
