//! Answering REGISTER (RFC 3261 §10.3) with digest authentication: no or stale credentials
//! get a 401 challenge, wrong ones 403, an agent may only register its own address, and a
//! good REGISTER updates the binding table and lists the current bindings in its 200.
//!
//! Defences (see `sip::digest`): a nonce is good for a minute and only from the address it
//! was issued to; `qop=auth` is required and each `nc` is good once, so a captured
//! Authorization cannot be replayed; after 10 failures a minute from one source or for one
//! user, further attempts get 403 unchecked; an agent holds at most 10 contacts.
//!
//! The To URI names the agent, and its domain the agent's org (`registrar::pick_agent`);
//! the challenge is in that agent's realm, the one its HA1 was made in.

use super::dialog::{split_list, uri_of};
use super::dispatcher::{CoreHandle, TxKey};
use super::registrar::{Binding, Registrar};
use super::Shared;
use crate::sip::digest::{challenge, parse_authorization, verify, NonceCheck};
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::Peer;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Registrations are granted for at most this long (and at least `MIN_EXPIRES`).
const MAX_EXPIRES: u64 = 3600;
const MIN_EXPIRES: u64 = 60;

/// Handles one REGISTER on its server transaction.
pub async fn handle(
    message: Inbound,
    peer: Peer,
    tx: TxKey,
    core: CoreHandle,
    shared: Arc<Shared>,
    registrar: Arc<dyn Registrar>,
) {
    let (status, reason, headers) = answer(&message, &peer, &shared, registrar.as_ref()).await;
    let mut parts = ResponseParts::new(status, &reason);
    parts.headers = headers.iter().map(|(n, v)| (*n, v.clone())).collect();
    let bytes = build_response(&message.head, peer.addr, &parts);
    core.respond(&tx, bytes, true).await;
}

type Answer = (u16, String, Vec<(&'static str, String)>);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Most contacts one agent may have registered at once.
const MAX_CONTACTS: usize = 10;

async fn answer(
    message: &Inbound,
    peer: &Peer,
    shared: &Shared,
    registrar: &dyn Registrar,
) -> Answer {
    let source = peer.addr.ip();
    // The address of record: the agent (and through its domain, its org) being registered.
    let aor = message
        .head
        .get("To")
        .map(uri_of)
        .and_then(|uri| rsip::Uri::try_from(uri.as_str()).ok())
        .and_then(|uri| Some((uri.user()?.to_owned(), uri.host_with_port.host.to_string())));
    let Some((aor_user, aor_domain)) = aor else {
        return (400, "Bad Request (To names no user)".into(), vec![]);
    };
    let agent = match registrar.agent(&aor_user, &aor_domain).await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::warn!(error = %e, "registrar unavailable");
            return (500, "Server Internal Error".into(), vec![]);
        }
    };
    // An address that names no agent is challenged like any other (in the configured
    // realm), so a stranger cannot tell which agents exist; its credentials then fail.
    let realm = agent
        .as_ref()
        .map_or_else(|| shared.config.realm.clone(), |a| a.realm.clone());
    let realm = realm.as_str();
    let challenge_with = |stale: bool| -> Answer {
        let nonce = shared.nonces.issue(now_secs(), source);
        let value = challenge(realm, &nonce, stale);
        (
            401,
            "Unauthorized".into(),
            vec![("WWW-Authenticate", value)],
        )
    };
    let Some(authorization) = message.head.get("Authorization") else {
        return challenge_with(false);
    };
    let credentials = match parse_authorization(authorization) {
        Ok(c) => c,
        Err(e) => return (400, format!("Bad Request ({e})"), vec![]),
    };
    if credentials.realm != realm {
        return challenge_with(false);
    }
    let user = credentials.username.as_str();
    let now = now_secs();
    if !lock(&shared.auth).throttle.allowed(source, user, now) {
        return (403, "Forbidden (too many failed attempts)".into(), vec![]);
    }
    match shared.nonces.check(&credentials.nonce, now, source) {
        NonceCheck::Valid => {}
        NonceCheck::Stale => return challenge_with(true),
        NonceCheck::Invalid => return challenge_with(false),
    }
    // Without qop there is no nonce count, and so no replay check: challenge again.
    let Some(nc) = credentials
        .nc
        .as_deref()
        .filter(|_| credentials.qop.is_some())
    else {
        return challenge_with(false);
    };
    let failed = |why: &str| -> Answer {
        lock(&shared.auth).throttle.failed(source, user, now_secs());
        (403, format!("Forbidden{why}"), vec![])
    };
    let Some(agent) = agent else {
        return failed("");
    };
    if !verify(&agent.ha1, "REGISTER", &credentials) {
        return failed("");
    }
    let max_age = shared.nonces.max_age_secs();
    if !lock(&shared.auth)
        .counts
        .fresh(&count_key(&credentials), nc, now, max_age)
    {
        // A count used before: a replayed Authorization (or a confused phone).
        return challenge_with(false);
    }
    if aor_user != credentials.username {
        return (403, "Forbidden (not your address)".into(), vec![]);
    }
    match update(message, peer, &agent.org, &aor_user, registrar).await {
        Ok(headers) => (200, "OK".into(), headers),
        Err(answer) => answer,
    }
}

/// What a nonce count is kept under: the nonce and the client nonce.
fn count_key(c: &crate::sip::digest::Credentials) -> String {
    format!("{}\n{}", c.nonce, c.cnonce.as_deref().unwrap_or(""))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies the REGISTER's contacts and returns the 200's headers.
async fn update(
    message: &Inbound,
    peer: &Peer,
    org: &str,
    user: &str,
    registrar: &dyn Registrar,
) -> Result<Vec<(&'static str, String)>, Answer> {
    let unavailable = |e: super::registrar::RegistrarError| -> Answer {
        tracing::warn!(error = %e, "registrar unavailable");
        (500, "Server Internal Error".into(), vec![])
    };
    let default_expires = message
        .head
        .get("Expires")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let contacts: Vec<String> = message.head.all("Contact").flat_map(split_list).collect();
    if contacts.iter().any(|c| c == "*") {
        if contacts.len() > 1 || default_expires != Some(0) {
            return Err((
                400,
                "Bad Request (Contact: * needs Expires: 0)".into(),
                vec![],
            ));
        }
        registrar.unbind_all(org, user).await.map_err(unavailable)?;
        return Ok(vec![]);
    }
    // What is registered now, to hold an agent to MAX_CONTACTS (a refresh is not new).
    let mut registered: Vec<String> = (registrar.bindings(org, user).await)
        .map_err(unavailable)?
        .into_iter()
        .map(|b| b.contact)
        .collect();
    for contact in &contacts {
        let uri = uri_of(contact);
        let expires = contact_expires(contact)
            .or(default_expires)
            .unwrap_or(MAX_EXPIRES);
        let expires = if expires == 0 {
            0
        } else {
            expires.clamp(MIN_EXPIRES, MAX_EXPIRES)
        };
        if expires > 0 && !registered.contains(&uri) {
            if registered.len() >= MAX_CONTACTS {
                return Err((
                    403,
                    format!("Forbidden (at most {MAX_CONTACTS} contacts per agent)"),
                    vec![],
                ));
            }
            registered.push(uri.clone());
        }
        let binding = Binding {
            org: org.to_owned(),
            user: user.to_owned(),
            contact: uri,
            expires_at: SystemTime::now() + Duration::from_secs(expires),
            source: peer.addr,
        };
        registrar.bind(binding).await.map_err(unavailable)?;
    }
    let now = SystemTime::now();
    let current = registrar.bindings(org, user).await.map_err(unavailable)?;
    Ok(current
        .iter()
        .map(|b| {
            let left = b.expires_at.duration_since(now).map_or(0, |d| d.as_secs());
            ("Contact", format!("<{}>;expires={left}", b.contact))
        })
        .collect())
}

/// The `expires` parameter of one Contact value (after the URI's closing bracket).
fn contact_expires(contact: &str) -> Option<u64> {
    let params = contact.rsplit_once('>').map_or("", |(_, p)| p);
    params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::contact_expires;

    #[test]
    fn contact_expires_is_read_outside_the_uri() {
        assert_eq!(
            contact_expires("<sip:a@b;expires=5>;expires=120"),
            Some(120)
        );
        assert_eq!(contact_expires("<sip:a@b;expires=5>"), None);
    }
}
