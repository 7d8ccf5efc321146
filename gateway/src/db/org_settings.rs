//! Per-org features and caps, set by the operator (`dartwing-gateway org set`, or
//! `PUT /api/v1/orgs/{slug}/settings` with the ops token): which products an org may use
//! (`voice`, `receptionist`, `broadcast`, `sms`, `whatsapp`, `email`; all on unless switched
//! off) and how much (`messages_per_day`: outbound messages created per UTC day through the
//! API and the inbox, counted atomically with each message's creation;
//! `ai_turns_per_hour`: receptionist turns; `broadcasts_per_day`: broadcasts created per UTC
//! day; `broadcast_recipients`: people in one broadcast, default
//! [`DEFAULT_BROADCAST_RECIPIENTS`]). Refusals are 403 `feature_disabled` and 429
//! `org_limit_reached`.

use super::StoreError;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::collections::BTreeMap;

/// Every feature an org can be switched out of.
pub const FEATURES: [&str; 6] = [
    "voice",
    "receptionist",
    "broadcast",
    "sms",
    "whatsapp",
    "email",
];

/// An org's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// Switched features (absent: on).
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// Outbound messages per UTC day (none: no cap).
    #[serde(default)]
    pub messages_per_day: Option<i64>,
    /// Receptionist turns per hour (none: no cap).
    #[serde(default)]
    pub ai_turns_per_hour: Option<i64>,
    /// Broadcasts created per UTC day (none: no cap).
    #[serde(default)]
    pub broadcasts_per_day: Option<i64>,
    /// Recipients in one broadcast (none: [`DEFAULT_BROADCAST_RECIPIENTS`]).
    #[serde(default)]
    pub broadcast_recipients: Option<i64>,
}

/// Recipients one broadcast may have when the operator set no cap.
pub const DEFAULT_BROADCAST_RECIPIENTS: i64 = 100_000;

impl OrgSettings {
    /// Whether `feature` is on.
    pub fn enabled(&self, feature: &str) -> bool {
        self.features.get(feature).copied().unwrap_or(true)
    }

    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .features
            .keys()
            .filter(|f| !FEATURES.contains(&f.as_str()))
            .map(|f| format!("unknown feature `{f}` (known: {})", FEATURES.join(", ")))
            .collect();
        for (name, v) in [
            ("messages_per_day", self.messages_per_day),
            ("ai_turns_per_hour", self.ai_turns_per_hour),
            ("broadcasts_per_day", self.broadcasts_per_day),
            ("broadcast_recipients", self.broadcast_recipients),
        ] {
            if v.is_some_and(|n| n < 0) {
                out.push(format!("{name} must be 0 or more"));
            }
        }
        out
    }
}

/// An org's settings (the defaults when none were set).
pub async fn get(pool: &AnyPool, org_id: &str) -> Result<OrgSettings, StoreError> {
    let row = sqlx::query(
        "SELECT features, messages_per_day, ai_turns_per_hour, broadcasts_per_day, \
         broadcast_recipients FROM org_settings WHERE org_id = $1",
    )
    .bind(org_id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else {
        return Ok(OrgSettings::default());
    };
    let features: String = r.try_get(0)?;
    Ok(OrgSettings {
        features: serde_json::from_str(&features).map_err(|e| StoreError::Corrupt {
            what: "org_settings.features",
            detail: e.to_string(),
        })?,
        messages_per_day: r.try_get(1)?,
        ai_turns_per_hour: r.try_get(2)?,
        broadcasts_per_day: r.try_get(3)?,
        broadcast_recipients: r.try_get(4)?,
    })
}

/// Replaces an org's settings.
pub async fn put(
    pool: &AnyPool,
    org_id: &str,
    settings: &OrgSettings,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO org_settings (org_id, features, messages_per_day, ai_turns_per_hour, updated_at, \
         broadcasts_per_day, broadcast_recipients) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id) DO UPDATE SET \
         features = excluded.features, messages_per_day = excluded.messages_per_day, \
         ai_turns_per_hour = excluded.ai_turns_per_hour, updated_at = excluded.updated_at, \
         broadcasts_per_day = excluded.broadcasts_per_day, \
         broadcast_recipients = excluded.broadcast_recipients",
    )
    .bind(org_id)
    .bind(serde_json::to_string(&settings.features).expect("a map serializes"))
    .bind(settings.messages_per_day)
    .bind(settings.ai_turns_per_hour)
    .bind(now)
    .bind(settings.broadcasts_per_day)
    .bind(settings.broadcast_recipients)
    .execute(pool)
    .await?;
    Ok(())
}

/// Why a send is refused by the org's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The channel's feature is off.
    FeatureDisabled(String),
    /// The daily message cap is reached.
    LimitReached {
        /// The cap.
        cap: i64,
        /// Seconds until the next UTC day.
        retry_after_secs: u64,
    },
}

impl Refusal {
    /// The daily cap's refusal at `now` (Unix ms): retry at the next UTC day.
    pub fn day_limit(cap: i64, now: i64) -> Refusal {
        let day_start = now - now.rem_euclid(86_400_000);
        Refusal::LimitReached {
            cap,
            retry_after_secs: ((day_start + 86_400_000 - now) / 1000).max(1) as u64,
        }
    }
}

/// Whether the org may send on `channel` at all; if so, its daily message cap, which the
/// message's creation then takes one of ([`take_message`], in the creating transaction).
pub async fn check_send(
    pool: &AnyPool,
    org_id: &str,
    channel: &str,
) -> Result<Result<Option<i64>, Refusal>, StoreError> {
    let s = get(pool, org_id).await?;
    if !s.enabled(channel) {
        return Ok(Err(Refusal::FeatureDisabled(channel.to_string())));
    }
    Ok(Ok(s.messages_per_day))
}

/// Counts one outbound message of the org in the UTC day of `now`, if `cap` allows one more:
/// `true` when counted, `false` when the day's cap is reached. Run inside the transaction
/// that creates the message, the count rolls back with it. Messages of broadcasts are not
/// counted (broadcasts have their own caps), nor replays of dead letters.
pub async fn take_message(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    cap: i64,
    now: i64,
) -> Result<bool, StoreError> {
    // A week of days is enough to keep.
    take_counted(conn, PeriodCount::MESSAGE_DAYS, org_id, cap, now, 7).await
}

/// Counts one AI turn of the org in the current UTC hour, if its `ai_turns_per_hour` cap
/// allows one more: `true` when counted (or when the org has no cap: nothing is written),
/// `false` when the hour's cap is reached.
pub async fn take_ai_turn(pool: &AnyPool, org_id: &str, now: i64) -> Result<bool, StoreError> {
    let Some(cap) = get(pool, org_id).await?.ai_turns_per_hour else {
        return Ok(true);
    };
    let mut conn = pool.acquire().await?;
    // A day of hours is enough to keep.
    take_counted(&mut conn, PeriodCount::AI_TURNS, org_id, cap, now, 24).await
}

/// A table of counts per org per period: (org_id, period, count).
struct PeriodCount {
    table: &'static str,
    period: &'static str,
    count: &'static str,
    period_ms: i64,
}

impl PeriodCount {
    const MESSAGE_DAYS: PeriodCount = PeriodCount {
        table: "message_days",
        period: "day",
        count: "messages",
        period_ms: 86_400_000,
    };
    const AI_TURNS: PeriodCount = PeriodCount {
        table: "ai_turns",
        period: "hour",
        count: "turns",
        period_ms: 3_600_000,
    };
}

/// Counts one in the org's current period if fewer than `cap` are counted. The check and the
/// count are one statement, so callers racing for the last one cannot both take it. The
/// org's first count of a period sweeps its periods older than `keep`.
async fn take_counted(
    conn: &mut sqlx::AnyConnection,
    t: PeriodCount,
    org_id: &str,
    cap: i64,
    now: i64,
    keep: i64,
) -> Result<bool, StoreError> {
    let PeriodCount {
        table,
        period,
        count,
        period_ms,
    } = t;
    let current = now.div_euclid(period_ms);
    let counted: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "INSERT INTO {table} (org_id, {period}, {count}) SELECT $1, $2, 1 WHERE $3 > 0 \
         ON CONFLICT (org_id, {period}) DO UPDATE SET {count} = {table}.{count} + 1 \
         WHERE {table}.{count} < $3 RETURNING {count}"
    )))
    .bind(org_id)
    .bind(current)
    .bind(cap)
    .fetch_optional(&mut *conn)
    .await?;
    if counted == Some(1) {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE org_id = $1 AND {period} < $2"
        )))
        .bind(org_id)
        .bind(current - keep)
        .execute(&mut *conn)
        .await?;
    }
    Ok(counted.is_some())
}
