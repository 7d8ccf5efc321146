//! An org's receptionist over HTTP, with its API key (the same checks as
//! `dartwing-gateway receptionist set` and `kb add`, see
//! [`crate::receptionist::settings`]):
//!
//! - `GET /api/v1/receptionist`: the settings (the responder's key never shown, only
//!   `responder_key_set`) and the knowledge base.
//! - `PUT /api/v1/receptionist`: changes the fields given; any invalid value refuses the
//!   whole change (422, every problem named).
//! - `POST /api/v1/receptionist/knowledge` `{"question":…,"answer":…}`: adds an entry (201).

use super::{ApiError, OrgAuth, State};
use crate::db::{now_ms, receptionist as rdb};
use crate::receptionist::settings::{self, Change, ChangeError};
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest question or answer.
const MAX_ENTRY: usize = 4_000;

async fn shown(state: &State, org_id: &str) -> Result<Value, ApiError> {
    let view = settings::show(&state.db, org_id).await?;
    let knowledge: Vec<Value> = rdb::entries(&state.db.pool, org_id)
        .await?
        .into_iter()
        .map(|(question, answer)| json!({"question": question, "answer": answer}))
        .collect();
    let mut out = serde_json::to_value(view).unwrap_or_default();
    out["knowledge"] = Value::Array(knowledge);
    Ok(out)
}

/// `GET /api/v1/receptionist`.
pub async fn get(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shown(&state, &org_id).await?))
}

/// `PUT /api/v1/receptionist`.
pub async fn put(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: Change = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid settings: {e}")))?;
    let key_changed = change.responder_key.is_some();
    let view = match change.apply(&state.db, &org_id, now_ms()).await {
        Ok(view) => view,
        Err(ChangeError::Invalid(problems)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                problems,
            ))
        }
        Err(ChangeError::Store(e)) => return Err(e.into()),
    };
    let mut detail = serde_json::to_value(&view).unwrap_or_default();
    detail["responder_key_changed"] = key_changed.into();
    super::audit(
        &state,
        &ext,
        &org_id,
        None,
        "receptionist.settings",
        None,
        detail,
    );
    Ok(Json(shown(&state, &org_id).await?))
}

/// A knowledge-base entry to add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// How a caller might ask.
    pub question: String,
    /// What the receptionist answers.
    pub answer: String,
}

/// `POST /api/v1/receptionist/knowledge`.
pub async fn add_knowledge(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let entry: NewEntry = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid entry: {e}")))?;
    let (question, answer) = (entry.question.trim(), entry.answer.trim());
    if question.is_empty() || answer.is_empty() {
        return Err(ApiError::bad_request("both question and answer need text"));
    }
    if question.len() > MAX_ENTRY || answer.len() > MAX_ENTRY {
        return Err(ApiError::bad_request(
            "question and answer are at most 4,000 characters each",
        ));
    }
    let id = rdb::add_entry(&state.db.pool, &org_id, question, answer, now_ms()).await?;
    super::audit(
        &state,
        &ext,
        &org_id,
        None,
        "receptionist.knowledge.add",
        Some(&id),
        json!({"question": question}),
    );
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}
