//! Replies to broadcasts: an inbound SMS or WhatsApp message that acknowledges confirms the
//! broadcast it answers (or the sender's newest), a STOP ends every broadcast reaching the
//! sender. Runs inside the inbound message's own transaction (`ingest::message`).

use super::broadcasts::{confirm, parse_state, Counts};
use super::StoreError;
use sqlx::{AnyConnection, Row};
use state_machines::recipient::{self, RecipientEvent};

/// What an inbound message says to the broadcasts reaching its sender.
pub struct InboundReply<'a> {
    /// Its channel.
    pub channel: state_machines::Channel,
    /// The sender's number.
    pub phone: &'a str,
    /// Its text.
    pub body: &'a str,
    /// Its structured part (a WhatsApp button's payload, a reply's id).
    pub content: Option<&'a serde_json::Value>,
    /// The message of ours it answers (WhatsApp's `context`), resolved to our id.
    pub reply_to: Option<&'a str>,
    /// A STOP.
    pub stop: bool,
}

/// An inbound message: when it acknowledges (`YES`, `1`, …, or a WhatsApp button or list
/// reply whose text, payload or id does), it confirms the broadcast whose message it
/// answers, when it answers one sent to this same number (a tapped button, a quoted
/// reply), and otherwise the person's most recent unconfirmed broadcast in the org; a STOP
/// ends every broadcast still reaching them.
pub async fn on_inbound(
    conn: &mut AnyConnection,
    org_id: &str,
    reply: InboundReply<'_>,
    now: i64,
) -> Result<(), StoreError> {
    let InboundReply {
        channel,
        phone,
        body,
        content,
        reply_to,
        stop,
    } = reply;
    if stop {
        return opt_out_phone(conn, org_id, phone, now).await;
    }
    let acknowledges = acknowledges(body, content);
    if !acknowledges {
        return Ok(());
    }
    if let Some(id) = answered_recipient(conn, org_id, phone, reply_to).await? {
        confirm(conn, org_id, &id, channel.as_str(), now).await?;
        return Ok(());
    }
    // Acknowledgements of a running rung first, then late ones; the newest first.
    let row = sqlx::query(
        "SELECT id FROM broadcast_recipients WHERE org_id = $1 AND phone = $2 \
         AND state IN ('sent', 'not_confirmed', 'unreachable') \
         ORDER BY CASE state WHEN 'sent' THEN 0 ELSE 1 END, last_sent_at DESC LIMIT 1",
    )
    .bind(org_id)
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(r) = row {
        let id: String = r.try_get(0)?;
        confirm(conn, org_id, &id, channel.as_str(), now).await?;
    }
    Ok(())
}

/// The recipient whose rung message `reply_to` is, when that rung went to `phone` and it
/// can still be confirmed. A rung message carries its recipient in its idempotency key
/// (`broadcast:{recipient}:{step}`, set in `broadcast_run`).
async fn answered_recipient(
    conn: &mut AnyConnection,
    org_id: &str,
    phone: &str,
    reply_to: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let Some(message_id) = reply_to else {
        return Ok(None);
    };
    let key = sqlx::query(
        "SELECT idempotency_key FROM messages WHERE id = $1 AND org_id = $2 \
         AND direction = 'outbound'",
    )
    .bind(message_id)
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get::<Option<String>, _>(0))
    .transpose()?
    .flatten();
    let Some(recipient) = key.as_deref().and_then(rung_recipient) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT id FROM broadcast_recipients WHERE id = $1 AND org_id = $2 AND phone = $3 \
         AND state IN ('sent', 'not_confirmed', 'unreachable')",
    )
    .bind(recipient)
    .bind(org_id)
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// The recipient id in a rung message's idempotency key, `broadcast:{recipient}:{step}`.
fn rung_recipient(key: &str) -> Option<&str> {
    let (recipient, step) = key.strip_prefix("broadcast:")?.rsplit_once(':')?;
    step.parse::<u32>().ok().map(|_| recipient)
}

/// Whether a reply acknowledges: its text, or a WhatsApp button's payload or a list or button
/// reply's id.
pub(super) fn acknowledges(body: &str, content: Option<&serde_json::Value>) -> bool {
    let ids = content.map_or(Vec::new(), |c| {
        [c.pointer("/button/payload"), c.pointer("/interactive/id")]
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect()
    });
    broadcast::ack::is_ack(body) || ids.into_iter().any(broadcast::ack::is_ack)
}

async fn opt_out_phone(
    conn: &mut AnyConnection,
    org_id: &str,
    phone: &str,
    now: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT id, broadcast_id, state FROM broadcast_recipients WHERE org_id = $1 AND phone = $2 \
         AND state IN ('pending', 'sent')",
    )
    .bind(org_id)
    .bind(phone)
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = Counts::default();
    let mut touched = std::collections::BTreeSet::new();
    for r in rows {
        let (id, broadcast_id, state): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let state = parse_state(&state)?;
        let Ok((next, effects)) = recipient::step(state, RecipientEvent::OptOut) else {
            continue;
        };
        sqlx::query(
            "UPDATE broadcast_recipients SET state = $1, next_at = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(&id)
        .execute(&mut *conn)
        .await?;
        counts.record(&broadcast_id, &effects);
        touched.insert(broadcast_id);
    }
    counts.apply(conn, now).await?;
    for id in &touched {
        super::broadcast_run::finish_if_done(conn, id, counts.moved(id), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rung_recipient;

    #[test]
    fn a_rung_key_names_its_recipient() {
        assert_eq!(rung_recipient("broadcast:r-1:0"), Some("r-1"));
        assert_eq!(rung_recipient("broadcast:a:b:12"), Some("a:b"));
        for other in ["broadcast:r-1", "broadcast:r-1:x", "order-7:0", ""] {
            assert_eq!(rung_recipient(other), None, "{other}");
        }
    }
}
