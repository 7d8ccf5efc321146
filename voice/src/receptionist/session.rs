//! One receptionist call's conversation, as a tokio task fed by the media side.
//!
//! ```text
//!  start: settings ─▶ greeting spoken ──────────────────────────────▶ listening
//!  listening: caller turn ─▶ responder ─▶ reply spoken ─▶ (its outcome once played out)
//!             SpeechStart while speaking ─▶ StopPlayback (barge-in)
//!             silence ≥ reprompt_after ─▶ reprompt (× reprompts) ─▶ goodbye ─▶ Hangup
//!             DTMF 0 ─▶ "connecting you" ─▶ Transfer (no agent on the route: voicemail)
//!             caller turn over the org's AI-turn cap ─▶ hand-over (or goodbye) ─▶ Transfer|Hangup
//!  voicemail: (no agent · transfer failed · "leave a message") ─▶ prompt + tone ─▶ Record
//!             ─▶ message ended ─▶ transcribed, committed ─▶ "recorded, goodbye" ─▶ Hangup
//!             (hang-up while recording: what was said is still transcribed and stored)
//! ```
//!
//! Time is counted in the caller's frames (50 a second, silence included), so timers
//! follow the media clock. The transcript is written in order by a writer task of its own,
//! so a slow commit never delays a reply.

mod appointments;
mod recording;
mod streaming;

use super::app::Input;
use super::responder::{self, Dialog, Outcome, Stage};
use super::voicemail::{beep, PreRoll, Recording, Stop};
use super::{Existing, Heard, Host, Listener, OrgSettings, Speaker, TranscriptTurn};
use crate::app::{Action, CallContext};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Frames per second of the caller's audio.
const FRAMES_PER_SEC: u64 = 50;
/// A caller turn longer than this (speech plus recognition, 40 s) is taken as lost.
const MAX_TURN_FRAMES: u64 = 40 * FRAMES_PER_SEC;
/// The voicemail prompt when nobody can take the call.
const NOBODY: &str = "I'm sorry, nobody is available to take your call right now. Please leave a message after the tone, and press pound when you are done.";

/// What to do once the reply being spoken has played out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Listen,
    Transfer,
    Hangup,
    /// Record a voicemail (the prompt ends with the tone).
    Record,
}

struct Session {
    host: Arc<Host>,
    ctx: CallContext,
    settings: OrgSettings,
    dialog: Dialog,
    actions: std_mpsc::Sender<Action>,
    transcript: mpsc::UnboundedSender<TranscriptTurn>,
    /// Clips sent; the reply is over when the media side has played this many.
    plays: u64,
    speaking: bool,
    after: After,
    /// Frames of silence since the receptionist or the caller last spoke.
    quiet_frames: u64,
    /// The caller is speaking, or their turn is being transcribed (no reprompt then).
    in_turn: bool,
    /// Frames since the caller's turn began.
    turn_frames: u64,
    reprompts: u32,
    /// Whether the call is ending (goodbye or hand-over said): no more turns.
    closing: bool,
    /// The caller's last second, for a voicemail started over its prompt.
    pre_roll: PreRoll,
    /// A voicemail being recorded.
    recording: Option<Recording>,
    /// Why the caller is handed over, for the agent's phone (a warm transfer).
    summary: String,
    /// The caller's next appointment (to cancel or move).
    existing: Option<Existing>,
    /// Who said what so far (for a remote model).
    history: Vec<(Speaker, String)>,
    /// A remote model's reply being streamed.
    streaming: Option<streaming::Streaming>,
}

/// Runs the conversation until the media side goes away.
pub(super) async fn run(
    host: Arc<Host>,
    ctx: CallContext,
    mut input: mpsc::Receiver<Input>,
    actions: std_mpsc::Sender<Action>,
) {
    let settings = match host.store.settings(&ctx.org).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, org = %ctx.org, "receptionist settings unavailable; defaults used");
            OrgSettings::default()
        }
    };
    let speech = Arc::clone(&host.speech);
    let vocabulary = super::responder::vocabulary(&settings.profile);
    let listening = tokio::task::spawn_blocking(move || speech.listener(&vocabulary));
    let (transcript, writes) = mpsc::unbounded_channel();
    tokio::spawn(write_transcript(Arc::clone(&host), writes));
    let mut s = Session {
        host,
        ctx,
        settings,
        dialog: Dialog::default(),
        actions,
        transcript,
        plays: 0,
        speaking: false,
        after: After::Listen,
        quiet_frames: 0,
        in_turn: false,
        turn_frames: 0,
        reprompts: 0,
        closing: false,
        pre_roll: PreRoll::default(),
        recording: None,
        summary: String::new(),
        existing: None,
        history: Vec::new(),
        streaming: None,
    };
    s.load_existing().await;
    let greeting = s.settings.profile.greeting(s.now());
    s.say(&greeting, After::Listen).await;
    let mut listener: Option<Box<dyn Listener>> = match listening.await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "no speech recognition: the receptionist cannot listen");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "speech recognition failed to start");
            None
        }
    };
    loop {
        let event = tokio::select! {
            event = input.recv() => match event {
                Some(event) => event,
                None => break,
            },
            piece = streaming::next(&mut s.streaming) => {
                s.on_piece(piece).await;
                continue;
            }
        };
        match event {
            Input::Audio(frame) => {
                let heard = match listener.as_mut() {
                    Some(l) => s.listen(l.as_mut(), &frame),
                    None => Vec::new(),
                };
                s.on_frame(&frame, heard).await;
            }
            Input::Dtmf(digit) => s.on_dtmf(digit).await,
            Input::TransferFailed { status } => s.on_transfer_failed(status).await,
            Input::PlaybackDone { plays } if plays >= s.plays => s.on_played(),
            Input::PlaybackDone { .. } => {}
        }
    }
    s.stop_streaming();
    // The caller hung up: a message being recorded is still kept.
    if let Some(recording) = s.recording.take() {
        if recording.spoke() {
            s.save_voicemail(recording).await;
        }
    }
}

/// Commits transcript turns one after another, in the order they were said.
async fn write_transcript(host: Arc<Host>, mut turns: mpsc::UnboundedReceiver<TranscriptTurn>) {
    while let Some(turn) = turns.recv().await {
        if let Err(e) = host.store.transcript(turn).await {
            tracing::warn!(error = %e, "transcript turn not stored");
        }
    }
}

impl Session {
    fn now(&self) -> jiff::civil::DateTime {
        jiff::Zoned::now()
            .with_time_zone(self.settings.timezone.clone())
            .datetime()
    }

    fn act(&self, action: Action) {
        // The media side is gone when this fails: the call is ending anyway.
        let _ = self.actions.send(action);
    }

    fn record(
        &mut self,
        speaker: Speaker,
        text: &str,
        turn: Option<&super::Turn>,
        intent: Option<&'static str>,
    ) {
        // A model sees the call's last 40 turns.
        if self.history.len() == 40 {
            self.history.remove(0);
        }
        self.history.push((speaker, text.to_owned()));
        let _ = self.transcript.send(TranscriptTurn {
            call_id: self.ctx.call_id.clone(),
            org: self.ctx.org.clone(),
            speaker,
            text: text.to_owned(),
            span_ms: turn.map(|t| (t.start_ms, t.end_ms)),
            confidence: turn.map(|t| t.confidence),
            intent,
        });
    }

    /// Speaks `text` (synthesised off the runtime), then does `after` once it played out.
    async fn say(&mut self, text: &str, after: After) {
        self.after = after;
        self.quiet_frames = 0;
        if text.is_empty() {
            self.on_played();
            return;
        }
        self.record(Speaker::Receptionist, text, None, None);
        let speech = Arc::clone(&self.host.speech);
        let owned = text.to_owned();
        let synthesis = std::time::Instant::now();
        let audio = tokio::task::spawn_blocking(move || speech.speak(&owned)).await;
        // ...and the synthesis of each clip.
        metrics::histogram!("receptionist_tts_seconds").record(synthesis.elapsed().as_secs_f64());
        let audio = match (audio, after) {
            (Ok(Ok(mut pcm)), After::Record) => {
                pcm.extend(beep());
                Ok(Ok(pcm))
            }
            (audio, _) => audio,
        };
        match audio {
            Ok(Ok(pcm)) if !pcm.is_empty() => {
                self.plays += 1;
                self.speaking = true;
                self.act(Action::Play(pcm.into()));
            }
            Ok(Ok(_)) => self.on_played(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "speech synthesis failed");
                self.on_played();
            }
            Err(e) => {
                tracing::warn!(error = %e, "speech synthesis panicked");
                self.on_played();
            }
        }
    }

    /// The reply has played out: carry out what was to follow it.
    fn on_played(&mut self) {
        self.speaking = false;
        self.quiet_frames = 0;
        match self.after {
            After::Listen => {}
            After::Transfer => {
                let summary = Some(std::mem::take(&mut self.summary));
                self.act(Action::Transfer {
                    target: "agent".to_owned(),
                    summary,
                });
            }
            After::Hangup => self.act(Action::Hangup),
            After::Record => self.start_recording(false),
        }
        self.after = After::Listen;
    }

    /// Gives the listener a frame; ends the caller's turn early when its words make it
    /// whole ([`responder::turn`]).
    fn listen(&self, listener: &mut dyn Listener, frame: &[i16]) -> Vec<Heard> {
        let mut heard = listener.push(frame);
        if !self.host.config.early_end || self.recording.is_some() || self.closing {
            return heard;
        }
        let Some(words) = listener.tentative() else {
            return heard;
        };
        let ready = responder::turn::is_whole_turn(
            self.host.responder.as_ref(),
            &self.settings.profile,
            &self.dialog,
            &words,
            self.now(),
        );
        if ready {
            let ended = listener.end_turn();
            if !ended.is_empty() {
                metrics::counter!("receptionist_early_turn_ends_total").increment(1);
            }
            heard.extend(ended);
        }
        heard
    }

    async fn on_frame(&mut self, frame: &[i16], heard: Vec<Heard>) {
        self.pre_roll.push(frame);
        for h in heard {
            if let Some(recording) = self.recording.as_mut() {
                match h {
                    Heard::SpeechStart => recording.speech_started(),
                    Heard::Turn(turn) => recording.turn(&turn.text),
                }
                continue;
            }
            match h {
                Heard::SpeechStart => {
                    self.quiet_frames = 0;
                    self.in_turn = true;
                    self.turn_frames = 0;
                    if self.speaking && !self.closing {
                        // Barge-in: the caller talks over us; stop at once and listen (or,
                        // over the voicemail prompt, record from the second before). The
                        // rest of a streamed reply is not wanted any more.
                        self.stop_streaming();
                        self.act(Action::StopPlayback);
                        self.speaking = false;
                        if self.after == After::Record {
                            self.start_recording(true);
                        }
                        self.after = After::Listen;
                    }
                }
                Heard::Turn(turn) => {
                    self.in_turn = false;
                    self.quiet_frames = 0;
                    self.on_turn(turn).await;
                }
            }
        }
        if let Some(recording) = self.recording.as_mut() {
            if let Some(stop) = recording.push(frame) {
                self.end_recording(stop).await;
            }
            return;
        }
        if self.in_turn {
            // A turn whose transcript never comes (dropped: recognition behind) must not
            // silence the reprompt for good.
            self.turn_frames += 1;
            if self.turn_frames > MAX_TURN_FRAMES {
                self.in_turn = false;
            }
        }
        if !self.speaking && !self.closing && !self.in_turn && self.streaming.is_none() {
            self.quiet_frames += 1;
            let limit = self.host.config.reprompt_after.as_millis() as u64 * FRAMES_PER_SEC / 1000;
            if self.quiet_frames >= limit.max(1) {
                self.on_silence().await;
            }
        }
    }

    async fn on_silence(&mut self) {
        if self.reprompts < self.host.config.reprompts {
            self.reprompts += 1;
            self.say("Are you still there? How can I help you?", After::Listen)
                .await;
        } else {
            self.closing = true;
            self.say("I haven't heard anything, so I'll end the call now. Thank you for calling. Goodbye.", After::Hangup)
                .await;
        }
    }

    async fn on_turn(&mut self, turn: super::Turn) {
        let text = turn.text.trim().to_owned();
        if text.is_empty() || self.closing {
            return;
        }
        // Where a reply's time goes, stage by stage (the benchmark reads these): the wait
        // for the final transcript after the end of speech was decided...
        metrics::histogram!("receptionist_stt_wait_seconds")
            .record(turn.ended_at.elapsed().as_secs_f64());
        self.reprompts = 0;
        self.summary = format!("Receptionist: the caller said \"{text}\"");
        if !self.turn_allowed().await {
            self.summary =
                format!("Receptionist (AI turn limit reached): the caller said \"{text}\"");
            self.record(Speaker::Caller, &text, Some(&turn), Some("over_limit"));
            self.closing = true;
            let (say, after) = if self.ctx.agent.is_some() {
                (
                    "I'm sorry, I can't answer more questions right now. Connecting you to a person. Please hold.",
                    After::Transfer,
                )
            } else {
                (
                    "I'm sorry, I can't answer more questions right now. Please call back later. Goodbye.",
                    After::Hangup,
                )
            };
            self.say(say, after).await;
            return;
        }
        if self.ask_model(&text, &turn) {
            return;
        }
        self.local_turn(&text, &turn, true).await;
    }

    /// The local responder answers the turn (no remote model, or it failed this turn: the
    /// caller's words are then in the transcript already, `record_caller` false).
    async fn local_turn(&mut self, text: &str, turn: &super::Turn, record_caller: bool) {
        let text = text.to_owned();
        let now = self.now();
        let reply =
            self.host
                .responder
                .respond(&self.settings.profile, &mut self.dialog, &text, now);
        if record_caller {
            self.record(
                Speaker::Caller,
                &text,
                Some(turn),
                Some(reply.intent.name()),
            );
        }
        tracing::info!(
            call = %self.ctx.call_id, heard = %text, intent = reply.intent.name(),
            confidence = reply.confidence, "receptionist turn"
        );
        let said = match reply.outcome {
            // "I'd like to leave a message": the prompt, the tone, then the recording.
            Outcome::Listen if self.dialog.stage == Stage::TakeMessage => {
                (reply.say, After::Record)
            }
            Outcome::Listen => (reply.say, After::Listen),
            Outcome::Message(_) => (reply.say, After::Listen),
            Outcome::Hangup => {
                self.closing = true;
                (reply.say, After::Hangup)
            }
            Outcome::Transfer => self.hand_over(reply.say),
            Outcome::Book(at) => (self.book(at).await, After::Listen),
            Outcome::Cancel => (self.cancel().await, After::Listen),
        };
        self.say(&said.0, said.1).await;
        self.reply_queued(turn.ended_at);
    }

    /// Synthesis included: what the caller waits between the end of their speech (as the
    /// VAD saw it) and the reply's first audio being queued.
    fn reply_queued(&self, ended_at: std::time::Instant) {
        let latency = ended_at.elapsed();
        metrics::histogram!("receptionist_reply_seconds").record(latency.as_secs_f64());
        tracing::info!(
            call = %self.ctx.call_id, ms = latency.as_millis() as u64,
            "end of caller speech to reply queued"
        );
    }

    /// Whether the org's cap on AI turns lets this turn be answered. A store that cannot
    /// count lets it through (logged): a counter is no reason to drop a caller.
    async fn turn_allowed(&self) -> bool {
        match self.host.store.take_turn(&self.ctx.org).await {
            Ok(allowed) => {
                if !allowed {
                    tracing::info!(call = %self.ctx.call_id, org = %self.ctx.org, "AI turn cap reached: handing over");
                }
                allowed
            }
            Err(e) => {
                tracing::warn!(error = %e, "AI turn not counted (store unavailable); answered");
                true
            }
        }
    }

    /// A hand-over: to the route's agent, or voicemail when the route has none.
    fn hand_over(&mut self, say: String) -> (String, After) {
        if self.ctx.agent.is_some() {
            self.closing = true;
            (say, After::Transfer)
        } else {
            self.dialog.stage = Stage::TakeMessage;
            (NOBODY.to_owned(), After::Record)
        }
    }

    /// The agent did not take the call (no answer, busy, not registered): voicemail.
    async fn on_transfer_failed(&mut self, status: u16) {
        tracing::info!(call = %self.ctx.call_id, status, "hand-over failed: voicemail");
        self.closing = false;
        self.dialog.stage = Stage::TakeMessage;
        self.say(NOBODY, After::Record).await;
    }

    async fn on_dtmf(&mut self, digit: char) {
        if let Some(recording) = &self.recording {
            // Any key ends the message.
            let stop = if recording.spoke() {
                Stop::Silence
            } else {
                Stop::Nothing
            };
            self.end_recording(stop).await;
            return;
        }
        // A key decides the call's next step: a remote model's reply still streaming would
        // otherwise go on talking over it.
        if matches!(digit, '0' | '#') && !self.closing {
            self.stop_streaming();
        }
        match digit {
            '0' if !self.closing => {
                if self.speaking {
                    self.act(Action::StopPlayback);
                    self.speaking = false;
                }
                self.summary = "Receptionist: the caller pressed 0 for a person".to_owned();
                let (say, after) =
                    self.hand_over("Connecting you to a person now. Please hold.".to_owned());
                self.say(&say, after).await;
            }
            '#' if !self.closing => {
                self.closing = true;
                self.say("Thank you for calling. Goodbye.", After::Hangup)
                    .await;
            }
            _ => {}
        }
    }
}
