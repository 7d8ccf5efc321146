//! Expanding a running broadcast's audience, one stored chunk at a time, into
//! `broadcast_recipients` rows (pending, due now), in the committer's transaction: the
//! chunk's rows, the broadcast's `chunks_expanded` and the chunk's deletion commit together,
//! so a node killed mid-expansion expands that chunk again from the start, never twice.

use super::broadcasts::CHUNK;
use super::sql::numbered_rows;
use super::{is_postgres, new_id, StoreError};
use broadcast::Recipient;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

/// Expands the oldest waiting chunk of a running broadcast; how many recipients it added.
pub async fn expand(conn: &mut AnyConnection, now: i64) -> Result<usize, StoreError> {
    let lock = if is_postgres(conn) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, org_id, chunks_expanded FROM broadcasts WHERE chunks_expanded < chunks \
         AND state = 'running' ORDER BY created_at LIMIT 1{lock}"
    )))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(0) };
    let (id, org_id, idx): (String, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let data: String =
        sqlx::query("SELECT data FROM broadcast_chunks WHERE broadcast_id = $1 AND idx = $2")
            .bind(&id)
            .bind(idx)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    let people: Vec<Recipient> = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
        what: "broadcast_chunks.data",
        detail: e.to_string(),
    })?;
    for (n, group) in people.chunks(50).enumerate() {
        let sql =
            format!(
            "INSERT INTO broadcast_recipients (id, broadcast_id, org_id, idx, phone, email, name, \
             tz, vars, state, next_at, updated_at) VALUES {}",
            numbered_rows("(?, $1, $2, ?, ?, ?, ?, ?, ?, 'pending', $3, $3)", group.len(), 4)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(&id)
            .bind(&org_id)
            .bind(now);
        for (i, p) in group.iter().enumerate() {
            let vars = (!p.vars.is_empty())
                .then(|| serde_json::to_string(&p.vars).expect("a map serializes"));
            q = q
                .bind(new_id())
                .bind(idx * CHUNK as i64 + (n * 50 + i) as i64)
                .bind(p.phone.clone())
                .bind(p.email.clone())
                .bind(p.name.clone())
                .bind(p.tz.clone())
                .bind(vars);
        }
        q.execute(&mut *conn).await?;
    }
    sqlx::query(
        "UPDATE broadcasts SET chunks_expanded = chunks_expanded + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM broadcast_chunks WHERE broadcast_id = $1 AND idx = $2")
        .bind(&id)
        .bind(idx)
        .execute(&mut *conn)
        .await?;
    Ok(people.len())
}
