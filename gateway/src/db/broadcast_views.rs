//! The reads the broadcast API serves: one broadcast with its counts and per-rung figures
//! (sent, delivered, failed, passed over, confirmed, mean and p90 time to confirm), the
//! org's list, and the outcome of every recipient as CSV.

use super::StoreError;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

/// The org's broadcasts, newest first.
pub async fn list(pool: &AnyPool, org_id: &str, limit: i64) -> Result<Vec<Value>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM broadcasts WHERE org_id = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(org_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get(0)?;
        if let Some(b) = summary(pool, org_id, &id).await? {
            out.push(b);
        }
    }
    Ok(out)
}

/// One broadcast's state and counts; `None` for an unknown id or another org's.
pub async fn summary(pool: &AnyPool, org_id: &str, id: &str) -> Result<Option<Value>, StoreError> {
    let row = sqlx::query(
        "SELECT id, name, state, recipients, chunks_expanded, chunks, n_pending, n_sent, \
         n_confirmed, n_not_confirmed, n_unreachable, n_opted_out, n_late_confirmed, \
         created_at, finished_at, spec FROM broadcasts WHERE id = $1 AND org_id = $2",
    )
    .bind(id)
    .bind(org_id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let spec: Value = serde_json::from_str(&r.try_get::<String, _>(15)?).unwrap_or(Value::Null);
    Ok(Some(json!({
        "id": r.try_get::<String, _>(0)?,
        "name": r.try_get::<String, _>(1)?,
        "state": r.try_get::<String, _>(2)?,
        "recipients": r.try_get::<i64, _>(3)?,
        "expanded": r.try_get::<i64, _>(4)? >= r.try_get::<i64, _>(5)?,
        "counts": {
            "pending": r.try_get::<i64, _>(6)?,
            "sent": r.try_get::<i64, _>(7)?,
            "confirmed": r.try_get::<i64, _>(8)?,
            "not_confirmed": r.try_get::<i64, _>(9)?,
            "unreachable": r.try_get::<i64, _>(10)?,
            "opted_out": r.try_get::<i64, _>(11)?,
        },
        "late_confirmed": r.try_get::<i64, _>(12)?,
        "created_at": r.try_get::<i64, _>(13)?,
        "finished_at": r.try_get::<Option<i64>, _>(14)?,
        "require_ack": spec["require_ack"],
        "critical": spec["critical"],
    })))
}

/// Per rung: messages queued, where they are now, rungs passed over, confirmations while it
/// was the last rung sent, and the time to confirm (from the first rung sent).
pub async fn steps(pool: &AnyPool, id: &str) -> Result<Vec<Value>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.step, s.channel, \
         SUM(CASE WHEN s.message_id IS NOT NULL THEN 1 ELSE 0 END), \
         SUM(CASE WHEN s.skipped IS NOT NULL THEN 1 ELSE 0 END), \
         SUM(CASE WHEN m.status IN ('delivered', 'read') THEN 1 ELSE 0 END), \
         SUM(CASE WHEN m.status = 'failed' THEN 1 ELSE 0 END) \
         FROM broadcast_sends s LEFT JOIN messages m ON m.id = s.message_id \
         WHERE s.broadcast_id = $1 GROUP BY s.step, s.channel ORDER BY s.step",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let step: i64 = r.try_get(0)?;
        let (confirmed, mean_ms, p90_ms) = confirm_times(pool, id, step).await?;
        out.push(json!({
            "step": step,
            "channel": r.try_get::<String, _>(1)?,
            "queued": r.try_get::<i64, _>(2)?,
            "passed_over": r.try_get::<i64, _>(3)?,
            "delivered": r.try_get::<i64, _>(4)?,
            "failed": r.try_get::<i64, _>(5)?,
            "confirmed": confirmed,
            "confirm_ms_mean": mean_ms,
            "confirm_ms_p90": p90_ms,
        }));
    }
    Ok(out)
}

async fn confirm_times(
    pool: &AnyPool,
    id: &str,
    step: i64,
) -> Result<(i64, Option<i64>, Option<i64>), StoreError> {
    let r = sqlx::query(
        "SELECT COUNT(*), CAST(AVG(confirmed_at - first_sent_at) AS DOUBLE PRECISION) \
         FROM broadcast_recipients \
         WHERE broadcast_id = $1 AND confirmed_step = $2 AND confirmed_at IS NOT NULL",
    )
    .bind(id)
    .bind(step)
    .fetch_one(pool)
    .await?;
    let n: i64 = r.try_get(0)?;
    if n == 0 {
        return Ok((0, None, None));
    }
    let mean = r
        .try_get::<Option<f64>, _>(1)
        .ok()
        .flatten()
        .map(|m| m.round() as i64);
    let p90: Option<i64> = sqlx::query(
        "SELECT confirmed_at - first_sent_at FROM broadcast_recipients \
         WHERE broadcast_id = $1 AND confirmed_step = $2 AND confirmed_at IS NOT NULL \
         ORDER BY confirmed_at - first_sent_at LIMIT 1 OFFSET $3",
    )
    .bind(id)
    .bind(step)
    .bind((n - 1) * 9 / 10)
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?;
    Ok((n, mean, p90))
}

fn csv_field(s: &str) -> String {
    // A leading formula character is neutralised for spreadsheet programs (phone numbers'
    // `+` stays: it is data, and quoted fields are not formulas in the programs that matter).
    let s = if s.starts_with(['=', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Every recipient's outcome, as CSV with a header row.
pub async fn export_csv(pool: &AnyPool, id: &str) -> Result<String, StoreError> {
    let rows = sqlx::query(
        "SELECT idx, id, phone, email, name, state, last_step, first_sent_at, last_sent_at, \
         confirmed_at, confirmed_via, confirmed_step, late_confirmed_at \
         FROM broadcast_recipients WHERE broadcast_id = $1 ORDER BY idx",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut out = String::from(
        "index,recipient_id,phone,email,name,state,last_step,first_sent_at,last_sent_at,\
         confirmed_at,confirmed_via,confirmed_step,late_confirmed_at\n",
    );
    for r in rows {
        let text = |i: usize| -> Result<String, StoreError> {
            Ok(r.try_get::<Option<String>, _>(i)?.unwrap_or_default())
        };
        let num = |i: usize| -> Result<String, StoreError> {
            Ok(r.try_get::<Option<i64>, _>(i)?
                .map(|n| n.to_string())
                .unwrap_or_default())
        };
        let fields = [
            num(0)?,
            text(1)?,
            text(2)?,
            text(3)?,
            text(4)?,
            text(5)?,
            num(6)?,
            num(7)?,
            num(8)?,
            num(9)?,
            text(10)?,
            num(11)?,
            num(12)?,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The key that signs a recipient's confirm links, with the recipient's state.
pub async fn link_key(
    pool: &AnyPool,
    recipient_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT b.link_key, r.state FROM broadcast_recipients r \
         JOIN broadcasts b ON b.id = r.broadcast_id WHERE r.id = $1",
    )
    .bind(recipient_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}
