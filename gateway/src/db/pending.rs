//! Status reports that arrived before the send they name was recorded as accepted (the
//! provider called back faster than our commit of its answer). They are acknowledged and kept
//! here, then applied in arrival order inside the transaction that records the acceptance.
//! Rows older than [`PENDING_TTL_MS`] are dropped by the retention job: a report that never
//! finds its message is not ours.

use super::StoreError;
use channels::StatusUpdate;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use state_machines::{Channel, DeliveryState};

/// How long an unmatched report is kept.
pub const PENDING_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Keeps a report for a provider id we do not know yet.
pub async fn keep(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    update: &StatusUpdate,
    now: i64,
) -> Result<(), StoreError> {
    let report = json!({
        "state": update.state.as_str(),
        "provider_status": update.provider_status,
        "error_code": update.error_code,
        "error_message": update.error_message,
        "details": update.details,
    });
    sqlx::query(
        "INSERT INTO pending_statuses (org_id, channel, provider_message_id, report, received_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org_id)
    .bind(channel.as_str())
    .bind(&update.provider_message_id)
    .bind(report.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM pending_statuses WHERE received_at < $1")
        .bind(now - PENDING_TTL_MS)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes and returns the reports kept for the provider id a message was just given (on
/// that message's channel), oldest first.
pub async fn take(
    conn: &mut AnyConnection,
    org_id: &str,
    message_id: &str,
    provider_message_id: &str,
) -> Result<Vec<StatusUpdate>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.id, p.report FROM pending_statuses p \
         JOIN messages m ON m.org_id = p.org_id AND m.channel = p.channel \
         WHERE p.org_id = $1 AND m.id = $2 AND p.provider_message_id = $3 ORDER BY p.id",
    )
    .bind(org_id)
    .bind(message_id)
    .bind(provider_message_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let report: String = r.try_get(1)?;
        let v: Value = serde_json::from_str(&report).map_err(|e| StoreError::Corrupt {
            what: "pending_statuses.report",
            detail: e.to_string(),
        })?;
        let state = v["state"]
            .as_str()
            .and_then(DeliveryState::parse)
            .ok_or_else(|| StoreError::Corrupt {
                what: "pending_statuses.report",
                detail: report.clone(),
            })?;
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let mut update = StatusUpdate::new(
            provider_message_id,
            state,
            text("provider_status").unwrap_or_default(),
        );
        update.error_code = text("error_code");
        update.error_message = text("error_message");
        update.details = Some(v["details"].clone()).filter(|d| !d.is_null());
        sqlx::query("DELETE FROM pending_statuses WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        out.push(update);
    }
    Ok(out)
}
