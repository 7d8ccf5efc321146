//! The real SIPp drives calls against the user agent; every call must succeed and be
//! recorded by the store (ringing, answered, ended by the caller's BYE).

mod sip_common;
use sip_common as common;

use common::{eventually, free_udp_port, sipp, start_ua};
use std::time::Duration;
use voice::ua::{CallState, EndCause, UaConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_over_udp_50_calls_all_answered_and_recorded() {
    let ua = start_ua(UaConfig::default()).await;
    let target = ua.addr().to_string();
    let port = free_udp_port().to_string();
    let out = sipp(&[
        "-sn",
        "uac",
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-s",
        "100",
        "-m",
        "50",
        "-r",
        "20",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
    ])
    .await;
    assert!(out.status.success(), "sipp failed: {}", out.status);
    let store = &ua.store;
    assert!(
        eventually(Duration::from_secs(5), || store
            .ended_with(EndCause::CallerHangup)
            == 50)
        .await,
        "ended: {}",
        store.ended_with(EndCause::CallerHangup)
    );
    assert_eq!(store.count(CallState::Ringing), 50);
    assert_eq!(store.count(CallState::Answered), 50);
    assert_eq!(store.ended(), 50);
    assert!(store
        .transitions()
        .iter()
        .all(|t| t.org == "acme" && t.to == "100"));
    assert!(eventually(Duration::from_secs(5), || ua.server.active_calls() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_over_tcp_20_calls_all_answered() {
    let ua = start_ua(UaConfig::default()).await;
    let target = ua.addr().to_string();
    let port = free_udp_port().to_string();
    let out = sipp(&[
        "-sn",
        "uac",
        &target,
        "-t",
        "t1",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-s",
        "100",
        "-m",
        "20",
        "-r",
        "20",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
    ])
    .await;
    assert!(out.status.success(), "sipp failed: {}", out.status);
    let store = &ua.store;
    assert!(
        eventually(Duration::from_secs(5), || store
            .ended_with(EndCause::CallerHangup)
            == 20)
        .await
    );
    assert_eq!(store.count(CallState::Answered), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_number_gets_404_and_no_call_is_recorded() {
    let ua = start_ua(UaConfig::default()).await;
    let client = common::Client::new(ua.addr()).await;
    let invite =
        common::invite(client.port(), "unknown-1", "z9hG4bK-u1").replace("sip:100@", "sip:999@");
    client.send(invite.as_bytes()).await;
    client.expect_status(404, Duration::from_secs(2)).await;
    assert!(ua.store.transitions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_info_dtmf_in_10_calls_all_answered_200() {
    let ua = start_ua(UaConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("uac_info_dtmf.xml");
    std::fs::write(&xml, include_str!("scenarios/uac_info_dtmf.xml")).unwrap();
    let target = ua.addr().to_string();
    let port = free_udp_port().to_string();
    let out = sipp(&[
        "-sf",
        xml.to_str().unwrap(),
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-s",
        "100",
        "-m",
        "10",
        "-r",
        "10",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
    ])
    .await;
    assert!(out.status.success(), "sipp failed: {}", out.status);
    let store = &ua.store;
    assert!(
        eventually(Duration::from_secs(5), || store
            .ended_with(EndCause::CallerHangup)
            == 10)
        .await
    );
}
