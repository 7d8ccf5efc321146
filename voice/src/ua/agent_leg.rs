//! The B2BUA's second leg: an INVITE from us to a registered agent's contact (RFC 3261
//! §17.1.1 client INVITE transaction: Timer A retransmission over UDP, Timer B give-up),
//! the ACK for its 2xx (a new transaction along the agent dialog's route set) or for its
//! non-2xx (same branch), and the dialog it forms. Agents are reached over UDP at the
//! address their REGISTER came from (they are often behind NAT).

use super::call::CallInput;
use super::dialog::Dialog;
use super::dispatcher::{random_token, Command, CoreHandle, DialogKey};
use super::Shared;
use crate::sip::message::{Inbound, Kind};
use crate::sip::response::{build_request, RequestParts};
use crate::sip::transport::{Conn, Peer};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Duration, Instant};

/// An answered agent leg.
#[derive(Debug)]
pub struct AgentLeg {
    pub dialog: Dialog,
    pub peer: Peer,
    pub invite_branch: String,
    /// The ACK for the agent's 2xx, sent again if the 2xx is retransmitted.
    pub ack: Vec<u8>,
    /// The SDP answer in the agent's 2xx.
    pub answer_sdp: Vec<u8>,
}

/// Why the agent leg did not come up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    #[error("agent {agent} has no registered contact")]
    NotRegistered { agent: String },
    #[error("registrar unavailable")]
    Registrar,
    #[error("agent answered {status}")]
    Refused { status: u16 },
    /// 401/407 with a challenge (what the `WWW-`/`Proxy-Authenticate` header said).
    #[error("answered {status}: authentication required")]
    Challenged { status: u16, challenge: String },
    #[error("agent did not answer (Timer B)")]
    Timeout,
    #[error("agent's phone rang out unanswered")]
    NoAnswer,
    #[error("the caller hung up while the agent rang")]
    CallerGone,
    #[error("agent's 2xx cannot form a dialog")]
    BadAnswer,
}

impl LegError {
    /// The status reported to a REFER's subscriber (sipfrag).
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::NotRegistered { .. } | Self::NoAnswer => (480, "Temporarily Unavailable"),
            Self::Refused { status: 486 } => (486, "Busy Here"),
            Self::Refused { .. } | Self::Challenged { .. } | Self::BadAnswer => {
                (503, "Service Unavailable")
            }
            Self::Timeout => (408, "Request Timeout"),
            Self::Registrar | Self::CallerGone => (500, "Server Internal Error"),
        }
    }
}

/// What the agent leg needs from its call.
pub struct LegContext<'a> {
    /// The call's org: only its own agents can be reached.
    pub org: &'a str,
    pub agent: &'a str,
    /// The caller's user (shown to the agent in From).
    pub caller_user: &'a str,
    /// Our call id (`X-Dartwing-Call-Id`: the agent's tools find the transcript by it).
    pub call_id: &'a str,
    /// Why the caller is handed over (`Subject`), if the application said.
    pub summary: Option<&'a str>,
    pub offer: &'a [u8],
    pub core: &'a CoreHandle,
    pub shared: &'a Shared,
    /// The call's own event queue, where the agent's in-dialog requests will be routed.
    pub call_events: &'a mpsc::Sender<CallInput>,
}

/// Calls the agent and waits for its answer. `events` is the call's queue: a BYE from the
/// caller meanwhile cancels the agent leg.
pub async fn call_agent(
    cx: &LegContext<'_>,
    events: &mut mpsc::Receiver<CallInput>,
    deferred: &mut std::collections::VecDeque<CallInput>,
) -> Result<AgentLeg, LegError> {
    let registrar = cx.shared.registrar.as_ref().ok_or(LegError::Registrar)?;
    let bindings = registrar
        .bindings(cx.org, cx.agent)
        .await
        .map_err(|_| LegError::Registrar)?;
    let binding = bindings
        .into_iter()
        .max_by_key(|b| b.expires_at)
        .ok_or_else(|| LegError::NotRegistered {
            agent: cx.agent.to_owned(),
        })?;
    let peer = Peer {
        addr: binding.source,
        conn: Conn::Udp,
    };
    let via = cx.shared.via_addr(peer.addr);
    let local_tag = random_token();
    let call_id = format!("{}@{}", random_token(), via.ip());
    let branch = format!("z9hG4bK{}", random_token());
    let shown = header_text(cx.caller_user, 64).replace(['"', '\\'], "");
    let from = format!("\"{shown}\" <sip:{}@{via}>;tag={local_tag}", cx.caller_user);
    let to = format!("<sip:{}@{via}>", cx.agent);
    let parts = RequestParts {
        method: "INVITE",
        target: &binding.contact,
        transport: "UDP",
        sent_by: via,
        branch: &branch,
        from: &from,
        to: &to,
        call_id: &call_id,
        cseq: 1,
        routes: &[],
        headers: warm_headers(cx, via),
        body: Some(("application/sdp", cx.offer)),
    };
    let invite = InviteTx {
        core: cx.core,
        shared: cx.shared,
        peer,
        parts,
        local_tag,
        ring_timeout: cx.shared.config.agent_ring_timeout,
        call_events: cx.call_events,
    };
    invite.run(events, deferred).await
}

/// One INVITE client transaction from us (an agent leg, or a call we place): sent to
/// `peer`, retransmitted (Timer A) until a provisional, CANCELled when it rings longer than
/// `ring_timeout`, its non-2xx ACKed on the same branch, its 2xx ACKed in a new transaction.
/// The dialog it forms routes its in-dialog requests (and the 2xx's retransmissions) to
/// `call_events`.
pub struct InviteTx<'a> {
    pub core: &'a CoreHandle,
    pub shared: &'a Shared,
    pub peer: Peer,
    pub parts: RequestParts<'a>,
    /// Our From tag.
    pub local_tag: String,
    pub ring_timeout: Duration,
    pub call_events: &'a mpsc::Sender<CallInput>,
}

impl InviteTx<'_> {
    /// Sends the INVITE and waits for its final response. `events` is the call's queue: a
    /// BYE or a hangup from call control meanwhile CANCELs the INVITE.
    pub async fn run(
        self,
        events: &mut mpsc::Receiver<CallInput>,
        deferred: &mut std::collections::VecDeque<CallInput>,
    ) -> Result<AgentLeg, LegError> {
        let invite = build_request(&self.parts);
        let branch = self.parts.branch.to_owned();
        let key = DialogKey {
            call_id: self.parts.call_id.to_owned(),
            local_tag: self.local_tag.clone(),
        };
        let (core, peer) = (self.core, &self.peer);
        let commands = &core.commands;
        let _ = commands
            .send(Command::AddDialog {
                key: key.clone(),
                call: self.call_events.clone(),
            })
            .await;
        let (responses_tx, mut responses) = mpsc::channel(8);
        let _ = commands
            .send(Command::ClientTx {
                branch: branch.clone(),
                call: Some(responses_tx),
            })
            .await;
        core.transport.send(peer, invite.clone());
        let outcome = self
            .wait_answer(&invite, events, &mut responses, deferred)
            .await;
        let result = match outcome {
            Ok(ok) => {
                let from = self.parts.from.to_owned();
                let leg = answered(&ok, &self.parts, from, &self.local_tag, peer, core);
                if leg.is_err() {
                    let _ = commands.send(Command::DropDialog { key }).await;
                }
                leg.map(|(dialog, ack)| AgentLeg {
                    dialog,
                    peer: peer.clone(),
                    invite_branch: branch.clone(),
                    ack,
                    answer_sdp: ok.body.clone(),
                })
            }
            Err(e) => {
                let _ = commands.send(Command::DropDialog { key }).await;
                Err(e)
            }
        };
        // Retransmissions of a 2xx now reach the call, which ACKs them again.
        let call = result.is_ok().then(|| self.call_events.clone());
        let _ = commands.send(Command::ClientTx { branch, call }).await;
        result
    }

    /// Waits for the final response, acknowledging a non-2xx on the way.
    async fn wait_answer(
        &self,
        invite: &[u8],
        events: &mut mpsc::Receiver<CallInput>,
        responses: &mut mpsc::Receiver<CallInput>,
        deferred: &mut std::collections::VecDeque<CallInput>,
    ) -> Result<Inbound, LegError> {
        let (core, peer) = (self.core, &self.peer);
        let timers = self.shared.config.timers;
        let started = Instant::now();
        let give_up = started + timers.give_up();
        let ring_out = started + self.ring_timeout.min(timers.give_up());
        let mut interval = timers.t1;
        let mut provisional = false;
        loop {
            tokio::select! {
                _ = sleep_until(give_up), if !provisional => return Err(LegError::Timeout),
                // A phone that rings and rings: CANCEL it (RFC 3261 §9.1, only after a
                // provisional) and let the application take the caller back.
                _ = sleep_until(ring_out), if provisional => {
                    cancel_and_settle(invite, peer, core, responses).await;
                    return Err(LegError::NoAnswer);
                }
                // Timer A doubles without the T2 cap (§17.1.1.2), until a provisional.
                _ = sleep(interval), if !provisional => {
                    core.transport.send(peer, invite.to_vec());
                    interval = interval.saturating_mul(2);
                }
                Some(CallInput::Response(response)) = responses.recv() => {
                    let Kind::Response { status } = response.kind else { continue };
                    match status {
                        100..=199 => provisional = true,
                        200..=299 => return Ok(*response),
                        _ => {
                            ack_non_2xx(&response, invite, peer, core);
                            return Err(refused(&response, status));
                        }
                    }
                }
                event = events.recv() => match event {
                    Some(end) if is_bye(&end) || matches!(end, CallInput::Hangup(_)) => {
                        // The call answers a BYE once the caller's hangup is committed, and
                        // ends itself on a hangup.
                        deferred.push_front(end);
                        cancel_and_settle(invite, peer, core, responses).await;
                        return Err(LegError::CallerGone);
                    }
                    None => return Err(LegError::CallerGone),
                    Some(other) => deferred.push_back(other),
                },
            }
        }
    }
}

/// A non-2xx final response as an error: 401/407 carry their challenge.
fn refused(response: &Inbound, status: u16) -> LegError {
    let header = match status {
        401 => "WWW-Authenticate",
        407 => "Proxy-Authenticate",
        _ => return LegError::Refused { status },
    };
    match response.head.get(header) {
        Some(challenge) => LegError::Challenged {
            status,
            challenge: challenge.to_owned(),
        },
        None => LegError::Refused { status },
    }
}

/// The agent INVITE's own headers: Contact and Allow, and for a warm transfer our call id
/// and the application's summary (`Subject`, which desk phones show while ringing).
fn warm_headers(cx: &LegContext<'_>, via: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Contact", format!("<sip:{via}>")),
        ("Allow", super::dispatcher::ALLOW.to_owned()),
    ];
    if !cx.call_id.is_empty() {
        headers.push(("X-Dartwing-Call-Id", header_text(cx.call_id, 128)));
    }
    if let Some(summary) = cx.summary.map(|s| header_text(s, 200)) {
        if !summary.is_empty() {
            headers.push(("Subject", summary));
        }
    }
    headers
}

/// `text` safe as a header value: control characters (CR, LF: header injection) become
/// spaces, runs of spaces one, at most `max` bytes (cut at a character boundary).
pub(super) fn header_text(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut end = clean.len().min(max);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

/// CANCELs the agent's INVITE and gives the agent a moment to answer it; its 487 is ACKed.
async fn cancel_and_settle(
    invite: &[u8],
    peer: &Peer,
    core: &CoreHandle,
    responses: &mut mpsc::Receiver<CallInput>,
) {
    cancel(invite, peer, core);
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(Some(CallInput::Response(r))) =
        tokio::time::timeout_at(until, responses.recv()).await
    {
        if let Kind::Response { status: 300.. } = r.kind {
            ack_non_2xx(&r, invite, peer, core);
            break;
        }
    }
}

/// Forms the agent dialog from its 2xx and sends the ACK.
fn answered(
    ok: &Inbound,
    parts: &RequestParts<'_>,
    from: String,
    local_tag: &str,
    peer: &Peer,
    core: &CoreHandle,
) -> Result<(Dialog, Vec<u8>), LegError> {
    let dialog =
        Dialog::from_answer(ok, from, local_tag, parts.cseq).map_err(|_| LegError::BadAnswer)?;
    let branch = format!("z9hG4bK{}", random_token());
    let ack = build_request(&RequestParts {
        method: "ACK",
        target: &dialog.remote_target,
        transport: "UDP",
        sent_by: parts.sent_by,
        branch: &branch,
        from: &dialog.local_party,
        to: &dialog.remote_party,
        call_id: &dialog.call_id,
        cseq: parts.cseq,
        routes: &dialog.route_set,
        headers: vec![],
        body: None,
    });
    let to = Peer {
        addr: dialog.next_hop(peer.addr),
        conn: Conn::Udp,
    };
    core.transport.send(&to, ack.clone());
    Ok((dialog, ack))
}

/// The ACK of a non-2xx (§17.1.1.3): same branch and Request-URI as the INVITE, the
/// response's To.
fn ack_non_2xx(response: &Inbound, invite: &[u8], peer: &Peer, core: &CoreHandle) {
    if let Some(ack) = rewrite_invite(invite, "ACK", response.head.get("To")) {
        core.transport.send(peer, ack);
    }
}

fn cancel(invite: &[u8], peer: &Peer, core: &CoreHandle) {
    if let Some(cancel) = rewrite_invite(invite, "CANCEL", None) {
        core.transport.send(peer, cancel);
    }
}

/// The INVITE turned into an ACK or CANCEL of the same transaction: start line and CSeq
/// method replaced, To replaced when given, no body.
fn rewrite_invite(invite: &[u8], method: &str, to: Option<&str>) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(invite).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    let mut out = String::with_capacity(head.len());
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if i == 0 || name.eq_ignore_ascii_case("CSeq") {
            out.push_str(&line.replacen("INVITE", method, 1));
        } else if name.eq_ignore_ascii_case("To") && to.is_some() {
            out.push_str(&format!("To: {}", to.unwrap_or_default()));
        } else if ["Content-Type", "Content-Length", "Contact", "Allow"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// Whether a call input is a BYE request.
pub fn is_bye(input: &CallInput) -> bool {
    matches!(input, CallInput::Request { message, .. } if message.method() == Some(&rsip::Method::Bye))
}

#[cfg(test)]
mod tests {
    use super::{header_text, rewrite_invite};

    #[test]
    fn header_text_cannot_inject_a_header_and_is_bounded() {
        assert_eq!(
            header_text("Caller said: hi\r\nX-Evil: 1\tok", 200),
            "Caller said: hi X-Evil: 1 ok"
        );
        assert_eq!(header_text("ééé", 5), "éé");
        assert_eq!(header_text("  ", 10), "");
    }

    #[test]
    fn ack_and_cancel_keep_the_transaction() {
        let invite = b"INVITE sip:a@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            To: <sip:a@h>\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0";
        let ack =
            String::from_utf8(rewrite_invite(invite, "ACK", Some("<sip:a@h>;tag=x")).unwrap())
                .unwrap();
        assert!(ack.starts_with("ACK sip:a@127.0.0.1:5070 SIP/2.0\r\n"));
        assert!(ack.contains("branch=z9hG4bK1\r\n"));
        assert!(ack.contains("To: <sip:a@h>;tag=x\r\n"));
        assert!(ack.contains("CSeq: 1 ACK\r\n"));
        assert!(ack.ends_with("Content-Length: 0\r\n\r\n"));
        let cancel = String::from_utf8(rewrite_invite(invite, "CANCEL", None).unwrap()).unwrap();
        assert!(cancel.contains("To: <sip:a@h>\r\nCSeq: 1 CANCEL\r\n"));
    }
}
