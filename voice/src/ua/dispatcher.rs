//! The dispatcher: one task that owns the server transaction table, the dialog table, the
//! client transaction branches and admission. It never awaits anything slower than a
//! channel send that cannot block (`try_send`); routing and storage happen in call tasks.
//!
//! ```text
//! request ─► known transaction? ── yes ─► resend its last response (retransmission)
//!    │ no
//!    ├─ ACK     ─► INVITE transaction (non-2xx) or dialog (2xx) ─► call task
//!    ├─ CANCEL  ─► INVITE transaction ─► 200 to CANCEL, Cancel to call task (→ 487)
//!    ├─ INVITE without To tag ─► admission (503) ─► 100 Trying ─► new call task
//!    ├─ OPTIONS without To tag ─► 200 with Allow
//!    ├─ REGISTER ─► registrar task (digest, bindings) when a registrar is configured
//!    ├─ with To tag ─► dialog ─► call task, or 481
//!    └─ anything else ─► 405 with Allow
//! response ─► client transaction branch ─► call task
//! ```

use super::call::{self, CallInput, CallSetup};
use super::limits::{Admission, Refused};
use super::ports::CallEvent;
use super::register;
use super::Shared;
use crate::sip::message::{Inbound, Kind};
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::{Peer, Received, Transport};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Server transactions kept at most (each lives 64·T1 = 32 s after its final response): a
/// flood beyond this is dropped unanswered rather than growing the table without bound.
pub const MAX_SERVER_TRANSACTIONS: usize = 200_000;
/// REGISTERs being answered at once (each may wait on the credential store); more get 503.
pub const MAX_REGISTERS_IN_FLIGHT: usize = 64;

/// Methods this user agent answers, for Allow.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER, NOTIFY";

/// A server transaction's key (RFC 3261 §17.2.3): branch, sent-by and method, with ACK
/// and CANCEL looked up under the INVITE's method where they match it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub branch: String,
    pub sent_by: String,
    /// The method's name (rsip's `Method` is not `Hash`).
    pub method: String,
}

impl TxKey {
    fn of(message: &Inbound, method: rsip::Method) -> Self {
        Self {
            branch: message.via.branch.clone(),
            sent_by: message.via.sent_by.clone(),
            method: method.to_string(),
        }
    }
}

/// A dialog's key on our side: Call-ID and our tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub local_tag: String,
}

struct ServerTx {
    peer: Peer,
    /// The last response sent, resent when the request is retransmitted.
    last: Option<Vec<u8>>,
    /// When the final response went out (the entry lives `keep_completed` after that).
    completed_at: Option<Instant>,
    /// When the ACK to an INVITE we refused ourselves came: the transaction is confirmed
    /// and lives only T4 more (RFC 3261 Timer I), not `keep_completed` — a shed INVITE's
    /// entry costs 5 s of memory, not 32.
    acked_at: Option<Instant>,
    created_at: Instant,
    /// The call that answers this transaction, if any.
    call: Option<mpsc::Sender<CallInput>>,
    /// Our To tag on this transaction's responses (for the 200 to a CANCEL).
    local_tag: Option<String>,
}

/// What call tasks ask of the dispatcher.
#[derive(Debug)]
pub enum Command {
    /// Send a response on a server transaction and remember it for retransmissions.
    Respond {
        tx: TxKey,
        bytes: Vec<u8>,
        is_final: bool,
    },
    /// Route responses with this branch to the call (None: stop).
    ClientTx {
        branch: String,
        call: Option<mpsc::Sender<CallInput>>,
    },
    /// The call is over: forget its dialog and free its admission slot.
    Ended { dialog: DialogKey },
    /// End the calls with this SIP Call-ID from our side (BYE, or 480 while ringing).
    HangUp {
        sip_call_id: String,
        /// The ending event (`callee_hangup`).
        event: CallEvent,
    },
    /// Transfer the calls with this SIP Call-ID to a registered agent.
    Transfer { sip_call_id: String, agent: String },
    /// Route in-dialog requests of another dialog (a B2BUA leg) to a call.
    AddDialog {
        key: DialogKey,
        call: mpsc::Sender<CallInput>,
    },
    /// Forget a dialog added with `AddDialog`.
    DropDialog { key: DialogKey },
    /// A call we place (`ua::outbound`): its dialog is a call's (hung up on shutdown, by
    /// `HangUp`, waited for by the drain) without an admission slot; `Ended` forgets it.
    AddCall {
        key: DialogKey,
        call: mpsc::Sender<CallInput>,
    },
}

/// What a call task holds to reach the dispatcher and the sockets.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    pub commands: mpsc::Sender<Command>,
    pub transport: Transport,
}

impl CoreHandle {
    pub async fn respond(&self, tx: &TxKey, bytes: Vec<u8>, is_final: bool) {
        let command = Command::Respond {
            tx: tx.clone(),
            bytes,
            is_final,
        };
        let _ = self.commands.send(command).await;
    }
}

pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    transport: Transport,
    commands_tx: mpsc::Sender<Command>,
    server: HashMap<TxKey, ServerTx>,
    dialogs: HashMap<DialogKey, mpsc::Sender<CallInput>>,
    /// Dialogs of B2BUA legs, routed to the call that opened them (no admission slot).
    legs: HashMap<DialogKey, mpsc::Sender<CallInput>>,
    /// Shutting down: no new calls.
    draining: bool,
    clients: HashMap<String, mpsc::Sender<CallInput>>,
    admission: Admission,
    /// The source IP of each admitted call, for its per-source slot.
    sources: HashMap<DialogKey, std::net::IpAddr>,
    /// Permits of REGISTERs being answered.
    registers: Arc<tokio::sync::Semaphore>,
}

impl Dispatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        transport: Transport,
        commands_tx: mpsc::Sender<Command>,
    ) -> Self {
        let admission = Admission::new(shared.config.admission.clone());
        Self {
            shared,
            transport,
            commands_tx,
            server: HashMap::new(),
            dialogs: HashMap::new(),
            legs: HashMap::new(),
            draining: false,
            clients: HashMap::new(),
            admission,
            sources: HashMap::new(),
            registers: Arc::new(tokio::sync::Semaphore::new(MAX_REGISTERS_IN_FLIGHT)),
        }
    }

    /// Runs until `shutdown`, then drains: new INVITEs get 503, every call is hung up, and
    /// the loop goes on (answering BYE responses) until the calls are gone or `drain` has
    /// passed; then `stop_listeners` is raised.
    pub(crate) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Received>,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
        stop_listeners: watch::Sender<bool>,
        drain: Duration,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_millis(500));
        let mut deadline: Option<Instant> = None;
        loop {
            let drained = deadline.is_some() && self.dialogs.is_empty();
            if drained || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            tokio::select! {
                biased;
                Some(command) = commands.recv() => self.on_command(command),
                Some(received) = inbound.recv() => self.on_message(received),
                _ = sweep.tick() => self.sweep(),
                _ = shutdown.changed(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + drain);
                    self.draining = true;
                    for call in self.dialogs.values() {
                        let _ = call.try_send(CallInput::Hangup(CallEvent::Shutdown));
                    }
                }
            }
        }
        let _ = stop_listeners.send(true);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Respond {
                tx,
                bytes,
                is_final,
            } => {
                if let Some(entry) = self.server.get_mut(&tx) {
                    self.transport.send(&entry.peer, bytes.clone());
                    entry.last = Some(bytes);
                    if is_final {
                        entry.completed_at = Some(Instant::now());
                    }
                }
            }
            Command::ClientTx { branch, call } => match call {
                Some(call) => {
                    self.clients.insert(branch, call);
                }
                None => {
                    self.clients.remove(&branch);
                }
            },
            Command::Ended { dialog } => {
                if self.dialogs.remove(&dialog).is_some() {
                    if let Some(source) = self.sources.remove(&dialog) {
                        self.admission.release(source);
                    }
                    self.shared
                        .active_calls
                        .store(self.admission.active(), Ordering::Relaxed);
                }
            }
            Command::HangUp { sip_call_id, event } => {
                for (key, call) in &self.dialogs {
                    if key.call_id == sip_call_id {
                        let _ = call.try_send(CallInput::Hangup(event));
                    }
                }
            }
            Command::Transfer { sip_call_id, agent } => {
                for (key, call) in &self.dialogs {
                    if key.call_id == sip_call_id {
                        let agent = agent.clone();
                        let _ = call.try_send(CallInput::Transfer { agent });
                    }
                }
            }
            Command::AddDialog { key, call } => {
                self.legs.insert(key, call);
            }
            Command::DropDialog { key } => {
                self.legs.remove(&key);
            }
            Command::AddCall { key, call } => {
                if self.draining {
                    let _ = call.try_send(CallInput::Hangup(CallEvent::Shutdown));
                }
                self.dialogs.insert(key, call);
            }
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let timers = self.shared.config.timers;
        let keep = timers.keep_completed();
        // A transaction whose call never answered it (the call died) goes after 5 minutes.
        let stale = Duration::from_secs(300);
        self.server
            .retain(|_, tx| match (tx.acked_at, tx.completed_at) {
                (Some(acked), _) => now.duration_since(acked) < timers.t4,
                (None, Some(at)) => now.duration_since(at) < keep,
                (None, None) => now.duration_since(tx.created_at) < stale,
            });
        self.admission.prune(now.into_std());
    }

    fn on_message(&mut self, received: Received) {
        let Received { message, peer } = received;
        let method = match &message.kind {
            Kind::Response { .. } => {
                if let Some(call) = self.clients.get(&message.via.branch) {
                    let _ = call.try_send(CallInput::Response(Box::new(message)));
                }
                return;
            }
            Kind::Request { method, .. } => *method,
        };
        match method {
            rsip::Method::Ack => self.on_ack(message),
            rsip::Method::Cancel => self.on_cancel(message, peer),
            _ => self.on_request(message, peer, method),
        }
    }

    fn on_ack(&mut self, message: Inbound) {
        let key = TxKey::of(&message, rsip::Method::Invite);
        if let Some(tx) = self.server.get_mut(&key) {
            // An INVITE the dispatcher refused itself (no call): confirmed.
            if tx.call.is_none() && tx.completed_at.is_some() {
                tx.acked_at.get_or_insert_with(Instant::now);
                return;
            }
        }
        let call = match self.server.get(&key) {
            Some(tx) => tx.call.as_ref(),
            None => self.dialog_of(&message),
        };
        if let Some(call) = call {
            let _ = call.try_send(CallInput::Ack { body: message.body });
        }
    }

    fn on_cancel(&mut self, message: Inbound, peer: Peer) {
        let own_key = TxKey::of(&message, rsip::Method::Cancel);
        if self.resend(&own_key, &peer) {
            return;
        }
        let invite_key = TxKey::of(&message, rsip::Method::Invite);
        let Some(invite) = self.server.get(&invite_key) else {
            self.answer(
                &message,
                &peer,
                own_key,
                481,
                "Call/Transaction Does Not Exist",
            );
            return;
        };
        let tag = invite.local_tag.clone();
        if invite.completed_at.is_none() {
            if let Some(call) = &invite.call {
                let _ = call.try_send(CallInput::Cancel);
            }
        }
        let mut parts = ResponseParts::new(200, "OK");
        parts.to_tag = tag.as_deref();
        let bytes = build_response(&message.head, peer.addr, &parts);
        self.record_answer(own_key, &peer, bytes);
    }

    fn on_request(&mut self, message: Inbound, peer: Peer, method: rsip::Method) {
        let key = TxKey::of(&message, method);
        if self.resend(&key, &peer) {
            return;
        }
        if self.server.len() >= MAX_SERVER_TRANSACTIONS {
            self.transport.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if message.to_tag.is_some() {
            let Some(call) = self.dialog_of(&message).cloned() else {
                self.answer(&message, &peer, key, 481, "Call/Transaction Does Not Exist");
                return;
            };
            self.open(key.clone(), &peer, Some(call.clone()), None);
            let event = CallInput::Request {
                message: Box::new(message),
                peer,
                tx: key,
            };
            if call.try_send(event).is_err() {
                tracing::debug!("call queue full; the request will be retransmitted");
            }
            return;
        }
        match method {
            rsip::Method::Invite => self.on_new_invite(message, peer, key),
            rsip::Method::Options => {
                let parts = ResponseParts::new(200, "OK")
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", "");
                let bytes = build_response(&message.head, peer.addr, &parts);
                self.record_answer(key, &peer, bytes);
            }
            rsip::Method::Register => {
                let Some(registrar) = self.shared.registrar.clone() else {
                    let parts =
                        ResponseParts::new(405, "Method Not Allowed").header("Allow", ALLOW);
                    let bytes = build_response(&message.head, peer.addr, &parts);
                    self.record_answer(key, &peer, bytes);
                    return;
                };
                let Ok(permit) = Arc::clone(&self.registers).try_acquire_owned() else {
                    let parts =
                        ResponseParts::new(503, "Service Unavailable").header("Retry-After", "5");
                    let bytes = build_response(&message.head, peer.addr, &parts);
                    self.record_answer(key, &peer, bytes);
                    return;
                };
                self.open(key.clone(), &peer, None, None);
                let core = CoreHandle {
                    commands: self.commands_tx.clone(),
                    transport: self.transport.clone(),
                };
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move {
                    register::handle(message, peer, key, core, shared, registrar).await;
                    drop(permit);
                });
            }
            rsip::Method::Bye | rsip::Method::Info => {
                self.answer(&message, &peer, key, 481, "Call/Transaction Does Not Exist");
            }
            _ => {
                let parts = ResponseParts::new(405, "Method Not Allowed").header("Allow", ALLOW);
                let bytes = build_response(&message.head, peer.addr, &parts);
                self.record_answer(key, &peer, bytes);
            }
        }
    }

    fn on_new_invite(&mut self, message: Inbound, peer: Peer, key: TxKey) {
        if self.draining {
            let parts = ResponseParts::new(503, "Service Unavailable (shutting down)")
                .header("Retry-After", "30");
            let bytes = build_response(&message.head, peer.addr, &parts);
            self.record_answer(key, &peer, bytes);
            return;
        }
        let store_lag = self.shared.store.lag();
        if let Err(refused) =
            self.admission
                .admit_behind(peer.addr.ip(), Instant::now().into_std(), store_lag)
        {
            if matches!(refused, Refused::StoreBehind { .. }) {
                self.transport.stats.shed.fetch_add(1, Ordering::Relaxed);
            }
            let (status, reason) = refused.status();
            let mut parts = ResponseParts::new(status, reason);
            if status == 503 {
                parts = parts.header("Retry-After", refused.retry_after_secs().to_string());
            }
            let bytes = build_response(&message.head, peer.addr, &parts);
            self.record_answer(key, &peer, bytes);
            return;
        }
        self.shared
            .active_calls
            .store(self.admission.active(), Ordering::Relaxed);
        let local_tag = random_token();
        let (events_tx, events_rx) = mpsc::channel(32);
        let dialog = DialogKey {
            call_id: message.call_id.clone(),
            local_tag: local_tag.clone(),
        };
        self.sources.insert(dialog.clone(), peer.addr.ip());
        self.dialogs.insert(dialog, events_tx.clone());
        let events_tx_for_call = events_tx.clone();
        self.open(key.clone(), &peer, Some(events_tx), Some(local_tag.clone()));
        let trying = build_response(&message.head, peer.addr, &ResponseParts::new(100, "Trying"));
        self.transport.send(&peer, trying.clone());
        if let Some(tx) = self.server.get_mut(&key) {
            tx.last = Some(trying);
        }
        let setup = CallSetup {
            invite: message,
            peer,
            tx: key,
            local_tag,
            events: events_rx,
            control: events_tx_for_call,
            core: CoreHandle {
                commands: self.commands_tx.clone(),
                transport: self.transport.clone(),
            },
            shared: Arc::clone(&self.shared),
        };
        tokio::spawn(call::run(setup));
    }

    fn dialog_of(&self, message: &Inbound) -> Option<&mpsc::Sender<CallInput>> {
        let key = DialogKey {
            call_id: message.call_id.clone(),
            local_tag: message.to_tag.clone()?,
        };
        self.dialogs.get(&key).or_else(|| self.legs.get(&key))
    }

    /// Resends the last response of a known transaction; true when it was known.
    fn resend(&self, key: &TxKey, peer: &Peer) -> bool {
        match self.server.get(key) {
            Some(tx) => {
                if let Some(last) = &tx.last {
                    self.transport.send(peer, last.clone());
                }
                true
            }
            None => false,
        }
    }

    fn open(
        &mut self,
        key: TxKey,
        peer: &Peer,
        call: Option<mpsc::Sender<CallInput>>,
        local_tag: Option<String>,
    ) {
        let now = Instant::now();
        self.server.insert(
            key,
            ServerTx {
                peer: peer.clone(),
                last: None,
                completed_at: None,
                acked_at: None,
                created_at: now,
                call,
                local_tag,
            },
        );
    }

    fn answer(&mut self, message: &Inbound, peer: &Peer, key: TxKey, status: u16, reason: &str) {
        let bytes = build_response(
            &message.head,
            peer.addr,
            &ResponseParts::new(status, reason),
        );
        self.record_answer(key, peer, bytes);
    }

    /// Sends a final response on a new transaction and keeps it for retransmissions.
    fn record_answer(&mut self, key: TxKey, peer: &Peer, bytes: Vec<u8>) {
        self.transport.send(peer, bytes.clone());
        let now = Instant::now();
        self.server.insert(
            key,
            ServerTx {
                peer: peer.clone(),
                last: Some(bytes),
                completed_at: Some(now),
                acked_at: None,
                created_at: now,
                call: None,
                local_tag: None,
            },
        );
    }
}

/// A random token for tags and branches (64 bits, hex).
pub fn random_token() -> String {
    format!("{:016x}", fastrand::u64(..))
}
