//! Contacts over HTTP (an org's API key): `POST /api/v1/contacts` saves a person (found by
//! phone or email, else created) and adds tags; `GET /api/v1/contacts?tag=&after=&limit=`
//! lists them; `GET /api/v1/contacts/{id}`; `PUT /api/v1/contacts/{id}/tags` replaces the
//! tags. A broadcast reaches tagged contacts with `"tags"` ([`crate::db::contacts`]).

use super::{ApiError, OrgAuth, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::contacts::{self, ContactOp, ContactResult};
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// A contact to save.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Tags to set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsRequest {
    tags: Vec<String>,
}

/// Listing filters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    tag: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn bad(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("field `{field}`: {e}"))
}

/// `POST /api/v1/contacts`: 201 with the contact when made, 200 when found.
pub async fn save(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SaveRequest = parse(&body)?;
    let op = contacts::check_save(
        &org_id,
        req.name,
        req.phone.as_deref(),
        req.email.as_deref(),
        &req.tags,
    )
    .map_err(ApiError::bad_request)?;
    let tags = match &op {
        ContactOp::Save { tags, .. } => tags.clone(),
        ContactOp::SetTags { tags, .. } => tags.clone(),
    };
    let op = WriteOp::Contact(op);
    let WriteResult::Contact(ContactResult::Saved { id, created }) =
        state.committer.submit(op).await?
    else {
        return Err(ApiError::internal("unexpected write result"));
    };
    super::audit(
        &state,
        &ext,
        &org_id,
        None,
        "contact.save",
        Some(&id),
        serde_json::json!({"created": created, "tags": tags}),
    );
    let view = contacts::get(&state.db.pool, &org_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal("the saved contact is gone"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// `GET /api/v1/contacts`: by id, after `after`, at most `limit` (100, up to 1,000).
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let tag = match q.tag.as_deref() {
        Some(t) => Some(contacts::check_tag(t).map_err(|e| bad("tag", e))?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let found = contacts::list(
        &state.db.pool,
        &org_id,
        tag.as_deref(),
        q.after.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(found).into_response())
}

/// `GET /api/v1/contacts/{id}`.
pub async fn get_one(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match contacts::get(&state.db.pool, &org_id, &id).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found("no such contact")),
    }
}

/// `PUT /api/v1/contacts/{id}/tags`: the contact's tags become these.
pub async fn set_tags(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: TagsRequest = parse(&body)?;
    let tags = contacts::check_tags(&req.tags).map_err(|e| bad("tags", e))?;
    let op = WriteOp::Contact(ContactOp::SetTags {
        org_id: org_id.clone(),
        id: id.clone(),
        tags: tags.clone(),
    });
    match state.committer.submit(op).await? {
        WriteResult::Contact(ContactResult::NotFound) => {
            Err(ApiError::not_found("no such contact"))
        }
        WriteResult::Contact(ContactResult::Saved { .. }) => {
            let detail = serde_json::json!({ "tags": tags });
            super::audit(
                &state,
                &ext,
                &org_id,
                None,
                "contact.tags",
                Some(&id),
                detail,
            );
            get_one(AxState(state), OrgAuth(org_id), Path(id)).await
        }
        _ => Err(ApiError::internal("unexpected write result")),
    }
}
