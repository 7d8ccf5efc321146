//! `GET /api/v1/dead-letters` and `POST /api/v1/dead-letters/{id}/replay`.

use super::{ApiError, OrgAuth, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::dead_letters::{self, Replay};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Lists the org's dead letters, newest first.
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
) -> Result<Response, ApiError> {
    Ok(Json(dead_letters::list(&state.db.pool, &org_id, 500).await?).into_response())
}

/// Queues a copy of a dead-lettered message.
pub async fn replay(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::audit(
        &state,
        &ext,
        &org_id,
        None,
        "dead_letter.replay",
        Some(&id),
        json!({}),
    );
    let WriteResult::Replay(r) = state
        .committer
        .submit(WriteOp::Replay { org_id, id })
        .await?
    else {
        return Err(ApiError::internal("unexpected write result"));
    };
    match r {
        Replay::Queued { message_id } => {
            state.send_wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"message_id": message_id})),
            )
                .into_response())
        }
        Replay::AlreadyReplayed { message_id } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_replayed",
            format!("already replayed as message {message_id}"),
        )),
        Replay::NotFound => Err(ApiError::not_found("no such dead letter")),
        Replay::OptedOut => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "recipient_opted_out",
            "the recipient has opted out since",
        )),
    }
}
