//! The `[sip]` section: voice's SIP user agent, its media, and the receptionist's speech
//! and timing.

use serde::{Deserialize, Serialize};

/// Voice: the SIP user agent that answers routed numbers (`voice route add`) and its media.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Where SIP listens, UDP and TCP (`0.0.0.0:5060`); empty turns voice off.
    pub addr: String,
    /// The digest realm of the challenge to a REGISTER that names no agent (each agent is
    /// challenged in its own realm: its org's slug for agents made by `voice agent add`).
    pub realm: String,
    /// Lowest RTP port (even).
    pub rtp_port_min: u16,
    /// Highest RTP port.
    pub rtp_port_max: u16,
    /// Calls at once; one more is answered 503.
    pub max_calls: u32,
    /// A call is hung up (BYE) after this long, seconds.
    pub max_call_secs: u64,
    /// New INVITEs per second from one source address; more get 503 with `Retry-After`.
    pub invites_per_second_per_source: f64,
    /// Calls in progress from one source address at once; one more gets 503 (0: no cap).
    pub max_calls_per_source: u32,
    /// New INVITEs get 503 (`Retry-After: 1`) while the database writer is further behind
    /// than this, ms (0: never). Sheds an overload at the door, before calls pile up behind
    /// the writer holding media and memory (BENCHMARKS.md, memory after overload).
    pub max_store_lag_ms: u64,
    /// CIDRs (`203.0.113.0/24, 198.51.100.7`) INVITEs are taken from; INVITEs from anywhere
    /// else get 403. Empty: from anywhere. REGISTER stays open (agents' phones roam).
    pub trusted_sources: String,
    /// This node's name on the calls it runs (several nodes on one database must differ);
    /// empty: the host name and `addr`. At start the node ends the calls it left live.
    pub node_id: String,
    /// The whisper model the `receptionist` application listens with (loaded on its first
    /// call); empty: `ggml-tiny.en.bin` in the models folder (`DARTWING_MODELS_DIR`).
    pub whisper_model: String,
    /// The espeak-ng voice the receptionist speaks with.
    pub tts_voice: String,
    /// Whether whisper is biased by the org's vocabulary. Off by default: measured on a
    /// natural voice it raises WER (1.8 → 5.9 %) and adds ~460 ms to every reply; it helps
    /// only robotic (espeak-ng) callers (BENCHMARKS.md, the receptionist sections).
    pub whisper_prompt: bool,
    /// Whether the receptionist answers a turn as soon as its words make it whole (an
    /// understood request, not trailing off on "and…") rather than after the full 500 ms
    /// of silence that ends a turn (measured: reply p50 580 → 460 ms on the wire).
    pub early_end: bool,
    /// Seconds of caller silence before the receptionist reprompts (once), then says goodbye.
    pub reprompt_secs: u64,
    /// Seconds an agent's phone rings on a hand-over before the caller gets voicemail.
    pub agent_ring_secs: u64,
    /// The longest voicemail the receptionist records, seconds.
    pub voicemail_max_secs: u64,
    /// How long a receptionist waits on an org's remote model for its first words (and
    /// between chunks), ms; then the local responder answers.
    pub responder_timeout_ms: u64,
    /// `host:port` of the SIP trunk or proxy that the calls we place go to (UDP): a
    /// broadcast's voice rung. Empty: no outbound calls (voice rungs are passed over).
    pub trunk: String,
    /// Our username at the trunk, for its digest challenges (401/407) to our INVITEs.
    /// Empty: a challenged call is refused.
    pub trunk_username: String,
    /// The password that goes with `trunk_username` (set it through
    /// `DARTWING_SIP_TRUNK_PASSWORD` rather than a file).
    pub trunk_password: String,
    /// Seconds a call we place rings before it counts as not answered (at most
    /// `delivery.send_timeout_ms` + 10 s: a ringing call is a send in progress).
    pub ring_secs: u64,
    /// Calls placed per second per caller id (the org's first voice route number).
    pub calls_per_second: f64,
    /// The longest a call we place lasts, seconds.
    pub outbound_max_call_secs: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            addr: "0.0.0.0:5060".into(),
            realm: "dartwing".into(),
            rtp_port_min: 20_000,
            rtp_port_max: 29_999,
            max_calls: 2_000,
            max_call_secs: 4 * 3600,
            invites_per_second_per_source: 2_000.0,
            max_calls_per_source: 0,
            max_store_lag_ms: 500,
            trusted_sources: String::new(),
            node_id: String::new(),
            whisper_model: String::new(),
            tts_voice: "en-us".into(),
            whisper_prompt: false,
            early_end: true,
            reprompt_secs: 6,
            agent_ring_secs: 20,
            voicemail_max_secs: 120,
            responder_timeout_ms: 2_000,
            trunk: String::new(),
            trunk_username: String::new(),
            trunk_password: String::new(),
            ring_secs: 25,
            calls_per_second: 5.0,
            outbound_max_call_secs: 120,
        }
    }
}

impl SipConfig {
    /// What is wrong with the settings of the calls we place (`sip.trunk` and its kin).
    pub fn outbound_problems(&self, send_timeout_ms: u64) -> Vec<String> {
        let mut e = Vec::new();
        let trunk = self.trunk.trim();
        if !trunk.is_empty() && trunk.parse::<std::net::SocketAddr>().is_err() {
            e.push(format!("sip.trunk `{trunk}` is not ip:port"));
        }
        // A ringing call is a send in progress: it must end inside the send's time, else the
        // worker would give up on it while it rings (checked only when calls are placed).
        let ring_max = send_timeout_ms / 1000 + 10;
        if !trunk.is_empty() && (self.ring_secs == 0 || self.ring_secs > ring_max) {
            e.push(format!(
                "sip.ring_secs must be 1 to delivery.send_timeout_ms/1000 + 10 ({ring_max}) \
                 when sip.trunk is set"
            ));
        }
        if self.calls_per_second.is_nan() || self.calls_per_second <= 0.0 {
            e.push("sip.calls_per_second must be greater than 0".into());
        }
        if self.trunk_username.trim().is_empty() != self.trunk_password.is_empty() {
            e.push(
                "sip.trunk_username and sip.trunk_password are set together or not at all".into(),
            );
        }
        e
    }

    /// Our account at the trunk, when one is configured.
    pub fn trunk_account(&self) -> Option<voice::sip::answer_challenge::Account> {
        let username = self.trunk_username.trim();
        (!username.is_empty()).then(|| voice::sip::answer_challenge::Account {
            username: username.to_owned(),
            password: self.trunk_password.clone(),
        })
    }
}
