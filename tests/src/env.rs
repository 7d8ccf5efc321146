//! Test environments: a fresh database on either backend, an org with an API key and a Twilio
//! account pointing at the stand-in, and the gateway running over it (in-process, or as the
//! real binary for crash tests).

use gateway::config::Config;
use gateway::db::{orgs, Db};
use gateway::server::{self, Running};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp folder.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// A fresh, migrated database.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// The backend.
    pub backend: Backend,
    _dir: Option<TempDir>,
}

/// A temp folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder.
    pub fn new() -> TempDir {
        let p =
            std::env::temp_dir().join(format!("dartwing-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("DARTWING_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Process-wide set-up: the TLS crypto provider reqwest needs (the gateway installs the same).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Warnings and errors of the gateways a test runs show beside its failure.
    gateway::logging::init("warn");
}

impl TestDb {
    /// Creates an empty database.
    pub async fn new(backend: Backend) -> TestDb {
        init();
        match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                let url = format!("sqlite://{}/gw.db", dir.0.display());
                TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("dw_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} is required (run scripts/test.sh): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                }
            }
        }
    }

    /// A direct connection (migrated) for assertions.
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url, 4).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }
}

/// An org ready to use: its slug, id, API key and Twilio credentials.
#[derive(Debug, Clone)]
pub struct TestOrg {
    /// Slug.
    pub slug: String,
    /// Id.
    pub id: String,
    /// API key.
    pub key: String,
    /// Twilio account SID.
    pub account_sid: String,
    /// Twilio auth token.
    pub auth_token: String,
    /// Sending number.
    pub from: String,
}

/// Creates an org with a key and a Twilio account whose API base is `api_base`.
pub async fn create_org(db: &Db, slug: &str, api_base: &str, rate: f64) -> TestOrg {
    let org = orgs::create(&db.pool, slug, slug)
        .await
        .expect("create org")
        .expect("new slug");
    let key = orgs::create_api_key(&db.pool, &org.id).await.expect("key");
    let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
    let auth_token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let from = "+15550001111".to_string();
    let cfg = serde_json::json!({
        "account_sid": account_sid, "auth_token": auth_token, "from": from,
        "api_base": api_base, "messages_per_second": rate,
    });
    orgs::upsert_channel_account(&db.pool, &org.id, "twilio", "sms", &cfg.to_string())
        .await
        .expect("account");
    TestOrg {
        slug: slug.into(),
        id: org.id,
        key,
        account_sid,
        auth_token,
        from,
    }
}

/// The ops token of [`test_config`]: `/health` shows error texts to it.
pub const OPS_TOKEN: &str = "test-ops-token";

/// A configuration for tests: fast retries and polls, port 0.
pub fn test_config(db_url: &str) -> Config {
    let mut c = Config {
        http_addr: "127.0.0.1:0".into(),
        database_url: db_url.into(),
        ..Config::default()
    };
    c.ops_token = OPS_TOKEN.into();
    c.delivery.retry_base_ms = 50;
    c.delivery.retry_max_ms = 200;
    c.delivery.poll_ms = 50;
    c.delivery.breaker_cooldown_ms = 200;
    c.relay.poll_ms = 50;
    c.webhooks.retry_base_ms = 50;
    c.webhooks.retry_max_ms = 200;
    c.webhooks.poll_ms = 100;
    // Tests run side by side: SIP on a port of its own (the default 5060 would clash).
    c.sip.addr = "127.0.0.1:0".into();
    // The suites' callers are espeak-ng voices, which whisper hears better with the org's
    // vocabulary as its prompt (measured in BENCHMARKS.md); real callers are people, for
    // whom the default (no prompt) is both more accurate and ~460 ms faster.
    c.sip.whisper_prompt = true;
    // Suites run side by side on a loaded 2-core CI box, where one slow fsync can hold the
    // writer past the default 500 ms; no suite but the shedding one wants its calls shed
    // (it sets its own limit).
    c.sip.max_store_lag_ms = 5_000;
    c
}

/// The gateway running in this process.
pub struct TestGateway {
    /// The running server.
    pub running: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TestGateway {
    /// Starts it. The public URL is the bound address, so webhook signatures use it.
    pub async fn start(mut config: Config) -> TestGateway {
        // Bind first to learn the port, then sign over it: pick a free port up front. It can
        // be taken before the gateway binds it (an outgoing connection's ephemeral port, seen
        // in CI): the start then fails before anything runs, and another port is tried.
        config.public_url = String::new();
        let mut tries = 0;
        let running = loop {
            tries += 1;
            config.http_addr = format!("127.0.0.1:{}", free_port());
            match server::start(&config).await {
                Ok(running) => break running,
                Err(server::StartError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse && tries < 5 => {}
                Err(e) => panic!("gateway starts: {e:?}"),
            }
        };
        let base = format!("http://{}", running.addr);
        TestGateway { running, base }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// `GET` `base` + `path` (`/metrics`, `/health`) and return the body as text.
pub async fn get_text(client: &reqwest::Client, base: &str, path: &str) -> String {
    let r = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("get");
    r.text().await.expect("text")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `dartwing-gateway` binary built beside this test (`cargo build --workspace` or nextest
/// builds it).
pub fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("dartwing-gateway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// The gateway as a child process (for SIGKILL tests).
pub struct ChildGateway {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ChildGateway {
    /// Starts `dartwing-gateway serve` on `port` over `db_url` and waits for `/health`.
    pub async fn spawn(db_url: &str, port: u16) -> ChildGateway {
        ChildGateway::spawn_with(db_url, port, &[]).await
    }

    /// [`ChildGateway::spawn`] with more `DARTWING_*` settings (e.g. the Kafka brokers).
    pub async fn spawn_with(db_url: &str, port: u16, env: &[(&str, &str)]) -> ChildGateway {
        let child = Command::new(gateway_binary())
            .arg("serve")
            .env("DARTWING_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("DARTWING_DATABASE_URL", db_url)
            .env("DARTWING_LOG", "warn")
            .env("DARTWING_SIP_ADDR", "127.0.0.1:0")
            .env("DARTWING_SIP_MAX_STORE_LAG_MS", "5000")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gateway");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "gateway did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ChildGateway { child, base }
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a run of the gateway binary's CLI printed.
#[derive(Debug)]
pub struct CliRun {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs the gateway binary's CLI against `db_url`, with more `DARTWING_*` settings in `env`
/// (logging at `error` unless `env` says otherwise).
pub fn cli_run(db_url: &str, env: &[(&str, &str)], args: &[&str]) -> CliRun {
    let out = Command::new(gateway_binary())
        .args(args)
        .env("DARTWING_DATABASE_URL", db_url)
        .env("DARTWING_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .expect("run the gateway binary");
    CliRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`cli_run`] for a command that must succeed; its standard output.
pub fn cli_ok(db_url: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let run = cli_run(db_url, env, args);
    assert!(run.ok, "{args:?}: {}", run.stderr);
    run.stdout
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Rows of `table` belonging to an org (`table` is one of ours; never user input).
/// Records call `call_id` of `org_id` from `from` (a SIP From) to `to` as ringing, as the
/// voice core would when it arrives: its conversation and contact come with it.
pub async fn record_call(db: &Db, org_id: &str, call_id: &str, from: &str, to: &str) {
    let call = gateway::db::calls::CallTransition {
        call_id: call_id.into(),
        org_id: org_id.into(),
        sip_call_id: format!("sip-{call_id}"),
        from: from.into(),
        to: to.into(),
        outbound: false,
        event: None,
        detail: None,
        node: None,
    };
    let mut conn = db.pool.acquire().await.expect("connection");
    gateway::db::calls::record(&mut conn, &call, 1)
        .await
        .expect("call recorded");
}

pub async fn count(db: &Db, table: &str, org_id: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE org_id = $1"
    )))
    .bind(org_id)
    .fetch_one(&db.pool)
    .await
    .expect("count");
    row.0
}

/// The provider ids of `org_id`'s messages, one per stored row (a duplicate shows twice).
pub async fn stored_provider_ids(db: &Db, org_id: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT provider_message_id FROM messages WHERE org_id = $1")
        .bind(org_id)
        .fetch_all(&db.pool)
        .await
        .expect("read messages")
        .into_iter()
        .map(|r| r.0)
        .collect()
}

/// Everything a typical test needs: database, stand-in, one org, the gateway, a client.
pub struct World {
    /// The database.
    pub tdb: TestDb,
    /// A direct connection for assertions.
    pub db: Db,
    /// The Twilio stand-in.
    pub twilio: crate::twilio::TwilioStandin,
    /// The org `acme`.
    pub org: TestOrg,
    /// The gateway.
    pub gw: TestGateway,
    /// An HTTP client.
    pub client: reqwest::Client,
}

impl World {
    /// Sets it all up on `backend` with the default test configuration.
    pub async fn new(backend: Backend) -> World {
        World::with_config(backend, |_| {}).await
    }

    /// Sets it all up, letting the test adjust the configuration.
    pub async fn with_config(backend: Backend, adjust: impl FnOnce(&mut Config)) -> World {
        let tdb = TestDb::new(backend).await;
        let db = tdb.connect().await;
        let twilio = crate::twilio::TwilioStandin::start().await;
        let org = create_org(&db, "acme", &twilio.base, 1000.0).await;
        twilio.add_account(&org);
        let mut config = test_config(&tdb.url);
        adjust(&mut config);
        let gw = TestGateway::start(config).await;
        World {
            tdb,
            db,
            twilio,
            org,
            gw,
            client: reqwest::Client::new(),
        }
    }

    /// Replaces `acme`'s Twilio account by one sending from `from` at `rate` per second (same
    /// credentials, same stand-in). Do it before the first send: nodes cache plugins briefly.
    pub async fn replace_twilio_account(&self, from: &str, rate: f64) {
        let cfg = serde_json::json!({
            "account_sid": self.org.account_sid, "auth_token": self.org.auth_token, "from": from,
            "api_base": self.twilio.base, "messages_per_second": rate,
        });
        orgs::upsert_channel_account(
            &self.db.pool,
            &self.org.id,
            "twilio",
            "sms",
            &cfg.to_string(),
        )
        .await
        .expect("account");
    }

    /// `GET` a public path (`/metrics`, `/health`) and return the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        get_text(&self.client, &self.gw.base, path).await
    }

    /// `GET` an API path as `org`, whatever it answers.
    pub async fn get(&self, org: &TestOrg, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.gw.base))
            .bearer_auth(&org.key)
            .send()
            .await
            .expect("get")
    }

    /// `GET` an API path as `org`, returning the JSON body (and asserting 200).
    pub async fn get_json(&self, org: &TestOrg, path: &str) -> serde_json::Value {
        let r = self.get(org, path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// The org's one call once it has ended (waiting up to `within`), and its history as
    /// (state, event).
    pub async fn ended_call(&self, within: Duration) -> (serde_json::Value, Vec<(String, String)>) {
        let calls = eventually(within, || async {
            let c = self.get_json(&self.org, "/api/v1/calls").await;
            (c.as_array()?.len() == 1 && c[0]["state"] == "ended").then_some(c)
        })
        .await;
        let steps = calls[0]["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|s| {
                (
                    s["state"].as_str().expect("state").to_string(),
                    s["event"].as_str().expect("event").to_string(),
                )
            })
            .collect();
        (calls[0].clone(), steps)
    }

    /// Sends an SMS through the API as `org`.
    pub async fn send_sms(&self, org: &TestOrg, to: &str, body: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/messages", self.gw.base))
            .bearer_auth(&org.key)
            .json(&serde_json::json!({"channel": "sms", "to": to, "body": body}))
            .send()
            .await
            .expect("send")
    }

    /// Posts a signed webhook for `org` to `/webhooks/twilio/{slug}/{hook}`.
    pub async fn webhook(
        &self,
        org: &TestOrg,
        hook: &str,
        params: &[(String, String)],
    ) -> reqwest::Response {
        let path = format!("/webhooks/twilio/{}/{hook}", org.slug);
        crate::twilio::post_signed(&self.client, &self.gw.base, &path, &org.auth_token, params)
            .await
    }
}

/// Saves a contact with one identity and no conversation (as the contacts API saves one):
/// its id is `{org slug}-saved-{address}`.
pub async fn saved_contact(
    conn: &mut sqlx::AnyConnection,
    org: &TestOrg,
    channel: &str,
    address: &str,
    at: i64,
) {
    let id = format!("{}-saved-{address}", org.slug);
    sqlx::query("INSERT INTO contacts (id, org_id, created_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(&org.id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO contact_identities (org_id, channel, address, contact_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&org.id)
    .bind(channel)
    .bind(address)
    .bind(&id)
    .bind(at)
    .execute(&mut *conn)
    .await
    .unwrap();
}
