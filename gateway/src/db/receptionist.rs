//! The receptionist's storage: per-org settings, the knowledge base, the call transcript
//! (each turn a `voice` message in the caller's conversation) and appointments.
//!
//! Transcript turns and bookings are written by the committer, each with its event in the
//! same transaction (`dartwing.call.transcript.v1`, `dartwing.appointment.booked.v1`),
//! keyed by the caller's conversation so an inbox sees the call live and in order.
//!
//! Invariant: one booking per org and start (`appointments_slot`); an insert that loses
//! the race does nothing (`ON CONFLICT DO NOTHING`) and the caller is offered the next
//! free slot, so two callers racing for one slot get one booking between them.

use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, Row};

/// An org's receptionist settings as stored (`None`: not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The greeting.
    pub greeting: Option<String>,
    /// Opening hours, `Mon-Fri 09:00-17:00`.
    pub hours: Option<String>,
    /// IANA time zone, `Europe/London`.
    pub timezone: Option<String>,
    /// The agent (SIP username) hand-overs reach when the route names none.
    pub agent: Option<String>,
    /// Appointment length, minutes.
    pub appointment_minutes: Option<i64>,
}

/// Sets the given fields, keeping the others.
pub async fn set_settings(
    pool: &AnyPool,
    org_id: &str,
    s: &Settings,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO receptionist_settings (org_id, greeting, hours, timezone, agent, appointment_minutes, updated_at) \
         VALUES ($1, $2, $3, $4, $5, COALESCE($6, 30), $7) \
         ON CONFLICT (org_id) DO UPDATE SET \
         greeting = COALESCE($2, receptionist_settings.greeting), \
         hours = COALESCE($3, receptionist_settings.hours), \
         timezone = COALESCE($4, receptionist_settings.timezone), \
         agent = COALESCE($5, receptionist_settings.agent), \
         appointment_minutes = COALESCE($6, receptionist_settings.appointment_minutes), \
         updated_at = $7",
    )
    .bind(org_id)
    .bind(&s.greeting)
    .bind(&s.hours)
    .bind(&s.timezone)
    .bind(&s.agent)
    .bind(s.appointment_minutes)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The org's settings (all `None` when it set none).
pub async fn settings(pool: &AnyPool, org_id: &str) -> Result<Settings, StoreError> {
    let row = sqlx::query(
        "SELECT greeting, hours, timezone, agent, appointment_minutes FROM receptionist_settings WHERE org_id = $1",
    )
    .bind(org_id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Settings::default(),
        Some(r) => Settings {
            greeting: r.try_get(0)?,
            hours: r.try_get(1)?,
            timezone: r.try_get(2)?,
            agent: r.try_get(3)?,
            appointment_minutes: r.try_get(4)?,
        },
    })
}

/// Adds a knowledge-base entry; returns its id.
pub async fn add_entry(
    pool: &AnyPool,
    org_id: &str,
    question: &str,
    answer: &str,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    sqlx::query("INSERT INTO kb_entries (id, org_id, question, answer, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(org_id)
        .bind(question)
        .bind(answer)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(id)
}

/// The org's knowledge base, oldest first, as (question, answer).
pub async fn entries(pool: &AnyPool, org_id: &str) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT question, answer FROM kb_entries WHERE org_id = $1 ORDER BY created_at, id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// One transcript turn to store.
#[derive(Debug, Clone)]
pub struct TranscriptWrite {
    /// The org.
    pub org_id: String,
    /// Our call id.
    pub call_id: String,
    /// The caller spoke (inbound) or the receptionist (outbound).
    pub inbound: bool,
    /// The words.
    pub text: String,
    /// Start and end, ms from the call's media start.
    pub span_ms: Option<(u64, u64)>,
    /// Recognition confidence.
    pub confidence: Option<f32>,
    /// What the responder understood.
    pub intent: Option<String>,
}

/// Where a call's messages go.
struct CallThread {
    conversation_id: String,
    /// The caller's address (number or SIP user).
    caller: String,
    /// The number dialled.
    number: String,
    contact_id: String,
}

/// The conversation of call `call_id` in `org_id` (`None`: no such call in this org).
async fn call_thread(
    conn: &mut AnyConnection,
    call_id: &str,
    org_id: &str,
) -> Result<Option<CallThread>, StoreError> {
    let row = sqlx::query(
        "SELECT c.conversation_id, c.from_uri, c.to_number, v.contact_id FROM calls c \
         JOIN conversations v ON v.id = c.conversation_id WHERE c.id = $1 AND c.org_id = $2",
    )
    .bind(call_id)
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(CallThread {
        conversation_id: row.try_get(0)?,
        caller: super::calls::caller_address(&row.try_get::<String, _>(1)?),
        number: row.try_get(2)?,
        contact_id: row.try_get(3)?,
    }))
}

/// A voicemail to store: its words and its audio (a WAV file).
#[derive(Debug, Clone)]
pub struct VoicemailWrite {
    /// The org.
    pub org_id: String,
    /// Our call id.
    pub call_id: String,
    /// The transcript.
    pub text: String,
    /// The recording as a WAV file.
    pub wav: Vec<u8>,
    /// Its length.
    pub seconds: f64,
}

/// Stores a voicemail as an inbound `voice` message (kind `voicemail`) of the call's
/// conversation, its audio as the message's stored attachment (`GET /api/v1/media/{id}`),
/// with its event (`dartwing.call.voicemail.v1`); `None` when the call is unknown.
pub async fn append_voicemail(
    conn: &mut AnyConnection,
    w: &VoicemailWrite,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let Some(thread) = call_thread(conn, &w.call_id, &w.org_id).await? else {
        return Ok(None);
    };
    let (id, media_id) = (new_id(), new_id());
    let audio_url = format!("/api/v1/media/{media_id}");
    let seconds = (w.seconds * 100.0).round() / 100.0;
    let content = json!({"call_id": w.call_id, "speaker": "caller", "seconds": seconds});
    let media = json!([{"content_type": "audio/wav", "caption": null,
                        "filename": "voicemail.wav", "url": audio_url, "media_id": media_id}]);
    sqlx::query(
        "INSERT INTO messages (id, org_id, conversation_id, contact_id, channel, direction, from_addr, to_addr, \
         body, media, status, created_at, updated_at, kind, content) \
         VALUES ($1, $2, $3, $4, 'voice', 'inbound', $5, $6, $7, $8, 'received', $9, $9, 'voicemail', $10)",
    )
    .bind(&id)
    .bind(&w.org_id)
    .bind(&thread.conversation_id)
    .bind(&thread.contact_id)
    .bind(&thread.caller)
    .bind(&thread.number)
    .bind(&w.text)
    .bind(media.to_string())
    .bind(now)
    .bind(content.to_string())
    .execute(&mut *conn)
    .await?;
    let stored = super::media::Stored {
        content_type: "audio/wav",
        filename: "voicemail.wav",
        reference: &w.call_id,
        data: &w.wav,
    };
    let ids = (w.org_id.as_str(), id.as_str(), media_id.as_str());
    super::media::insert_stored(conn, ids, ("voice", "receptionist"), &stored, now).await?;
    sqlx::query("UPDATE conversations SET last_message_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&thread.conversation_id)
        .execute(&mut *conn)
        .await?;
    let mut data = content;
    data["message_id"] = json!(id);
    data["conversation_id"] = json!(thread.conversation_id);
    data["channel"] = json!("voice");
    data["direction"] = json!("inbound");
    data["text"] = json!(w.text);
    data["media_id"] = json!(media_id);
    data["audio_url"] = json!(audio_url);
    outbox::append(
        conn,
        NewEvent {
            org_id: &w.org_id,
            partition_key: &thread.conversation_id,
            event_type: "dartwing.call.voicemail.v1",
            subject: format!("messages/{id}"),
            data,
        },
        now,
    )
    .await?;
    Ok(Some(id))
}

/// Stores a turn as a `voice` message of the call's conversation with its event; `None`
/// when the call is unknown (in this org).
pub async fn append_turn(
    conn: &mut AnyConnection,
    w: &TranscriptWrite,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let Some(CallThread {
        conversation_id,
        caller,
        number,
        contact_id,
    }) = call_thread(conn, &w.call_id, &w.org_id).await?
    else {
        return Ok(None);
    };
    let (direction, from, to, status) = match w.inbound {
        true => ("inbound", caller.as_str(), number.as_str(), "received"),
        false => ("outbound", number.as_str(), caller.as_str(), "delivered"),
    };
    let id = new_id();
    let content = json!({
        "call_id": w.call_id,
        "speaker": if w.inbound { "caller" } else { "receptionist" },
        "start_ms": w.span_ms.map(|s| s.0), "end_ms": w.span_ms.map(|s| s.1),
        "confidence": w.confidence, "intent": w.intent,
    });
    sqlx::query(
        "INSERT INTO messages (id, org_id, conversation_id, contact_id, channel, direction, from_addr, to_addr, \
         body, media, status, created_at, updated_at, kind, content) \
         VALUES ($1, $2, $3, $4, 'voice', $5, $6, $7, $8, '[]', $9, $10, $10, 'transcript', $11)",
    )
    .bind(&id)
    .bind(&w.org_id)
    .bind(&conversation_id)
    .bind(&contact_id)
    .bind(direction)
    .bind(from)
    .bind(to)
    .bind(&w.text)
    .bind(status)
    .bind(now)
    .bind(content.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE conversations SET last_message_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&conversation_id)
        .execute(&mut *conn)
        .await?;
    let mut data = content;
    data["message_id"] = json!(id);
    data["conversation_id"] = json!(conversation_id);
    data["channel"] = json!("voice");
    data["direction"] = json!(direction);
    data["text"] = json!(w.text);
    outbox::append(
        conn,
        NewEvent {
            org_id: &w.org_id,
            partition_key: &conversation_id,
            event_type: "dartwing.call.transcript.v1",
            subject: format!("messages/{id}"),
            data,
        },
        now,
    )
    .await?;
    Ok(Some(id))
}

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

/// Books the wanted slot if free (no overlap, unique start), with its event.
pub async fn book(
    conn: &mut AnyConnection,
    w: &BookWrite,
    now: i64,
) -> Result<BookResult, StoreError> {
    let call =
        sqlx::query("SELECT conversation_id, from_uri FROM calls WHERE id = $1 AND org_id = $2")
            .bind(&w.call_id)
            .bind(&w.org_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (conversation_id, caller) = match call {
        Some(r) => (
            r.try_get::<String, _>(0)?,
            super::calls::caller_address(&r.try_get::<String, _>(1)?),
        ),
        None => return Err(StoreError::ForeignId { what: "call" }),
    };
    let id = new_id();
    let inserted = if is_free(conn, &w.org_id, &w.wanted).await? {
        sqlx::query(
            "INSERT INTO appointments (id, org_id, conversation_id, call_id, caller, starts_at, ends_at, local_start, \
             timezone, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'booked', $10) \
             ON CONFLICT (org_id, starts_at) DO NOTHING",
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
        for slot in &w.alternatives {
            if is_free(conn, &w.org_id, slot).await? {
                return Ok(BookResult::Taken(Some(slot.clone())));
            }
        }
        return Ok(BookResult::Taken(None));
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
            }),
        },
        now,
    )
    .await?;
    Ok(BookResult::Booked(id))
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
    /// `booked`.
    pub status: String,
    /// Created, Unix ms.
    pub created_at: i64,
}

/// The org's appointments starting at or after `from` (Unix ms), soonest first.
pub async fn appointments(
    pool: &AnyPool,
    org_id: &str,
    from: i64,
    limit: i64,
) -> Result<Vec<Appointment>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, conversation_id, call_id, caller, starts_at, ends_at, local_start, timezone, status, created_at \
         FROM appointments WHERE org_id = $1 AND starts_at >= $2 ORDER BY starts_at LIMIT $3",
    )
    .bind(org_id)
    .bind(from)
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
