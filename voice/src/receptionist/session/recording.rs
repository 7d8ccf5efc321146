//! The caller's voicemail during their call: recording after the tone (or from just
//! before, when the caller talks over the prompt), ending it, and storing it with its
//! whole-recording transcript.

use super::{After, Session};
use crate::receptionist::responder::Stage;
use crate::receptionist::voicemail::{Recording, Stop};
use crate::receptionist::Voicemail;
use std::sync::Arc;

impl Session {
    pub(super) fn start_recording(&mut self, over_prompt: bool) {
        let config = &self.host.config;
        // A caller needs a moment to collect themselves after the tone.
        let give_up = config
            .reprompt_after
            .max(std::time::Duration::from_secs(10));
        let pre_roll = over_prompt.then_some(&self.pre_roll);
        self.recording = Some(Recording::start(
            config.voicemail_max,
            config.voicemail_end_silence,
            give_up,
            pre_roll,
        ));
        self.in_turn = false;
        self.quiet_frames = 0;
    }

    /// The message is over: stored (when something was said), then thanks and goodbye.
    pub(super) async fn end_recording(&mut self, stop: Stop) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        self.dialog.stage = Stage::Open;
        if stop == Stop::Nothing || !recording.spoke() {
            let say = "I didn't hear a message. Is there anything else I can help you with?";
            self.say(say, After::Listen).await;
            return;
        }
        self.closing = true;
        let say = match self.save_voicemail(recording).await {
            true => "Thank you. Your message has been recorded and will be passed on. Goodbye.",
            false => "I'm sorry, I couldn't save your message. Please call back later. Goodbye.",
        };
        self.say(say, After::Hangup).await;
    }

    /// Transcribes the whole recording (the listener's turns if that fails) and commits it
    /// with its audio; whether it was stored.
    pub(super) async fn save_voicemail(&self, recording: Recording) -> bool {
        let (pcm, turns) = recording.finish();
        let speech = Arc::clone(&self.host.speech);
        let vocabulary = crate::receptionist::responder::vocabulary(&self.settings.profile);
        let audio = pcm.clone();
        let heard =
            tokio::task::spawn_blocking(move || speech.transcribe(&audio, &vocabulary)).await;
        let text = match heard {
            Ok(Ok(text)) if !text.trim().is_empty() => text.trim().to_owned(),
            Ok(Ok(_)) => turns,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "voicemail not transcribed; the turns heard are kept");
                turns
            }
            Err(e) => {
                tracing::warn!(error = %e, "voicemail transcription panicked");
                turns
            }
        };
        let seconds = pcm.len() as f64 / 8_000.0;
        let message = Voicemail {
            call_id: self.ctx.call_id.clone(),
            org: self.ctx.org.clone(),
            text,
            pcm,
        };
        match self.host.store.voicemail(message).await {
            Ok(()) => {
                metrics::counter!("receptionist_voicemails_total").increment(1);
                tracing::info!(call = %self.ctx.call_id, seconds, "voicemail stored");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "voicemail not stored");
                false
            }
        }
    }
}
