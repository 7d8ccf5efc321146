//! The client non-INVITE transaction (RFC 3261 §17.1.2) a call uses to send BYE: the
//! request goes to the dialog's next hop (over the call's TCP connection when it came on
//! one), is retransmitted over UDP with Timer E (T1 doubling to T2, T2 once a provisional
//! arrived) and given up at Timer F (64·T1).

use super::call::CallInput;
use super::dialog::Dialog;
use super::dispatcher::{Command, CoreHandle};
use super::Shared;
use crate::sip::message::Kind;
use crate::sip::transport::{Conn, Peer};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

/// How a client transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Final(u16),
    TimedOut,
}

/// A client transaction's outcome and the call events that arrived meanwhile, for the call
/// to handle next (a BYE from the other side included: it is answered after its commit).
#[derive(Debug)]
pub struct Sent {
    pub outcome: Outcome,
    pub deferred: Vec<CallInput>,
}

/// Where a dialog's requests go: over the call's TCP connection when it came on one, to
/// the dialog's next hop over UDP otherwise.
pub fn next_hop_peer(dialog: &Dialog, invite_peer: &Peer) -> Peer {
    match &invite_peer.conn {
        Conn::Tcp(_) => invite_peer.clone(),
        Conn::Udp => Peer {
            addr: dialog.next_hop(invite_peer.addr),
            conn: Conn::Udp,
        },
    }
}

/// Sends an in-dialog request without a body and waits for its final response.
pub async fn send_request(
    method: &str,
    branch: &str,
    dialog: &mut Dialog,
    invite_peer: &Peer,
    core: &CoreHandle,
    shared: &Shared,
    events: &mut mpsc::Receiver<CallInput>,
) -> Sent {
    let peer = next_hop_peer(dialog, invite_peer);
    let sent_by = shared.via_addr(peer.addr);
    let bytes = dialog.request(method, peer.transport_name(), sent_by, branch);
    send_bytes(bytes, branch, &peer, core, shared, events).await
}

/// Sends a request already written (its top Via carrying `branch`) and waits for its final
/// response.
pub async fn send_bytes(
    bytes: Vec<u8>,
    branch: &str,
    peer: &Peer,
    core: &CoreHandle,
    shared: &Shared,
    events: &mut mpsc::Receiver<CallInput>,
) -> Sent {
    let (tx, mut responses) = mpsc::channel(8);
    let _ = core
        .commands
        .send(Command::ClientTx {
            branch: branch.to_owned(),
            call: Some(tx),
        })
        .await;
    core.transport.send(peer, bytes.clone());
    let mut deferred = Vec::new();
    let outcome = wait(
        peer,
        &bytes,
        core,
        shared,
        events,
        &mut responses,
        &mut deferred,
    )
    .await;
    let _ = core
        .commands
        .send(Command::ClientTx {
            branch: branch.to_owned(),
            call: None,
        })
        .await;
    Sent { outcome, deferred }
}

async fn wait(
    peer: &Peer,
    bytes: &[u8],
    core: &CoreHandle,
    shared: &Shared,
    events: &mut mpsc::Receiver<CallInput>,
    responses: &mut mpsc::Receiver<CallInput>,
    deferred: &mut Vec<CallInput>,
) -> Outcome {
    let timers = shared.config.timers;
    let give_up = Instant::now() + timers.give_up();
    let mut n = 0;
    let mut proceeding = false;
    loop {
        let interval = if proceeding {
            timers.t2
        } else {
            timers.retransmit_interval(n)
        };
        tokio::select! {
            _ = sleep_until(give_up) => return Outcome::TimedOut,
            _ = sleep(interval), if !peer.is_reliable() => {
                core.transport.send(peer, bytes.to_vec());
                n += 1;
            }
            Some(CallInput::Response(response)) = responses.recv() => {
                if let Kind::Response { status } = response.kind {
                    if status >= 200 {
                        return Outcome::Final(status);
                    }
                    proceeding = true;
                }
            }
            event = events.recv() => match event {
                // The other side may hang up meanwhile: its BYE waits for the call, which
                // answers it once the end is committed.
                Some(other) => deferred.push(other),
                None => return Outcome::TimedOut,
            },
        }
    }
}
