//! The [`Responder`] port: one caller turn in, what to say and do out. Pure: no I/O, no
//! clock (the local time is passed in), so the whole conversation logic is unit-tested.
//!
//! [`LocalResponder`] is the default adapter, needing no network: intents by cue words
//! ([`intent`]), answers from the org's knowledge base by text similarity ([`kb`]), dates
//! and times from speech ([`when`]), opening hours ([`hours`]), and slot filling with
//! confirmation for bookings:
//!
//! ```text
//!            book (day+time) ─────────────────────────────▶ Confirm(at) ──yes──▶ Outcome::Book(at)
//!  Open ──▶  book (part or none) ─▶ AskWhen{date?,time?} ──(both)──▶ ┘     └─no──▶ AskWhen{}
//!   ▲        message ─▶ TakeMessage ──any words──▶ Outcome::Message(text)
//!   │        person ─▶ Outcome::Transfer · goodbye ─▶ Outcome::Hangup
//!   └─────── hours / address / knowledge answer, then "anything else?"
//! ```
//!
//! Two turns in a row that it cannot understand ask for a hand-over
//! ([`Outcome::Transfer`]); the call decides whether a person is reachable.

pub mod hours;
pub mod intent;
pub mod kb;
pub mod turn;
pub mod when;
pub mod words;

pub use hours::{Hours, HoursError};
pub use intent::Intent;
pub use kb::{Entry, Knowledge};

use jiff::civil::{Date, DateTime, Time};

/// What an org tells its receptionist.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// The business's name, spoken in the default greeting.
    pub name: String,
    /// The greeting; `None`: "Thank you for calling NAME. How can I help you?"
    pub greeting: Option<String>,
    /// Opening hours; `None`: not known (bookings are not checked against them).
    pub hours: Option<Hours>,
    /// The knowledge base.
    pub knowledge: Knowledge,
    /// Length of an appointment, minutes.
    pub appointment_minutes: u16,
}

impl Profile {
    /// What the receptionist says first, at local time `now`: the greeting, and, when the
    /// business is closed, its hours.
    pub fn greeting(&self, now: DateTime) -> String {
        let mut text = self.greeting.clone().unwrap_or_else(|| {
            let name = if self.name.is_empty() {
                "us"
            } else {
                &self.name
            };
            format!("Thank you for calling {name}. How can I help you?")
        });
        if let Some(hours) = &self.hours {
            if !hours.is_open(now) {
                text.push_str(&format!(
                    " We are closed right now; our hours are {}. I can still take a message or book an appointment.",
                    hours.describe()
                ));
            }
        }
        text
    }
}

/// Words a caller of this org is likely to say, as a short text: the business's name, its
/// knowledge-base questions and the requests the responder knows. Given to the recogniser
/// as context (whisper's initial prompt), it makes unclear audio decode toward them.
pub fn vocabulary(profile: &Profile) -> String {
    let mut text = String::new();
    if !profile.name.is_empty() {
        text.push_str(&profile.name);
        text.push_str(". ");
    }
    for e in profile.knowledge.entries() {
        text.push_str(e.question.trim());
        text.push(' ');
    }
    text.push_str(
        "I'd like to book an appointment. What are your opening hours? What is your address? \
         I'd like to leave a message. Please call me back. Can I talk to a person? Operator. \
         Tomorrow at ten thirty in the morning. Next Tuesday at three PM. \
         Yes, that's right. No. That's all, have a nice day. Goodbye.",
    );
    text
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Waiting for a request.
    #[default]
    Open,
    /// Booking: collecting the day and time.
    AskWhen {
        /// The day, if said.
        date: Option<Date>,
        /// The time, if said.
        time: Option<Time>,
    },
    /// Booking: waiting for yes or no to this slot.
    Confirm(DateTime),
    /// Cancelling: waiting for yes or no to cancel the caller's appointment at this time.
    ConfirmCancel(DateTime),
    /// The next turn is the caller's message.
    TakeMessage,
}

/// One call's conversation state, owned by the call and handed to every turn.
#[derive(Debug, Clone, Default)]
pub struct Dialog {
    /// Where it is.
    pub stage: Stage,
    /// Turns in a row not understood.
    pub misunderstood: u32,
    /// The caller's next appointment (local start), when the call knows one.
    pub existing: Option<DateTime>,
    /// The booking being filled moves `existing` (a reschedule).
    pub rescheduling: bool,
}

impl Dialog {
    /// Offers another slot for confirmation (the one asked for was taken).
    pub fn offer(&mut self, at: DateTime) -> String {
        self.stage = Stage::Confirm(at);
        format!(
            "That time is already taken. The next free time is {}. Shall I book that?",
            when::speak(at)
        )
    }
}

/// What the call does after saying the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Keep listening.
    Listen,
    /// Hand the call to a person.
    Transfer,
    /// Say goodbye and end the call.
    Hangup,
    /// Store this booking (then confirm it or offer another slot).
    Book(DateTime),
    /// Store the caller's message.
    Message(String),
    /// Cancel the caller's appointment ([`Dialog::existing`]).
    Cancel,
}

/// The responder's answer to one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// What to say (may be empty).
    pub say: String,
    /// What to do.
    pub outcome: Outcome,
    /// What was understood.
    pub intent: Intent,
    /// How sure, 0–1.
    pub confidence: f32,
}

impl Reply {
    fn new(say: impl Into<String>, outcome: Outcome, intent: Intent, confidence: f32) -> Reply {
        Reply {
            say: say.into(),
            outcome,
            intent,
            confidence,
        }
    }
}

/// Turns a caller's words into a reply. Implementations are pure and fast (no I/O on the
/// call's path): a remote model would sit behind its own timeout and fall back to this.
pub trait Responder: Send + Sync {
    /// The reply to `heard`, said at local time `now`, in `dialog`'s state (updated).
    fn respond(&self, profile: &Profile, dialog: &mut Dialog, heard: &str, now: DateTime) -> Reply;
}

/// The local, rule-based responder (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalResponder;

/// Said when nothing was understood.
pub const DIDNT_CATCH: &str =
    "Sorry, I didn't catch that. You can ask about our hours or address, \
book an appointment, leave a message, or ask for a person. You can also press 0 for a person.";

/// What the responder understood from one turn, before the dialog acts on it.
pub fn understand(profile: &Profile, heard: &str) -> (Intent, f32) {
    let guess = intent::classify(heard);
    let kb = profile.knowledge.best(heard);
    let strong = kb.filter(|m| m.score >= 0.5);
    match (guess.intent, kb) {
        // The org's own answer beats a generic one about hours or address.
        (Intent::Hours | Intent::Address, _) if strong.is_some() => strong
            .map_or((guess.intent, guess.confidence), |m| {
                (Intent::Knowledge(m.index), m.score.min(1.0))
            }),
        // Where it is: the knowledge-base entry that is itself a question about the address.
        (Intent::Address, _) => match profile
            .knowledge
            .entries()
            .iter()
            .position(|e| intent::classify(&e.question).intent == Intent::Address)
        {
            Some(i) => (Intent::Knowledge(i), guess.confidence),
            None => (Intent::Address, guess.confidence),
        },
        // A day or a time and no other request: someone asking to come in, unless the
        // knowledge base clearly answers it.
        (Intent::Unknown, _) if strong.is_none() && mentions_when(heard) => (Intent::Book, 0.6),
        (Intent::Unknown, Some(m)) => (Intent::Knowledge(m.index), m.score.min(1.0)),
        (intent, _) => (intent, guess.confidence),
    }
}

/// Whether the words name a day or a time.
fn mentions_when(heard: &str) -> bool {
    !when::parse(heard, jiff::civil::date(2026, 1, 5)).is_empty()
}

impl LocalResponder {
    fn booking(
        &self,
        profile: &Profile,
        dialog: &mut Dialog,
        heard: &str,
        now: DateTime,
        conf: f32,
    ) -> Reply {
        dialog.misunderstood = 0;
        let (date, time) = match dialog.stage {
            Stage::AskWhen { date, time } => (date, time),
            _ => (None, None),
        };
        let said = when::parse(heard, now.date());
        let date = said.date.or(date);
        let time = said.time.or(time);
        dialog.stage = Stage::AskWhen { date, time };
        let ask = |q: &str| Reply::new(q, Outcome::Listen, Intent::Book, conf);
        let (date, time) = match (date, time) {
            (None, None) => return ask("Sure. What day and time would you like?"),
            (Some(d), None) => {
                return ask(&format!("What time on {:?} would you like?", d.weekday()));
            }
            (None, Some(_)) => return ask("Which day would you like?"),
            (Some(d), Some(t)) => (d, t),
        };
        let at = date.to_datetime(time);
        if at <= now {
            dialog.stage = Stage::AskWhen {
                date: None,
                time: None,
            };
            return ask("That time has already passed. What day and time would you like?");
        }
        if let Some(hours) = &profile.hours {
            if !hours.fits(at, profile.appointment_minutes.max(1)) {
                dialog.stage = Stage::AskWhen {
                    date: None,
                    time: None,
                };
                return ask(&format!(
                    "Sorry, we are not open then. Our hours are {}. What other day and time would work?",
                    hours.describe()
                ));
            }
        }
        dialog.stage = Stage::Confirm(at);
        ask(&format!("{}, is that right?", when::speak(at)))
    }
}

impl Responder for LocalResponder {
    fn respond(&self, profile: &Profile, dialog: &mut Dialog, heard: &str, now: DateTime) -> Reply {
        let heard = heard.trim();
        if dialog.stage == Stage::TakeMessage && !heard.is_empty() {
            dialog.stage = Stage::Open;
            dialog.misunderstood = 0;
            let say = "Thank you, I have passed your message on. Is there anything else?";
            return Reply::new(
                say,
                Outcome::Message(heard.to_owned()),
                Intent::Message,
                1.0,
            );
        }
        let (intent, conf) = understand(profile, heard);
        let guess = intent::scores(heard);
        let says = |i: Intent| guess.iter().any(|&(g, ..)| g == i);
        // Inside a booking or a cancellation, yes/no and further dates come first.
        match dialog.stage {
            Stage::ConfirmCancel(_)
                if (says(Intent::Yes) && !says(Intent::No)) || intent == Intent::Yes =>
            {
                dialog.stage = Stage::Open;
                return Reply::new("", Outcome::Cancel, Intent::Yes, conf.max(0.7));
            }
            Stage::ConfirmCancel(_) if says(Intent::No) || intent == Intent::No => {
                dialog.stage = Stage::Open;
                let say = "All right, I've kept your appointment. Is there anything else?";
                return Reply::new(say, Outcome::Listen, Intent::No, conf);
            }
            Stage::Confirm(at)
                if (says(Intent::Yes) && !says(Intent::No)) || intent == Intent::Yes =>
            {
                dialog.stage = Stage::Open;
                dialog.misunderstood = 0;
                return Reply::new("", Outcome::Book(at), Intent::Yes, conf.max(0.7));
            }
            Stage::Confirm(_) if intent == Intent::No || says(Intent::No) => {
                let changed = when::parse(heard, now.date());
                dialog.stage = Stage::AskWhen {
                    date: None,
                    time: None,
                };
                if !changed.is_empty() {
                    return self.booking(profile, dialog, heard, now, conf);
                }
                let say = "No problem. What day and time would you like instead?";
                return Reply::new(say, Outcome::Listen, Intent::No, conf);
            }
            Stage::Confirm(_) | Stage::AskWhen { .. }
                if !matches!(intent, Intent::Person | Intent::Goodbye | Intent::Message)
                    && !when::parse(heard, now.date()).is_empty() =>
            {
                dialog.stage = match dialog.stage {
                    Stage::Confirm(_) => Stage::AskWhen {
                        date: None,
                        time: None,
                    },
                    s => s,
                };
                return self.booking(profile, dialog, heard, now, conf.max(0.7));
            }
            _ => {}
        }
        if intent != Intent::Unknown {
            dialog.misunderstood = 0;
        }
        match intent {
            Intent::Book => {
                dialog.rescheduling = false;
                self.booking(profile, dialog, heard, now, conf)
            }
            Intent::Cancel | Intent::Reschedule if dialog.existing.is_none() => {
                dialog.stage = Stage::Open;
                let say = "I can't find an upcoming appointment for this number. Would you like to book one?";
                Reply::new(say, Outcome::Listen, intent, conf)
            }
            Intent::Cancel => {
                let at = dialog.existing.unwrap_or(now);
                dialog.stage = Stage::ConfirmCancel(at);
                let say = format!(
                    "You have an appointment on {}. Shall I cancel it?",
                    when::speak(at)
                );
                Reply::new(say, Outcome::Listen, intent, conf)
            }
            Intent::Reschedule => {
                dialog.rescheduling = true;
                dialog.stage = Stage::AskWhen {
                    date: None,
                    time: None,
                };
                if !when::parse(heard, now.date()).is_empty() {
                    return self.booking(profile, dialog, heard, now, conf);
                }
                let at = dialog.existing.unwrap_or(now);
                let say = format!(
                    "Your appointment is on {}. What day and time would suit you instead?",
                    when::speak(at)
                );
                Reply::new(say, Outcome::Listen, intent, conf)
            }
            Intent::Person => {
                dialog.stage = Stage::Open;
                Reply::new(
                    "Connecting you to a person now. Please hold.",
                    Outcome::Transfer,
                    intent,
                    conf,
                )
            }
            Intent::Message => {
                dialog.stage = Stage::TakeMessage;
                Reply::new(
                    "Of course. Please leave your message after the tone, and press pound when you are done.",
                    Outcome::Listen,
                    intent,
                    conf,
                )
            }
            Intent::Goodbye | Intent::No if dialog.stage == Stage::Open => Reply::new(
                "Thank you for calling. Goodbye.",
                Outcome::Hangup,
                Intent::Goodbye,
                conf,
            ),
            Intent::Goodbye => {
                dialog.stage = Stage::Open;
                Reply::new(
                    "Thank you for calling. Goodbye.",
                    Outcome::Hangup,
                    intent,
                    conf,
                )
            }
            Intent::Hours => {
                let say = match &profile.hours {
                    Some(h) => {
                        let open = if h.is_open(now) {
                            "We are open now."
                        } else {
                            "We are closed right now."
                        };
                        format!(
                            "Our hours are {}. {open} Is there anything else?",
                            h.describe()
                        )
                    }
                    None => "I'm sorry, I don't have our hours. Would you like to leave a message?"
                        .to_owned(),
                };
                Reply::new(say, Outcome::Listen, intent, conf)
            }
            Intent::Address => Reply::new(
                "I'm sorry, I don't have our address at hand. Would you like to leave a message?",
                Outcome::Listen,
                intent,
                conf,
            ),
            Intent::Knowledge(i) => {
                let answer = &profile.knowledge.entries()[i].answer;
                Reply::new(
                    format!("{answer} Is there anything else?"),
                    Outcome::Listen,
                    intent,
                    conf,
                )
            }
            Intent::Yes => Reply::new("Great. How can I help you?", Outcome::Listen, intent, conf),
            Intent::No | Intent::Unknown => {
                dialog.misunderstood += 1;
                if dialog.misunderstood >= 2 {
                    dialog.misunderstood = 0;
                    let say = "I'm having trouble understanding. Let me connect you to a person.";
                    return Reply::new(say, Outcome::Transfer, Intent::Unknown, 0.0);
                }
                // Filling a booking: ask for the missing part again, keeping what was said.
                let say = match dialog.stage {
                    Stage::AskWhen {
                        date: Some(d),
                        time: None,
                    } => {
                        format!(
                            "Sorry, I didn't catch that. What time on {:?} would you like?",
                            d.weekday()
                        )
                    }
                    Stage::AskWhen {
                        date: None,
                        time: Some(_),
                    } => "Sorry, I didn't catch that. Which day would you like?".to_owned(),
                    Stage::AskWhen { .. } => {
                        "Sorry, I didn't catch that. What day and time would you like?".to_owned()
                    }
                    Stage::Confirm(at) => {
                        format!("Sorry, was that {}? Please say yes or no.", when::speak(at))
                    }
                    Stage::ConfirmCancel(at) => format!(
                        "Sorry, shall I cancel your appointment on {}? Please say yes or no.",
                        when::speak(at)
                    ),
                    _ => DIDNT_CATCH.to_owned(),
                };
                Reply::new(say, Outcome::Listen, Intent::Unknown, 0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests;
