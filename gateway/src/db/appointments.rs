//! Appointments the receptionist books, moves and cancels for callers, each change
//! committed with its event (`dartwing.appointment.booked.v1`,
//! `dartwing.appointment.cancelled.v1`) keyed by the caller's conversation.
//!
//! Invariant: one *booked* appointment per org and start (`appointments_slot`, a partial
//! unique index since migration 0014, so a cancelled slot can be booked again); an insert
//! that loses the race does nothing (`ON CONFLICT DO NOTHING`) and the caller is offered
//! the next free slot, so two callers racing for one slot get one booking between them.
//!
//! ```text
//!  booked ──caller cancels──▶ cancelled
//!     └────caller moves it──▶ rescheduled (and the new slot booked, in one transaction;
//!                                          a taken new slot leaves the old one booked)
//! ```
//! A caller can change only their own appointments: the ones booked from their address,
//! and none from a withheld one ([`identifiable`]).

use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, Row};

/// One slot: UTC start and end (Unix ms) and the local start as agreed (`2026-12-08T15:30`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Start, Unix ms.
    pub starts_at: i64,
    /// End, Unix ms.
    pub ends_at: i64,
    /// The local wall-clock start.
    pub local_start: String,
}

/// A booking to store: the slot asked for, then the later slots to offer if it is taken.
#[derive(Debug, Clone)]
pub struct BookWrite {
    /// The org.
    pub org_id: String,
    /// Our call id (its conversation and caller go on the appointment).
    pub call_id: String,
    /// The org's time zone name.
    pub timezone: String,
    /// The slot asked for.
    pub wanted: Slot,
    /// Later slots, in order, to offer when it is taken.
    pub alternatives: Vec<Slot>,
    /// The caller's appointment this one replaces (a reschedule), if any.
    pub replaces: Option<String>,
}

/// What a booking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookResult {
    /// Stored, with this id.
    Booked(String),
    /// Taken; the first free alternative (not booked), if any.
    Taken(Option<Slot>),
}

async fn is_free(conn: &mut AnyConnection, org_id: &str, slot: &Slot) -> Result<bool, StoreError> {
    let clash = sqlx::query(
        "SELECT 1 FROM appointments WHERE org_id = $1 AND status = 'booked' AND starts_at < $3 AND ends_at > $2",
    )
    .bind(org_id)
    .bind(slot.starts_at)
    .bind(slot.ends_at)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(clash.is_none())
}

/// The conversation and the caller's address of call `call_id` in `org_id`.
async fn caller_of(
    conn: &mut AnyConnection,
    org_id: &str,
    call_id: &str,
) -> Result<(String, String), StoreError> {
    match super::receptionist::call_thread(conn, call_id, org_id).await? {
        Some(t) => Ok((t.conversation_id, t.caller)),
        None => Err(StoreError::ForeignId { what: "call" }),
    }
}

/// Whether `caller` names one person: a withheld number ("anonymous", "unknown", …) is
/// shared by everyone who withholds theirs, so it finds and changes no appointment.
pub fn identifiable(caller: &str) -> bool {
    let c = caller.trim().to_ascii_lowercase();
    !(c.is_empty()
        || [
            "anonymous",
            "unknown",
            "restricted",
            "private",
            "unavailable",
        ]
        .contains(&c.as_str()))
}

/// Moves a booked appointment of `caller` to `status`; whether it was theirs and booked.
async fn set_status(
    conn: &mut AnyConnection,
    (org_id, caller, id): (&str, &str, &str),
    (from, to): (&str, &str),
) -> Result<bool, StoreError> {
    if !identifiable(caller) {
        return Ok(false);
    }
    let moved = sqlx::query(
        "UPDATE appointments SET status = $1 WHERE id = $2 AND org_id = $3 AND caller = $4 \
         AND status = $5",
    )
    .bind(to)
    .bind(id)
    .bind(org_id)
    .bind(caller)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Books the wanted slot if free (no overlap, unique start), with its event. With
/// `w.replaces` (a reschedule), that appointment of the same caller is set `rescheduled`
/// first (so the new slot may overlap it) and set back to `booked` if the new slot is
/// taken; moved, it gets its `dartwing.appointment.cancelled.v1` (reason `rescheduled`).
pub async fn book(
    conn: &mut AnyConnection,
    w: &BookWrite,
    now: i64,
) -> Result<BookResult, StoreError> {
    let (conversation_id, caller) = caller_of(conn, &w.org_id, &w.call_id).await?;
    let replaced = match &w.replaces {
        Some(old) => {
            let who = (w.org_id.as_str(), caller.as_str(), old.as_str());
            if !set_status(conn, who, ("booked", "rescheduled")).await? {
                return Err(StoreError::ForeignId {
                    what: "appointment",
                });
            }
            Some(old.as_str())
        }
        None => None,
    };
    let id = new_id();
    let inserted = if is_free(conn, &w.org_id, &w.wanted).await? {
        sqlx::query(
            "INSERT INTO appointments (id, org_id, conversation_id, call_id, caller, starts_at, ends_at, local_start, \
             timezone, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'booked', $10) \
             ON CONFLICT (org_id, starts_at) WHERE status = 'booked' DO NOTHING",
        )
        .bind(&id)
        .bind(&w.org_id)
        .bind(&conversation_id)
        .bind(&w.call_id)
        .bind(&caller)
        .bind(w.wanted.starts_at)
        .bind(w.wanted.ends_at)
        .bind(&w.wanted.local_start)
        .bind(&w.timezone)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1
    } else {
        false
    };
    if !inserted {
        if let Some(old) = replaced {
            let who = (w.org_id.as_str(), caller.as_str(), old);
            set_status(conn, who, ("rescheduled", "booked")).await?;
        }
        for slot in &w.alternatives {
            if is_free(conn, &w.org_id, slot).await? {
                return Ok(BookResult::Taken(Some(slot.clone())));
            }
        }
        return Ok(BookResult::Taken(None));
    }
    if let Some(old) = replaced {
        let why = Cancellation {
            reason: "rescheduled",
            replaced_by: Some(&id),
        };
        cancelled_event(conn, (&w.org_id, old), &why, now).await?;
    }
    outbox::append(
        conn,
        NewEvent {
            org_id: &w.org_id,
            partition_key: &conversation_id,
            event_type: "dartwing.appointment.booked.v1",
            subject: format!("appointments/{id}"),
            data: json!({
                "appointment_id": id, "conversation_id": conversation_id, "call_id": w.call_id,
                "caller": caller, "starts_at": w.wanted.starts_at, "ends_at": w.wanted.ends_at,
                "local_start": w.wanted.local_start, "timezone": w.timezone,
                "replaces": replaced,
            }),
        },
        now,
    )
    .await?;
    Ok(BookResult::Booked(id))
}

/// Why an appointment stopped being booked.
struct Cancellation<'a> {
    /// `caller` or `rescheduled`.
    reason: &'static str,
    /// The appointment that took its place.
    replaced_by: Option<&'a str>,
}

/// Appends `dartwing.appointment.cancelled.v1` for appointment `id` (already updated).
async fn cancelled_event(
    conn: &mut AnyConnection,
    (org_id, id): (&str, &str),
    why: &Cancellation<'_>,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT conversation_id, call_id, caller, starts_at, ends_at, local_start, timezone \
         FROM appointments WHERE id = $1 AND org_id = $2",
    )
    .bind(id)
    .bind(org_id)
    .fetch_one(&mut *conn)
    .await?;
    let conversation_id: Option<String> = row.try_get(0)?;
    let key = conversation_id.clone().unwrap_or_else(|| id.to_owned());
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: &key,
            event_type: "dartwing.appointment.cancelled.v1",
            subject: format!("appointments/{id}"),
            data: json!({
                "appointment_id": id, "conversation_id": conversation_id,
                "call_id": row.try_get::<Option<String>, _>(1)?,
                "caller": row.try_get::<String, _>(2)?,
                "starts_at": row.try_get::<i64, _>(3)?, "ends_at": row.try_get::<i64, _>(4)?,
                "local_start": row.try_get::<String, _>(5)?,
                "timezone": row.try_get::<String, _>(6)?,
                "reason": why.reason, "replaced_by": why.replaced_by,
            }),
        },
        now,
    )
    .await
}

/// A caller's cancellation, on their call.
#[derive(Debug, Clone)]
pub struct CancelWrite {
    /// The org.
    pub org_id: String,
    /// The call the caller is on (their address is taken from it).
    pub call_id: String,
    /// The appointment.
    pub appointment_id: String,
}

/// Cancels the caller's booked appointment, with its event; `false` (nothing changed) when
/// it is not theirs, not booked or unknown.
pub async fn cancel(
    conn: &mut AnyConnection,
    w: &CancelWrite,
    now: i64,
) -> Result<bool, StoreError> {
    let (_, caller) = caller_of(conn, &w.org_id, &w.call_id).await?;
    let who = (
        w.org_id.as_str(),
        caller.as_str(),
        w.appointment_id.as_str(),
    );
    if !set_status(conn, who, ("booked", "cancelled")).await? {
        return Ok(false);
    }
    let why = Cancellation {
        reason: "caller",
        replaced_by: None,
    };
    cancelled_event(conn, (&w.org_id, &w.appointment_id), &why, now).await?;
    Ok(true)
}

/// The next booked appointment (starting after `now`, Unix ms) of the caller on call
/// `call_id`: its id and UTC start; `None` when they have none (or the call is unknown).
pub async fn upcoming_for_call(
    pool: &AnyPool,
    org_id: &str,
    call_id: &str,
    now: i64,
) -> Result<Option<(String, i64)>, StoreError> {
    let from: Option<String> =
        sqlx::query_scalar("SELECT from_uri FROM calls WHERE id = $1 AND org_id = $2")
            .bind(call_id)
            .bind(org_id)
            .fetch_optional(pool)
            .await?;
    let Some(from) = from else { return Ok(None) };
    let caller = super::calls::caller_address(&from);
    if !identifiable(&caller) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, starts_at FROM appointments WHERE org_id = $1 AND caller = $2 \
         AND status = 'booked' AND starts_at > $3 ORDER BY starts_at LIMIT 1",
    )
    .bind(org_id)
    .bind(&caller)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// An appointment as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    /// Its id.
    pub id: String,
    /// The caller's conversation.
    pub conversation_id: Option<String>,
    /// The call it was booked on.
    pub call_id: Option<String>,
    /// Who booked it.
    pub caller: String,
    /// Start, Unix ms.
    pub starts_at: i64,
    /// End, Unix ms.
    pub ends_at: i64,
    /// The local wall-clock start, in `timezone`.
    pub local_start: String,
    /// The org's time zone at booking.
    pub timezone: String,
    /// `booked`, `cancelled` or `rescheduled`.
    pub status: String,
    /// Created, Unix ms.
    pub created_at: i64,
}

/// The org's appointments starting at or after `from` (Unix ms) in `status` (`None`: any),
/// soonest first.
pub async fn appointments(
    pool: &AnyPool,
    org_id: &str,
    (from, status): (i64, Option<&str>),
    limit: i64,
) -> Result<Vec<Appointment>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, conversation_id, call_id, caller, starts_at, ends_at, local_start, timezone, status, created_at \
         FROM appointments WHERE org_id = $1 AND starts_at >= $2 AND ($3 = 'all' OR status = $3) \
         ORDER BY starts_at LIMIT $4",
    )
    .bind(org_id)
    .bind(from)
    .bind(status.unwrap_or("all"))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Appointment {
                id: r.try_get(0)?,
                conversation_id: r.try_get(1)?,
                call_id: r.try_get(2)?,
                caller: r.try_get(3)?,
                starts_at: r.try_get(4)?,
                ends_at: r.try_get(5)?,
                local_start: r.try_get(6)?,
                timezone: r.try_get(7)?,
                status: r.try_get(8)?,
                created_at: r.try_get(9)?,
            })
        })
        .collect()
}
