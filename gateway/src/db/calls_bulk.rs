//! A run of call transitions in bulk: the steps of calls already stored (answered, ended,
//! transferred …) written a table at a time — one read of the calls, one `UPDATE` per new
//! state, one multi-row history insert, one multi-row event append — instead of four
//! statements per step (#16: the SIP path is three transitions per call, and its writer
//! was the limit).
//!
//! What is not a plain step is answered `None` and the caller records it with
//! [`super::calls::record`] right after, in order: a call's start (its route, contact and
//! conversation are found or made there), a call not found or of another org (refused
//! there), and every later transition of a call already answered `None` or already stepped
//! in this run (it must see the state that step left). The machine's rules are the pure
//! `state_machines::call`, stepped here exactly as `record` steps them.

use super::calls::{stored_state, CallRecorded, CallTransition, Step, HISTORY_COLUMNS, MOVE_CALL};
use super::outbox;
use super::sql::{numbered_list, numbered_rows};
use super::StoreError;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::call::{self, CallState, EndCause};
use std::collections::{HashMap, HashSet};

/// Transitions [`record_many`] takes at once.
pub const MAX_BULK: usize = 100;

/// A stored call as a step needs it: (org, state, conversation, application).
type Found = (String, CallState, String, String);

/// Records a run of transitions (at most [`MAX_BULK`]) inside the caller's transaction. One
/// answer per transition, in order: `Some` when it was stored or refused here, `None` when
/// the caller must record it one at a time.
pub async fn record_many(
    conn: &mut AnyConnection,
    run: &[&CallTransition],
    now: i64,
) -> Result<Vec<Option<CallRecorded>>, StoreError> {
    let mut ids: Vec<&str> = run
        .iter()
        .filter(|t| t.event.is_some())
        .map(|t| t.call_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let found = if ids.is_empty() {
        HashMap::new()
    } else {
        calls(conn, &ids).await?
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut answers = Vec::with_capacity(run.len());
    let mut steps: Vec<Step<'_>> = Vec::new();
    for t in run {
        // A call's first appearance in the run decides; later ones wait their turn.
        if !seen.insert(t.call_id.as_str()) {
            answers.push(None);
            continue;
        }
        let (Some(event), Some((org, previous, conversation_id, app))) =
            (t.event, found.get(&t.call_id))
        else {
            answers.push(None);
            continue;
        };
        if *org != t.org_id {
            answers.push(None);
            continue;
        }
        match call::step(*previous, event) {
            Ok((state, _effects)) => {
                steps.push(Step {
                    t,
                    conversation_id,
                    app,
                    previous: Some(*previous),
                    state,
                });
                answers.push(Some(CallRecorded::Stored { state }));
            }
            Err(refused) => {
                tracing::debug!(call = %t.call_id, %refused, "late call event ignored");
                answers.push(Some(CallRecorded::Refused { state: *previous }));
            }
        }
    }
    if !steps.is_empty() {
        write(conn, &steps, now).await?;
    }
    Ok(answers)
}

/// The stored calls among `ids`.
async fn calls(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, Found>, StoreError> {
    let sql = format!(
        "SELECT id, org_id, state, cause, conversation_id, app FROM calls WHERE id IN ({})",
        numbered_list(1, ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(*id);
    }
    let mut found = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let state = stored_state(r.try_get(2)?, r.try_get(3)?)?;
        let call = (r.try_get(1)?, state, r.try_get(4)?, r.try_get(5)?);
        found.insert(r.try_get(0)?, call);
    }
    Ok(found)
}

/// Writes the steps: the calls' new states (one statement per state), their history rows
/// and their events.
async fn write(conn: &mut AnyConnection, steps: &[Step<'_>], now: i64) -> Result<(), StoreError> {
    let mut by_state: Vec<(CallState, Vec<&str>)> = Vec::new();
    for s in steps {
        match by_state.iter_mut().find(|(state, _)| *state == s.state) {
            Some((_, ids)) => ids.push(&s.t.call_id),
            None => by_state.push((s.state, vec![&s.t.call_id])),
        }
    }
    for (state, ids) in by_state {
        let sql = format!("{MOVE_CALL} id IN ({})", numbered_list(4, ids.len()));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(state.cause().map(EndCause::as_str))
            .bind(now);
        for id in ids {
            q = q.bind(id);
        }
        q.execute(&mut *conn).await?;
    }
    let sql = format!(
        "INSERT INTO call_history {HISTORY_COLUMNS} VALUES {}",
        numbered_rows("(?, ?, ?, ?, ?, ?, $1)", steps.len(), 2)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
    for s in steps {
        q = q
            .bind(s.t.call_id.as_str())
            .bind(s.t.org_id.as_str())
            .bind(s.state.as_str())
            .bind(s.event_name())
            .bind(s.state.cause().map(EndCause::as_str))
            .bind(s.t.detail.as_deref());
    }
    q.execute(&mut *conn).await?;
    outbox::append_many(conn, steps.iter().map(Step::event).collect(), now).await
}
