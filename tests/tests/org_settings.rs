//! Per-org features and caps: set by the operator (the real binary's `org set`, or the API
//! with the ops token — never with the org's own key), enforced on sends through the API
//! (403 `feature_disabled`, 429 `org_limit_reached` with `Retry-After`). Both backends.

use integration_tests::both_backends;
use integration_tests::env::{count, Backend, World, OPS_TOKEN};
use serde_json::{json, Value};

fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let r = integration_tests::env::cli_run(url, &[], args);
    (r.ok, r.stdout, r.stderr)
}

async fn send(w: &World, channel: &str, to: &str) -> (u16, Option<String>, Value) {
    let r = w
        .client
        .post(format!("{}/api/v1/messages", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&json!({"channel": channel, "to": to, "body": "hello"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn outbound_messages(w: &World) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE org_id = $1 AND direction = 'outbound'")
        .bind(&w.org.id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap()
}

async fn features_and_caps_are_enforced(backend: Backend) {
    let w = World::new(backend).await;
    let (ok, out, err) = cli(
        &w.tdb.url,
        &[
            "org",
            "set",
            "acme",
            "--disable",
            "whatsapp",
            "--messages-per-day",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["features"]["whatsapp"], false);
    assert_eq!(shown["messages_per_day"], 2);
    let (ok, _, err) = cli(&w.tdb.url, &["org", "set", "acme", "--disable", "teleport"]);
    assert!(!ok && err.contains("unknown feature"), "{err}");

    // A disabled channel: 403, nothing created.
    let (status, _, body) = send(&w, "whatsapp", "+16505551234").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("feature_disabled"))
    );
    // The daily cap: two sends, then 429 with the wait until the next UTC day.
    for i in 0..2 {
        let (status, _, body) = send(&w, "sms", &format!("+1555765000{i}")).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, retry, body) = send(&w, "sms", "+15557650009").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("org_limit_reached"))
    );
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let outbound = outbound_messages(&w).await;
    assert_eq!(outbound, 2, "refused sends created nothing");

    // The org reads its settings with its key, but cannot change them with it.
    let own: Value = w.get_json(&w.org, "/api/v1/settings").await;
    assert_eq!(own["messages_per_day"], 2);
    let url = format!("{}/api/v1/orgs/acme/settings", w.gw.base);
    let lift = json!({"features": {}, "messages_per_day": null});
    let r = w
        .client
        .put(&url)
        .bearer_auth(&w.org.key)
        .json(&lift)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = w
        .client
        .put(&url)
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"features": {"fax": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = w
        .client
        .put(&url)
        .bearer_auth(OPS_TOKEN)
        .json(&lift)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _, body) = send(&w, "sms", "+15557650009").await;
    assert_eq!(status, 202, "the operator lifted the cap: {body}");
    assert_eq!(count(&w.db, "org_settings", &w.org.id).await, 1);
    w.gw.stop().await;
}
both_backends!(features_and_caps_are_enforced);

/// `ai_turns_per_hour` is counted per UTC hour, atomically: of 20 turns racing for a cap of
/// 5, exactly 5 are counted; the next hour starts afresh; no cap counts nothing (and
/// refuses nothing); a cap of 0 refuses every turn.
async fn ai_turns_are_capped_per_hour(backend: Backend) {
    use gateway::db::org_settings::{get, put, take_ai_turn};
    let w = World::new(backend).await;
    let pool = &w.db.pool;
    // The start of a UTC hour (1,800,000,000,000 ms is one).
    let hour: i64 = 1_800_000_000_000;
    assert!(take_ai_turn(pool, &w.org.id, hour).await.unwrap(), "no cap");
    assert_eq!(
        count(&w.db, "ai_turns", &w.org.id).await,
        0,
        "nothing written"
    );

    let mut s = get(pool, &w.org.id).await.unwrap();
    s.ai_turns_per_hour = Some(5);
    put(pool, &w.org.id, &s, 0).await.unwrap();
    let racing: Vec<_> = (0..20)
        .map(|i| {
            let (pool, org) = (pool.clone(), w.org.id.clone());
            tokio::spawn(async move { take_ai_turn(&pool, &org, hour + i * 1000).await })
        })
        .collect();
    let mut taken = 0;
    for r in racing {
        taken += usize::from(r.await.unwrap().unwrap());
    }
    assert_eq!(taken, 5, "exactly the cap is counted");
    assert!(!take_ai_turn(pool, &w.org.id, hour + 3_599_999)
        .await
        .unwrap());
    assert!(
        take_ai_turn(pool, &w.org.id, hour + 3_600_000)
            .await
            .unwrap(),
        "the next hour has its own count"
    );
    // Another org's turns are its own.
    let globex = integration_tests::env::create_org(&w.db, "globex", &w.twilio.base, 1.0).await;
    put(pool, &globex.id, &s, 0).await.unwrap();
    assert!(take_ai_turn(pool, &globex.id, hour).await.unwrap());

    s.ai_turns_per_hour = Some(0);
    put(pool, &w.org.id, &s, 0).await.unwrap();
    assert!(!take_ai_turn(pool, &w.org.id, hour + 7_200_000)
        .await
        .unwrap());
    w.gw.stop().await;
}
both_backends!(ai_turns_are_capped_per_hour);

/// `messages_per_day` holds under racing sends: 20 sends at once through the API against a
/// cap of 5 create exactly 5 messages, the other 15 are 429 `org_limit_reached` and create
/// nothing. (The old check counted the day's rows before inserting, so racing sends all saw
/// room.) An idempotent replay of an accepted send is answered again without taking another
/// message of the day; a send refused for another reason (an unknown channel account) takes
/// none either.
async fn the_daily_cap_holds_under_racing_sends(backend: Backend) {
    let w = World::new(backend).await;
    let (ok, _, err) = cli(
        &w.tdb.url,
        &["org", "set", "acme", "--messages-per-day", "5"],
    );
    assert!(ok, "{err}");
    let post = |to: String, key: Option<&'static str>| {
        let mut req = w
            .client
            .post(format!("{}/api/v1/messages", w.gw.base))
            .bearer_auth(&w.org.key)
            .json(&json!({"channel": "sms", "to": to, "body": "hello"}));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().map(str::to_string))
        }
    };
    // One accepted send with a key first; its replay must not count again.
    let first = post("+15557651000".into(), Some("k-1")).await;
    assert_eq!(first.0, 202, "{first:?}");
    let replay = post("+15557651000".into(), Some("k-1")).await;
    assert!(replay.0 < 300, "the replay is answered: {replay:?}");
    // Not configured: refused before any count.
    let (status, _, _) = send(&w, "whatsapp", "+16505551234").await;
    assert_eq!(status, 422);

    let racing = (0..20).map(|i| post(format!("+155576520{i:02}"), None));
    let results = futures_util::future::join_all(racing).await;
    let accepted = results.iter().filter(|r| r.0 == 202).count();
    let refused = results
        .iter()
        .filter(|r| r.0 == 429 && r.1.as_deref() == Some("org_limit_reached"))
        .count();
    println!("racing sends: {accepted} accepted, {refused} refused");
    assert_eq!((accepted, refused), (4, 16), "{results:?}");
    let outbound = outbound_messages(&w).await;
    assert_eq!(outbound, 5, "exactly the cap was created");
    w.gw.stop().await;
}
both_backends!(the_daily_cap_holds_under_racing_sends);
