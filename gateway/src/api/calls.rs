//! `GET /api/v1/calls` (the org's calls, newest first, each with its persisted state
//! history) and `GET /api/v1/calls/{id}`.

use super::{ApiError, OrgAuth, State};
use crate::db::calls;
use axum::extract::{Path, Query, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// Query of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
}

/// Lists the org's calls.
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    Ok(Json(calls::list(&state.db.pool, &org_id, None, limit).await?).into_response())
}

/// One call (404 for another org's).
pub async fn get_call(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut found = calls::list(&state.db.pool, &org_id, Some(&id), 1).await?;
    match found.pop() {
        Some(call) => Ok(Json(call).into_response()),
        None => Err(ApiError::not_found("no such call")),
    }
}
