//! Real mail peers per test: a Dovecot IMAP server in the foreground (its own folder, a free
//! loopback port, one passwd-file user) and an aiosmtpd SMTP receiver writing a maildir the
//! test reads back. `scripts/ensure-mail-peers.sh` installs both; a test that cannot start
//! them fails, it never skips.

use crate::env::{free_port, TempDir};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// An IMAP session of the test user (plain TCP).
pub type Imap = async_imap::Session<TcpStream>;

/// Our address in the tests.
pub const ADDRESS: &str = "support@acme.test";

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Dovecot IMAP server with one user, `support` / `secret`; its [`ImapLogin`] methods are
/// reached through it.
pub struct Dovecot {
    login: ImapLogin,
    child: Child,
    dir: TempDir,
}

/// How to log in to a test Dovecot as its user (cheap to clone into tasks).
#[derive(Debug, Clone)]
pub struct ImapLogin {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The login.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::ops::Deref for Dovecot {
    type Target = ImapLogin;
    fn deref(&self) -> &ImapLogin {
        &self.login
    }
}

impl Dovecot {
    /// Starts one (`dovecot -F` with a config in a temp folder).
    pub fn start() -> Dovecot {
        Self::start_with("")
    }

    /// Starts one with `extra` lines in its configuration (e.g. an `imap_capability` list
    /// without MOVE, to drive a client's fallback).
    pub fn start_with(extra: &str) -> Dovecot {
        let dir = TempDir::new();
        let d = dir.0.display().to_string();
        let home = dir.0.join("home/support");
        std::fs::create_dir_all(&home).expect("home");
        // Mail users must not be root: uid/gid 8 (`mail`) owns the home.
        let chown = Command::new("chown")
            .args(["-R", "8:8", &format!("{d}/home")])
            .status()
            .expect("chown");
        assert!(chown.success(), "chown the mail home");
        let port = free_port();
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
             log_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:~/Maildir\n\
             first_valid_uid = 8\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/users\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n{extra}\n"
        );
        std::fs::write(dir.0.join("dovecot.conf"), conf).expect("conf");
        std::fs::write(
            dir.0.join("users"),
            format!("support:{{PLAIN}}secret:8:8::{}::\n", home.display()),
        )
        .expect("users");
        let bin = ["/usr/sbin/dovecot", "dovecot"]
            .into_iter()
            .find(|b| !b.starts_with('/') || std::path::Path::new(b).exists())
            .expect("dovecot");
        let mut child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(dir.0.join("dovecot.conf"))
            // Its own log file has everything ([`Dovecot::log`]); its child processes must not
            // hold the test's output open after it stops.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot is installed (scripts/ensure-mail-peers.sh)");
        wait_for_port(port, "dovecot", &mut child);
        Dovecot {
            login: ImapLogin {
                port,
                user: "support".into(),
                password: "secret".into(),
            },
            child,
            dir,
        }
    }

    /// A login to share with a task.
    pub fn login(&self) -> ImapLogin {
        self.login.clone()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("dovecot.log")).unwrap_or_default()
    }
}

impl ImapLogin {
    /// A logged-in session with INBOX selected.
    pub async fn session(&self) -> Imap {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to dovecot");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting");
        let mut s = client
            .login(&self.user, &self.password)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        s.select("INBOX").await.expect("select");
        s
    }

    /// Appends messages to INBOX, as a mail server delivering them would.
    pub async fn append(&self, messages: &[Vec<u8>]) {
        let mut s = self.session().await;
        for m in messages {
            s.append("INBOX", None, None, m).await.expect("append");
        }
        let _ = s.logout().await;
    }

    /// UIDs of INBOX messages without `\Seen`.
    pub async fn unseen(&self) -> Vec<u32> {
        self.search_in("INBOX", "UNSEEN").await
    }

    /// Every UID in INBOX.
    pub async fn all(&self) -> Vec<u32> {
        self.search_in("INBOX", "ALL").await
    }

    /// UIDs in `folder` matching the IMAP search `query` (`ALL`, `SEEN`, `DELETED`…).
    pub async fn search_in(&self, folder: &str, query: &str) -> Vec<u32> {
        let mut s = self.session().await;
        s.select(folder).await.expect("select");
        let mut uids: Vec<u32> = s
            .uid_search(query)
            .await
            .expect("search")
            .into_iter()
            .collect();
        let _ = s.logout().await;
        uids.sort_unstable();
        uids
    }

    /// Reads a message's flags (to check `\Seen` directly).
    pub async fn flags(&self, uid: u32) -> Vec<String> {
        let mut s = self.session().await;
        let mut out = Vec::new();
        {
            let mut st = s.uid_fetch(uid.to_string(), "FLAGS").await.expect("fetch");
            while let Some(f) = st.next().await {
                let f = f.expect("fetch item");
                out.extend(f.flags().map(|fl| format!("{fl:?}")));
            }
        }
        let _ = s.logout().await;
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its login, auth and imap processes; SIGKILL if it hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv python with aiosmtpd (`DARTWING_AIOSMTPD_PYTHON` or the script's default).
pub fn aiosmtpd_python() -> PathBuf {
    if let Ok(p) = std::env::var("DARTWING_AIOSMTPD_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/dartwing/aiosmtpd-1.4.6/bin/python")
}

/// An aiosmtpd receiver that writes every message into a maildir.
pub struct SmtpReceiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl SmtpReceiver {
    /// Starts one.
    pub fn start() -> SmtpReceiver {
        let dir = TempDir::new();
        let python = aiosmtpd_python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/ensure-mail-peers.sh",
            python.display()
        );
        let port = free_port();
        let mut child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.0.join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        wait_for_port(port, "aiosmtpd", &mut child);
        SmtpReceiver { port, child, dir }
    }

    /// How many messages were received so far (cheaper than reading them).
    pub fn count(&self) -> usize {
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.dir.0.join("maildir").join(sub)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.0.join("maildir").join(sub)) {
                let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                paths.sort();
                for p in paths {
                    if let Ok(b) = std::fs::read(p) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The email account configuration for an org reading `imap` and sending through `smtp`.
pub fn account_config(imap: &Dovecot, smtp: &SmtpReceiver) -> serde_json::Value {
    serde_json::json!({
        "address": ADDRESS,
        "imap": {"host": "127.0.0.1", "port": imap.port, "tls": "none",
                 "username": imap.user, "password": imap.password},
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"},
        "messages_per_second": 1000.0,
    })
}

/// Stores that account for `org_id`.
pub async fn add_account(db: &gateway::db::Db, org_id: &str, imap: &Dovecot, smtp: &SmtpReceiver) {
    let cfg = account_config(imap, smtp).to_string();
    gateway::db::orgs::upsert_channel_account(&db.pool, org_id, "email", "email", &cfg)
        .await
        .expect("email account");
}

/// A plain message from `from` with optional threading headers.
pub fn mail(
    from: &str,
    id: &str,
    subject: &str,
    body: &str,
    in_reply_to: Option<&str>,
    references: &[&str],
) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n"
    );
    if let Some(p) = in_reply_to {
        m.push_str(&format!("In-Reply-To: <{p}>\r\n"));
    }
    if !references.is_empty() {
        let refs: Vec<String> = references.iter().map(|r| format!("<{r}>")).collect();
        m.push_str(&format!("References: {}\r\n", refs.join(" ")));
    }
    m.push_str("\r\n");
    m.push_str(body);
    m.push_str("\r\n");
    m.into_bytes()
}

/// A fresh 2048-bit RSA key pair made by openssl: the private key as PKCS#8 PEM (what
/// `openssl genpkey` writes) and the public key as base64 DER, the `p=` of a DKIM record.
pub fn rsa_key_pair() -> (String, String) {
    let dir = TempDir::new();
    let key = dir.0.join("dkim.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (scripts/ensure-mail-peers.sh installs it)");
    assert!(ok.success(), "openssl genpkey");
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl pkey");
    assert!(public.status.success(), "openssl pkey -pubout");
    use base64::Engine;
    (
        std::fs::read_to_string(&key).expect("key"),
        base64::engine::general_purpose::STANDARD.encode(public.stdout),
    )
}

/// Whether dkimpy (an RFC 6376 implementation that is not ours) verifies the DKIM
/// signature of `raw`, given the TXT record `record` at `{selector}._domainkey.{domain}`
/// (any other name looked up is answered with nothing).
pub fn dkim_verifies(raw: &[u8], selector: &str, domain: &str, record: &str) -> bool {
    let dir = TempDir::new();
    let path = dir.0.join("message.eml");
    std::fs::write(&path, raw).expect("write message");
    let script = "import dkim, sys\n\
        msg = open(sys.argv[1], 'rb').read()\n\
        want = sys.argv[2].encode()\n\
        rec = sys.argv[3].encode()\n\
        dns = lambda name, timeout=5: rec if name.rstrip(b'.') == want else None\n\
        print('pass' if dkim.verify(msg, dnsfunc=dns) else 'fail')\n";
    let out = Command::new(aiosmtpd_python())
        .args(["-c", script])
        .arg(&path)
        .arg(format!("{selector}._domainkey.{domain}"))
        .arg(record)
        .output()
        .expect("python with dkimpy (scripts/ensure-mail-peers.sh)");
    assert!(
        out.status.success(),
        "dkimpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "pass"
}
