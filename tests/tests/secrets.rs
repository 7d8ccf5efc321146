//! Provider credentials at rest, with the real binary: an account added with
//! `DARTWING_SECRET_KEYS` is stored sealed (no token in the row); a gateway with the key
//! verifies the provider's signed webhooks with it, one without the key cannot use the account
//! (and stores nothing); `secrets rotate` re-seals under a new first key, after which the new
//! key alone suffices. Both backends.

use integration_tests::both_backends;
use integration_tests::env::{free_port, Backend, ChildGateway, TestDb, TestOrg};
use integration_tests::twilio::{inbound_sms, post_signed};

fn cli(url: &str, keys: &str, args: &[&str]) -> String {
    integration_tests::env::cli_ok(url, &[("DARTWING_SECRET_KEYS", keys)], args)
}

async fn stored_config(db: &gateway::db::Db) -> String {
    let row: (String,) = sqlx::query_as("SELECT config FROM channel_accounts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    row.0
}

async fn webhook_status(gw: &ChildGateway, org: &TestOrg, sid: &str) -> u16 {
    let params = inbound_sms(org, sid, "+15557650000", "sealed");
    let client = reqwest::Client::new();
    post_signed(
        &client,
        &gw.base,
        "/webhooks/twilio/acme/sms",
        &org.auth_token,
        &params,
    )
    .await
    .status()
    .as_u16()
}

async fn credentials_are_sealed_at_rest_and_rotated(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let k1 = format!(
        "k1:{}",
        cli(&tdb.url, "", &["secrets", "generate-key"]).trim()
    );
    let k2 = format!(
        "k2:{}",
        cli(&tdb.url, "", &["secrets", "generate-key"]).trim()
    );
    cli(&tdb.url, &k1, &["org", "create", "acme"]);
    let org_row = gateway::db::orgs::by_slug(&db.pool, "acme")
        .await
        .unwrap()
        .unwrap();
    let org = TestOrg {
        slug: "acme".into(),
        id: org_row.id,
        key: String::new(),
        account_sid: format!("AC{}", "a".repeat(32)),
        auth_token: "tok-sealed-secret-123".into(),
        from: "+15550001111".into(),
    };
    cli(
        &tdb.url,
        &k1,
        &[
            "channel",
            "add",
            "twilio-sms",
            "--org",
            "acme",
            "--account-sid",
            &org.account_sid,
            "--auth-token",
            &org.auth_token,
            "--from",
            &org.from,
        ],
    );
    // The receptionist's model key is sealed the same way.
    cli(
        &tdb.url,
        &k1,
        &[
            "receptionist",
            "set",
            "--org",
            "acme",
            "--responder-url",
            "http://127.0.0.1:9/v1",
            "--responder-model",
            "small",
            "--responder-key",
            "sk-model-secret",
        ],
    );
    let responder_key = || async {
        let s = gateway::db::receptionist::settings(&db.pool, &org.id)
            .await
            .unwrap();
        s.responder_key.unwrap()
    };
    let sealed = responder_key().await;
    assert!(
        sealed.starts_with("enc:v1:k1:") && !sealed.contains("sk-model-secret"),
        "{sealed}"
    );
    let stored = stored_config(&db).await;
    assert!(stored.starts_with("enc:v1:k1:"), "{stored}");
    assert!(!stored.contains("tok-sealed") && !stored.contains(&org.account_sid));

    // With the key: the token opens and verifies the provider's signature.
    let gw =
        ChildGateway::spawn_with(&tdb.url, free_port(), &[("DARTWING_SECRET_KEYS", &k1)]).await;
    assert_eq!(
        webhook_status(&gw, &org, "SM00000000000000000000000000000001").await,
        200
    );
    drop(gw);
    // Without it: the account is unusable, and the webhook is refused as for an unknown
    // account (401, like a bad signature); nothing stored.
    let gw = ChildGateway::spawn_with(&tdb.url, free_port(), &[("DARTWING_LOG", "off")]).await;
    assert_eq!(
        webhook_status(&gw, &org, "SM00000000000000000000000000000002").await,
        401
    );
    drop(gw);
    assert_eq!(
        integration_tests::env::count(&db, "messages", &org.id).await,
        1
    );

    // Rotation: a new first key, the old one still listed; then the new key alone works.
    let both = format!("{k2},{k1}");
    let out = cli(&tdb.url, &both, &["secrets", "rotate"]);
    assert!(
        out.contains("re-sealed 1 account(s) and 1 responder key(s)"),
        "{out}"
    );
    assert!(stored_config(&db).await.starts_with("enc:v1:k2:"));
    assert!(responder_key().await.starts_with("enc:v1:k2:"));
    let out = cli(&tdb.url, &both, &["secrets", "rotate"]);
    assert!(
        out.contains("re-sealed 0 account(s) and 0 responder"),
        "idempotent: {out}"
    );
    let gw =
        ChildGateway::spawn_with(&tdb.url, free_port(), &[("DARTWING_SECRET_KEYS", &k2)]).await;
    assert_eq!(
        webhook_status(&gw, &org, "SM00000000000000000000000000000003").await,
        200
    );
    assert_eq!(
        integration_tests::env::count(&db, "messages", &org.id).await,
        2
    );
}
both_backends!(credentials_are_sealed_at_rest_and_rotated);
