//! Every provider through the [`ChannelPlugin`] trait, as the runtime sees it: built from its
//! stored JSON by the registry, each names its provider, channel, account and sender keys
//! (the runtime's pacing and routing keys, persisted with outbound messages), its rate and
//! address rules, and sends through the scripted HTTP server.

use crate::test_http::{client, outbound, serve, Reply};
use crate::{registry, ChannelPlugin};
use state_machines::Channel;
use std::sync::Arc;

fn build(provider: &str, json: &str) -> Arc<dyn ChannelPlugin> {
    let spec = registry::find(provider).expect("a provider");
    match (spec.build)(json, client()) {
        Ok(p) => p,
        Err(e) => panic!("{provider}: {e}"),
    }
}

/// A 32-byte Ed25519 public key in base64 (any 32 bytes decode as one for the config check).
const TELNYX_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

struct Expect<'a> {
    provider: &'a str,
    channel: Channel,
    account_key: &'a str,
    sender_key: &'a str,
    sender_address: &'a str,
    rate: f64,
    window: bool,
}

fn check(plugin: &dyn ChannelPlugin, want: &Expect<'_>) {
    assert_eq!(plugin.provider(), want.provider);
    assert_eq!(plugin.channel(), want.channel);
    assert_eq!(plugin.account_key(), want.account_key);
    assert_eq!(plugin.sender_key(), want.sender_key);
    assert_eq!(plugin.sender_address(), want.sender_address);
    assert_eq!(plugin.rate_limit_per_second(), want.rate);
    let rules = plugin.check_outbound("hi", None).unwrap();
    assert_eq!(rules.needs_service_window, want.window, "{}", want.provider);
    assert!(plugin.check_outbound(" ", None).is_err());
}

#[tokio::test]
async fn twilio_through_the_trait() {
    let sid = format!("AC{}", "1".repeat(32));
    let (base, seen) = serve(vec![Reply::json(201, r#"{"sid":"SM1","status":"queued"}"#)]).await;
    let json = format!(
        r#"{{"account_sid":"{sid}","auth_token":"t","from":"+15550001111",
            "messages_per_second":3,"api_base":"{base}"}}"#
    );
    let plugin = build("twilio", &json);
    let account = format!("twilio:{sid}");
    let sender = format!("twilio:{sid}:+15550001111");
    check(
        plugin.as_ref(),
        &Expect {
            provider: "twilio",
            channel: Channel::Sms,
            account_key: &account,
            sender_key: &sender,
            sender_address: "+15550001111",
            rate: 3.0,
            window: false,
        },
    );
    assert_eq!(
        plugin.normalize_recipient("15550002222").unwrap(),
        "+15550002222"
    );
    assert!(plugin.normalize_recipient("bob").is_err());
    let receipt = plugin
        .send(&outbound(
            "+15550002222",
            "hi",
            "https://gw.test/webhooks/x/acme",
        ))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "SM1");
    assert_eq!(seen.await.unwrap().len(), 1);
}

#[tokio::test]
async fn telnyx_through_the_trait() {
    let (base, seen) = serve(vec![Reply::json(200, r#"{"data":{"id":"t1"}}"#)]).await;
    let json = format!(
        r#"{{"api_key":"KEY1","public_key":"{TELNYX_KEY}","from":"+15550003333",
            "messages_per_second":2,"api_base":"{base}"}}"#
    );
    let plugin = build("telnyx", &json);
    check(
        plugin.as_ref(),
        &Expect {
            provider: "telnyx",
            channel: Channel::Sms,
            account_key: "telnyx:+15550003333",
            sender_key: "telnyx:+15550003333",
            sender_address: "+15550003333",
            rate: 2.0,
            window: false,
        },
    );
    assert_eq!(
        plugin.normalize_recipient("+15550002222").unwrap(),
        "+15550002222"
    );
    assert!(plugin.normalize_recipient("+0123").is_err());
    let receipt = plugin
        .send(&outbound(
            "+15550002222",
            "hi",
            "https://gw.test/webhooks/x/acme",
        ))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "t1");
    assert_eq!(seen.await.unwrap().len(), 1);
}

#[tokio::test]
async fn whatsapp_through_the_trait() {
    let (base, seen) = serve(vec![
        Reply::json(200, r#"{"messages":[{"id":"wamid.1"}]}"#),
        Reply::json(200, r#"{"url":"http://127.0.0.1:9/x","file_size":100}"#),
    ])
    .await;
    let json = format!(
        r#"{{"phone_number_id":"1065","access_token":"a","app_secret":"s",
            "verify_token":"v","messages_per_second":40,"api_base":"{base}"}}"#
    );
    let plugin = build("whatsapp", &json);
    check(
        plugin.as_ref(),
        &Expect {
            provider: "whatsapp",
            channel: Channel::Whatsapp,
            account_key: "whatsapp:1065",
            sender_key: "whatsapp:1065",
            sender_address: "1065",
            rate: 40.0,
            window: true,
        },
    );
    assert_eq!(
        plugin.normalize_recipient("15550002222").unwrap(),
        "+15550002222"
    );
    assert!(plugin.normalize_recipient("x").is_err());
    let receipt = plugin
        .send(&outbound(
            "+15550002222",
            "hi",
            "https://gw.test/webhooks/x/acme",
        ))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "wamid.1");
    // Media goes through the plugin's own download (refused here by its declared size).
    assert!(matches!(
        plugin.fetch_media("42", 10).await,
        Err(crate::MediaError::TooLarge { limit: 10 })
    ));
    assert_eq!(seen.await.unwrap().len(), 2);
}

#[tokio::test]
async fn sms_plugins_fetch_no_media_and_default_their_rates() {
    let sid = format!("AC{}", "1".repeat(32));
    let json = format!(r#"{{"account_sid":"{sid}","auth_token":"t","from":"+15550001111"}}"#);
    let plugin = build("twilio", &json);
    assert_eq!(plugin.rate_limit_per_second(), 10.0);
    let json = format!(r#"{{"api_key":"K","public_key":"{TELNYX_KEY}","from":"+15550003333"}}"#);
    assert_eq!(build("telnyx", &json).rate_limit_per_second(), 6.0);
    assert!(matches!(
        plugin.fetch_media("https://x/y", 10).await,
        Err(crate::MediaError::Unsupported(_))
    ));
}
