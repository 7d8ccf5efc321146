//! Call signalling over a raw UDP socket: retransmitted INVITE, CANCEL, the store gate on
//! 200 OK, INFO DTMF, our BYE (max duration, Timer E retransmission, no ACK), limits.

mod sip_common;
use sip_common as common;

use common::{header, in_dialog, invite, start_ua, status_of, to_tag, Client};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use voice::sip::timers::Timers;
use voice::ua::{
    AdmissionConfig, BoxFuture, CallState, CallStore, CallTransition, EndCause, StaticRouter,
    StoreError, UaConfig,
};

const WAIT: Duration = Duration::from_secs(2);

fn ack(port: u16, call_id: &str, branch: &str, to: &str) -> String {
    format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// INVITE, 200, ACK; returns the To tag.
async fn answered_call(c: &Client, call_id: &str) -> String {
    c.send(invite(c.port(), call_id, &format!("z9hG4bK-{call_id}")).as_bytes())
        .await;
    let ok = c.expect_status(200, WAIT).await;
    let tag = to_tag(&ok);
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(c.port(), call_id, &format!("z9hG4bK-ack-{call_id}"), &to).as_bytes())
        .await;
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_invite_creates_one_call() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    let msg = invite(c.port(), "retx-1", "z9hG4bK-retx-1");
    c.send(msg.as_bytes()).await;
    c.send(msg.as_bytes()).await;
    let ok = c.expect_status(200, WAIT).await;
    // Once more after the 200: answered again with the 200, still one call.
    c.send(msg.as_bytes()).await;
    let again = c.expect_status(200, WAIT).await;
    assert_eq!(to_tag(&ok), to_tag(&again));
    assert_eq!(ua.store.count(CallState::Ringing), 1);
    assert_eq!(ua.store.count(CallState::Answered), 1);
    assert_eq!(ua.server.active_calls(), 1);
    let tag = to_tag(&ok);
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(c.port(), "retx-1", "z9hG4bK-ack", &to).as_bytes())
        .await;
    c.send(in_dialog(c.port(), "retx-1", "BYE", 2, &tag, ("", "")).as_bytes())
        .await;
    c.expect_status(200, WAIT).await;
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::CallerHangup) == 1).await);
    assert!(common::eventually(WAIT, || ua.server.active_calls() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing_gets_200_and_the_invite_487() {
    let config = UaConfig {
        answer_delay: Duration::from_secs(5),
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    let p = c.port();
    c.send(invite(p, "cancel-1", "z9hG4bK-c1").as_bytes()).await;
    let ringing = c.expect_status(180, WAIT).await;
    let cancel = format!(
        "CANCEL sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-c1;rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: cancel-1\r\n\
         CSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.send(cancel.as_bytes()).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = c.recv(WAIT).await.expect("200 to CANCEL and 487 to INVITE");
        if let Some(s) = status_of(&msg) {
            if s >= 200 {
                got.push((s, header(&msg, "CSeq").unwrap().to_owned()));
            }
        }
    }
    got.sort();
    assert_eq!(got, [(200, "1 CANCEL".into()), (487, "1 INVITE".into())]);
    let to = header(&ringing, "To").unwrap().to_owned();
    c.send(ack(p, "cancel-1", "z9hG4bK-c1", &to).as_bytes())
        .await;
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::Cancelled) == 1).await);
    assert_eq!(ua.store.count(CallState::Answered), 0);
    // ACKed: the 487 is not retransmitted any more.
    assert_eq!(c.recv(Duration::from_millis(1200)).await, None);
}

/// A store that holds `Answered` until the test releases it.
struct GatedStore {
    gate: Semaphore,
    seen: std::sync::Mutex<Vec<CallState>>,
}

impl CallStore for GatedStore {
    fn record(&self, t: CallTransition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if t.state == CallState::Answered {
                self.gate.acquire().await.expect("open").forget();
            }
            self.seen.lock().unwrap().push(t.state);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_200_before_the_store_acknowledges_answered() {
    let store = Arc::new(GatedStore {
        gate: Semaphore::new(0),
        seen: Default::default(),
    });
    let router = Arc::new(StaticRouter::new().with("100", "acme", "echo"));
    let server =
        common::start_on_loopback(UaConfig::default(), router, Arc::clone(&store) as _).await;
    let c = Client::new(server.local_addr()).await;
    c.send(invite(c.port(), "gate-1", "z9hG4bK-g1").as_bytes())
        .await;
    c.expect_status(180, WAIT).await;
    let early = c.recv(Duration::from_millis(800)).await;
    assert!(
        early.as_deref().and_then(status_of).is_none_or(|s| s < 200),
        "{early:?}"
    );
    store.gate.add_permits(1);
    c.expect_status(200, WAIT).await;
    assert_eq!(
        *store.seen.lock().unwrap(),
        [CallState::Ringing, CallState::Answered]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_dtmf_is_accepted_and_other_info_bodies_refused() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    let tag = answered_call(&c, "info-1").await;
    let relay = in_dialog(
        c.port(),
        "info-1",
        "INFO",
        2,
        &tag,
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
    );
    c.send(relay.as_bytes()).await;
    let ok = c.expect_status(200, WAIT).await;
    assert_eq!(header(&ok, "CSeq"), Some("2 INFO"));
    let other = in_dialog(c.port(), "info-1", "INFO", 3, &tag, ("text/plain", "hello"));
    c.send(other.as_bytes()).await;
    c.expect_status(415, WAIT).await;
    // An in-dialog request with an unknown To tag belongs to no dialog.
    let stray = in_dialog(
        c.port(),
        "info-1",
        "INFO",
        4,
        "not-ours",
        ("application/dtmf", "1"),
    );
    c.send(stray.as_bytes()).await;
    c.expect_status(481, WAIT).await;
}

fn fast_timers() -> Timers {
    Timers {
        t1: Duration::from_millis(50),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_sends_bye_and_retransmits_it_until_answered() {
    let config = UaConfig {
        max_call_duration: Duration::from_millis(300),
        timers: fast_timers(),
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    let tag = answered_call(&c, "maxdur-1").await;
    let first = c.recv(WAIT).await.expect("BYE");
    assert!(first.starts_with("BYE sip:caller@127.0.0.1:"), "{first}");
    assert!(header(&first, "From")
        .unwrap()
        .contains(&format!("tag={tag}")));
    assert!(header(&first, "To").unwrap().contains("tag=c1"));
    // Not answered: Timer E sends it again, same transaction.
    let second = c.recv(WAIT).await.expect("BYE retransmitted");
    assert_eq!(header(&first, "Via"), header(&second, "Via"));
    let via = header(&second, "Via").unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: maxdur-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&second, "From").unwrap(),
        header(&second, "To").unwrap(),
        header(&second, "CSeq").unwrap()
    );
    c.send(ok.as_bytes()).await;
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::MaxDuration) == 1).await);
    assert!(common::eventually(WAIT, || ua.server.active_calls() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_retransmits_the_200_with_doubling_then_hangs_up() {
    let config = UaConfig {
        timers: fast_timers(),
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    c.send(invite(c.port(), "noack-1", "z9hG4bK-n1").as_bytes())
        .await;
    c.expect_status(200, WAIT).await;
    let mut at = Vec::new();
    let start = tokio::time::Instant::now();
    loop {
        let msg = c.recv(Duration::from_secs(5)).await.expect("200 or BYE");
        if msg.starts_with("BYE ") {
            break;
        }
        if status_of(&msg) == Some(200) {
            at.push(start.elapsed());
        }
    }
    // T1=50 ms doubling to T2=400 ms over 64·T1=3.2 s: 50,100,200,400,400,... ≥ 8 resends.
    assert!(at.len() >= 8, "{} retransmissions: {at:?}", at.len());
    let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] < Duration::from_millis(180), "{gaps:?}");
    assert!(
        gaps.last().unwrap() > &Duration::from_millis(300),
        "{gaps:?}"
    );
    assert!(
        common::eventually(Duration::from_secs(6), || ua
            .store
            .ended_with(EndCause::NoAck)
            == 1)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_per_source_limits_answer_503_with_retry_after() {
    let config = UaConfig {
        admission: AdmissionConfig {
            max_calls: 1,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    answered_call(&c, "lim-1").await;
    c.send(invite(c.port(), "lim-2", "z9hG4bK-lim-2").as_bytes())
        .await;
    let busy = c.expect_status(503, WAIT).await;
    assert_eq!(header(&busy, "Retry-After"), Some("5"));

    let config = UaConfig {
        admission: AdmissionConfig {
            max_calls: 100,
            per_source_rate: 1.0,
            per_source_burst: 1.0,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    answered_call(&c, "rate-1").await;
    c.send(invite(c.port(), "rate-2", "z9hG4bK-rate-2").as_bytes())
        .await;
    let limited = c.expect_status(503, WAIT).await;
    assert_eq!(header(&limited, "Retry-After"), Some("1"));
    assert_eq!(ua.store.count(CallState::Ringing), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_hangup_sends_bye_and_records_local_hangup() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    let tag = answered_call(&c, "hang-1").await;
    ua.server.hang_up("hang-1").await;
    let bye = c.recv(WAIT).await.expect("BYE");
    assert!(bye.starts_with("BYE "), "{bye}");
    assert!(header(&bye, "From").unwrap().contains(&tag));
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: hang-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "Via").unwrap(),
        header(&bye, "From").unwrap(),
        header(&bye, "To").unwrap(),
        header(&bye, "CSeq").unwrap()
    );
    c.send(reply.as_bytes()).await;
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::CalleeHangup) == 1).await);
    // Answered: no retransmission of that BYE.
    assert_eq!(c.recv(Duration::from_millis(1200)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_before_the_ack_ends_the_call() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    c.send(invite(c.port(), "early-bye", "z9hG4bK-eb").as_bytes())
        .await;
    let ok = c.expect_status(200, WAIT).await;
    let bye = in_dialog(c.port(), "early-bye", "BYE", 2, &to_tag(&ok), ("", ""));
    c.send(bye.as_bytes()).await;
    let reply = c.expect_status(200, WAIT).await;
    assert_eq!(header(&reply, "CSeq"), Some("2 BYE"));
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::CallerHangup) == 1).await);
    assert!(common::eventually(WAIT, || ua.server.active_calls() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_bye_gets_the_same_200_not_481() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    let tag = answered_call(&c, "byeretx-1").await;
    let bye = in_dialog(c.port(), "byeretx-1", "BYE", 2, &tag, ("", ""));
    c.send(bye.as_bytes()).await;
    let first = c.expect_status(200, WAIT).await;
    assert!(common::eventually(WAIT, || ua.server.active_calls() == 0).await);
    // The 200 was lost, the caller retransmits: the call is gone, the transaction is not
    // (Timer J), so it is answered from the transaction, identically.
    c.send(bye.as_bytes()).await;
    let again = c.recv(WAIT).await.expect("answer to the retransmission");
    assert_eq!(again, first);
    // The same OPTIONS twice: one transaction, the same answer.
    let options = common::options(c.port(), "z9hG4bK-opt-retx");
    c.send(options.as_bytes()).await;
    let a = c.expect_status(200, WAIT).await;
    c.send(options.as_bytes()).await;
    let b = c.expect_status(200, WAIT).await;
    assert_eq!(a, b);
    assert_eq!(ua.store.ended_with(EndCause::CallerHangup), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_hangs_up_calls_and_refuses_new_ones() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    answered_call(&c, "drain-1").await;
    ua.server.shutdown();
    let bye = common::next_request(&c, WAIT).await;
    assert!(bye.starts_with("BYE "), "{bye}");
    // While draining (our BYE not answered yet), a new call is refused.
    let other = Client::new(ua.addr()).await;
    other
        .send(invite(other.port(), "drain-2", "z9hG4bK-d2").as_bytes())
        .await;
    let refused = other.expect_status(503, WAIT).await;
    assert!(refused.contains("shutting down"), "{refused}");
    c.send(common::reply_to(&bye, 200, "OK").as_bytes()).await;
    assert!(common::eventually(WAIT, || ua.store.ended_with(EndCause::Shutdown) == 1).await);
    // Drained: the listeners are gone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!c.options_ok().await, "still answering after the drain");
}

/// An INVITE the user agent refused itself (503: no room) is forgotten T4 after its ACK
/// (RFC 3261 Timer I), not kept 64·T1 as an unacknowledged one is: under an overload that
/// is shed, the refused INVITEs' entries cost seconds of memory, not half a minute. Seen
/// from outside: once a slot is free, a late copy of the acknowledged INVITE is a new
/// request (it gets a call), while a copy of the unacknowledged one is still answered from
/// its transaction (the same 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_invite_is_forgotten_t4_after_its_ack_not_before() {
    let config = UaConfig {
        admission: AdmissionConfig {
            max_calls: 1,
            ..AdmissionConfig::default()
        },
        timers: fast_timers(), // T4 0.5 s; 64·T1 3.2 s
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let c = Client::new(ua.addr()).await;
    let tag = answered_call(&c, "t4-held").await;
    let acked = invite(c.port(), "t4-acked", "z9hG4bK-t4-acked");
    let unacked = invite(c.port(), "t4-unacked", "z9hG4bK-t4-unacked");
    c.send(acked.as_bytes()).await;
    let refused = c.expect_status(503, WAIT).await;
    c.send(unacked.as_bytes()).await;
    let refused_too = c.expect_status(503, WAIT).await;
    let to = header(&refused, "To").unwrap().to_owned();
    c.send(ack(c.port(), "t4-acked", "z9hG4bK-t4-acked", &to).as_bytes())
        .await;
    // Free the slot, then wait past T4 and a sweep, but well inside 64·T1.
    let bye = in_dialog(c.port(), "t4-held", "BYE", 2, &tag, ("", ""));
    c.send(bye.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    assert!(common::eventually(WAIT, || ua.server.active_calls() == 0).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    c.send(unacked.as_bytes()).await;
    let again = c.recv(WAIT).await.expect("the cached answer");
    assert_eq!(again, refused_too, "unacknowledged: still its transaction");
    c.send(acked.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    assert_eq!(
        ua.store.count(CallState::Answered),
        2,
        "answered: the held call, then the acknowledged INVITE's copy as a new call"
    );
}
