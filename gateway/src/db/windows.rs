//! Customer-service windows: how long a provider accepts free-form messages to a contact
//! address (WhatsApp: 24 hours after the customer's last message). Opened or extended by
//! every inbound message whose plugin says so, checked inside the transaction that queues a
//! free-form send, and shown with the contact identity it belongs to
//! ([`super::conversations::Identity`]).

use super::StoreError;
use sqlx::{AnyConnection, Row};
use state_machines::Channel;

/// Opens the window until `closes_at` (never shortens one that closes later).
pub async fn open(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    address: &str,
    closes_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO service_windows (org_id, channel, address, closes_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, channel, address) DO UPDATE SET closes_at = \
         CASE WHEN service_windows.closes_at > excluded.closes_at \
         THEN service_windows.closes_at ELSE excluded.closes_at END",
    )
    .bind(org_id)
    .bind(channel.as_str())
    .bind(address)
    .bind(closes_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// When the window to this address closes (or closed); `None` if it never opened.
pub async fn closes_at(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    address: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT closes_at FROM service_windows WHERE org_id = $1 AND channel = $2 AND address = $3",
    )
    .bind(org_id)
    .bind(channel.as_str())
    .bind(address)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
