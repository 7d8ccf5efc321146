//! The registrar port: agent credentials (stored as HA1 only) and the binding table of where
//! each registered agent can be reached. `gateway` implements it over its database; the
//! in-memory adapter serves tests and the standalone binary.
//!
//! Agents belong to an organisation: two orgs may each have an agent `alice`. A REGISTER
//! names its agent by its address of record, `sip:USER@DOMAIN`, and [`pick_agent`] is the one
//! rule that turns it into an org's agent:
//!
//! - a domain whose first label is an org's domain label (`acme`, `acme.voice.example.com`)
//!   names that org's agent `USER`;
//! - any other domain (an IP address, a shared host name) names the agent `USER` only while
//!   exactly one org has such an agent — once a second org adds one, both must register with
//!   their org's domain.
//!
//! Bindings are keyed by (org, user), so a call can only ever reach its own org's agents.

use super::ports::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// One contact of a registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The agent's organisation (as the registrar names it; the gateway uses the org id).
    pub org: String,
    /// The agent's user name (the address-of-record's user part).
    pub user: String,
    /// The Contact URI to send requests to.
    pub contact: String,
    pub expires_at: SystemTime,
    /// Where the REGISTER came from (for agents behind NAT).
    pub source: SocketAddr,
}

/// What the registrar keeps of an agent: its org, the digest realm its HA1 was made in, and
/// the HA1 (MD5 of `user:realm:password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCredentials {
    pub org: String,
    pub realm: String,
    pub ha1: String,
}

/// Why the registrar could not answer (the agent gets 500 and retries).
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    #[error("registrar unavailable")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Credentials and bindings of agents.
pub trait Registrar: Send + Sync + 'static {
    /// The agent that `sip:{user}@{domain}` names (see [`pick_agent`]), if any.
    fn agent<'a>(
        &'a self,
        user: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentCredentials>, RegistrarError>>;

    /// Adds or refreshes a binding; one whose `expires_at` is not in the future removes it.
    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>>;

    /// Removes every binding of an agent (`Contact: *` with `Expires: 0`).
    fn unbind_all<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>>;

    /// The agent's bindings that have not expired.
    fn bindings<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>>;
}

/// The label of `domain` that names an org: its first DNS label, lowercased; `None` for an
/// IP address (with or without brackets and port) or an empty name.
pub fn domain_label(domain: &str) -> Option<String> {
    let host = domain.trim();
    let bare = host.trim_start_matches('[').split(']').next().unwrap_or("");
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let label = host.split('.').next().unwrap_or("").to_ascii_lowercase();
    (!label.is_empty()).then_some(label)
}

/// Picks the agent a REGISTER's domain names among the agents called `user` in every org,
/// each given with its org's domain label (see the module's rule).
pub fn pick_agent<T>(candidates: Vec<(String, T)>, domain: &str) -> Option<T> {
    if let Some(label) = domain_label(domain) {
        if let Some(i) = candidates
            .iter()
            .position(|(l, _)| l.eq_ignore_ascii_case(&label))
        {
            return candidates.into_iter().nth(i).map(|(_, t)| t);
        }
    }
    let mut only = candidates.into_iter();
    match (only.next(), only.next()) {
        (Some((_, t)), None) => Some(t),
        _ => None,
    }
}

/// Agents and bindings in memory. An org's domain label is its name here.
#[derive(Debug, Default)]
pub struct InMemoryRegistrar {
    /// (org, user) → credentials.
    agents: Mutex<HashMap<(String, String), AgentCredentials>>,
    bindings: Mutex<HashMap<(String, String), Vec<Binding>>>,
}

impl InMemoryRegistrar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent of `org`; only the HA1 of the password is kept.
    pub fn add_agent(&self, org: &str, realm: &str, user: &str, password: &str) {
        let creds = AgentCredentials {
            org: org.to_owned(),
            realm: realm.to_owned(),
            ha1: crate::sip::digest::ha1(user, realm, password),
        };
        lock(&self.agents).insert((org.to_owned(), user.to_owned()), creds);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key(org: &str, user: &str) -> (String, String) {
    (org.to_owned(), user.to_owned())
}

impl Registrar for InMemoryRegistrar {
    fn agent<'a>(
        &'a self,
        user: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentCredentials>, RegistrarError>> {
        let candidates: Vec<(String, AgentCredentials)> = lock(&self.agents)
            .iter()
            .filter(|((_, u), _)| u == user)
            .map(|((org, _), c)| (org.clone(), c.clone()))
            .collect();
        let found = pick_agent(candidates, domain);
        Box::pin(async move { Ok(found) })
    }

    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>> {
        let mut all = lock(&self.bindings);
        let list = all.entry(key(&binding.org, &binding.user)).or_default();
        list.retain(|b| b.contact != binding.contact);
        if binding.expires_at > SystemTime::now() {
            list.push(binding);
        }
        Box::pin(async { Ok(()) })
    }

    fn unbind_all<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>> {
        lock(&self.bindings).remove(&key(org, user));
        Box::pin(async { Ok(()) })
    }

    fn bindings<'a>(
        &'a self,
        org: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>> {
        let now = SystemTime::now();
        let list = lock(&self.bindings)
            .get(&key(org, user))
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(list) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_names_its_org_and_an_address_names_only_a_unique_user() {
        assert_eq!(domain_label("acme"), Some("acme".into()));
        assert_eq!(domain_label("Acme.voice.example.com"), Some("acme".into()));
        assert_eq!(domain_label("acme:5060"), Some("acme".into()));
        assert_eq!(domain_label("127.0.0.1"), None);
        assert_eq!(domain_label("127.0.0.1:5060"), None);
        assert_eq!(domain_label("[::1]:5060"), None);
        assert_eq!(domain_label("::1"), None);
        let two = || vec![("acme".to_owned(), 1), ("globex".to_owned(), 2)];
        assert_eq!(pick_agent(two(), "acme.voice.example.com"), Some(1));
        assert_eq!(pick_agent(two(), "GLOBEX"), Some(2));
        // Two orgs have the user: an address, or a domain of no org, names neither.
        assert_eq!(pick_agent(two(), "127.0.0.1"), None);
        assert_eq!(pick_agent(two(), "initech"), None);
        // One org has it: it is reached from any domain that names no other org.
        assert_eq!(
            pick_agent(vec![("acme".to_owned(), 1)], "127.0.0.1"),
            Some(1)
        );
        assert_eq!(
            pick_agent(vec![("acme".to_owned(), 1)], "pbx.example.com"),
            Some(1)
        );
        assert_eq!(pick_agent(Vec::<(String, u8)>::new(), "acme"), None);
    }
}
