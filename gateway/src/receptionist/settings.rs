//! An org's receptionist settings as people change them (`receptionist set` and
//! `PUT /api/v1/receptionist`): one [`Change`], checked as a call would use it
//! ([`Change::apply`] refuses the whole change on any problem), and the [`View`] both print
//! and return — the responder's key is never shown, only whether one is set.

use crate::db::receptionist::{self as rdb, Settings};
use crate::db::{sip_agents, Db, StoreError};
use serde::{Deserialize, Serialize};
use voice::receptionist::jiff::tz::TimeZone;
use voice::receptionist::responder::Hours;

/// What to change (absent fields keep their values).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// What callers hear first (`""`: the default greeting).
    pub greeting: Option<String>,
    /// Opening hours, `Mon-Fri 09:00-17:00, Sat 10:00-14:00`.
    pub hours: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// The SIP agent hand-overs reach when the route names none.
    pub agent: Option<String>,
    /// Appointment length, minutes.
    pub appointment_minutes: Option<u16>,
    /// An OpenAI-compatible endpoint, or `local`.
    pub responder_url: Option<String>,
    /// The endpoint's model.
    pub responder_model: Option<String>,
    /// The endpoint's key (`""`: none).
    pub responder_key: Option<String>,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The values are wrong (every problem, joined).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The settings as shown.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The greeting (`null`: the default).
    pub greeting: Option<String>,
    /// Opening hours.
    pub hours: Option<String>,
    /// Time zone (`null`: UTC).
    pub timezone: Option<String>,
    /// The hand-over agent.
    pub agent: Option<String>,
    /// Appointment length, minutes.
    pub appointment_minutes: i64,
    /// `local`, or the endpoint's URL.
    pub responder: String,
    /// The endpoint's model.
    pub responder_model: Option<String>,
    /// Whether a key is stored for it.
    pub responder_key_set: bool,
}

impl Change {
    /// Checks the change against what is stored and stores it; the settings after it.
    pub async fn apply(self, db: &Db, org_id: &str, now: i64) -> Result<View, ChangeError> {
        let stored = rdb::settings(&db.pool, org_id).await?;
        let mut problems = Vec::new();
        if let Some(Err(e)) = self.hours.as_deref().map(Hours::parse) {
            problems.push(e.to_string());
        }
        if let Some(tz) = &self.timezone {
            if TimeZone::get(tz).is_err() {
                problems.push(format!(
                    "unknown time zone `{tz}` (want Area/City, e.g. America/New_York)"
                ));
            }
        }
        if let Some(agent) = &self.agent {
            if !sip_agents::exists(&db.pool, org_id, agent).await? {
                problems.push(format!(
                    "no SIP agent `{agent}` in this org (add it with `voice agent add`)"
                ));
            }
        }
        if self.appointment_minutes == Some(0) {
            problems.push("appointment minutes must be at least 1".to_owned());
        }
        let responder_url = self.responder_url.map(|u| match u.trim() {
            "local" => String::new(),
            u => u.to_owned(),
        });
        let responder_model = self.responder_model.map(|m| m.trim().to_owned());
        let url = responder_url.as_ref().or(stored.responder_url.as_ref());
        let model = responder_model.as_ref().or(stored.responder_model.as_ref());
        problems.extend(super::chat::endpoint_problems(url, model));
        if self.greeting.as_ref().is_some_and(|g| g.len() > 2_000) {
            problems.push("the greeting is over 2,000 characters".to_owned());
        }
        if !problems.is_empty() {
            return Err(ChangeError::Invalid(problems.join("; ")));
        }
        let settings = Settings {
            // An empty greeting goes back to the default one.
            greeting: self.greeting.map(|g| g.trim().to_owned()),
            hours: self.hours,
            timezone: self.timezone,
            agent: self.agent,
            appointment_minutes: self.appointment_minutes.map(i64::from),
            responder_url,
            responder_model,
            responder_key: self.responder_key.map(|k| match k.trim() {
                "" => String::new(),
                k => crate::secrets::seal(org_id, super::RESPONDER, k),
            }),
        };
        rdb::set_settings(&db.pool, org_id, &settings, now).await?;
        Ok(view(rdb::settings(&db.pool, org_id).await?))
    }
}

/// The org's settings as shown.
pub async fn show(db: &Db, org_id: &str) -> Result<View, StoreError> {
    Ok(view(rdb::settings(&db.pool, org_id).await?))
}

fn view(s: Settings) -> View {
    let some = |v: Option<String>| v.filter(|v| !v.is_empty());
    View {
        greeting: some(s.greeting),
        hours: some(s.hours),
        timezone: some(s.timezone),
        agent: some(s.agent),
        appointment_minutes: s.appointment_minutes.unwrap_or(30),
        responder: some(s.responder_url).unwrap_or_else(|| "local".to_owned()),
        responder_model: some(s.responder_model),
        responder_key_set: s.responder_key.is_some_and(|k| !k.is_empty()),
    }
}
