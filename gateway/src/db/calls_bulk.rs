//! A run of call transitions in bulk: calls started and stepped (answered, ended,
//! transferred …) a table at a time — one read of the calls, one of the routes and one of
//! the callers' conversations for the starts (callers never seen get theirs made a table at
//! a time too), one `UPDATE` per new state, one multi-row
//! insert each of calls and history, one multi-row event append — instead of four to eight
//! statements per transition (#16: the SIP path is three transitions per call, and its
//! writer was the limit).
//!
//! What is not plain is answered `None` and the caller records it with
//! [`super::calls::record`] right after, in order: a start whose caller is a contact without
//! a conversation, or whose conversation the call would reopen (`conversations::touch`
//! changes conversations), a call not found or of another org (refused there), and every
//! later transition of a call already answered `None` or already started or stepped in this
//! run (it must see the state that step left). The machine's rules are the pure
//! `state_machines::call`, stepped here exactly as `record` steps them.

use super::calls::{
    direction, normalize_number, stored_state, CallRecorded, CallTransition, Step, HISTORY_COLUMNS,
    MOVE_CALL, NEW_CALL_COLUMNS,
};
use super::outbox;
use super::sql::{numbered_list, numbered_rows};
use super::threads_bulk;
use super::StoreError;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::call::{self, CallState, EndCause};
use state_machines::Channel;
use std::collections::{HashMap, HashSet};

/// Transitions [`record_many`] takes at once.
pub const MAX_BULK: usize = 100;

/// A stored call as a step needs it: (org, state, conversation, application).
type Found = (String, CallState, String, String);

/// A start written here: (conversation, application), by its index in the run.
type Started = HashMap<usize, (String, String)>;

/// Records a run of transitions (at most [`MAX_BULK`]) inside the caller's transaction. One
/// answer per transition, in order: `Some` when it was stored or refused here, `None` when
/// the caller must record it one at a time.
pub async fn record_many(
    conn: &mut AnyConnection,
    run: &[&CallTransition],
    now: i64,
) -> Result<Vec<Option<CallRecorded>>, StoreError> {
    let mut ids: Vec<&str> = run.iter().map(|t| t.call_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = calls(conn, &ids).await?;
    // The new calls' first appearances in the run that start them.
    let mut seen: HashSet<&str> = HashSet::new();
    let starts: Vec<usize> = (0..run.len())
        .filter(|&i| seen.insert(run[i].call_id.as_str()))
        .filter(|&i| run[i].event.is_none() && !found.contains_key(&run[i].call_id))
        .collect();
    let started = start_calls(conn, run, &starts, now).await?;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut answers = Vec::with_capacity(run.len());
    let mut steps: Vec<Step<'_>> = Vec::new();
    for (i, t) in run.iter().enumerate() {
        // A call's first appearance in the run decides; later ones wait their turn.
        if !seen.insert(t.call_id.as_str()) {
            answers.push(None);
            continue;
        }
        let stored = found.get(&t.call_id).filter(|f| f.0 == t.org_id);
        let (event, (_, previous, conversation_id, app)) = match (t.event, stored) {
            (Some(event), Some(call)) => (event, call),
            (None, Some((_, previous, ..))) => {
                // The start reported again: already stored.
                answers.push(Some(CallRecorded::Stored { state: *previous }));
                continue;
            }
            (None, None) if started.contains_key(&i) => {
                let (conversation_id, app) = &started[&i];
                let (state, _effects) = call::start();
                steps.push(Step {
                    t,
                    conversation_id,
                    app,
                    previous: None,
                    state,
                });
                answers.push(Some(CallRecorded::Stored { state }));
                continue;
            }
            // Not found, another org's, or a start that needs `touch`.
            _ => {
                answers.push(None);
                continue;
            }
        };
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

/// Inserts the calls of the `starts` whose contact exists and whose conversation keeps its
/// state (every start of one contact, or none), and touches those conversations.
async fn start_calls(
    conn: &mut AnyConnection,
    run: &[&CallTransition],
    starts: &[usize],
    now: i64,
) -> Result<Started, StoreError> {
    if starts.is_empty() {
        return Ok(Started::new());
    }
    let apps = route_apps(conn, run, starts).await?;
    let contacts: Vec<(String, state_machines::ConversationEvent)> =
        starts.iter().map(|&i| run[i].contact()).collect();
    let mut orgs: Vec<&str> = starts.iter().map(|&i| run[i].org_id.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut known = HashMap::new();
    for org in orgs {
        let addresses: Vec<&str> = (0..starts.len())
            .filter(|&k| run[starts[k]].org_id == org)
            .map(|k| contacts[k].0.as_str())
            .collect();
        let channel = Channel::Voice.as_str();
        let found = threads_bulk::find_or_create(conn, org, channel, &addresses, now).await?;
        known.extend(found.into_iter().map(|(a, k)| ((org, a), k)));
    }
    let who = |k: usize| (run[starts[k]].org_id.as_str(), contacts[k].0.clone());
    let slow: HashSet<(&str, String)> = (0..starts.len())
        .filter(|&k| !known.get(&who(k)).is_some_and(|c| c.keeps(contacts[k].1)))
        .map(who)
        .collect();
    let mut started = Started::new();
    for (k, &i) in starts.iter().enumerate() {
        if slow.contains(&who(k)) {
            continue;
        }
        let t = run[i];
        let app = match t.outbound {
            true => "outbound".to_owned(),
            false => apps
                .get(&(normalize_number(&t.to), t.org_id.clone()))
                .cloned()
                .unwrap_or_default(),
        };
        started.insert(i, (known[&who(k)].conversation_id.clone(), app));
    }
    if started.is_empty() {
        return Ok(started);
    }
    let touched = started
        .iter()
        .map(|(&i, (conversation, _))| (run[i].org_id.as_str(), conversation.as_str()))
        .collect();
    threads_bulk::touch(conn, touched, now).await?;
    insert_calls(conn, run, &started, now).await?;
    Ok(started)
}

/// The applications of the inbound starts' dialled numbers: (number, org) → app.
async fn route_apps(
    conn: &mut AnyConnection,
    run: &[&CallTransition],
    starts: &[usize],
) -> Result<HashMap<(String, String), String>, StoreError> {
    let mut numbers: Vec<String> = starts
        .iter()
        .filter(|&&i| !run[i].outbound)
        .map(|&i| normalize_number(&run[i].to))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT number, org_id, app FROM voice_routes WHERE number IN ({})",
        numbered_list(1, numbers.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for n in &numbers {
        q = q.bind(n.as_str());
    }
    let mut apps = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        apps.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    Ok(apps)
}

/// The new calls' rows, in run order, as `calls::record` inserts each.
async fn insert_calls(
    conn: &mut AnyConnection,
    run: &[&CallTransition],
    started: &Started,
    now: i64,
) -> Result<(), StoreError> {
    let mut order: Vec<usize> = started.keys().copied().collect();
    order.sort_unstable();
    let (state, _effects) = call::start();
    let sql = format!(
        "INSERT INTO calls {NEW_CALL_COLUMNS} VALUES {}",
        numbered_rows(
            "(?, ?, ?, ?, ?, ?, ?, $1, NULL, $2, NULL, NULL, $2, ?, ?)",
            order.len(),
            3
        )
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(state.as_str())
        .bind(now);
    for i in order {
        let t = run[i];
        let (conversation_id, app) = &started[&i];
        q = q
            .bind(t.call_id.as_str())
            .bind(t.org_id.as_str())
            .bind(conversation_id.as_str())
            .bind(t.sip_call_id.as_str())
            .bind(t.from.as_str())
            .bind(t.to.as_str())
            .bind(app.as_str())
            .bind(t.node.as_deref())
            .bind(direction(t.outbound));
    }
    q.execute(&mut *conn).await?;
    Ok(())
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

/// Writes the steps: the stepped calls' new states (one statement per state), every step's
/// history row and event (a start's included).
async fn write(conn: &mut AnyConnection, steps: &[Step<'_>], now: i64) -> Result<(), StoreError> {
    let mut by_state: Vec<(CallState, Vec<&str>)> = Vec::new();
    for s in steps.iter().filter(|s| s.previous.is_some()) {
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
