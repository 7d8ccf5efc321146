//! Contacts and their tags through the API, on both backends, and a broadcast whose audience
//! is "everyone tagged …": saving finds a person by phone or email (tags add up), tags are
//! replaced, listed by tag, moved by a merge; bad input and other orgs' ids change nothing.

use integration_tests::both_backends;
use integration_tests::env::{create_org, eventually, Backend, World};
use serde_json::{json, Value};
use std::time::Duration;

async fn save(w: &World, key: &str, body: Value) -> (u16, Value) {
    let r = w
        .client
        .post(format!("{}/api/v1/contacts", w.gw.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn set_tags(w: &World, key: &str, id: &str, tags: Value) -> (u16, Value) {
    let r = w
        .client
        .put(format!("{}/api/v1/contacts/{id}/tags", w.gw.base))
        .bearer_auth(key)
        .json(&json!({ "tags": tags }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn tagged(w: &World, tag: &str) -> Vec<String> {
    let list = w
        .get_json(&w.org, &format!("/api/v1/contacts?tag={tag}"))
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn contacts_are_saved_tagged_and_listed(backend: Backend) {
    let w = World::new(backend).await;
    let key = w.org.key.clone();
    let (status, ann) = save(
        &w,
        &key,
        json!({"name": "Ann", "phone": "+15550000001", "tags": ["night-shift", "Nurses"]}),
    )
    .await;
    assert_eq!(status, 201, "{ann}");
    assert_eq!(ann["tags"], json!(["night-shift", "nurses"]));
    assert_eq!(
        ann["identities"],
        json!([{"channel": "sms", "address": "+15550000001"}])
    );
    // The same number again is the same person: the email joins, tags add up.
    let (status, again) = save(
        &w,
        &key,
        json!({"phone": "+15550000001", "email": "Ann@Example.org", "tags": ["icu"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], ann["id"]);
    assert_eq!(again["name"], "Ann", "a missing name keeps the old one");
    assert_eq!(again["tags"], json!(["icu", "night-shift", "nurses"]));
    assert_eq!(again["identities"][0]["address"], "ann@example.org");
    // Found by email alone too.
    let (status, by_mail) = save(&w, &key, json!({"email": "ann@example.org"})).await;
    assert_eq!((status, &by_mail["id"]), (200, &ann["id"]));
    let (_, bob) = save(
        &w,
        &key,
        json!({"name": "Bob", "email": "bob@example.org", "tags": ["day-shift"]}),
    )
    .await;
    assert_eq!(tagged(&w, "night-shift").await, ["Ann"]);
    assert_eq!(tagged(&w, "day-shift").await, ["Bob"]);
    let id = ann["id"].as_str().unwrap();
    let (status, moved) = set_tags(&w, &key, id, json!(["day-shift"])).await;
    assert_eq!(status, 200);
    assert_eq!(moved["tags"], json!(["day-shift"]));
    assert!(tagged(&w, "night-shift").await.is_empty());
    let mut both = tagged(&w, "day-shift").await;
    both.sort();
    assert_eq!(both, ["Ann", "Bob"]);
    let one = w.get_json(&w.org, &format!("/api/v1/contacts/{id}")).await;
    assert_eq!(one["name"], "Ann");

    // Bad input: 400 and nothing changes.
    for bad in [
        json!({"name": "Nobody"}),
        json!({"phone": "555"}),
        json!({"email": "not-an-address"}),
        json!({"phone": "+15550000009", "tags": ["no spaces"]}),
        json!({"phone": "+15550000009", "tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
        json!({"phone": "+15550000009", "colour": "red"}),
    ] {
        let (status, body) = save(&w, &key, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(set_tags(&w, &key, id, json!(["BAD TAG"])).await.0, 400);
    let all = w.get_json(&w.org, "/api/v1/contacts").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(
        w.get_json(&w.org, &format!("/api/v1/contacts/{id}")).await["tags"],
        json!(["day-shift"])
    );

    // Another org sees none of it and cannot tag it.
    let other = create_org(&w.db, "globex", &w.twilio.base, 10.0).await;
    assert_eq!(
        w.get(&other, &format!("/api/v1/contacts/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(set_tags(&w, &other.key, id, json!(["x"])).await.0, 404);
    assert_eq!(w.get_json(&other, "/api/v1/contacts").await, json!([]));

    // A merge moves the tags to the contact kept.
    let bob_id = bob["id"].as_str().unwrap();
    set_tags(&w, &key, bob_id, json!(["icu"])).await;
    let r = w
        .client
        .post(format!("{}/api/v1/contacts/merge", w.gw.base))
        .bearer_auth(&key)
        .json(&json!({"from": bob_id, "into": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kept = w.get_json(&w.org, &format!("/api/v1/contacts/{id}")).await;
    assert_eq!(kept["tags"], json!(["day-shift", "icu"]));
    assert_eq!(
        w.get(&w.org, &format!("/api/v1/contacts/{bob_id}"))
            .await
            .status(),
        404
    );
}
both_backends!(contacts_are_saved_tagged_and_listed);

async fn a_broadcast_reaches_everyone_with_a_tag(backend: Backend) {
    let w = World::new(backend).await;
    let key = w.org.key.clone();
    for (name, phone, tag) in [
        ("Ann", "+15550000001", "night-shift"),
        ("Bob", "+15550000002", "night-shift"),
        ("Cy", "+15550000003", "day-shift"),
    ] {
        let (status, _) = save(
            &w,
            &key,
            json!({"name": name, "phone": phone, "tags": [tag]}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let post = |body: Value| {
        let w = &w;
        async move {
            w.client
                .post(format!("{}/api/v1/broadcasts", w.gw.base))
                .bearer_auth(&w.org.key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(json!({
        "name": "Shift cover",
        "tags": ["night-shift"],
        "recipients": [{"phone": "+15550000002", "name": "Robert"}],
        "steps": [{"channel": "sms", "after_secs": 0, "body": "{{name}}: cover needed tonight"}],
        "require_ack": false,
    }))
    .await;
    assert_eq!(r.status(), 202);
    let made: Value = r.json().await.unwrap();
    assert_eq!(
        made["recipients"], 2,
        "Bob listed and tagged is one person: {made}"
    );
    eventually(Duration::from_secs(20), || async {
        (w.twilio.received().len() == 2).then_some(())
    })
    .await;
    let mut to: Vec<(String, String)> = w
        .twilio
        .received()
        .iter()
        .map(|r| (r.form["To"].clone(), r.form["Body"].clone()))
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            ("+15550000001".into(), "Ann: cover needed tonight".into()),
            // The listed entry comes first and wins over the tagged contact.
            ("+15550000002".into(), "Robert: cover needed tonight".into()),
        ]
    );
    // A tag nobody carries: refused, nothing stored.
    let r = post(json!({
        "name": "Nobody", "tags": ["weekend"],
        "steps": [{"channel": "sms", "after_secs": 0, "body": "hi"}],
    }))
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "no_recipients"
    );
    let r = post(json!({
        "name": "Bad", "tags": ["Not A Tag"],
        "steps": [{"channel": "sms", "after_secs": 0, "body": "hi"}],
    }))
    .await;
    assert_eq!(r.status(), 400);
    let list = w.get_json(&w.org, "/api/v1/broadcasts").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}
both_backends!(a_broadcast_reaches_everyone_with_a_tag);

/// The operator's CLI: contacts saved, tagged and listed; a broadcast shown, exported and
/// cancelled from the command line; bad input and another org's ids change nothing.
async fn the_cli_tags_people_and_steers_a_broadcast(backend: Backend) {
    use integration_tests::env::{cli_ok, cli_run};
    let w = World::new(backend).await;
    let url = w.tdb.url.clone();
    let cli = |args: &[&str]| cli_ok(&url, &[], args);
    let out = cli(&[
        "contact",
        "add",
        "--org",
        "acme",
        "--phone",
        "+15550000001",
        "--name",
        "Ann",
        "--tag",
        "night-shift",
    ]);
    assert!(out.starts_with("created "), "{out}");
    let ann: Value = serde_json::from_str(out.trim_start_matches("created ").trim()).unwrap();
    assert_eq!(ann["identities"][0]["address"], "+15550000001");
    let out = cli(&[
        "contact",
        "add",
        "--org",
        "acme",
        "--email",
        "Bob@Example.org",
    ]);
    assert!(out.starts_with("created "), "{out}");
    // The same number again is the same person.
    let again = cli(&["contact", "add", "--org", "acme", "--phone", "+15550000001"]);
    assert!(again.starts_with("found ") && again.contains(ann["id"].as_str().unwrap()));
    // Bad input is refused with the flag named, and nothing is saved.
    for bad in [
        vec!["--phone", "555"],
        vec!["--email", "nope"],
        vec!["--name", "Nobody"],
        vec!["--phone", "+15550000009", "--tag", "Not A Tag"],
    ] {
        let mut args = vec!["contact", "add", "--org", "acme"];
        args.extend(bad.iter().copied());
        let run = cli_run(&url, &[], &args);
        assert!(!run.ok, "{bad:?} was accepted");
        assert!(
            run.stderr.contains("--") || run.stderr.contains("phone"),
            "{}",
            run.stderr
        );
    }
    let lines = |out: String| out.lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(lines(cli(&["contact", "list", "--org", "acme"])).len(), 2);
    let night = lines(cli(&[
        "contact",
        "list",
        "--org",
        "acme",
        "--tag",
        "night-shift",
    ]));
    assert_eq!(night.len(), 1);
    assert!(night[0].contains("\"Ann\""));
    let id = ann["id"].as_str().unwrap();
    let tagged = cli(&[
        "contact",
        "tag",
        "--org",
        "acme",
        "--id",
        id,
        "--tag",
        "day-shift",
    ]);
    assert!(tagged.contains("[\"day-shift\"]"), "{tagged}");
    assert!(cli(&["contact", "list", "--org", "acme", "--tag", "night-shift"]).is_empty());
    let other = create_org(&w.db, "globex", &w.twilio.base, 10.0).await;
    let run = cli_run(
        &url,
        &[],
        &[
            "contact", "tag", "--org", "globex", "--id", id, "--tag", "x",
        ],
    );
    assert!(
        !run.ok && run.stderr.contains("no contact"),
        "{}",
        run.stderr
    );

    // A broadcast to the day shift whose second rung waits an hour: it stays running.
    let r = w
        .client
        .post(format!("{}/api/v1/broadcasts", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&json!({
            "name": "Shift cover",
            "tags": ["day-shift"],
            "steps": [
                {"channel": "sms", "after_secs": 0, "body": "Cover needed. Reply YES"},
                {"channel": "sms", "after_secs": 3600, "body": "Still needed. Reply YES"},
            ],
            "require_ack": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let bid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(20), || async {
        (w.twilio.received().len() == 1).then_some(())
    })
    .await;
    let shown: Value =
        serde_json::from_str(&cli(&["broadcast", "show", "--org", "acme", "--id", &bid])).unwrap();
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["counts"]["sent"], 1);
    assert_eq!(shown["steps"][0]["queued"], 1, "{shown}");
    let listed = lines(cli(&["broadcast", "list", "--org", "acme"]));
    assert_eq!(listed.len(), 1);
    assert!(listed[0].contains(&bid));
    // Another org's slug cannot see or stop it.
    for verb in ["show", "cancel", "export"] {
        let run = cli_run(
            &url,
            &[],
            &["broadcast", verb, "--org", "globex", "--id", &bid],
        );
        assert!(
            !run.ok && run.stderr.contains("no broadcast"),
            "{verb}: {}",
            run.stderr
        );
    }
    assert_eq!(w.get_json(&other, "/api/v1/broadcasts").await, json!([]));
    let csv = cli(&["broadcast", "export", "--org", "acme", "--id", &bid]);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "a header and Ann: {csv}");
    assert!(rows[1].contains("+15550000001"), "{csv}");
    assert_eq!(
        cli(&["broadcast", "cancel", "--org", "acme", "--id", &bid]).trim(),
        format!("cancelled {bid}")
    );
    // Cancelling again is no error (as over the API).
    assert_eq!(
        cli(&["broadcast", "cancel", "--org", "acme", "--id", &bid]).trim(),
        format!("cancelled {bid}")
    );
    let b = w
        .get_json(&w.org, &format!("/api/v1/broadcasts/{bid}"))
        .await;
    assert_eq!(b["state"], "cancelled");
}
both_backends!(the_cli_tags_people_and_steers_a_broadcast);
