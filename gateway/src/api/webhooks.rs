//! `POST /webhooks/{provider}/{org}/{hook}`: verify, parse, commit, and only then answer 2xx.
//! A provider's retry of the same webhook changes nothing and still gets 2xx.

use super::{ApiError, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::ingest::StatusOutcome;
use crate::telemetry::{Delivered, MessageCounted, WebhookRejected};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use channels::{InboundEvent, WebhookError, WebhookRequest};

/// Empty TwiML: acknowledged, no automatic reply.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// Receives one provider webhook.
pub async fn receive(
    AxState(state): AxState<State>,
    Path((provider, org_slug, hook)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let reject = |reason| {
        WebhookRejected {
            provider: &provider,
            reason,
        }
        .emit()
    };
    let Some(org) = state.plugins.org(&org_slug).await? else {
        reject("unknown_org");
        return Err(ApiError::not_found(format!("no organization `{org_slug}`")));
    };
    let Some(plugin) = state.plugins.by_provider(&org.id, &provider).await? else {
        reject("unknown_org");
        return Err(ApiError::not_found(format!(
            "organization `{org_slug}` has no {provider} account"
        )));
    };
    let url = format!(
        "{}{}",
        state.public_base,
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let req = WebhookRequest {
        url: &url,
        headers: &header_pairs,
        body: &body,
    };
    let events = plugin.handle_webhook(&hook, &req).map_err(|e| {
        let (reason, err) = match &e {
            WebhookError::BadSignature => (
                "signature",
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()),
            ),
            WebhookError::Malformed { .. } => ("malformed", ApiError::bad_request(e.to_string())),
            WebhookError::UnknownHook(_) => ("unknown_hook", ApiError::not_found(e.to_string())),
        };
        reject(reason);
        err
    })?;
    for event in events {
        match event {
            InboundEvent::Message(msg) => {
                let channel = msg.channel;
                let result = state
                    .committer
                    .submit(WriteOp::Inbound {
                        org_id: org.id.clone(),
                        msg,
                    })
                    .await
                    .inspect_err(|_| reject("overloaded"))?;
                if let WriteResult::Inbound(done) = result {
                    if !done.duplicate {
                        MessageCounted {
                            channel: channel.as_str(),
                            direction: "inbound",
                            status: "received",
                        }
                        .emit();
                    }
                }
            }
            InboundEvent::Status(update) => {
                let result = state
                    .committer
                    .submit(WriteOp::Status {
                        org_id: org.id.clone(),
                        channel: plugin.channel(),
                        update,
                    })
                    .await?;
                match result {
                    WriteResult::Status(StatusOutcome::UnknownMessage) => {
                        reject("unknown_message");
                        return Err(ApiError::not_found(
                            "no message of this organization has that provider id",
                        ));
                    }
                    WriteResult::Status(StatusOutcome::Recorded {
                        applied,
                        created_at,
                    }) if applied.changed() => {
                        if applied.to == state_machines::DeliveryState::Delivered {
                            let ms = (crate::db::now_ms() - created_at).max(0) as u64;
                            Delivered {
                                channel: plugin.channel().as_str(),
                                elapsed: std::time::Duration::from_millis(ms),
                            }
                            .emit();
                        }
                        MessageCounted {
                            channel: plugin.channel().as_str(),
                            direction: "outbound",
                            status: applied.to.as_str(),
                        }
                        .emit();
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(([("content-type", "text/xml")], EMPTY_TWIML).into_response())
}
