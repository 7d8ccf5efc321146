//! `GET /api/v1/appointments`: the org's appointments booked by the receptionist, soonest
//! first, from `from` (Unix ms, default now) on; `status` picks `booked` (the default: the
//! calendar as it stands), `cancelled`, `rescheduled` or `all`.

use super::{ApiError, OrgAuth, State};
use crate::db::{appointments, now_ms};
use axum::extract::{Query, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// Query of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Appointments starting at or after this Unix ms (default: now; 0 for all).
    pub from: Option<i64>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
    /// `booked` (default), `cancelled`, `rescheduled` or `all`.
    pub status: Option<String>,
}

/// Lists the org's appointments.
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let status = match q.status.as_deref().unwrap_or("booked") {
        "all" => None,
        s @ ("booked" | "cancelled" | "rescheduled") => Some(s),
        _ => {
            return Err(ApiError::bad_request(
                "status must be booked, cancelled, rescheduled or all",
            ))
        }
    };
    let from = q.from.unwrap_or_else(now_ms);
    let found = appointments::appointments(&state.db.pool, &org_id, (from, status), limit).await?;
    Ok(Json(found).into_response())
}
