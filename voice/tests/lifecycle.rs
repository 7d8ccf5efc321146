//! The call's one lifecycle as the store sees it, over real sockets: hold and resume
//! (re-INVITEs with `sendonly` then `sendrecv`) are committed steps of the call machine, and
//! a step the store refuses ends the call (BYE to the caller, cause `failed`) instead of
//! leaving it live with a stored state that differs.

mod sip_common;
use sip_common as common;

use common::{ack, bye, client_at, expect, header, invite_with_media, local, start_ua, Client};
use std::net::SocketAddr;
use std::sync::Arc;
use voice::ua::{
    BoxFuture, CallEvent, CallState, CallStore, CallTransition, EndCause, InMemoryCallStore,
    StaticRouter, StoreError, UaConfig,
};

/// A re-INVITE in the answered call `call_id` whose SDP sets the direction.
fn reinvite(from: SocketAddr, call_id: &str, to: &str, cseq: u32, direction: &str) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 {cseq} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n",
        ip = from.ip(),
        port = from.port() + 2
    );
    format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-re-{call_id}-{cseq};rport\r\n\
         From: <sip:caller@{ip}>;tag=c1\r\nTo: {to}\r\nContact: <sip:caller@{from}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        ip = from.ip(),
    )
}

fn ack_at(from: SocketAddr, call_id: &str, to: &str, cseq: u32) -> String {
    ack(from, call_id, to)
        .replace("CSeq: 1 ACK", &format!("CSeq: {cseq} ACK"))
        .replace(
            &format!("branch=z9hG4bK-ack-{call_id}"),
            &format!("branch=z9hG4bK-ack-{call_id}-{cseq}"),
        )
}

/// A call from `c` answered and acknowledged; returns the 200's `To` (with our tag).
async fn answered(c: &Client, call_id: &str) -> String {
    let media = local(c);
    c.send(invite_with_media(local(c), call_id, "100", media).as_bytes())
        .await;
    let ok = expect(c, 200, call_id, "INVITE").await;
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(local(c), call_id, &to).as_bytes()).await;
    to
}

fn states(store: &InMemoryCallStore, sip_call_id: &str) -> Vec<CallState> {
    store
        .transitions()
        .iter()
        .filter(|t| t.sip_call_id == sip_call_id)
        .map(|t| t.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_are_committed_steps() {
    let ua = start_ua(UaConfig::default()).await;
    let c = client_at("127.0.0.1", ua.addr()).await;
    let to = answered(&c, "hold-1").await;
    for (cseq, direction) in [(2, "sendonly"), (3, "sendrecv")] {
        c.send(reinvite(local(&c), "hold-1", &to, cseq, direction).as_bytes())
            .await;
        expect(&c, 200, "hold-1", "INVITE").await;
        c.send(ack_at(local(&c), "hold-1", &to, cseq).as_bytes())
            .await;
    }
    let tag = to.split("tag=").nth(1).unwrap().to_owned();
    let later_bye = bye(local(&c), "hold-1", &tag).replace("CSeq: 2 BYE", "CSeq: 4 BYE");
    c.send(later_bye.as_bytes()).await;
    expect(&c, 200, "hold-1", "BYE").await;
    assert_eq!(
        states(&ua.store, "hold-1"),
        [
            CallState::Ringing,
            CallState::Answered,
            CallState::OnHold { bridged: false },
            CallState::Answered,
            CallState::Ended {
                cause: EndCause::CallerHangup
            }
        ]
    );
}

/// Refuses every hold; records everything else.
#[derive(Default)]
struct RefusesHold {
    inner: InMemoryCallStore,
}

impl CallStore for RefusesHold {
    fn record(&self, t: CallTransition) -> BoxFuture<'_, Result<(), StoreError>> {
        if t.event == Some(CallEvent::Hold) {
            return Box::pin(async {
                Err(StoreError::Unavailable {
                    source: "the database is gone".into(),
                })
            });
        }
        self.inner.record(t)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_store_refuses_ends_the_call() {
    let store = Arc::new(RefusesHold::default());
    let router = Arc::new(StaticRouter::new().with("100", "acme", "echo"));
    let server =
        common::start_on_loopback(UaConfig::default(), router, Arc::clone(&store) as _).await;
    let c = Client::new(server.local_addr()).await;
    let to = answered(&c, "refused-1").await;
    c.send(reinvite(local(&c), "refused-1", &to, 2, "sendonly").as_bytes())
        .await;
    // The call ends: we send the caller a BYE.
    let deadline = tokio::time::Instant::now() + common::CALL_WAIT;
    let bye = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = c.recv(left).await.expect("a BYE from the gateway");
        if msg.starts_with("BYE ") {
            break msg;
        }
    };
    c.send(common::reply_to(&bye, 200, "OK").as_bytes()).await;
    assert_eq!(
        states(&store.inner, "refused-1"),
        [
            CallState::Ringing,
            CallState::Answered,
            CallState::Ended {
                cause: EndCause::Failed
            }
        ],
        "the end is recorded with its cause; the refused hold is not"
    );
}
