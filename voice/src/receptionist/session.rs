//! One receptionist call's conversation, as a tokio task fed by the media side.
//!
//! ```text
//!  start: settings ─▶ greeting spoken ──────────────────────────────▶ listening
//!  listening: caller turn ─▶ responder ─▶ reply spoken ─▶ (its outcome once played out)
//!             SpeechStart while speaking ─▶ StopPlayback (barge-in)
//!             silence ≥ reprompt_after ─▶ reprompt (× reprompts) ─▶ goodbye ─▶ Hangup
//!             DTMF 0 ─▶ "connecting you" ─▶ Transfer (no agent on the route: take a message)
//!             caller turn over the org's AI-turn cap ─▶ hand-over (or goodbye) ─▶ Transfer|Hangup
//! ```
//!
//! Time is counted in the caller's frames (50 a second, silence included), so timers
//! follow the media clock. The transcript is written in order by a writer task of its own,
//! so a slow commit never delays a reply.

use super::app::Input;
use super::responder::{when, Dialog, Outcome, Stage};
use super::{Booked, Booking, Heard, Host, Listener, OrgSettings, Speaker, TranscriptTurn};
use crate::app::{Action, CallContext};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Frames per second of the caller's audio.
const FRAMES_PER_SEC: u64 = 50;
/// A caller turn longer than this (speech plus recognition, 40 s) is taken as lost.
const MAX_TURN_FRAMES: u64 = 40 * FRAMES_PER_SEC;

/// What to do once the reply being spoken has played out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Listen,
    Transfer,
    Hangup,
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
    };
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
    while let Some(event) = input.recv().await {
        match event {
            Input::Audio(frame) => {
                let heard = listener
                    .as_mut()
                    .map(|l| l.push(&frame))
                    .unwrap_or_default();
                s.on_frame(heard).await;
            }
            Input::Dtmf(digit) => s.on_dtmf(digit).await,
            Input::PlaybackDone { plays } if plays >= s.plays => s.on_played(),
            Input::PlaybackDone { .. } => {}
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
        &self,
        speaker: Speaker,
        text: &str,
        turn: Option<&super::Turn>,
        intent: Option<&'static str>,
    ) {
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
        let audio = tokio::task::spawn_blocking(move || speech.speak(&owned)).await;
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
            After::Transfer => self.act(Action::Transfer {
                target: "agent".to_owned(),
            }),
            After::Hangup => self.act(Action::Hangup),
        }
        self.after = After::Listen;
    }

    async fn on_frame(&mut self, heard: Vec<Heard>) {
        for h in heard {
            match h {
                Heard::SpeechStart => {
                    self.quiet_frames = 0;
                    self.in_turn = true;
                    self.turn_frames = 0;
                    if self.speaking && !self.closing {
                        // Barge-in: the caller talks over us; stop at once and listen.
                        self.act(Action::StopPlayback);
                        self.speaking = false;
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
        if self.in_turn {
            // A turn whose transcript never comes (dropped: recognition behind) must not
            // silence the reprompt for good.
            self.turn_frames += 1;
            if self.turn_frames > MAX_TURN_FRAMES {
                self.in_turn = false;
            }
        }
        if !self.speaking && !self.closing && !self.in_turn {
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
        self.reprompts = 0;
        if !self.turn_allowed().await {
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
        let now = self.now();
        let reply =
            self.host
                .responder
                .respond(&self.settings.profile, &mut self.dialog, &text, now);
        self.record(
            Speaker::Caller,
            &text,
            Some(&turn),
            Some(reply.intent.name()),
        );
        tracing::info!(
            call = %self.ctx.call_id, heard = %text, intent = reply.intent.name(),
            confidence = reply.confidence, "receptionist turn"
        );
        let said = match reply.outcome {
            Outcome::Listen => (reply.say, After::Listen),
            Outcome::Message(_) => (reply.say, After::Listen),
            Outcome::Hangup => {
                self.closing = true;
                (reply.say, After::Hangup)
            }
            Outcome::Transfer => self.hand_over(reply.say),
            Outcome::Book(at) => (self.book(at).await, After::Listen),
        };
        self.say(&said.0, said.1).await;
        // Synthesis included: what the caller waits between the end of their speech (as
        // the VAD saw it) and the reply's first audio being queued.
        let latency = turn.ended_at.elapsed();
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

    /// A hand-over: to the route's agent, or a message when the route has none.
    fn hand_over(&mut self, say: String) -> (String, After) {
        if self.ctx.agent.is_some() {
            self.closing = true;
            (say, After::Transfer)
        } else {
            self.dialog.stage = Stage::TakeMessage;
            let say = "I'm sorry, nobody is available to take your call right now. Please say your message and I will pass it on.";
            (say.to_owned(), After::Listen)
        }
    }

    async fn book(&mut self, at: jiff::civil::DateTime) -> String {
        let booking = Booking {
            call_id: self.ctx.call_id.clone(),
            org: self.ctx.org.clone(),
            start: at,
            timezone: self.settings.timezone.clone(),
            minutes: self.settings.profile.appointment_minutes.max(1),
            hours: self.settings.profile.hours.clone(),
        };
        match self.host.store.book(booking).await {
            Ok(Booked::Confirmed) => format!(
                "You're booked for {}. Is there anything else?",
                when::speak(at)
            ),
            Ok(Booked::Taken { next: Some(next) }) => self.dialog.offer(next),
            Ok(Booked::Taken { next: None }) => {
                self.dialog.stage = Stage::AskWhen {
                    date: None,
                    time: None,
                };
                "That time is taken and I found nothing free soon after. What other day would suit you?".to_owned()
            }
            Err(e) => {
                tracing::warn!(error = %e, "booking not stored");
                "I'm sorry, I couldn't book that just now. Would you like to leave a message instead?".to_owned()
            }
        }
    }

    async fn on_dtmf(&mut self, digit: char) {
        match digit {
            '0' if !self.closing => {
                if self.speaking {
                    self.act(Action::StopPlayback);
                    self.speaking = false;
                }
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
