//! Quiet hours: a daily window of local time (for example 21:00–08:00) in which a
//! non-critical step is held and sent when the window ends, in each recipient's own zone.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// A daily window, minutes after local midnight; `start > end` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// First quiet minute of the day.
    pub start_min: u16,
    /// First minute after the window.
    pub end_min: u16,
}

/// A zone by IANA name, with a clear error.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("`{name}` is not a known IANA time zone"))
}

/// A zone by IANA name; UTC for a name that is not one (stored names were checked).
pub fn zone_or_utc(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

fn minutes(hhmm: &str) -> Result<u16, String> {
    let bad = || format!("`{hhmm}` is not a time as HH:MM");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || hhmm.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl QuietHours {
    /// From `HH:MM` texts; an empty window (start = end) is refused.
    pub fn parse(start: &str, end: &str) -> Result<QuietHours, String> {
        let q = QuietHours {
            start_min: minutes(start)?,
            end_min: minutes(end)?,
        };
        if q.start_min == q.end_min {
            return Err("start and end are equal".into());
        }
        Ok(q)
    }

    fn contains(self, minute: u16) -> bool {
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }

    /// When the window that holds `now_ms` in `tz` ends (Unix ms); `None` outside it.
    pub fn held_until(self, now_ms: i64, tz: &TimeZone) -> Option<i64> {
        let now = Timestamp::from_millisecond(now_ms)
            .ok()?
            .to_zoned(tz.clone());
        let minute = (now.hour() as u16) * 60 + now.minute() as u16;
        if !self.contains(minute) {
            return None;
        }
        let end_h = (self.end_min / 60) as i8;
        let end_m = (self.end_min % 60) as i8;
        let today = now.date().at(end_h, end_m, 0, 0);
        let day = if minute < self.end_min {
            today
        } else {
            today.checked_add(1.day()).ok()?
        };
        // A wall-clock time skipped by a DST change resolves to the instant after the gap.
        let end = day.to_zoned(tz.clone()).ok()?;
        Some(end.timestamp().as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_window_across_midnight_holds_until_its_local_end() {
        let q = QuietHours::parse("21:00", "08:00").unwrap();
        let ny = zone("America/New_York").unwrap();
        // 02:00 UTC on 1 July is 22:00 in New York (EDT): held until 08:00 EDT = 12:00 UTC.
        assert_eq!(
            q.held_until(ms("2026-07-01T02:00:00Z"), &ny),
            Some(ms("2026-07-01T12:00:00Z"))
        );
        // 07:59 local is still quiet; 08:00 is not.
        assert_eq!(
            q.held_until(ms("2026-07-01T11:59:00Z"), &ny),
            Some(ms("2026-07-01T12:00:00Z"))
        );
        assert_eq!(q.held_until(ms("2026-07-01T12:00:00Z"), &ny), None);
        // The same instant in Tokyo is 11:00: not quiet.
        let tokyo = zone("Asia/Tokyo").unwrap();
        assert_eq!(q.held_until(ms("2026-07-01T02:00:00Z"), &tokyo), None);
    }

    #[test]
    fn a_window_inside_one_day() {
        let q = QuietHours::parse("12:00", "13:30").unwrap();
        let utc = zone("UTC").unwrap();
        assert_eq!(
            q.held_until(ms("2026-01-05T12:10:00Z"), &utc),
            Some(ms("2026-01-05T13:30:00Z"))
        );
        assert_eq!(q.held_until(ms("2026-01-05T13:30:00Z"), &utc), None);
        assert_eq!(q.held_until(ms("2026-01-05T11:59:59Z"), &utc), None);
    }

    #[test]
    fn bad_times_and_zones_are_refused() {
        for (s, e) in [
            ("25:00", "08:00"),
            ("21:00", "8:00"),
            ("21:60", "08:00"),
            ("x", "y"),
            ("09:00", "09:00"),
        ] {
            assert!(QuietHours::parse(s, e).is_err(), "{s}-{e}");
        }
        assert!(zone("Mars/Olympus").is_err());
        assert!(zone("Europe/Berlin").is_ok());
    }
}
