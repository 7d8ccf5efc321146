//! Business hours: `Mon-Fri 09:00-17:00, Sat 10:00-14:00` parsed, checked and spoken.
//!
//! One opening interval per weekday at most (a later item for the same day replaces the
//! earlier one); times are the org's local wall-clock time; closing is exclusive.

use jiff::civil::{DateTime, Weekday};

const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Opening hours per weekday (Monday first), as minutes after midnight `[open, close)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hours {
    days: [Option<(u16, u16)>; 7],
}

/// Why an hours string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad hours `{item}`: {why} (want e.g. \"Mon-Fri 09:00-17:00, Sat 10:00-14:00\")")]
pub struct HoursError {
    /// The item that did not parse.
    pub item: String,
    /// What is wrong with it.
    pub why: &'static str,
}

fn day_index(name: &str) -> Option<usize> {
    let n = name.trim().to_lowercase();
    if n.len() < 2 {
        return None;
    }
    DAY_NAMES
        .iter()
        .position(|d| d.to_lowercase().starts_with(&n))
}

fn minutes(hhmm: &str) -> Option<u16> {
    let (h, m) = hhmm.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl Hours {
    /// Parses `DAYS HH:MM-HH:MM` items separated by `,` or `;`; DAYS is a day (`Sat`) or a
    /// range (`Mon-Fri`, wrapping allowed: `Fri-Mon`).
    pub fn parse(text: &str) -> Result<Hours, HoursError> {
        let mut hours = Hours::default();
        for item in text
            .split([',', ';'])
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let err = |why| HoursError {
                item: item.to_owned(),
                why,
            };
            let (days, span) = item
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("days and times are separated by a space"))?;
            let (first, last) = match days.split_once('-') {
                Some((a, b)) => (day_index(a), day_index(b)),
                None => (day_index(days), day_index(days)),
            };
            let (Some(first), Some(last)) = (first, last) else {
                return Err(err("unknown day name"));
            };
            let (open, close) = span
                .trim()
                .split_once('-')
                .ok_or_else(|| err("times are OPEN-CLOSE"))?;
            let (Some(open), Some(close)) = (minutes(open), minutes(close)) else {
                return Err(err("times are HH:MM"));
            };
            if open >= close {
                return Err(err("closing must be after opening"));
            }
            let mut d = first;
            loop {
                hours.days[d] = Some((open, close));
                if d == last {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        if hours.days.iter().all(Option::is_none) {
            return Err(HoursError {
                item: text.to_owned(),
                why: "no opening hours",
            });
        }
        Ok(hours)
    }

    /// The opening interval of a weekday, minutes after midnight.
    pub fn on(&self, day: Weekday) -> Option<(u16, u16)> {
        self.days[day.to_monday_zero_offset() as usize]
    }

    /// Whether the business is open at this local time.
    pub fn is_open(&self, at: DateTime) -> bool {
        let m = at.hour() as u16 * 60 + at.minute() as u16;
        self.on(at.weekday())
            .is_some_and(|(open, close)| m >= open && m < close)
    }

    /// Whether an appointment of `minutes` starting at `at` fits inside one opening.
    pub fn fits(&self, at: DateTime, minutes: u16) -> bool {
        let m = at.hour() as u16 * 60 + at.minute() as u16;
        self.on(at.weekday())
            .is_some_and(|(open, close)| m >= open && m + minutes <= close)
    }

    /// The hours in words: `Monday to Friday, 9 AM to 5 PM; Saturday, 10 AM to 2 PM`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            let Some(span) = self.days[d] else {
                d += 1;
                continue;
            };
            let mut end = d;
            while end + 1 < 7 && self.days[end + 1] == Some(span) {
                end += 1;
            }
            let days = match end - d {
                0 => DAY_NAMES[d].to_owned(),
                1 => format!("{} and {}", DAY_NAMES[d], DAY_NAMES[end]),
                _ => format!("{} to {}", DAY_NAMES[d], DAY_NAMES[end]),
            };
            parts.push(format!(
                "{days}, {} to {}",
                clock(span.0 / 60, span.0 % 60),
                clock(span.1 / 60, span.1 % 60)
            ));
            d = end + 1;
        }
        parts.join("; ")
    }
}

/// `9 AM`, `5:30 PM`, `noon`, as it is best spoken.
pub fn clock(hour: u16, minute: u16) -> String {
    let hour = hour % 24;
    if minute == 0 && hour == 12 {
        return "noon".to_owned();
    }
    if minute == 0 && hour == 0 {
        return "midnight".to_owned();
    }
    let (h12, half) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    match minute {
        0 => format!("{h12} {half}"),
        m => format!("{h12}:{m:02} {half}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn weekday_hours_parse_and_check() {
        let h = Hours::parse("Mon-Fri 09:00-17:00, Sat 10:00-14:00").unwrap();
        // 2026-11-30 is a Monday.
        assert!(h.is_open(date(2026, 11, 30).at(9, 0, 0, 0)));
        assert!(h.is_open(date(2026, 11, 30).at(16, 59, 0, 0)));
        assert!(!h.is_open(date(2026, 11, 30).at(17, 0, 0, 0)));
        assert!(!h.is_open(date(2026, 11, 30).at(8, 59, 0, 0)));
        assert!(h.is_open(date(2026, 12, 5).at(13, 0, 0, 0)), "Saturday");
        assert!(!h.is_open(date(2026, 12, 6).at(12, 0, 0, 0)), "Sunday");
        assert!(h.fits(date(2026, 12, 1).at(16, 30, 0, 0), 30));
        assert!(!h.fits(date(2026, 12, 1).at(16, 45, 0, 0), 30));
        assert_eq!(
            h.describe(),
            "Monday to Friday, 9 AM to 5 PM; Saturday, 10 AM to 2 PM"
        );
    }

    #[test]
    fn ranges_wrap_and_names_are_loose() {
        let h = Hours::parse("fri-mon 12:00-13:30").unwrap();
        assert_eq!(
            h.describe(),
            "Monday, noon to 1:30 PM; Friday to Sunday, noon to 1:30 PM"
        );
        let h = Hours::parse("Tue 08:00-12:00; Thursday 08:00-12:00").unwrap();
        assert_eq!(
            h.describe(),
            "Tuesday, 8 AM to noon; Thursday, 8 AM to noon"
        );
        let h = Hours::parse("Sat-Sun 10:00-16:00").unwrap();
        assert_eq!(h.describe(), "Saturday and Sunday, 10 AM to 4 PM");
    }

    #[test]
    fn bad_hours_say_why() {
        for (bad, why) in [
            ("", "no opening hours"),
            ("Mon-Fri", "days and times are separated by a space"),
            ("Funday 09:00-17:00", "unknown day name"),
            ("Mon 9-17", "times are HH:MM"),
            ("Mon 0900", "times are OPEN-CLOSE"),
            ("Mon 17:00-09:00", "closing must be after opening"),
            ("Mon 25:00-26:00", "times are HH:MM"),
        ] {
            assert_eq!(Hours::parse(bad).unwrap_err().why, why, "{bad}");
        }
    }

    #[test]
    fn clock_speaks_naturally() {
        assert_eq!(clock(15, 30), "3:30 PM");
        assert_eq!(clock(9, 0), "9 AM");
        assert_eq!(clock(12, 0), "noon");
        assert_eq!(clock(0, 5), "12:05 AM");
        assert_eq!(clock(12, 15), "12:15 PM");
    }
}
