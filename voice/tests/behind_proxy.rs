//! The user agent behind a real Kamailio that record-routes: SIPp calls through the proxy,
//! our 200's Contact must bring the ACK back to us, and our BYE (max call duration) must
//! follow the route set back through the proxy to the caller.

mod sip_common;
use sip_common as common;

use common::{eventually, free_udp_port, sipp, start_ua, Client};
use std::path::{Path, PathBuf};
use std::time::Duration;
use voice::ua::{CallState, EndCause, UaConfig};

/// A Kamailio process, stopped (SIGTERM to its main process, which stops its children)
/// when dropped.
struct Kamailio {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn kamailio(port: u16, upstream: std::net::SocketAddr) -> Kamailio {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $du = "sip:{upstream}";
    t_relay();
}}
"#
    );
    let path = dir.path().join("kamailio.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = std::process::Command::new("kamailio")
        .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
        .arg(&path)
        .arg("-w")
        .arg(dir.path())
        .arg("-Y")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("kamailio must be installed for this test (scripts/ensure-voice-peers.sh): {e}")
        });
    Kamailio { child, _dir: dir }
}

fn scenario(dir: &Path, proxy_port: u16) -> PathBuf {
    let template = include_str!("scenarios/uac_uas_hangs_up.xml");
    let via = format!(r"SIP/2\.0/UDP 127\.0\.0\.1:{proxy_port};branch=");
    let path = dir.join("uac_uas_hangs_up.xml");
    std::fs::write(&path, template.replace("PROXY_VIA", &via)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_a_record_routing_kamailio_and_our_bye_follows_the_route_set() {
    let ua = start_ua(UaConfig {
        max_call_duration: Duration::from_millis(300),
        ..UaConfig::default()
    })
    .await;
    let proxy_port = free_udp_port();
    let _proxy = kamailio(proxy_port, ua.addr());
    let proxy: std::net::SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    // Ready when an OPTIONS through the proxy comes back answered by the UA.
    let probe = Client::new(proxy).await;
    let mut ready = false;
    for _ in 0..50 {
        if probe.options_ok().await {
            ready = true;
            break;
        }
    }
    assert!(ready, "kamailio did not start or does not forward");

    let dir = tempfile::tempdir().unwrap();
    let xml = scenario(dir.path(), proxy_port);
    let port = free_udp_port().to_string();
    let target = proxy.to_string();
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
            .ended_with(EndCause::MaxDuration)
            == 10)
        .await
    );
    assert_eq!(store.count(CallState::Answered), 10);
    assert_eq!(store.ended_with(EndCause::NoAck), 0);
}
