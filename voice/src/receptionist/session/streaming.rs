//! A caller's turn answered by the org's remote model (see [`crate::receptionist::model`]):
//! the reply streams in next to the caller's audio (the session's loop selects over both, so
//! barge-in still works while the model is talking), each sentence is spoken as soon as it
//! is complete, and the tool call at the end is carried out like the local responder's
//! outcomes. No words before the wait runs out, an error, or the breaker open: the local
//! responder answers the same turn.

use super::{After, Session};
use crate::receptionist::model::{self, ChatTurn, ModelEvent, ModelFailure, Sentences, ToolCall};
use crate::receptionist::responder::Stage;
use crate::receptionist::{Speaker, Turn};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A reply being streamed.
pub(super) struct Streaming {
    events: mpsc::Receiver<ModelEvent>,
    task: JoinHandle<Result<(), ModelFailure>>,
    /// Give up when nothing arrives by then.
    deadline: Instant,
    sentences: Sentences,
    /// Whether any of it was spoken yet.
    spoke: bool,
    /// The tool the model called (the first one counts).
    tool: Option<ToolCall>,
    /// The caller's turn, for the local responder if the model fails.
    text: String,
    turn: Turn,
}

/// What happened to the reply being streamed.
pub(super) enum Piece {
    /// More of it.
    Event(ModelEvent),
    /// It is complete (`Ok`) or broke off.
    End(Result<(), ModelFailure>),
}

/// The next piece of the reply being streamed; never ready when nothing is streamed.
pub(super) async fn next(streaming: &mut Option<Streaming>) -> Piece {
    let Some(s) = streaming.as_mut() else {
        return std::future::pending().await;
    };
    let timed_out = || {
        Piece::End(Err(ModelFailure {
            reason: "no reply in time".into(),
        }))
    };
    match tokio::time::timeout_at(s.deadline, s.events.recv()).await {
        Err(_) => timed_out(),
        Ok(Some(event)) => Piece::Event(event),
        // The adapter returned (its sender dropped): its result says how it ended.
        Ok(None) => match tokio::time::timeout_at(s.deadline, &mut s.task).await {
            Err(_) => timed_out(),
            Ok(Ok(result)) => Piece::End(result),
            Ok(Err(e)) => Piece::End(Err(ModelFailure {
                reason: format!("adapter task failed: {e}"),
            })),
        },
    }
}

impl Session {
    /// Starts the org's model on the caller's turn, if the org has one and the gateway
    /// hosts an adapter; whether it did (the caller's words are then in the transcript).
    pub(super) fn ask_model(&mut self, text: &str, turn: &Turn) -> bool {
        let (Some(endpoint), Some(chat)) = (&self.settings.model, &self.host.model) else {
            return false;
        };
        let (endpoint, chat) = (endpoint.clone(), Arc::clone(chat));
        self.stop_streaming();
        self.record(Speaker::Caller, text, Some(turn), None);
        tracing::info!(call = %self.ctx.call_id, heard = %text, "receptionist turn (remote model)");
        let request = ChatTurn {
            instructions: model::instructions(
                &self.settings.profile,
                self.now(),
                self.dialog.existing,
                self.ctx.agent.is_some(),
            ),
            history: self.history.clone(),
        };
        let (tx, events) = mpsc::channel(64);
        let task = tokio::spawn(async move { chat.stream(&endpoint, request, tx).await });
        self.streaming = Some(Streaming {
            events,
            task,
            deadline: Instant::now() + self.host.config.model_wait,
            sentences: Sentences::default(),
            spoke: false,
            tool: None,
            text: text.to_owned(),
            turn: turn.clone(),
        });
        true
    }

    /// Drops the reply being streamed (barge-in, a newer turn, the call's end).
    pub(super) fn stop_streaming(&mut self) {
        if let Some(s) = self.streaming.take() {
            s.task.abort();
        }
    }

    pub(super) async fn on_piece(&mut self, piece: Piece) {
        match piece {
            Piece::Event(ModelEvent::Text(fragment)) => {
                let Some(s) = self.streaming.as_mut() else {
                    return;
                };
                s.deadline = Instant::now() + self.host.config.model_wait;
                let sentences = s.sentences.push(&fragment);
                let (first, ended_at) = (!s.spoke, s.turn.ended_at);
                s.spoke |= !sentences.is_empty();
                for (i, sentence) in sentences.iter().enumerate() {
                    self.speak_sentence(sentence, first && i == 0, ended_at)
                        .await;
                }
            }
            Piece::Event(ModelEvent::Tool(call)) => {
                if let Some(s) = self.streaming.as_mut() {
                    s.deadline = Instant::now() + self.host.config.model_wait;
                    s.tool.get_or_insert(call);
                }
            }
            Piece::End(result) => {
                let Some(mut s) = self.streaming.take() else {
                    return;
                };
                if let Err(e) = &result {
                    s.task.abort();
                    if !s.spoke && s.tool.is_none() {
                        tracing::warn!(call = %self.ctx.call_id, error = %e, "remote model failed: the local responder answers");
                        metrics::counter!("receptionist_model_fallbacks_total").increment(1);
                        self.local_turn(&s.text, &s.turn, false).await;
                        return;
                    }
                    tracing::warn!(call = %self.ctx.call_id, error = %e, "remote model broke off; what it said stands");
                }
                if let Some(rest) = s.sentences.finish() {
                    self.speak_sentence(&rest, !s.spoke, s.turn.ended_at).await;
                    s.spoke = true;
                }
                self.carry_out(s.tool, s.spoke).await;
            }
        }
    }

    /// One sentence of the streamed reply, spoken (and written to the transcript) at once;
    /// the reply latency is taken at its `first`.
    async fn speak_sentence(&mut self, sentence: &str, first: bool, ended_at: std::time::Instant) {
        self.say(sentence, After::Listen).await;
        if first {
            self.reply_queued(ended_at);
        }
    }

    /// What follows the model's words: its tool call, like the local responder's outcomes.
    async fn carry_out(&mut self, tool: Option<ToolCall>, spoke: bool) {
        let (say, after) = match tool {
            None => (String::new(), After::Listen),
            Some(ToolCall::Book { start, reschedule }) => {
                self.dialog.stage = Stage::Open;
                self.dialog.rescheduling = reschedule && self.existing.is_some();
                (self.book(start).await, After::Listen)
            }
            Some(ToolCall::Cancel) => (self.cancel().await, After::Listen),
            Some(ToolCall::Transfer { summary }) => {
                self.summary = format!("Receptionist: {summary}");
                let say = match spoke {
                    true => String::new(),
                    false => "Connecting you to a person now. Please hold.".to_owned(),
                };
                self.hand_over(say)
            }
            Some(ToolCall::Message) => {
                self.dialog.stage = Stage::TakeMessage;
                let say =
                    "Please leave your message after the tone, and press pound when you are done.";
                (say.to_owned(), After::Record)
            }
            Some(ToolCall::Hangup) => {
                self.closing = true;
                let say = match spoke {
                    true => String::new(),
                    false => "Thank you for calling. Goodbye.".to_owned(),
                };
                (say, After::Hangup)
            }
        };
        if !say.is_empty() {
            self.say(&say, after).await;
        } else if self.speaking {
            // Done once the words already queued have played out.
            self.after = after;
        } else {
            self.after = after;
            self.on_played();
        }
    }
}
