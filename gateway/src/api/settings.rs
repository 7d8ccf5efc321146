//! An org's features and caps over HTTP: `GET /api/v1/settings` (the org's own, with its API
//! key) and `PUT /api/v1/orgs/{slug}/settings` (the operator's, with the ops token; an org's
//! key cannot raise its own caps). See [`crate::db::org_settings`].

use super::{ApiError, OrgAuth, State};
use crate::db::org_settings::{self, OrgSettings};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

/// `GET /api/v1/settings`.
pub async fn get_own(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
) -> Result<Json<OrgSettings>, ApiError> {
    Ok(Json(org_settings::get(&state.db.pool, &org_id).await?))
}

/// `PUT /api/v1/orgs/{slug}/settings`, with `Authorization: Bearer OPS_TOKEN`.
pub async fn put(
    AxState(state): AxState<State>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Json<OrgSettings>, ApiError> {
    let operator = super::is_operator(&state, &headers);
    if !operator {
        return Err(ApiError::unauthorized(
            "the operator's token (ops_token) is required",
        ));
    }
    let settings: OrgSettings = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid settings: {e}")))?;
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            problems.join("; "),
        ));
    }
    let org = state
        .plugins
        .org(&slug)
        .await?
        .ok_or_else(|| ApiError::not_found("no such organization"))?;
    org_settings::put(&state.db.pool, &org.id, &settings, crate::db::now_ms()).await?;
    super::audit(
        &state,
        &ext,
        &org.id,
        None,
        "org.settings",
        None,
        serde_json::to_value(&settings).unwrap_or_default(),
    );
    Ok(Json(settings))
}
