//! Turn-taking by the words: whether what the caller has said so far is a whole turn, so
//! the receptionist may answer before the silence that normally ends a turn (the VAD's
//! hangover, 500 ms) has run out.
//!
//! A pause of a third of a second is a breath as often as an end. Silence alone cannot
//! tell them apart; the words mostly can. A turn counts as whole when
//! - the responder would act on it (it understands a request, an answer to the question
//!   asked, a day or a time: not "sorry, I didn't catch that"), and
//! - it does not trail off on a word that wants more after it ("…for", "…and", "um").
//!
//! Never while a message is being taken (a message is free speech: its pauses are not
//! ends). This is the rule-based cousin of the learned end-of-turn models voice agents use;
//! it errs on the side of waiting, and a caller who goes on after an early answer simply
//! barges in.

use super::{intent::Intent, words, Dialog, Profile, Responder, Stage, DIDNT_CATCH};
use jiff::civil::DateTime;

/// Words after which a speaker is seldom done: conjunctions, prepositions, articles,
/// fillers and "I'd like to"-style openings.
const TRAILING: &[&str] = &[
    "and", "or", "but", "so", "because", "then", "if", "that", "which", "for", "at", "on", "in",
    "to", "of", "with", "from", "about", "by", "the", "a", "an", "my", "your", "our", "is", "are",
    "was", "i", "i'm", "i'd", "i'll", "it's", "it", "we", "um", "uh", "er", "erm", "hmm", "like",
    "maybe", "just", "also", "please", "can", "could", "would", "will", "next", "this",
];

/// Whether `heard` (the caller's words so far, as final if the caller stays silent) is a
/// whole turn in `dialog`'s state: see the module docs. `dialog` is not changed.
pub fn is_whole_turn(
    responder: &dyn Responder,
    profile: &Profile,
    dialog: &Dialog,
    heard: &str,
    now: DateTime,
) -> bool {
    if dialog.stage == Stage::TakeMessage || heard.trim_end().ends_with("...") {
        return false;
    }
    let tokens = words::tokens(heard);
    let Some(last) = tokens.last() else {
        return false;
    };
    if TRAILING.contains(&last.as_str()) {
        return false;
    }
    let mut trial = dialog.clone();
    let reply = responder.respond(profile, &mut trial, heard, now);
    reply.intent != Intent::Unknown && reply.say != DIDNT_CATCH
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receptionist::responder::LocalResponder;
    use jiff::civil::date;

    fn whole(dialog: &Dialog, heard: &str) -> bool {
        let now = date(2026, 12, 1).at(9, 0, 0, 0);
        is_whole_turn(&LocalResponder, &Profile::default(), dialog, heard, now)
    }

    #[test]
    fn an_understood_request_is_whole() {
        let open = Dialog::default();
        assert!(whole(&open, "I'd like to book an appointment."));
        assert!(whole(&open, "Can I talk to a person?"));
        assert!(whole(&open, "What are your opening hours?"));
    }

    #[test]
    fn words_that_want_more_are_not() {
        let open = Dialog::default();
        assert!(!whole(&open, "I'd like to book an appointment for"));
        assert!(!whole(&open, "I'd like to book an appointment and"));
        assert!(!whole(&open, "I'd like to book an appointment, um"));
        assert!(!whole(&open, "I'd like to book an appointment..."));
        assert!(!whole(&open, ""));
    }

    #[test]
    fn what_is_not_understood_waits_for_the_hangover() {
        assert!(!whole(&Dialog::default(), "Well, the thing is."));
    }

    #[test]
    fn answers_to_the_question_asked_are_whole() {
        let confirm = Dialog {
            stage: Stage::Confirm(date(2026, 12, 2).at(10, 30, 0, 0)),
            ..Dialog::default()
        };
        assert!(whole(&confirm, "Yes."));
        assert!(whole(&confirm, "No."));
        let ask = Dialog {
            stage: Stage::AskWhen {
                date: Some(date(2026, 12, 2)),
                time: None,
            },
            ..Dialog::default()
        };
        assert!(whole(&ask, "Ten thirty in the morning."));
    }

    #[test]
    fn a_message_is_never_cut_short() {
        let message = Dialog {
            stage: Stage::TakeMessage,
            ..Dialog::default()
        };
        assert!(!whole(&message, "Please call me back about my bill."));
    }
}
