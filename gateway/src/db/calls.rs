//! Voice storage: routes (dialled number → org and application) and calls with their
//! persisted state history (agent credentials and registrations: [`super::sip_agents`]).
//!
//! A call is one more thread of the contact's one conversation: the first transition of a
//! call finds or creates the caller's contact on the `voice` channel and its conversation
//! (reopening it if resolved), so the inbox shows calls beside messages — a missed call too,
//! which is why this happens at the INVITE and not at answer (the README's voice section
//! says why that costs a flood nothing). Every transition is a
//! `call_history` row and a `dartwing.call.state_changed.v1` event keyed by that conversation,
//! written in the committer's transaction — the SIP side answers 200 only after it committed.
//! The voice crate steps the pure call machine (`state_machines::call`); this module stores
//! what it decided.

use super::conversations::touch;
use super::outbox::{self, NewEvent};
use super::StoreError;
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use state_machines::call::{self, CallEvent, CallState, EndCause};
use state_machines::{Channel, ConversationEvent};

/// One reported transition of a call: the event the voice side saw, stepped through the
/// pure call machine (`state_machines::call`) here, inside the transaction.
#[derive(Debug, Clone)]
pub struct CallTransition {
    /// Our id of the call (the user agent makes it; the SIP Call-ID is the caller's).
    pub call_id: String,
    /// The org the dialled number belongs to.
    pub org_id: String,
    /// The SIP Call-ID of the caller's leg.
    pub sip_call_id: String,
    /// The caller's From URI.
    pub from: String,
    /// The dialled number.
    pub to: String,
    /// A call we placed: `from` is our caller id, `to` the contact called.
    pub outbound: bool,
    /// `None`: the call starts (ringing); else what happened to it.
    pub event: Option<CallEvent>,
    /// Free detail (the rejecting status, a transfer target).
    pub detail: Option<String>,
    /// The node running the call, written when the call starts (`None`: unknown).
    pub node: Option<String>,
}

/// What storing a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRecorded {
    /// The machine moved (or the call started) and the step is stored.
    Stored {
        /// The state now.
        state: CallState,
    },
    /// The machine refused the event in the stored state (nothing written): a late report.
    Refused {
        /// The state it stays in.
        state: CallState,
    },
}

/// The contact address of a caller: the user part of `"Name" <sip:USER@host;…>`, or the
/// whole thing when it has none.
pub fn caller_address(from: &str) -> String {
    let inner = match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    let inner = inner.trim();
    let no_scheme = inner
        .strip_prefix("sips:")
        .or_else(|| inner.strip_prefix("sip:"))
        .or_else(|| inner.strip_prefix("tel:"))
        .unwrap_or(inner);
    let user = no_scheme.split(['@', ';', '?']).next().unwrap_or(no_scheme);
    if user.is_empty() {
        inner.to_string()
    } else {
        user.to_string()
    }
}

impl CallTransition {
    /// The call's contact — the other party: who called us, or whom we called — and what
    /// the call does to the contact's conversation.
    pub(super) fn contact(&self) -> (String, ConversationEvent) {
        match self.outbound {
            true => (self.to.clone(), ConversationEvent::Outbound),
            false => (caller_address(&self.from), ConversationEvent::Inbound),
        }
    }
}

/// The columns of a `calls` row, in the order both writers bind them.
pub(super) const NEW_CALL_COLUMNS: &str = "(id, org_id, conversation_id, sip_call_id, from_uri, \
     to_number, app, state, cause, started_at, answered_at, ended_at, updated_at, node, direction)";

/// The stored word for a call's direction.
pub(super) fn direction(outbound: bool) -> &'static str {
    if outbound {
        "outbound"
    } else {
        "inbound"
    }
}

/// A call's state as stored (`calls.state`, `calls.cause`).
pub(super) fn stored_state(name: String, cause: Option<String>) -> Result<CallState, StoreError> {
    CallState::parse(&name, cause.as_deref()).ok_or(StoreError::Corrupt {
        what: "calls.state",
        detail: name,
    })
}

/// The columns of a `call_history` row, in the order both writers bind them.
pub(super) const HISTORY_COLUMNS: &str = "(call_id, org_id, state, event, cause, detail, at)";

/// The statement that moves a call to the state bound as `$1` (cause `$2`) at `$3`; the ids
/// follow the `WHERE`.
pub(super) const MOVE_CALL: &str = "UPDATE calls SET state = $1, cause = $2, updated_at = $3, \
     answered_at = CASE WHEN $1 = 'answered' AND answered_at IS NULL THEN $3 ELSE answered_at END, \
     ended_at = CASE WHEN $1 = 'ended' THEN $3 ELSE ended_at END WHERE";

/// One stored step of a call, as its history row and event tell it.
pub(super) struct Step<'a> {
    /// The transition.
    pub t: &'a CallTransition,
    /// The call's conversation.
    pub conversation_id: &'a str,
    /// The call's application.
    pub app: &'a str,
    /// The state before (`None`: the call started).
    pub previous: Option<CallState>,
    /// The state now.
    pub state: CallState,
}

impl<'a> Step<'a> {
    /// The event's name in the history and the event: `invite` for a start.
    pub fn event_name(&self) -> &'static str {
        self.t.event.map_or("invite", |e| e.name())
    }

    /// `dartwing.call.state_changed.v1`: the one place it is shaped.
    pub fn event(&self) -> NewEvent<'a> {
        let t = self.t;
        NewEvent {
            org_id: &t.org_id,
            partition_key: self.conversation_id,
            event_type: "dartwing.call.state_changed.v1",
            subject: format!("calls/{}", t.call_id),
            data: json!({
                "call_id": t.call_id, "conversation_id": self.conversation_id,
                "from": t.from, "to": t.to, "app": self.app, "direction": direction(t.outbound),
                "state": self.state.as_str(), "previous_state": self.previous.map(CallState::as_str),
                "event": self.event_name(), "cause": self.state.cause().map(EndCause::as_str),
                "detail": t.detail,
            }),
        }
    }
}

/// Steps and stores a transition in the caller's transaction (creating the call on its
/// first).
pub async fn record(
    conn: &mut AnyConnection,
    t: &CallTransition,
    now: i64,
) -> Result<CallRecorded, StoreError> {
    let existing =
        sqlx::query("SELECT org_id, state, cause, conversation_id, app FROM calls WHERE id = $1")
            .bind(&t.call_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (previous, state, conversation_id, app) = match existing {
        Some(row) => {
            let org: String = row.try_get(0)?;
            if org != t.org_id {
                // Never cross tenants, whatever the voice side reports.
                return Err(StoreError::ForeignId { what: "call" });
            }
            let previous = stored_state(row.try_get(1)?, row.try_get(2)?)?;
            let Some(event) = t.event else {
                // The start reported again: already stored.
                return Ok(CallRecorded::Stored { state: previous });
            };
            let state = match call::step(previous, event) {
                Ok((state, _effects)) => state,
                Err(refused) => {
                    tracing::debug!(call = %t.call_id, %refused, "late call event ignored");
                    return Ok(CallRecorded::Refused { state: previous });
                }
            };
            sqlx::query(AssertSqlSafe(format!("{MOVE_CALL} id = $4")))
                .bind(state.as_str())
                .bind(state.cause().map(EndCause::as_str))
                .bind(now)
                .bind(&t.call_id)
                .execute(&mut *conn)
                .await?;
            (
                Some(previous),
                state,
                row.try_get::<String, _>(3)?,
                row.try_get::<String, _>(4)?,
            )
        }
        None => {
            let (mut state, _effects) = call::start();
            if let Some(event) = t.event {
                // Reported without its start (a call refused at once): start it here.
                state =
                    call::step(state, event)
                        .map(|(s, _)| s)
                        .map_err(|e| StoreError::Corrupt {
                            what: "call event",
                            detail: e.to_string(),
                        })?;
            }
            let app: Option<String> = if t.outbound {
                Some("outbound".to_owned())
            } else {
                sqlx::query_scalar("SELECT app FROM voice_routes WHERE number = $1 AND org_id = $2")
                    .bind(normalize_number(&t.to))
                    .bind(&t.org_id)
                    .fetch_optional(&mut *conn)
                    .await?
            };
            let app = app.unwrap_or_default();
            let (contact, moved) = t.contact();
            let thread = touch(conn, &t.org_id, Channel::Voice, &contact, moved, now).await?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO calls {NEW_CALL_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, NULL, CASE WHEN $8 = 'ended' THEN $10 END, $10, $11, $12)"
            )))
            .bind(&t.call_id)
            .bind(&t.org_id)
            .bind(&thread.conversation_id)
            .bind(&t.sip_call_id)
            .bind(&t.from)
            .bind(&t.to)
            .bind(&app)
            .bind(state.as_str())
            .bind(state.cause().map(EndCause::as_str))
            .bind(now)
            .bind(&t.node)
            .bind(direction(t.outbound))
            .execute(&mut *conn)
            .await?;
            (None, state, thread.conversation_id, app)
        }
    };
    let step = Step {
        t,
        conversation_id: &conversation_id,
        app: &app,
        previous,
        state,
    };
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO call_history {HISTORY_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&t.call_id)
    .bind(&t.org_id)
    .bind(state.as_str())
    .bind(step.event_name())
    .bind(state.cause().map(EndCause::as_str))
    .bind(&t.detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    outbox::append(conn, step.event(), now).await?;
    Ok(CallRecorded::Stored { state })
}

/// The calls `node` started and never ended (it stopped without ending them), and any
/// node's calls still live though they started before `started_before` (older than the
/// longest call can last: their node died and never came back), as transitions with no event
/// yet: the caller sets the event (`interrupt`).
pub async fn live_on_node(
    pool: &AnyPool,
    node: &str,
    started_before: i64,
) -> Result<Vec<CallTransition>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, sip_call_id, from_uri, to_number, direction FROM calls \
         WHERE state <> 'ended' AND (node = $1 OR started_at < $2)",
    )
    .bind(node)
    .bind(started_before)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CallTransition {
                call_id: row.try_get(0)?,
                org_id: row.try_get(1)?,
                sip_call_id: row.try_get(2)?,
                from: row.try_get(3)?,
                to: row.try_get(4)?,
                outbound: row.try_get::<String, _>(5)? == "outbound",
                event: None,
                detail: None,
                node: Some(node.to_owned()),
            })
        })
        .collect()
}

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    /// Our id.
    pub id: String,
    /// The contact's conversation.
    pub conversation_id: String,
    /// The SIP Call-ID.
    pub sip_call_id: String,
    /// The caller (our caller id on an outbound call).
    pub from: String,
    /// The dialled number.
    pub to: String,
    /// `inbound` (a call we answered) or `outbound` (one we placed).
    pub direction: String,
    /// The application (`outbound` on calls we placed).
    pub app: String,
    /// The current state.
    pub state: String,
    /// Why it ended.
    pub cause: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub answered_at: Option<i64>,
    /// Unix ms.
    pub ended_at: Option<i64>,
    /// Every transition, oldest first.
    pub history: Vec<CallStep>,
}

/// One row of a call's history.
#[derive(Debug, Clone, Serialize)]
pub struct CallStep {
    /// The state entered.
    pub state: String,
    /// What moved it.
    pub event: String,
    /// Why, for `ended`.
    pub cause: Option<String>,
    /// Detail (digit, target).
    pub detail: Option<String>,
    /// Unix ms.
    pub at: i64,
}

const CALL_COLUMNS: &str = "id, conversation_id, sip_call_id, from_uri, to_number, app, state, \
                            cause, started_at, answered_at, ended_at, direction";

/// An org's calls, newest first, each with its history; `id` narrows to one.
pub async fn list(
    pool: &AnyPool,
    org_id: &str,
    id: Option<&str>,
    limit: i64,
) -> Result<Vec<CallView>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE org_id = $1 AND ($2 IS NULL OR id = $2) \
         ORDER BY started_at DESC, id LIMIT $3"
    )))
    .bind(org_id)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    // Every listed call's history in one query (not one per call), grouped below.
    let steps = sqlx::query(
        "SELECT call_id, state, event, cause, detail, at FROM call_history \
         WHERE org_id = $1 AND call_id IN (SELECT id FROM calls WHERE org_id = $1 \
         AND ($2 IS NULL OR id = $2) ORDER BY started_at DESC, id LIMIT $3) ORDER BY id",
    )
    .bind(org_id)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut history: std::collections::HashMap<String, Vec<CallStep>> = Default::default();
    for s in &steps {
        history.entry(s.try_get(0)?).or_default().push(CallStep {
            state: s.try_get(1)?,
            event: s.try_get(2)?,
            cause: s.try_get(3)?,
            detail: s.try_get(4)?,
            at: s.try_get(5)?,
        });
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get(0)?;
        let history = history.remove(&id).unwrap_or_default();
        out.push(CallView {
            id,
            conversation_id: r.try_get(1)?,
            sip_call_id: r.try_get(2)?,
            from: r.try_get(3)?,
            to: r.try_get(4)?,
            app: r.try_get(5)?,
            state: r.try_get(6)?,
            cause: r.try_get(7)?,
            started_at: r.try_get(8)?,
            answered_at: r.try_get(9)?,
            ended_at: r.try_get(10)?,
            direction: r.try_get(11)?,
            history,
        });
    }
    Ok(out)
}

/// The form a dialled number is stored and looked up in: a phone number loses its `+`,
/// spaces, dashes, dots and brackets (`+1 (555) 010-0000` → `15550100000`); anything else (a
/// name such as `reception`) is kept as is, lower-cased.
pub fn normalize_number(number: &str) -> String {
    let n = number.trim();
    let phone_like = !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_digit() || "+-(). ".contains(c))
        && n.chars().any(|c| c.is_ascii_digit());
    if phone_like {
        n.chars().filter(char::is_ascii_digit).collect()
    } else {
        n.to_ascii_lowercase()
    }
}

/// A dialled number's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The number as stored ([`normalize_number`]).
    pub number: String,
    /// The org it belongs to.
    pub org_id: String,
    /// The application spec.
    pub app: String,
    /// The agent the application's transfer reaches (`--agent`).
    pub agent: Option<String>,
    /// Whether the caller may transfer itself with REFER (`--allow-refer`).
    pub allow_refer: bool,
}

impl Route {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<Route, StoreError> {
        Ok(Route {
            number: r.try_get(0)?,
            org_id: r.try_get(1)?,
            app: r.try_get(2)?,
            agent: r.try_get(3)?,
            allow_refer: r.try_get::<i64, _>(4)? != 0,
        })
    }
}

const ROUTE_COLUMNS: &str = "number, org_id, app, agent, allow_refer";

/// Maps the route's number to its application, agent and REFER policy for its org. A
/// number already routed to another org is refused (`Ok(false)`); re-adding it for the same
/// org replaces the rest.
pub async fn add_route(pool: &AnyPool, route: &Route, now: i64) -> Result<bool, StoreError> {
    let number = normalize_number(&route.number);
    let done = sqlx::query(
        "INSERT INTO voice_routes (number, org_id, app, agent, allow_refer, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (number) DO UPDATE SET app = excluded.app, agent = excluded.agent, \
         allow_refer = excluded.allow_refer, updated_at = excluded.updated_at \
         WHERE voice_routes.org_id = excluded.org_id",
    )
    .bind(&number)
    .bind(&route.org_id)
    .bind(&route.app)
    .bind(&route.agent)
    .bind(i64::from(route.allow_refer))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The route of a dialled number, if any.
pub async fn find_route(pool: &AnyPool, number: &str) -> Result<Option<Route>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROUTE_COLUMNS} FROM voice_routes WHERE number = $1"
    )))
    .bind(normalize_number(number))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(Route::from_row).transpose()
}

/// The number an org's outbound calls show: its first voice route number, if it has one.
pub async fn caller_id(pool: &AnyPool, org_id: &str) -> Result<Option<String>, StoreError> {
    let row =
        sqlx::query("SELECT number FROM voice_routes WHERE org_id = $1 ORDER BY number LIMIT 1")
            .bind(org_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// An org's routes.
pub async fn list_routes(pool: &AnyPool, org_id: &str) -> Result<Vec<Route>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROUTE_COLUMNS} FROM voice_routes WHERE org_id = $1 ORDER BY number"
    )))
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(Route::from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_addresses_come_from_the_user_part() {
        assert_eq!(
            caller_address("\"Bob\" <sip:+15551234567@10.0.0.1:5062;transport=udp>"),
            "+15551234567"
        );
        assert_eq!(caller_address("sip:alice@example.com"), "alice");
        assert_eq!(caller_address("<tel:+15550000000>"), "+15550000000");
        assert_eq!(caller_address("sip:@host"), "sip:@host");
    }

    #[test]
    fn numbers_normalize_to_one_form() {
        assert_eq!(normalize_number("+1 (555) 010-0000"), "15550100000");
        assert_eq!(normalize_number("15550100000"), "15550100000");
        assert_eq!(normalize_number(" Reception "), "reception");
        assert_eq!(normalize_number("+"), "+");
    }
}
