//! `GET /api/v1/appointments`: the org's appointments booked by the receptionist, soonest
//! first, from `from` (Unix ms, default now) on.

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
    let from = q.from.unwrap_or_else(now_ms);
    let found = appointments::appointments(&state.db.pool, &org_id, from, limit).await?;
    Ok(Json(found).into_response())
}
