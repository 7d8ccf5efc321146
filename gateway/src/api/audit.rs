//! `GET /api/v1/audit`: the org's audit log, newest first (`?before=` Unix ms, `?limit=` ≤
//! 500). See [`crate::db::audit`].

use super::{ApiError, OrgAuth, State};
use crate::db::audit;
use axum::extract::{Query, State as AxState};
use axum::Json;
use serde::Deserialize;

/// Paging.
#[derive(Deserialize)]
pub struct Page {
    before: Option<i64>,
    limit: Option<i64>,
}

/// Lists the org's entries.
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(page): Query<Page>,
) -> Result<Json<Vec<audit::Recorded>>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    Ok(Json(
        audit::list(&state.db.pool, &org_id, page.before, limit).await?,
    ))
}
