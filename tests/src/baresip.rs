//! A real SIP user agent for the voice suites: headless baresip with a config folder of its
//! own (SIP port, G.711, a WAV file as its microphone, received audio dumped by its sndfile
//! module, optionally the ctrl_tcp command port), started with its output in a log file.
//! `scripts/ensure-voice-peers.sh` installs it.

use std::path::Path;
use std::time::Duration;

/// Writes a baresip config folder: SIP on `port`, G.711, `source` as its microphone,
/// received audio dumped into `dumps`, optionally ctrl_tcp on `ctrl`, and one `account` line.
pub fn config(
    dir: &Path,
    port: u16,
    source: &Path,
    dumps: &Path,
    ctrl: Option<u16>,
    account: &str,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(dumps).unwrap();
    let mut config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\n\
         module g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule alsa.so\n\
         module_app account.so\nmodule_app menu.so\naudio_player alsa,null\n\
         audio_source aufile,{}\nsnd_path {}\n",
        source.display(),
        dumps.display()
    );
    if let Some(c) = ctrl {
        config.push_str(&format!(
            "module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{c}\n"
        ));
    }
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
}

/// A SIP port for baresip: it listens on the port (UDP and TCP) and on the next one (its
/// TLS transport), and fails to start when any is taken, so both must be free now.
pub fn sip_port() -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    for _ in 0..200 {
        let p = crate::env::free_port();
        if p < u16::MAX && free(p) && free(p + 1) {
            return p;
        }
    }
    panic!("no two free adjacent ports for baresip");
}

/// Starts baresip on the config folder `cfg` with its output in `log`.
pub fn spawn(cfg: &Path, log: &Path, extra: &[String]) -> tokio::process::Child {
    let out = std::fs::File::create(log).unwrap();
    tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(cfg)
        .args(extra)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("baresip must be installed (scripts/ensure-voice-peers.sh): {e}")
        })
}

/// Waits until baresip's `log` contains `what` (panics after `within`).
pub async fn log_shows(log: &Path, what: &str, within: Duration) {
    crate::env::eventually(within, || async {
        std::fs::read_to_string(log)
            .ok()?
            .contains(what)
            .then_some(())
    })
    .await
}
