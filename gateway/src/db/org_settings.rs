//! Per-org features and caps, set by the operator (`dartwing-gateway org set`, or
//! `PUT /api/v1/orgs/{slug}/settings` with the ops token): which products an org may use
//! (`voice`, `receptionist`, `broadcast`, `sms`, `whatsapp`, `email`; all on unless switched
//! off) and how much (`messages_per_day`: outbound messages created per UTC day;
//! `ai_turns_per_hour`: receptionist turns; `broadcasts_per_day`: broadcasts created per UTC
//! day; `broadcast_recipients`: people in one broadcast, default
//! [`DEFAULT_BROADCAST_RECIPIENTS`]). Refusals are 403 `feature_disabled` and 429
//! `org_limit_reached`.

use super::StoreError;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
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

/// Outbound messages the org created since `since` (Unix ms).
pub async fn outbound_since(pool: &AnyPool, org_id: &str, since: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM messages WHERE org_id = $1 AND direction = 'outbound' \
         AND created_at >= $2",
    )
    .bind(org_id)
    .bind(since)
    .fetch_one(pool)
    .await?
    .try_get(0)?)
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

/// Whether the org may create one more outbound message on `channel` now.
pub async fn check_send(
    pool: &AnyPool,
    org_id: &str,
    channel: &str,
    now: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    let s = get(pool, org_id).await?;
    if !s.enabled(channel) {
        return Ok(Err(Refusal::FeatureDisabled(channel.to_string())));
    }
    if let Some(cap) = s.messages_per_day {
        let day_start = now - now.rem_euclid(86_400_000);
        if outbound_since(pool, org_id, day_start).await? >= cap {
            let retry_after_secs = ((day_start + 86_400_000 - now) / 1000).max(1) as u64;
            return Ok(Err(Refusal::LimitReached {
                cap,
                retry_after_secs,
            }));
        }
    }
    Ok(Ok(()))
}

/// Counts one AI turn of the org in the current UTC hour, if its `ai_turns_per_hour` cap
/// allows one more: `true` when counted (or when the org has no cap: nothing is written),
/// `false` when the hour's cap is reached. The check and the count are one statement, so
/// calls racing for the last turn cannot both take it.
pub async fn take_ai_turn(pool: &AnyPool, org_id: &str, now: i64) -> Result<bool, StoreError> {
    let Some(cap) = get(pool, org_id).await?.ai_turns_per_hour else {
        return Ok(true);
    };
    let hour = now.div_euclid(3_600_000);
    let counted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO ai_turns (org_id, hour, turns) SELECT $1, $2, 1 WHERE $3 > 0 \
         ON CONFLICT (org_id, hour) DO UPDATE SET turns = ai_turns.turns + 1 \
         WHERE ai_turns.turns < $3 RETURNING turns",
    )
    .bind(org_id)
    .bind(hour)
    .bind(cap)
    .fetch_optional(pool)
    .await?;
    if counted == Some(1) {
        // The org's first turn this hour: a day of hours is enough to keep.
        sqlx::query("DELETE FROM ai_turns WHERE org_id = $1 AND hour < $2")
            .bind(org_id)
            .bind(hour - 24)
            .execute(pool)
            .await?;
    }
    Ok(counted.is_some())
}
