//! A real Kafka-protocol broker per test: `scripts/ensure-kafka.sh start` runs tansu (SQLite
//! storage) on a free port in a fresh folder and creates the gateway's topics; [`Broker`]
//! stops it by PID and can start it again on the same port and data (an outage). If the broker
//! binary is missing the script builds it (minutes); `scripts/test.sh` does that up front.
//! A test that needs a broker and cannot start one fails; it never skips.

use crate::env::{free_port, TempDir};
use std::path::PathBuf;
use std::process::Command;

/// A running (or stopped, between [`Broker::stop`] and [`Broker::restart`]) broker.
pub struct Broker {
    /// `127.0.0.1:PORT`, for `DARTWING_KAFKA_BROKERS`.
    pub addr: String,
    port: u16,
    pid: Option<u32>,
    dir: TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-kafka.sh")
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("run scripts/ensure-kafka.sh");
    assert!(
        out.status.success(),
        "ensure-kafka.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Broker {
    /// Starts a broker with the default topics (`dartwing.messages`, …; 3 partitions each).
    pub fn start() -> Broker {
        let dir = TempDir::new();
        let port = free_port();
        let mut b = Broker {
            addr: format!("127.0.0.1:{port}"),
            port,
            pid: None,
            dir,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let out = run_script(&[
            "start",
            &self.port.to_string(),
            &self.dir.0.display().to_string(),
        ]);
        let last = out.lines().last().unwrap_or_default();
        let pid = last
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ensure-kafka.sh start printed `{out}`"));
        self.pid = Some(pid);
    }

    /// Stops it (SIGTERM, then SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            run_script(&["stop", &pid.to_string()]);
        }
    }

    /// Starts it again on the same port over the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
