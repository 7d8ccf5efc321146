//! Conversations with the local responder, turn by turn, at a fixed local time.

use super::*;
use jiff::civil::date;

/// Monday 30 November 2026, 10:00 local.
fn now() -> DateTime {
    date(2026, 11, 30).at(10, 0, 0, 0)
}

fn profile() -> Profile {
    let e = |q: &str, a: &str| Entry {
        question: q.into(),
        answer: a.into(),
    };
    Profile {
        name: "Harbour Dental".into(),
        greeting: None,
        hours: Some(Hours::parse("Mon-Fri 09:00-17:00").unwrap()),
        knowledge: Knowledge::new(vec![
            e("Where are you located?", "We are at 12 Harbour Street."),
            e(
                "Do you have parking?",
                "Free parking is behind the building.",
            ),
            e(
                "Do you accept insurance?",
                "We accept most dental insurance plans.",
            ),
        ]),
        appointment_minutes: 30,
    }
}

/// Runs a conversation: each (caller says, reply contains, outcome) in turn.
fn converse(turns: &[(&str, &str, Outcome)]) -> Dialog {
    converse_from(Dialog::default(), turns)
}

fn converse_from(mut d: Dialog, turns: &[(&str, &str, Outcome)]) -> Dialog {
    let p = profile();
    for (said, want, outcome) in turns {
        let r = LocalResponder.respond(&p, &mut d, said, now());
        assert!(
            r.say.contains(want),
            "{said:?} → {:?}, want {want:?}",
            r.say
        );
        assert_eq!(&r.outcome, outcome, "{said:?} → {r:?}");
    }
    d
}

#[test]
fn greeting_is_the_orgs_or_a_default_and_names_hours_when_closed() {
    let mut p = profile();
    assert_eq!(
        p.greeting(now()),
        "Thank you for calling Harbour Dental. How can I help you?"
    );
    let evening = date(2026, 11, 30).at(19, 0, 0, 0);
    assert!(p
        .greeting(evening)
        .contains("We are closed right now; our hours are Monday to Friday, 9 AM to 5 PM."));
    p.greeting = Some("Hi, Harbour here.".into());
    assert_eq!(p.greeting(now()), "Hi, Harbour here.");
}

#[test]
fn booking_in_one_sentence_is_confirmed_then_booked() {
    let at = date(2026, 12, 8).at(15, 30, 0, 0);
    let d = converse(&[
        (
            "I'd like to book an appointment next Tuesday at three thirty",
            "Tuesday, December 8 at 3:30 PM, is that right?",
            Outcome::Listen,
        ),
        ("Yes, that's right.", "", Outcome::Book(at)),
    ]);
    assert_eq!(d.stage, Stage::Open);
}

#[test]
fn booking_slots_are_filled_one_by_one() {
    converse(&[
        (
            "I need an appointment",
            "What day and time would you like?",
            Outcome::Listen,
        ),
        (
            "Friday",
            "What time on Friday would you like?",
            Outcome::Listen,
        ),
        (
            "at ten in the morning",
            "Friday, December 4 at 10 AM, is that right?",
            Outcome::Listen,
        ),
        ("yep", "", Outcome::Book(date(2026, 12, 4).at(10, 0, 0, 0))),
    ]);
    converse(&[
        (
            "can I come in at 2 pm",
            "Which day would you like?",
            Outcome::Listen,
        ),
        (
            "tomorrow",
            "Tuesday, December 1 at 2 PM, is that right?",
            Outcome::Listen,
        ),
    ]);
}

#[test]
fn a_refused_confirmation_asks_again_or_takes_the_new_time() {
    converse(&[
        (
            "book me in tomorrow at 11",
            "Tuesday, December 1 at 11 AM, is that right?",
            Outcome::Listen,
        ),
        (
            "no",
            "What day and time would you like instead?",
            Outcome::Listen,
        ),
        (
            "Wednesday at 9:15",
            "Wednesday, December 2 at 9:15 AM, is that right?",
            Outcome::Listen,
        ),
        (
            "no, make it Thursday at four",
            "Thursday, December 3 at 4 PM, is that right?",
            Outcome::Listen,
        ),
        (
            "correct",
            "",
            Outcome::Book(date(2026, 12, 3).at(16, 0, 0, 0)),
        ),
    ]);
}

#[test]
fn bookings_outside_hours_or_in_the_past_are_refused() {
    converse(&[
        (
            "an appointment on Saturday at 10",
            "we are not open then",
            Outcome::Listen,
        ),
        ("Sunday at noon", "we are not open then", Outcome::Listen),
        ("today at 9", "already passed", Outcome::Listen),
        ("today at 4:15", "is that right", Outcome::Listen),
    ]);
    let d = converse(&[(
        "appointment today at 4:45 pm",
        "we are not open then",
        Outcome::Listen,
    )]);
    let asks_again = Stage::AskWhen {
        date: None,
        time: None,
    };
    assert_eq!(d.stage, asks_again, "the 30-minute slot runs past closing");
}

#[test]
fn a_booking_not_understood_asks_for_the_missing_part_again() {
    converse(&[
        (
            "book an appointment for Friday",
            "What time on Friday would you like?",
            Outcome::Listen,
        ),
        (
            "mumble mumble",
            "Sorry, I didn't catch that. What time on Friday would you like?",
            Outcome::Listen,
        ),
        (
            "at ten thirty",
            "Friday, December 4 at 10:30 AM, is that right?",
            Outcome::Listen,
        ),
        (
            "hmm",
            "Sorry, was that Friday, December 4 at 10:30 AM? Please say yes or no.",
            Outcome::Listen,
        ),
        ("yes", "", Outcome::Book(date(2026, 12, 4).at(10, 30, 0, 0))),
    ]);
}

#[test]
fn a_taken_slot_is_offered_again() {
    let mut d = Dialog::default();
    let next = date(2026, 12, 8).at(16, 0, 0, 0);
    assert_eq!(
        d.offer(next),
        "That time is already taken. The next free time is Tuesday, December 8 at 4 PM. Shall I book that?"
    );
    let r = LocalResponder.respond(&profile(), &mut d, "sure", now());
    assert_eq!(r.outcome, Outcome::Book(next));
}

#[test]
fn hours_address_and_knowledge() {
    converse(&[
        (
            "What are your hours?",
            "Our hours are Monday to Friday, 9 AM to 5 PM. We are open now.",
            Outcome::Listen,
        ),
        (
            "Where are you located?",
            "12 Harbour Street",
            Outcome::Listen,
        ),
        ("What's your address?", "12 Harbour Street", Outcome::Listen),
        (
            "Is there somewhere to park?",
            "Free parking",
            Outcome::Listen,
        ),
        (
            "do you take my insurance",
            "dental insurance plans",
            Outcome::Listen,
        ),
    ]);
    let p = Profile::default();
    let r = LocalResponder.respond(&p, &mut Dialog::default(), "what are your hours", now());
    assert!(r.say.contains("don't have our hours"));
    let r = LocalResponder.respond(&p, &mut Dialog::default(), "what's your address", now());
    assert!(r.say.contains("don't have our address"));
}

#[test]
fn understanding_prefers_the_orgs_own_answers_and_reads_a_day_as_a_booking() {
    let p = profile();
    assert_eq!(
        understand(&p, "What is your address?").0,
        Intent::Knowledge(0)
    );
    assert_eq!(
        understand(&p, "walked your address").0,
        Intent::Knowledge(0),
        "a weak match elsewhere"
    );
    assert_eq!(understand(&p, "what are your hours").0, Intent::Hours);
    assert_eq!(
        understand(&p, "could I come by on Friday at ten").0,
        Intent::Book
    );
    assert_eq!(
        understand(&p, "do you have parking on Friday").0,
        Intent::Knowledge(1)
    );
    assert_eq!(understand(&p, "blue sky").0, Intent::Unknown);
    let bare = Profile::default();
    assert_eq!(understand(&bare, "what's your address").0, Intent::Address);
}

#[test]
fn the_vocabulary_names_the_org_and_its_questions() {
    let v = vocabulary(&profile());
    assert!(
        v.starts_with("Harbour Dental. Where are you located? Do you have parking?"),
        "{v}"
    );
    assert!(v.contains("book an appointment"));
}

#[test]
fn messages_are_taken_word_for_word() {
    converse(&[
        (
            "I'd like to leave a message",
            "Please leave your message after the tone",
            Outcome::Listen,
        ),
        (
            "Tell Doctor Lee that Sam will be late.",
            "passed your message on",
            Outcome::Message("Tell Doctor Lee that Sam will be late.".into()),
        ),
    ]);
}

#[test]
fn person_goodbye_and_two_misunderstandings_end_in_a_hand_over() {
    converse(&[(
        "Can I talk to a person?",
        "Connecting you",
        Outcome::Transfer,
    )]);
    converse(&[("no thanks, that's all", "Goodbye", Outcome::Hangup)]);
    converse(&[
        ("purple monkey dishwasher", DIDNT_CATCH, Outcome::Listen),
        ("what are your hours", "Our hours", Outcome::Listen),
        ("banana", DIDNT_CATCH, Outcome::Listen),
        (
            "flibbertigibbet",
            "connect you to a person",
            Outcome::Transfer,
        ),
    ]);
}

#[test]
fn a_hand_over_or_goodbye_leaves_a_booking() {
    converse(&[
        ("book an appointment", "What day and time", Outcome::Listen),
        (
            "actually let me speak to someone",
            "Connecting you",
            Outcome::Transfer,
        ),
    ]);
    converse(&[
        ("book tomorrow at 10", "is that right", Outcome::Listen),
        ("never mind, goodbye", "Goodbye", Outcome::Hangup),
    ]);
}

fn with_appointment() -> Dialog {
    Dialog {
        existing: Some(date(2026, 12, 8).at(15, 30, 0, 0)),
        ..Dialog::default()
    }
}

#[test]
fn a_caller_cancels_their_appointment_after_a_yes_and_keeps_it_after_a_no() {
    let d = converse_from(
        with_appointment(),
        &[
            (
                "I need to cancel my appointment",
                "You have an appointment on Tuesday, December 8 at 3:30 PM. Shall I cancel it?",
                Outcome::Listen,
            ),
            ("yes please", "", Outcome::Cancel),
        ],
    );
    assert_eq!(d.stage, Stage::Open);
    converse_from(
        with_appointment(),
        &[
            (
                "I can't make it, please cancel",
                "Shall I cancel it?",
                Outcome::Listen,
            ),
            ("no, keep it", "I've kept your appointment", Outcome::Listen),
        ],
    );
    converse(&[(
        "I want to cancel my appointment",
        "I can't find an upcoming appointment for this number",
        Outcome::Listen,
    )]);
}

#[test]
fn a_caller_moves_their_appointment_through_the_booking_questions() {
    let d = converse_from(
        with_appointment(),
        &[
            (
                "Can I reschedule my appointment?",
                "Your appointment is on Tuesday, December 8 at 3:30 PM. What day and time would suit you instead?",
                Outcome::Listen,
            ),
            (
                "Friday at ten in the morning",
                "Friday, December 4 at 10 AM, is that right?",
                Outcome::Listen,
            ),
            ("yes", "", Outcome::Book(date(2026, 12, 4).at(10, 0, 0, 0))),
        ],
    );
    assert!(d.rescheduling, "the booking replaces the appointment");
    // In one sentence, too; and a plain booking afterwards is not a move.
    let d = converse_from(
        with_appointment(),
        &[(
            "I'd like to move my appointment to Friday at 2 pm",
            "Friday, December 4 at 2 PM, is that right?",
            Outcome::Listen,
        )],
    );
    assert!(d.rescheduling);
    let mut d = converse_from(d, &[("no", "What day and time", Outcome::Listen)]);
    d.stage = Stage::Open;
    let d = converse_from(
        d,
        &[(
            "I'd like to book an appointment",
            "What day and time",
            Outcome::Listen,
        )],
    );
    assert!(!d.rescheduling);
}

#[test]
fn a_time_said_as_half_past_fills_the_booking() {
    converse(&[
        (
            "I would like to book an appointment for tomorrow.",
            "What time on",
            Outcome::Listen,
        ),
        (
            "Half past ten in the morning, please.",
            "Tuesday, December 1 at 10:30 AM, is that right?",
            Outcome::Listen,
        ),
    ]);
}
