//! The receptionist's storage: per-org settings, the knowledge base, the call transcript
//! (each turn a `voice` message in the caller's conversation) and voicemails (appointments
//! are [`super::appointments`]).
//!
//! Transcript turns and voicemails are written by the committer, each with its event in the
//! same transaction (`dartwing.call.transcript.v1`, `dartwing.call.voicemail.v1`), keyed by
//! the caller's conversation so an inbox sees the call live and in order.

use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
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
    /// The remote model's OpenAI-compatible endpoint (`""`: the local responder).
    pub responder_url: Option<String>,
    /// The remote model's name.
    pub responder_model: Option<String>,
    /// The remote model's bearer key, sealed ([`crate::secrets::seal`], provider
    /// `responder`); `""`: none.
    pub responder_key: Option<String>,
}

/// Sets the given fields, keeping the others.
pub async fn set_settings(
    pool: &AnyPool,
    org_id: &str,
    s: &Settings,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO receptionist_settings (org_id, greeting, hours, timezone, agent, appointment_minutes, updated_at, \
         responder_url, responder_model, responder_key) \
         VALUES ($1, $2, $3, $4, $5, COALESCE($6, 30), $7, $8, $9, $10) \
         ON CONFLICT (org_id) DO UPDATE SET \
         responder_url = COALESCE($8, receptionist_settings.responder_url), \
         responder_model = COALESCE($9, receptionist_settings.responder_model), \
         responder_key = COALESCE($10, receptionist_settings.responder_key), \
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
    .bind(&s.responder_url)
    .bind(&s.responder_model)
    .bind(&s.responder_key)
    .execute(pool)
    .await?;
    Ok(())
}

/// The org's settings (all `None` when it set none).
pub async fn settings(pool: &AnyPool, org_id: &str) -> Result<Settings, StoreError> {
    let row = sqlx::query(
        "SELECT greeting, hours, timezone, agent, appointment_minutes, responder_url, responder_model, responder_key \
         FROM receptionist_settings WHERE org_id = $1",
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
            responder_url: r.try_get(5)?,
            responder_model: r.try_get(6)?,
            responder_key: r.try_get(7)?,
        },
    })
}

/// Re-seals every org's responder key under the first configured key (`secrets rotate`);
/// returns how many changed.
pub async fn reseal_responder_keys(
    pool: &AnyPool,
    ring: &crate::secrets::Keyring,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT org_id, responder_key FROM receptionist_settings \
         WHERE responder_key IS NOT NULL AND responder_key <> ''",
    )
    .fetch_all(pool)
    .await?;
    let mut changed = 0;
    for r in rows {
        let (org_id, stored): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let resealed = ring
            .reseal(&org_id, crate::receptionist::RESPONDER, &stored)
            .map_err(|e| StoreError::Corrupt {
                what: "receptionist_settings.responder_key",
                detail: format!("org {org_id}: {e}"),
            })?;
        let Some(resealed) = resealed else { continue };
        sqlx::query("UPDATE receptionist_settings SET responder_key = $1 WHERE org_id = $2")
            .bind(resealed)
            .bind(&org_id)
            .execute(pool)
            .await?;
        changed += 1;
    }
    Ok(changed)
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
pub(super) struct CallThread {
    pub(super) conversation_id: String,
    /// The caller's address (number or SIP user).
    pub(super) caller: String,
    /// The number dialled.
    number: String,
    contact_id: String,
}

/// The conversation of call `call_id` in `org_id` (`None`: no such call in this org).
pub(super) async fn call_thread(
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
