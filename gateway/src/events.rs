//! The CloudEvents 1.0 envelope every published event wears (structured JSON mode).
//! `docs/events.md` documents it and every type.
//!
//! Extension attributes: `dartwingorgid` (the organization), `dartwingseq` (the per-org
//! sequence number: gap-free, in commit order) and `partitionkey` (the conversation id; the
//! CloudEvents partitioning extension, which keeps one conversation's events in order).

use crate::db::outbox::StoredEvent;
use serde_json::{json, Value};

/// Where our events say they come from.
pub const SOURCE: &str = "/dartwing/gateway";

/// The envelope of a numbered event.
pub fn envelope(ev: &StoredEvent) -> Value {
    json!({
        "specversion": "1.0",
        "id": ev.event_id,
        "source": SOURCE,
        "type": ev.event_type,
        "time": rfc3339_ms(ev.time),
        "subject": ev.subject,
        "datacontenttype": "application/json",
        "dataschema": format!("https://dartwing.dev/schemas/events/{}.json", ev.event_type),
        "dartwingorgid": ev.org_id,
        "dartwingseq": ev.seq,
        "partitionkey": ev.partition_key,
        "data": ev.data,
    })
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-25T19:00:00.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The stored form of an envelope read back from a log (Kafka). The outbox row id is not on
/// the wire: it is 0. `None` when a required attribute is missing or malformed.
pub fn from_envelope(env: &Value) -> Option<StoredEvent> {
    let text = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_string);
    Some(StoredEvent {
        row_id: 0,
        event_id: text("id")?,
        org_id: text("dartwingorgid")?,
        seq: env.get("dartwingseq").and_then(Value::as_i64),
        partition_key: text("partitionkey")?,
        event_type: text("type")?,
        subject: text("subject")?,
        time: parse_rfc3339_ms(env.get("time")?.as_str()?)?,
        data: env.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// Parses what [`rfc3339_ms`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds optional) back
/// to Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match s.get(19..s.len() - 1)? {
        "" => 0,
        frac => {
            let digits = frac.strip_prefix('.')?;
            let mut padded: String = digits.chars().take(3).collect();
            while padded.len() < 3 {
                padded.push('0');
            }
            padded.parse::<i64>().ok()?
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + millis)
}

/// A proleptic Gregorian date to days since 1970-01-01 — the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) — H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_633_200_000), "2026-11-25T19:00:00.000Z");
    }

    #[test]
    fn parses_what_it_writes() {
        for ms in [
            0,
            951_782_400_123,
            1_795_633_200_000,
            4_102_444_799_999,
            1_234_567,
        ] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-25T19:00:00Z"),
            Some(1_795_633_200_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-13-25T19:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn envelope_round_trips() {
        let stored = StoredEvent {
            row_id: 0,
            event_id: "e".into(),
            org_id: "o".into(),
            seq: Some(4),
            partition_key: "c".into(),
            event_type: "dartwing.message.received.v1".into(),
            subject: "messages/m".into(),
            time: 1_795_633_200_042,
            data: json!({"body": "hi"}),
        };
        assert_eq!(from_envelope(&envelope(&stored)), Some(stored));
        assert_eq!(from_envelope(&json!({"id": "x"})), None);
    }
}
