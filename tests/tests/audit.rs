//! The audit log: admin actions from the real binary's CLI (with their user and host, secret
//! values redacted) and from the operator's API (with the client's address) are listed by
//! `GET /api/v1/audit`, newest first, per org only; the table refuses updates and deletes.
//! Both backends.

use integration_tests::both_backends;
use integration_tests::env::{create_org, Backend, World, OPS_TOKEN};
use serde_json::{json, Value};

fn cli(url: &str, args: &[&str]) -> String {
    integration_tests::env::cli_ok(url, &[], args)
}

async fn admin_actions_are_recorded_append_only(backend: Backend) {
    let w = World::new(backend).await;
    cli(
        &w.tdb.url,
        &["org", "set", "acme", "--messages-per-day", "50"],
    );
    let key = cli(
        &w.tdb.url,
        &["apikey", "create", "--org", "acme", "--label", "temp"],
    );
    let key = key.lines().last().unwrap().trim().to_string();
    cli(
        &w.tdb.url,
        &["apikey", "revoke", "--org", "acme", "--key", &key],
    );
    let r = w
        .client
        .put(format!("{}/api/v1/orgs/acme/settings", w.gw.base))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"features": {"email": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let entries: Value =
        integration_tests::env::eventually(std::time::Duration::from_secs(5), || async {
            let v = w.get_json(&w.org, "/api/v1/audit").await;
            (v.as_array()?.len() >= 4).then_some(v)
        })
        .await;
    let entries = entries.as_array().unwrap();
    eprintln!("{entries:#?}");
    assert_eq!(entries[0]["action"], "org.settings");
    assert_eq!(entries[0]["actor"], "operator");
    assert_eq!(entries[0]["source"], "127.0.0.1");
    assert_eq!(entries[0]["detail"]["features"]["email"], false);
    assert_eq!(entries[1]["action"], "apikey.revoke");
    assert_eq!(entries[2]["action"], "apikey.create");
    assert_eq!(entries[3]["action"], "org.set");
    assert!(entries[3]["actor"].as_str().unwrap().starts_with("cli:"));
    assert!(entries[3]["detail"]["argv"]
        .to_string()
        .contains("--messages-per-day"));
    let all = serde_json::to_string(entries).unwrap();
    assert!(
        !all.contains(&key),
        "secret values are never recorded: {all}"
    );
    // Another org sees none of it.
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1.0).await;
    assert_eq!(w.get_json(&globex, "/api/v1/audit").await, json!([]));
    // Append-only: the database refuses to change or remove an entry.
    for sql in [
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
    ] {
        assert!(
            sqlx::query(sql).execute(&w.db.pool).await.is_err(),
            "{sql} was allowed"
        );
    }
    w.gw.stop().await;
}
both_backends!(admin_actions_are_recorded_append_only);
