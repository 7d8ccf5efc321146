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
}
