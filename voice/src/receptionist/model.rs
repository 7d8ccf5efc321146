//! A remote chat model as the receptionist's responder: the port ([`ChatModel`]), what a
//! model is asked ([`ChatTurn`], its instructions from [`instructions`]), what it streams
//! back ([`ModelEvent`], its actions as typed [`ToolCall`]s) and the [`Sentences`] splitter
//! that lets the first sentence be spoken while the rest is still arriving.
//!
//! ```text
//!  caller turn ─▶ ChatTurn{instructions, history} ─▶ ChatModel.stream ─▶ Text deltas ─▶ Sentences
//!                                                         │                 each sentence spoken at once
//!                                                         └─▶ ToolCall ─▶ book · cancel · transfer · message · hang up
//!  no first words within the timeout, an error, or the breaker open ─▶ the local responder answers
//! ```
//!
//! The wire format (OpenAI-compatible chat completions over SSE), the timeouts and the
//! circuit breaker belong to the adapter (`gateway`); this module holds what the call needs
//! to know, so the conversation logic stays testable without a network.

use super::responder::{when, Profile};
use super::Speaker;
use crate::ua::BoxFuture;
use jiff::civil::DateTime;
use tokio::sync::mpsc;

/// An org's model: an OpenAI-compatible endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API's base URL (`https://api.example.com/v1`); `/chat/completions` is added
    /// unless the URL already ends with it.
    pub url: String,
    /// The model's name.
    pub model: String,
    /// The bearer key, if the endpoint wants one.
    pub key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// What the model may do besides talking (its tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCall {
    /// Book (or, when the caller is moving theirs, move the appointment to) this local start.
    Book {
        /// The start, in the org's time zone.
        start: DateTime,
        /// It moves the caller's upcoming appointment (a reschedule).
        reschedule: bool,
    },
    /// Cancel the caller's upcoming appointment.
    Cancel,
    /// Hand the caller to a person, with one line for the agent's phone.
    Transfer {
        /// Why, in a few words.
        summary: String,
    },
    /// Take a voicemail: the prompt, the tone, the recording.
    Message,
    /// Say goodbye and end the call.
    Hangup,
}

/// The tools' names on the wire, as the adapter declares them to the model.
pub mod tools {
    /// `{"start":"YYYY-MM-DDTHH:MM","reschedule":bool}` (local time; `reschedule`: it moves
    /// the caller's upcoming appointment).
    pub const BOOK: &str = "book_appointment";
    /// `{}`.
    pub const CANCEL: &str = "cancel_appointment";
    /// `{"summary":"…"}`.
    pub const TRANSFER: &str = "transfer_to_person";
    /// `{}`.
    pub const MESSAGE: &str = "take_message";
    /// `{}`.
    pub const HANGUP: &str = "end_call";
}

/// One piece of the model's streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    /// More words of the reply (a fragment: split into sentences by [`Sentences`]).
    Text(String),
    /// An action, once its arguments are complete.
    Tool(ToolCall),
}

/// One request to the model: its instructions and the call so far (the caller's latest turn
/// last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    /// The system message.
    pub instructions: String,
    /// Who said what, in order.
    pub history: Vec<(Speaker, String)>,
}

/// Why the model gave no (complete) reply.
#[derive(Debug, thiserror::Error)]
#[error("chat model: {reason}")]
pub struct ModelFailure {
    /// What went wrong (timeout, status, malformed stream, breaker open).
    pub reason: String,
}

/// A chat-completions endpoint. Implemented by `gateway` (reqwest, SSE).
pub trait ChatModel: Send + Sync + 'static {
    /// Streams the reply to `turn` into `out` as it arrives and returns once it is complete.
    /// The adapter bounds the wait for the first and every later chunk and keeps a circuit
    /// breaker per endpoint: an `Err` means the reply stopped there (if nothing was sent,
    /// the local responder answers the turn instead).
    fn stream<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        turn: ChatTurn,
        out: mpsc::Sender<ModelEvent>,
    ) -> BoxFuture<'a, Result<(), ModelFailure>>;
}

/// The system message for an org's model: who it is, the rules of a phone conversation, the
/// org's hours, knowledge and the caller's appointment, the local time, and when to use
/// which tool.
pub fn instructions(
    profile: &Profile,
    now: DateTime,
    existing: Option<DateTime>,
    can_transfer: bool,
) -> String {
    let name = if profile.name.is_empty() {
        "the business"
    } else {
        &profile.name
    };
    let mut text = format!(
        "You are the receptionist of {name}, answering a phone call. Your words are spoken by \
         a text-to-speech voice: reply in one to three short plain sentences, no lists, no \
         markdown, no emoji. It is now {} (local time, {}).\n",
        when::speak(now),
        now.strftime("%Y-%m-%dT%H:%M")
    );
    match &profile.hours {
        Some(h) => text.push_str(&format!(
            "Opening hours: {}. Right now the business is {}.\n",
            h.describe(),
            if h.is_open(now) { "open" } else { "closed" }
        )),
        None => text.push_str("The opening hours are not known.\n"),
    }
    text.push_str(&format!(
        "Appointments last {} minutes and must fit the opening hours.\n",
        profile.appointment_minutes.max(1)
    ));
    match existing {
        Some(at) => text.push_str(&format!(
            "The caller has an appointment on {} ({}).\n",
            when::speak(at),
            at.strftime("%Y-%m-%dT%H:%M")
        )),
        None => text.push_str("The caller has no upcoming appointment.\n"),
    }
    let entries = profile.knowledge.entries();
    if !entries.is_empty() {
        text.push_str("Answer questions only from these facts:\n");
        for e in entries {
            text.push_str(&format!(
                "Q: {}\nA: {}\n",
                e.question.trim(),
                e.answer.trim()
            ));
        }
    }
    text.push_str(&format!(
        "Tools: read a date and time back and get a yes before calling {book} with the \
         local start (reschedule true when it moves the caller's appointment); call {cancel} \
         only after the caller confirms; call {message} when the \
         caller wants to leave a message; call {hangup} when the caller is done. ",
        book = tools::BOOK,
        cancel = tools::CANCEL,
        message = tools::MESSAGE,
        hangup = tools::HANGUP,
    ));
    if can_transfer {
        text.push_str(&format!(
            "Call {} when the caller asks for a person or you cannot help.",
            tools::TRANSFER
        ));
    } else {
        text.push_str(&format!(
            "Nobody can take the call now: offer to take a message instead of {}.",
            tools::TRANSFER
        ));
    }
    text
}

/// Splits a streamed reply into sentences, each spoken as soon as it is complete.
#[derive(Debug, Default)]
pub struct Sentences {
    pending: String,
}

impl Sentences {
    /// Adds a fragment; returns the sentences it completed. A sentence ends at `.`, `!` or
    /// `?` followed by white space (so "3.30" and "e.g." inside words do not split); a
    /// fragment that ends right after the mark waits for the next one.
    pub fn push(&mut self, fragment: &str) -> Vec<String> {
        self.pending.push_str(fragment);
        let mut out = Vec::new();
        loop {
            let cut = self
                .pending
                .char_indices()
                .zip(self.pending.chars().skip(1))
                .find(|((_, c), next)| matches!(c, '.' | '!' | '?') && next.is_whitespace())
                .map(|((i, c), _)| i + c.len_utf8());
            let Some(cut) = cut else { break };
            let sentence = self.pending[..cut].trim().to_owned();
            self.pending = self.pending[cut..].trim_start().to_owned();
            if !sentence.is_empty() {
                out.push(sentence);
            }
        }
        out
    }

    /// What is left once the stream ended.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receptionist::responder::{Entry, Hours, Knowledge};
    use jiff::civil::date;

    #[test]
    fn sentences_are_released_as_soon_as_they_end() {
        let mut s = Sentences::default();
        assert!(s.push("Sure, we open at 9").is_empty());
        assert!(s.push(".30 tomorrow.").is_empty(), "waits for what follows");
        assert_eq!(
            s.push(" Anything else? Th"),
            ["Sure, we open at 9.30 tomorrow.", "Anything else?"]
        );
        assert!(s.push("anks!").is_empty());
        assert_eq!(s.finish().as_deref(), Some("Thanks!"));
        assert_eq!(s.finish(), None);
        assert_eq!(s.push("One.\nTwo!  Three"), ["One.", "Two!"]);
        assert_eq!(s.finish().as_deref(), Some("Three"));
    }

    #[test]
    fn the_instructions_carry_the_orgs_facts_and_the_callers_appointment() {
        let profile = Profile {
            name: "Harbour Dental".into(),
            greeting: None,
            hours: Some(Hours::parse("Mon-Fri 09:00-17:00").unwrap()),
            knowledge: Knowledge::new(vec![Entry {
                question: "Do you have parking?".into(),
                answer: "Yes, behind the building.".into(),
            }]),
            appointment_minutes: 45,
        };
        let now = date(2026, 11, 30).at(10, 0, 0, 0);
        let booked = date(2026, 12, 8).at(15, 30, 0, 0);
        let text = instructions(&profile, now, Some(booked), true);
        for part in [
            "receptionist of Harbour Dental",
            "2026-11-30T10:00",
            "Monday, November 30",
            "business is open",
            "last 45 minutes",
            "2026-12-08T15:30",
            "A: Yes, behind the building.",
            tools::BOOK,
            tools::TRANSFER,
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
        let alone = instructions(&Profile::default(), now, None, false);
        assert!(alone.contains("no upcoming appointment"), "{alone}");
        assert!(alone.contains("Nobody can take the call"), "{alone}");
        assert!(!alone.contains("Call transfer_to_person"), "{alone}");
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let e = Endpoint {
            url: "http://127.0.0.1/v1".into(),
            model: "m".into(),
            key: Some("sk-secret".into()),
        };
        assert!(!format!("{e:?}").contains("sk-secret"));
    }
}
