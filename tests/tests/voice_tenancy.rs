//! Agents belong to their org (issue 9): two orgs each have an agent `alice`, each registers
//! in its own realm through its org's domain, a call is transferred only to its own org's
//! `alice`, and an address that names no single agent gets nothing; registrations live in
//! the database, so a call on one node reaches an agent registered on another. Over real
//! sockets against the running gateway, with the REGISTERs and INVITEs written out.

use integration_tests::both_backends;
use integration_tests::env::{create_org, test_config, Backend, TestGateway, World};
use integration_tests::sip;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn port_of(sock: &UdpSocket) -> u16 {
    sock.local_addr().unwrap().port()
}

/// A route of `org_id`'s number to the DTMF menu, whose key 1 transfers to `alice`.
async fn menu_route(w: &World, org_id: &str, number: &str) {
    let route = gateway::db::calls::Route {
        number: number.to_owned(),
        org_id: org_id.to_owned(),
        app: "menu".into(),
        agent: Some("alice".into()),
        allow_refer: false,
    };
    assert!(gateway::db::calls::add_route(&w.db.pool, &route, 0)
        .await
        .unwrap());
}

/// Calls `number` on `sip`, presses 1, and returns the caller's socket (keep it: the call
/// lives while the test looks at where the transfer went).
async fn call_and_press_1(sip: SocketAddr, number: &str, call_id: &str) -> UdpSocket {
    let (caller, to) = sip::answer_call(sip, number, call_id).await;
    sip::press(&caller, sip, number, call_id, &to, '1').await;
    caller
}

/// The first INVITE `sock` receives within `wait` (other requests are skipped).
async fn invite_to(sock: &UdpSocket, wait: Duration) -> Option<String> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let text = sip::recv(sock, left).await?;
        if text.starts_with("INVITE ") {
            return Some(text);
        }
    }
}

/// Answers an INVITE 486 Busy Here (the gateway then ACKs it).
async fn busy(phone: &UdpSocket, sip: SocketAddr, invite: &str) {
    let reply = sip::reply_to(invite, 486, "Busy Here");
    phone.send_to(reply.as_bytes(), sip).await.unwrap();
}

async fn agents_of_two_orgs_share_a_name_and_each_call_reaches_its_own(backend: Backend) {
    let w = World::new(backend).await;
    let sip_addr = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let globex = create_org(&w.db, "globex", &w.twilio.base, 10.0).await;
    let pool = &w.db.pool;
    // What `voice agent add` does: each org's agent in the org's realm (its slug).
    gateway::db::sip_agents::upsert(pool, &w.org.id, "alice", "acme", "acme-secret-1", 0)
        .await
        .unwrap();
    gateway::db::sip_agents::upsert(pool, &globex.id, "alice", "globex", "globex-secret-1", 0)
        .await
        .unwrap();

    let acme_phone = phone().await;
    let (status, text, realm) =
        sip::register(&acme_phone, sip_addr, "alice", "acme", "acme-secret-1").await;
    assert_eq!((status, realm.as_str()), (200, "acme"), "{text}");
    let globex_phone = phone().await;
    let (status, text, realm) = sip::register(
        &globex_phone,
        sip_addr,
        "alice",
        "globex.voice.example.com",
        "globex-secret-1",
    )
    .await;
    assert_eq!((status, realm.as_str()), (200, "globex"), "{text}");

    // Globex's password does not open acme's alice.
    let intruder = phone().await;
    let (status, text, realm) =
        sip::register(&intruder, sip_addr, "alice", "acme", "globex-secret-1").await;
    assert_eq!((status, realm.as_str()), (403, "acme"), "{text}");
    // An address that names no single org's alice is challenged in the configured realm,
    // like any stranger, and no password opens it.
    let (status, text, realm) =
        sip::register(&intruder, sip_addr, "alice", "127.0.0.1", "acme-secret-1").await;
    assert_eq!((status, realm.as_str()), (403, "dartwing"), "{text}");

    // Each org's binding is its own phone's, and the intruder bound nothing.
    let contacts = |org_id: String| async move {
        gateway::db::sip_agents::bindings(pool, &org_id, "alice")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.contact)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        contacts(w.org.id.clone()).await,
        [format!("sip:alice@127.0.0.1:{}", port_of(&acme_phone))]
    );
    assert_eq!(
        contacts(globex.id.clone()).await,
        [format!("sip:alice@127.0.0.1:{}", port_of(&globex_phone))]
    );

    // Acme's caller presses 1: acme's alice rings, globex's does not; and the other way.
    menu_route(&w, &w.org.id, "15550100000").await;
    menu_route(&w, &globex.id, "15550200000").await;
    let _acme_caller = call_and_press_1(sip_addr, "15550100000", "tenancy-acme").await;
    let invite = invite_to(&acme_phone, Duration::from_secs(5))
        .await
        .expect("acme's alice is called");
    // Busy: the transfer ends here (no INVITE retransmissions left to mistake for a call).
    busy(&acme_phone, sip_addr, &invite).await;
    assert_eq!(
        invite_to(&globex_phone, Duration::from_millis(1500)).await,
        None,
        "globex's alice is not"
    );
    let _globex_caller = call_and_press_1(sip_addr, "15550200000", "tenancy-globex").await;
    let invite = invite_to(&globex_phone, Duration::from_secs(5))
        .await
        .expect("globex's alice is called");
    busy(&globex_phone, sip_addr, &invite).await;
    assert_eq!(
        invite_to(&acme_phone, Duration::from_millis(1500)).await,
        None
    );
    assert_eq!(invite_to(&intruder, Duration::from_millis(200)).await, None);
    w.gw.stop().await;
}
both_backends!(agents_of_two_orgs_share_a_name_and_each_call_reaches_its_own);

/// Two gateway nodes on one PostgreSQL: the agent registers with node A, the call arrives
/// at node B, and B's transfer rings the agent (B sends the INVITE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registered_on_one_node_takes_a_call_arriving_at_another() {
    let w = World::with_config(Backend::Postgres, |c| c.sip.node_id = "node-a".into()).await;
    let sip_a = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let mut config_b = test_config(&w.tdb.url);
    config_b.sip.node_id = "node-b".into();
    let gw_b = TestGateway::start(config_b).await;
    let sip_b = gw_b.running.sip.as_ref().expect("SIP is on").local_addr();
    assert_ne!(sip_a, sip_b);

    gateway::db::sip_agents::upsert(&w.db.pool, &w.org.id, "alice", "acme", "acme-secret-1", 0)
        .await
        .unwrap();
    let alice = phone().await;
    let (status, text, _) = sip::register(&alice, sip_a, "alice", "acme", "acme-secret-1").await;
    assert_eq!(status, 200, "{text}");
    menu_route(&w, &w.org.id, "15550100000").await;

    let _caller = call_and_press_1(sip_b, "15550100000", "two-nodes").await;
    let invite = invite_to(&alice, Duration::from_secs(5))
        .await
        .expect("node B calls the agent registered on node A");
    let via = invite
        .lines()
        .find(|l| l.starts_with("Via:"))
        .expect("a Via");
    assert!(
        via.contains(&format!(":{}", sip_b.port())),
        "sent by node B: {via}"
    );
    gw_b.stop().await;
    w.gw.stop().await;
}
