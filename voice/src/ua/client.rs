//! The client non-INVITE transaction (RFC 3261 §17.1.2) a call uses to send BYE: the
//! request goes to the dialog's next hop (over the call's TCP connection when it came on
//! one), is retransmitted over UDP with Timer E (T1 doubling to T2, T2 once a provisional
//! arrived) and given up at Timer F (64·T1).

use super::call::CallEvent;
use super::dialog::Dialog;
use super::dispatcher::{Command, CoreHandle};
use super::Shared;
use crate::sip::message::Kind;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::{Conn, Peer};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

/// How a client transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Final(u16),
    TimedOut,
}

/// Sends an in-dialog request and waits for its final response.
pub async fn send_request(
    method: &str,
    branch: &str,
    dialog: &mut Dialog,
    invite_peer: &Peer,
    core: &CoreHandle,
    shared: &Shared,
    events: &mut mpsc::Receiver<CallEvent>,
) -> Outcome {
    let peer = match &invite_peer.conn {
        Conn::Tcp(_) => invite_peer.clone(),
        Conn::Udp => Peer {
            addr: dialog.next_hop(invite_peer.addr),
            conn: Conn::Udp,
        },
    };
    let (tx, mut responses) = mpsc::channel(8);
    let _ = core
        .commands
        .send(Command::ClientTx {
            branch: branch.to_owned(),
            call: Some(tx),
        })
        .await;
    let sent_by = shared.via_addr(peer.addr);
    let bytes = dialog.request(method, peer.transport_name(), sent_by, branch);
    core.transport.send(&peer, bytes.clone());
    let outcome = wait(&peer, &bytes, core, shared, events, &mut responses).await;
    let _ = core
        .commands
        .send(Command::ClientTx {
            branch: branch.to_owned(),
            call: None,
        })
        .await;
    outcome
}

async fn wait(
    peer: &Peer,
    bytes: &[u8],
    core: &CoreHandle,
    shared: &Shared,
    events: &mut mpsc::Receiver<CallEvent>,
    responses: &mut mpsc::Receiver<CallEvent>,
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
            Some(CallEvent::Response(response)) = responses.recv() => {
                if let Kind::Response { status } = response.kind {
                    if status >= 200 {
                        return Outcome::Final(status);
                    }
                    proceeding = true;
                }
            }
            event = events.recv() => match event {
                // The caller hung up at the same time: answer its BYE too.
                Some(CallEvent::Request { message, peer, tx }) => {
                    let status = match message.method() {
                        Some(rsip::Method::Bye) => (200, "OK"),
                        _ => (481, "Call/Transaction Does Not Exist"),
                    };
                    let parts = ResponseParts::new(status.0, status.1);
                    let bytes = build_response(&message.head, peer.addr, &parts);
                    core.respond(&tx, bytes, true).await;
                }
                None => return Outcome::TimedOut,
                Some(_) => {}
            },
        }
    }
}
