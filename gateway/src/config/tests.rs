use super::*;

#[test]
fn defaults_are_valid() {
    let c = Config::from_parts("", &[]).unwrap();
    assert_eq!(c.http_addr, "127.0.0.1:8080");
    assert_eq!(c.public_base(), "http://127.0.0.1:8080");
}

#[test]
fn file_and_environment_combine_environment_wins() {
    let c = Config::from_parts(
        "http_addr = \"127.0.0.1:9000\"\n[delivery]\nmax_attempts = 3\n",
        &[
            ("delivery.max_attempts".into(), "9".into()),
            ("public_url".into(), "https://gw.example/".into()),
        ],
    )
    .unwrap();
    assert_eq!(c.http_addr, "127.0.0.1:9000");
    assert_eq!(c.delivery.max_attempts, 9);
    assert_eq!(c.public_base(), "https://gw.example");
}

#[test]
fn the_trunk_and_its_ringing_are_checked() {
    let set = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts("", &pairs)
    };
    let c = set(&[("sip.trunk", "127.0.0.1:5080")]).unwrap();
    assert_eq!(
        (c.sip.trunk.as_str(), c.sip.ring_secs),
        ("127.0.0.1:5080", 25)
    );
    assert!(ENV.contains(&("DARTWING_SIP_TRUNK", "sip.trunk")));
    let e = set(&[("sip.trunk", "carrier.example")]).unwrap_err();
    assert!(e.0.iter().any(|p| p.contains("sip.trunk")), "{:?}", e.0);
    // A ringing call is a send: it must end inside the send's time (15 s + 10 s here),
    // which matters only when calls are placed.
    let trunk = ("sip.trunk", "127.0.0.1:5080");
    assert!(set(&[trunk, ("sip.ring_secs", "25")]).is_ok());
    let e = set(&[trunk, ("sip.ring_secs", "26")]).unwrap_err();
    assert!(e.0[0].contains("sip.ring_secs"), "{:?}", e.0);
    let longer = ("delivery.send_timeout_ms", "30000");
    assert!(set(&[trunk, ("sip.ring_secs", "40"), longer]).is_ok());
    assert!(set(&[trunk, ("sip.ring_secs", "0")]).is_err());
    let short = ("delivery.send_timeout_ms", "1000");
    assert!(set(&[short]).is_ok(), "no trunk, no ringing to fit");
    assert!(set(&[trunk, short]).is_err());
    let e = set(&[("sip.calls_per_second", "0")]).unwrap_err();
    assert!(e.0[0].contains("sip.calls_per_second"), "{:?}", e.0);
    assert!(set(&[("sip.outbound_max_call_secs", "0")]).is_err());
    let user = ("sip.trunk_username", "acme");
    let e = set(&[trunk, user]).unwrap_err();
    assert!(e.0[0].contains("sip.trunk_password"), "{:?}", e.0);
    let c = set(&[trunk, user, ("sip.trunk_password", "pw")]).unwrap();
    assert_eq!(c.sip.trunk_account().unwrap().username, "acme");
    assert!(Config::default().sip.trunk_account().is_none());
    assert!(ENV.contains(&("DARTWING_SIP_TRUNK_PASSWORD", "sip.trunk_password")));
}

#[test]
fn switches_from_the_environment_are_true_or_false() {
    let off = [("sip.whisper_prompt".to_owned(), "off".to_owned())];
    assert!(!Config::from_parts("", &off).unwrap().sip.whisper_prompt);
    let on = [("sip.whisper_prompt".to_owned(), "true".to_owned())];
    assert!(Config::from_parts("", &on).unwrap().sip.whisper_prompt);
    let bad = [("sip.whisper_prompt".to_owned(), "maybe".to_owned())];
    let e = Config::from_parts("", &bad).unwrap_err();
    assert!(e.0[0].contains("true or false"), "{:?}", e.0);
    // The receptionist ends whole turns early unless told not to.
    assert!(Config::from_parts("", &[]).unwrap().sip.early_end);
    let late = [("sip.early_end".to_owned(), "false".to_owned())];
    assert!(!Config::from_parts("", &late).unwrap().sip.early_end);
    assert!(ENV.contains(&("DARTWING_SIP_EARLY_END", "sip.early_end")));
}

#[test]
fn kafka_settings_from_the_environment() {
    let c = Config::from_parts("", &[]).unwrap();
    assert!(c.kafka.brokers.is_empty(), "embedded log by default");
    assert_eq!(c.kafka.topic_prefix, "dartwing.");
    let c = Config::from_parts(
        "",
        &[
            ("kafka.brokers".into(), "10.0.0.1:9092,kafka-2:9093".into()),
            ("kafka.topic_prefix".into(), "acme.".into()),
            ("kafka.delivery_timeout_ms".into(), "2500".into()),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.brokers, "10.0.0.1:9092,kafka-2:9093");
    assert_eq!(c.kafka.topic_prefix, "acme.");
    assert_eq!(c.kafka.delivery_timeout_ms, 2500);
    let err = Config::from_parts(
        "[kafka]\nbrokers = \"kafka-1\"\ntopic_prefix = \"a b\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_parts(
        "colour = 1\n[delivery]\nretries = 2\n[relay]\n",
        &[("ingest.max_batch".into(), "many".into())],
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
    assert!(err.to_string().contains("unknown key `colour`"));
    assert!(err.to_string().contains("unknown key `delivery.retries`"));
    assert!(err.to_string().contains("ingest.max_batch"));
    let err = Config::from_parts(
        "http_addr = \"nowhere\"\ndatabase_url = \"mysql://x\"\n[relay]\nbatch = 0\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
}
