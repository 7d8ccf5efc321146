//! Dates and times as callers say them, relative to the org's local "now":
//! `next Tuesday at three thirty`, `tomorrow at 10 am`, `December 8th at noon`,
//! `the 8th at half past two`, `Friday at 3:15 pm`.
//!
//! Conventions (documented because callers differ): a bare weekday or `this Tuesday` is the
//! first such day after today; `next Tuesday` is the Tuesday of next week (said on Monday
//! 30 November it is 8 December, not 1 December). A day of the month alone is the next one
//! to come. An hour without `am`/`pm` is read as business time: 1–7 → afternoon,
//! 8–11 → morning, 12 → noon.

use super::words::tokens;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::ToSpan;

/// What a phrase said about when: either part may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct When {
    /// The day.
    pub date: Option<Date>,
    /// The time of day.
    pub time: Option<Time>,
}

impl When {
    /// Both parts, as one local date-time.
    pub fn complete(&self) -> Option<DateTime> {
        Some(self.date?.to_datetime(self.time?))
    }

    /// Whether nothing was said about when.
    pub fn is_empty(&self) -> bool {
        self.date.is_none() && self.time.is_none()
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn weekday(word: &str) -> Option<Weekday> {
    let w = word.trim_end_matches('s');
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == w || (w.len() >= 3 && name.starts_with(w) && w != "sun"))
        .map(|&(_, d)| d)
        .or_else(|| (w == "sun").then_some(Weekday::Sunday))
}

fn month(word: &str) -> Option<i8> {
    if word.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| *m == word || (word.len() >= 3 && m.starts_with(word) && word != "may"))
        .or_else(|| (word == "may").then_some(4))
        .map(|i| i as i8 + 1)
}

const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u32); 4] = [("twenty", 20), ("thirty", 30), ("forty", 40), ("fifty", 50)];
const ORDINALS: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

/// A cardinal number at `i` (`3`, `three`, `forty five`, `forty-five`): value and words used.
fn cardinal(t: &[String], i: usize) -> Option<(u32, usize)> {
    let w = t.get(i)?;
    if let Ok(n) = w.parse::<u32>() {
        return Some((n, 1));
    }
    if let Some(n) = UNITS.iter().position(|u| u == w) {
        return Some((n as u32, 1));
    }
    if let Some((tens, unit)) = w.split_once('-') {
        let tens = TENS.iter().find(|(name, _)| *name == tens)?.1;
        let unit = UNITS.iter().position(|u| *u == unit).filter(|&u| u < 10)?;
        return Some((tens + unit as u32, 1));
    }
    let tens = TENS.iter().find(|(name, _)| name == w)?.1;
    match t.get(i + 1).and_then(|n| UNITS.iter().position(|u| u == n)) {
        Some(unit) if (1..10).contains(&unit) => Some((tens + unit as u32, 2)),
        _ => Some((tens, 1)),
    }
}

/// An ordinal at `i` (`8th`, `eighth`, `twenty first`): value and words used.
fn ordinal(t: &[String], i: usize) -> Option<(u32, usize)> {
    let w = t.get(i)?;
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(n) = w.strip_suffix(suffix).and_then(|n| n.parse::<u32>().ok()) {
            return Some((n, 1));
        }
    }
    if let Some(n) = ORDINALS.iter().position(|o| o == w) {
        return Some((n as u32, 1));
    }
    if w == "twentieth" {
        return Some((20, 1));
    }
    if w == "thirtieth" {
        return Some((30, 1));
    }
    let tens = TENS.iter().find(|(name, _)| name == w)?.1;
    let unit = ORDINALS
        .iter()
        .position(|o| Some(*o) == t.get(i + 1).map(String::as_str))?;
    (1..10).contains(&unit).then_some((tens + unit as u32, 2))
}

/// The first `day` after `today` (never today itself).
fn following(today: Date, day: Weekday) -> Date {
    let ahead = (day.to_monday_zero_offset() - today.weekday().to_monday_zero_offset() + 7) % 7;
    let ahead = if ahead == 0 { 7 } else { ahead };
    today.checked_add(i64::from(ahead).days()).unwrap_or(today)
}

/// `day` in the week after this one (weeks start on Monday).
fn next_week(today: Date, day: Weekday) -> Date {
    let monday = i64::from(7 - today.weekday().to_monday_zero_offset());
    let offset = monday + i64::from(day.to_monday_zero_offset());
    today.checked_add(offset.days()).unwrap_or(today)
}

/// The next date (today or later) with this day of the month, in `month` if given.
fn day_of_month(today: Date, month: Option<i8>, day: u32) -> Option<Date> {
    let day = i8::try_from(day).ok().filter(|d| (1..=31).contains(d))?;
    if let Some(m) = month {
        return [today.year(), today.year() + 1]
            .into_iter()
            .filter_map(|y| Date::new(y, m, day).ok())
            .find(|d| *d >= today);
    }
    let (mut year, mut m) = (today.year(), today.month());
    for _ in 0..13 {
        if let Ok(d) = Date::new(year, m, day) {
            if d >= today {
                return Some(d);
            }
        }
        m += 1;
        if m > 12 {
            m = 1;
            year += 1;
        }
    }
    None
}

fn find_date(t: &[String], today: Date) -> Option<Date> {
    for i in 0..t.len() {
        let w = t[i].as_str();
        let prev = if i > 0 { t[i - 1].as_str() } else { "" };
        match w {
            "today" | "tonight" => return Some(today),
            "tomorrow" => {
                let after = prev == "after" && i >= 2 && t[i - 2] == "day";
                let n: i64 = if after { 2 } else { 1 };
                return today.checked_add(n.days()).ok();
            }
            _ => {}
        }
        if let Some(day) = weekday(w) {
            return Some(match prev {
                "next" if !(i >= 2 && t[i - 2] == "the") => next_week(today, day),
                _ => following(today, day),
            });
        }
        if let Some(m) = month(w) {
            // "December 8th", "December the 8th", "December 8".
            let at = if t.get(i + 1).map(String::as_str) == Some("the") {
                i + 2
            } else {
                i + 1
            };
            if let Some((d, _)) = ordinal(t, at).or_else(|| cardinal(t, at)) {
                return day_of_month(today, Some(m), d);
            }
            // "the 8th of December".
            if prev == "of" && i >= 2 {
                let start = (i.saturating_sub(3)..i - 1)
                    .find(|&s| ordinal(t, s).is_some_and(|(_, n)| s + n == i - 1));
                if let Some((d, _)) = start.and_then(|s| ordinal(t, s)) {
                    return day_of_month(today, Some(m), d);
                }
            }
        }
    }
    // "the 8th", "on the eighth" (a month after it was handled above).
    for i in 1..t.len() {
        if matches!(t[i - 1].as_str(), "the" | "on") {
            if let Some((d, _)) = ordinal(t, i) {
                return day_of_month(today, None, d);
            }
        }
    }
    None
}

/// Hour and minute from `3:30`, `three thirty`, `three o'clock`, `half past two`,
/// `quarter to four`, `noon`; with the am/pm it was given, if any.
fn find_time(t: &[String]) -> Option<Time> {
    let meridiem_at = |i: usize| -> Option<bool> {
        match t.get(i).map(String::as_str) {
            Some("am") => Some(false),
            Some("pm") => Some(true),
            Some("in") | Some("this") => match t
                .get(i + 1 + usize::from(t.get(i + 1).is_some_and(|w| w == "the")))
                .map(String::as_str)
            {
                Some("morning") => Some(false),
                Some("afternoon" | "evening") => Some(true),
                _ => None,
            },
            Some("morning") => Some(false),
            Some("afternoon" | "evening") => Some(true),
            _ => None,
        }
    };
    for i in 0..t.len() {
        let w = t[i].as_str();
        if matches!(w, "noon" | "midday") {
            return Time::new(12, 0, 0, 0).ok();
        }
        // "half past two", "quarter past two", "quarter to four".
        if matches!(w, "half" | "quarter")
            && matches!(
                t.get(i + 1).map(String::as_str),
                Some("past" | "after" | "to")
            )
        {
            if let Some((h, n)) = cardinal(t, i + 2) {
                let (h, m) = match (w, t[i + 1].as_str()) {
                    ("half", _) => (h, 30),
                    (_, "to") => (h + 23, 45),
                    _ => (h, 15),
                };
                return resolve(h % 24, m, meridiem_at(i + 2 + n));
            }
        }
        // "3:30".
        if let Some((h, m)) = w.split_once(':') {
            if let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) {
                return resolve(h, m, meridiem_at(i + 1));
            }
        }
        let after_at = i > 0 && matches!(t[i - 1].as_str(), "at" | "around" | "about" | "by");
        let Some((h, n)) = cardinal(t, i) else {
            continue;
        };
        if !(1..=23).contains(&h) {
            continue;
        }
        let next = i + n;
        match t.get(next).map(String::as_str) {
            Some("o'clock" | "oclock" | "clock") => return resolve(h, 0, meridiem_at(next + 1)),
            Some("am" | "pm") => return resolve(h, 0, meridiem_at(next)),
            _ => {}
        }
        // "three thirty", "three fifteen pm", "three oh five".
        if h <= 12 {
            let oh = t.get(next).is_some_and(|w| w == "oh" || w == "o");
            let m_at = next + usize::from(oh);
            if let Some((m, mn)) =
                cardinal(t, m_at).filter(|&(m, _)| (if oh { 1..10 } else { 10..60 }).contains(&m))
            {
                if after_at
                    || meridiem_at(m_at + mn).is_some()
                    || t.get(m_at + mn).is_none()
                    || !t[i].chars().all(|c| c.is_ascii_digit())
                {
                    return resolve(h, m, meridiem_at(m_at + mn));
                }
            }
        }
        if after_at || meridiem_at(next).is_some() {
            return resolve(h, 0, meridiem_at(next));
        }
    }
    None
}

/// A time from an hour (1–23), minutes and am/pm if said; business-hours guess otherwise.
fn resolve(hour: u32, minute: u32, pm: Option<bool>) -> Option<Time> {
    if minute >= 60 || hour > 23 {
        return None;
    }
    let hour = match (hour, pm) {
        (h, _) if h > 12 => h,
        (12, Some(false)) => 0,
        (12, _) => 12,
        (h, Some(true)) => h + 12,
        (h, Some(false)) => h,
        (h @ 1..=7, None) => h + 12,
        (h, None) => h,
    };
    Time::new(hour as i8, minute as i8, 0, 0).ok()
}

/// Everything the phrase says about when, relative to the local date `today`.
pub fn parse(text: &str, today: Date) -> When {
    let t = tokens(text);
    When {
        date: find_date(&t, today),
        time: find_time(&t),
    }
}

/// `Tuesday, December 8 at 3:30 PM`: how the receptionist reads a date-time back.
pub fn speak(at: DateTime) -> String {
    const MONTH_NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let day = format!("{:?}", at.weekday());
    format!(
        "{day}, {} {} at {}",
        MONTH_NAMES[(at.month() - 1) as usize],
        at.day(),
        super::hours::clock(at.hour() as u16, at.minute() as u16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    /// Monday 30 November 2026.
    fn today() -> Date {
        date(2026, 11, 30)
    }

    fn at(text: &str) -> (Option<Date>, Option<Time>) {
        let w = parse(text, today());
        (w.date, w.time)
    }

    #[test]
    fn the_issue_example() {
        let w = parse("Next Tuesday at three thirty.", today());
        assert_eq!(w.complete(), Some(date(2026, 12, 8).at(15, 30, 0, 0)));
        assert_eq!(
            speak(w.complete().unwrap()),
            "Tuesday, December 8 at 3:30 PM"
        );
    }

    #[test]
    fn days() {
        let d = |text| at(text).0;
        assert_eq!(d("today please"), Some(today()));
        assert_eq!(d("tomorrow"), Some(date(2026, 12, 1)));
        assert_eq!(d("the day after tomorrow"), Some(date(2026, 12, 2)));
        assert_eq!(d("on Tuesday"), Some(date(2026, 12, 1)));
        assert_eq!(d("this Tuesday"), Some(date(2026, 12, 1)));
        assert_eq!(d("next Tuesday"), Some(date(2026, 12, 8)));
        assert_eq!(d("Monday"), Some(date(2026, 12, 7)), "never today");
        assert_eq!(d("next Monday"), Some(date(2026, 12, 7)));
        assert_eq!(d("Friday"), Some(date(2026, 12, 4)));
        assert_eq!(d("December 8th"), Some(date(2026, 12, 8)));
        assert_eq!(d("December the eighth"), Some(date(2026, 12, 8)));
        assert_eq!(d("the 8th of December"), Some(date(2026, 12, 8)));
        assert_eq!(d("the eighth of december"), Some(date(2026, 12, 8)));
        assert_eq!(d("the 8th"), Some(date(2026, 12, 8)));
        assert_eq!(d("the twenty first"), Some(date(2026, 12, 21)));
        assert_eq!(d("January 3rd"), Some(date(2027, 1, 3)));
        assert_eq!(
            d("November 2nd"),
            Some(date(2027, 11, 2)),
            "past dates roll over"
        );
        assert_eq!(d("November 30"), Some(today()));
        assert_eq!(d("the 31st"), Some(date(2026, 12, 31)));
        assert_eq!(d("February 30th"), None);
        assert_eq!(d("I'd like an appointment"), None);
    }

    #[test]
    fn times() {
        let t = |text| at(text).1;
        assert_eq!(t("at three thirty"), Some(time(15, 30, 0, 0)));
        assert_eq!(t("at 3:30"), Some(time(15, 30, 0, 0)));
        assert_eq!(t("3:30 p.m."), Some(time(15, 30, 0, 0)));
        assert_eq!(t("at 10 am"), Some(time(10, 0, 0, 0)));
        assert_eq!(t("at ten"), Some(time(10, 0, 0, 0)));
        assert_eq!(t("at 3pm"), Some(time(15, 0, 0, 0)));
        assert_eq!(t("three o'clock"), Some(time(15, 0, 0, 0)));
        assert_eq!(t("at noon"), Some(time(12, 0, 0, 0)));
        assert_eq!(t("half past two"), Some(time(14, 30, 0, 0)));
        assert_eq!(t("quarter past nine"), Some(time(9, 15, 0, 0)));
        assert_eq!(t("a quarter to four"), Some(time(15, 45, 0, 0)));
        assert_eq!(t("at eleven fifteen"), Some(time(11, 15, 0, 0)));
        assert_eq!(t("at two forty five"), Some(time(14, 45, 0, 0)));
        assert_eq!(t("at two forty-five"), Some(time(14, 45, 0, 0)));
        assert_eq!(t("at nine oh five"), Some(time(9, 5, 0, 0)));
        assert_eq!(t("at 9 in the morning"), Some(time(9, 0, 0, 0)));
        assert_eq!(t("at 7 in the evening"), Some(time(19, 0, 0, 0)));
        assert_eq!(t("at four in the afternoon"), Some(time(16, 0, 0, 0)));
        assert_eq!(t("at 12 am"), Some(time(0, 0, 0, 0)));
        assert_eq!(t("at 14:00"), Some(time(14, 0, 0, 0)));
        assert_eq!(t("3.30 PM"), Some(time(15, 30, 0, 0)));
        assert_eq!(t("next Tuesday"), None);
        assert_eq!(t("the 8th"), None, "an ordinal is a day");
        assert_eq!(t("I have two questions"), None, "a number alone is no time");
    }

    #[test]
    fn both_parts() {
        let w = parse("Can I come in tomorrow at 10 am?", today());
        assert_eq!(w.complete(), Some(date(2026, 12, 1).at(10, 0, 0, 0)));
        let w = parse("Friday at half past two", today());
        assert_eq!(w.complete(), Some(date(2026, 12, 4).at(14, 30, 0, 0)));
        let w = parse("December 8th at noon", today());
        assert_eq!(w.complete(), Some(date(2026, 12, 8).at(12, 0, 0, 0)));
        assert!(parse("hello there", today()).is_empty());
    }
}
