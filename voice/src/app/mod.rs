//! The application a call talks to: audio frames and DTMF digits in, [`Action`]s out.
//!
//! The AI receptionist will implement [`CallApp`]; the built-ins here are for testing and
//! simple routes, picked by a spec string ([`parse_app_spec`]):
//!
//! | spec | behaviour |
//! |---|---|
//! | `echo` | sends back every frame it hears (20 ms + jitter-buffer delay later) |
//! | `play:FILE.wav` | plays the WAV once, then asks to hang up |
//! | `menu` or `menu:FILE.wav` | plays a prompt (two beeps, or the WAV), then: `1` transfer to `agent` (the prompt again if that reaches nobody), `2` echo (`*` back to the menu), `3` start recording, `4` stop recording, `#` hang up, anything else replays the prompt |
//! | `receptionist` | the AI receptionist ([`crate::receptionist`]); needs the speech engines the user agent was given ([`crate::ua::SipServer::host_receptionist`]) |
//!
//! [`Confirm`] is the application of a call we place (`ua::outbound`): a message said, a key
//! asked for, every digit reported while the call runs.
//!
//! [`bridge::pair`] makes the two sides of a transfer's bridge (not selected by a spec: call
//! control puts them on the two legs with `MediaHandle::set_app`).
//!
//! Contract: the media worker calls the app synchronously, once per 20 ms tick and once per
//! digit, on the thread that also paces the RTP of many other calls. A method must return in well under a millisecond;
//! anything slow (speech recognition, a network call) must be handed to another task through
//! a bounded channel with `try_send`, dropping when it is full, never awaited.

pub mod bridge;
mod confirm;
mod echo;
mod menu;
mod play;

pub use confirm::Confirm;
pub use echo::Echo;
pub use menu::Menu;
pub use play::Play;

use audio::wav::{parse_wav, WavError};
use std::path::PathBuf;
use std::sync::Arc;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = audio::pcm::frame_len(8_000);

/// 8 kHz mono PCM16 audio, shared without copying.
pub type Audio = Arc<[i16]>;

/// What the call is, for the application's first decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The gateway's call id.
    pub call_id: String,
    /// The caller (From user part or number).
    pub from: String,
    /// The dialled number (request URI user part).
    pub to: String,
    /// The organisation the dialled number belongs to.
    pub org: String,
    /// The agent the route's transfers reach, if any.
    pub agent: Option<String>,
}

/// What an application asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue audio after whatever is already playing.
    Play(Audio),
    /// Drop everything queued at once (barge-in).
    StopPlayback,
    /// Transfer the call to a target (an agent name or a SIP URI); call control does it.
    Transfer {
        /// Who to transfer to.
        target: String,
        /// One line for the agent's phone (the INVITE's `Subject`): why the caller is
        /// handed over (a warm transfer).
        summary: Option<String>,
    },
    /// End the call; call control sends the BYE.
    Hangup,
    /// Start recording the call to the session's recording path.
    StartRecording,
    /// Stop recording and write the file out.
    StopRecording,
    /// Send a DTMF digit to the far end (RFC 4733).
    SendDtmf(char),
}

/// What call control tells the application about the call (not heard in its audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The transfer it asked for did not reach anyone (the agent refused, rang out, or is
    /// not registered): the caller is still with the application. `status` is the SIP
    /// status reported for it (480 unreachable or no answer, 486 busy, …).
    TransferFailed {
        /// The agent leg's status.
        status: u16,
    },
}

/// A call's application. See the module docs for the timing contract.
pub trait CallApp: Send {
    /// The call was answered and media runs.
    fn on_start(&mut self, ctx: &CallContext) -> Vec<Action>;
    /// One frame heard from the caller (one packet: 160 samples at 20 ms ptime; silence
    /// while nothing arrives, so the app sees a steady 50 frames a second).
    fn on_audio(&mut self, frame: &[i16]) -> Vec<Action>;
    /// A DTMF digit (`0-9 * # A-D`), once per key press.
    fn on_dtmf(&mut self, digit: char) -> Vec<Action>;
    /// Everything queued with [`Action::Play`] has been sent.
    fn on_playback_finished(&mut self) -> Vec<Action> {
        Vec::new()
    }
    /// Call control's news about the call (see [`Notice`]); nothing by default.
    fn on_notice(&mut self, notice: Notice) -> Vec<Action> {
        let _ = notice;
        Vec::new()
    }
}

/// Why a spec string does not name an application.
#[derive(Debug, thiserror::Error)]
pub enum AppSpecError {
    /// Not `echo`, `menu`, `menu:FILE`, `play:FILE` or `receptionist`.
    #[error("unknown application `{spec}` (want echo, menu, menu:FILE.wav, play:FILE.wav or receptionist)")]
    Unknown {
        /// What was given.
        spec: String,
    },
    /// The WAV file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `receptionist` on a user agent that was given no speech engines.
    #[error("the receptionist needs the speech engines, and none were attached")]
    NoSpeech,
    /// The file is not a WAV we can play.
    #[error("{path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: WavError,
    },
}

/// Loads a WAV file as 8 kHz mono (at set-up time, never on the media path).
pub fn load_wav(path: &str) -> Result<Audio, AppSpecError> {
    let path = PathBuf::from(path);
    let bytes = std::fs::read(&path).map_err(|source| AppSpecError::Io {
        path: path.clone(),
        source,
    })?;
    let clip = parse_wav(&bytes).map_err(|source| AppSpecError::Wav {
        path: path.clone(),
        source,
    })?;
    let mono = clip.to_mono_at(8_000).map_err(|e| AppSpecError::Wav {
        path,
        source: e.into(),
    })?;
    Ok(mono.into())
}

/// A parsed application spec with its audio loaded: cheap to turn into a fresh app per call
/// ([`AppSpec::build`]), so a route's WAV is read once, not on every INVITE.
#[derive(Debug, Clone)]
pub enum AppSpec {
    /// `echo`.
    Echo,
    /// `menu` (prompt `None`: the built-in beeps) or `menu:FILE.wav`.
    Menu(Option<Audio>),
    /// `play:FILE.wav`.
    Play(Audio),
    /// `receptionist`, with the engines it runs on once the user agent attached them
    /// (`None` when parsed alone: [`AppSpec::build`] then makes an app that hangs up).
    Receptionist(Option<std::sync::Arc<crate::receptionist::Host>>),
}

impl AppSpec {
    /// Parses a spec string, reading its WAV file now, if any.
    pub fn parse(spec: &str) -> Result<AppSpec, AppSpecError> {
        let spec = spec.trim();
        match spec.split_once(':') {
            None if spec == "echo" => Ok(AppSpec::Echo),
            None if spec == "menu" => Ok(AppSpec::Menu(None)),
            None if spec == "receptionist" => Ok(AppSpec::Receptionist(None)),
            Some(("play", file)) if !file.is_empty() => Ok(AppSpec::Play(load_wav(file)?)),
            Some(("menu", file)) if !file.is_empty() => Ok(AppSpec::Menu(Some(load_wav(file)?))),
            _ => Err(AppSpecError::Unknown {
                spec: spec.to_string(),
            }),
        }
    }

    /// A fresh application for one call (the audio is shared, not copied).
    pub fn build(&self) -> Box<dyn CallApp> {
        match self {
            AppSpec::Echo => Box::new(Echo),
            AppSpec::Menu(prompt) => Box::new(Menu::new(prompt.clone())),
            AppSpec::Play(clip) => Box::new(Play::new(clip.clone())),
            AppSpec::Receptionist(Some(host)) => Box::new(
                crate::receptionist::ReceptionistApp::new(std::sync::Arc::clone(host)),
            ),
            // No engines: a moment of silence, then the call ends.
            AppSpec::Receptionist(None) => Box::new(Play::new(vec![0; FRAME_SAMPLES * 10].into())),
        }
    }
}

/// Builds the application a spec string names (reading its WAV file now, if any). For many
/// calls on one route, keep the [`AppSpec`] and [`AppSpec::build`] per call instead.
pub fn parse_app_spec(spec: &str) -> Result<Box<dyn CallApp>, AppSpecError> {
    AppSpec::parse(spec).map(|s| s.build())
}

/// A sine tone, for prompts and tests.
pub fn tone(freq_hz: f64, millis: usize, amplitude: i16) -> Vec<i16> {
    let n = millis * 8;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (f64::from(amplitude) * (2.0 * std::f64::consts::PI * freq_hz * t).sin()) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests;
