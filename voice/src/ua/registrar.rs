//! The registrar port: agent credentials (stored as HA1 only) and the binding table of where
//! each registered agent can be reached. `gateway` implements it over its database; the
//! in-memory adapter serves tests and the standalone binary.

use super::ports::BoxFuture;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// One contact of a registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The agent's user name (the address-of-record's user part).
    pub user: String,
    /// The Contact URI to send requests to.
    pub contact: String,
    pub expires_at: SystemTime,
    /// Where the REGISTER came from (for agents behind NAT).
    pub source: SocketAddr,
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
    /// The stored HA1 (MD5 of `user:realm:password`) of an agent, if it exists.
    fn ha1<'a>(
        &'a self,
        realm: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistrarError>>;

    /// Adds or refreshes a binding; one whose `expires_at` is not in the future removes it.
    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>>;

    /// Removes every binding of an agent (`Contact: *` with `Expires: 0`).
    fn unbind_all<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RegistrarError>>;

    /// The agent's bindings that have not expired.
    fn bindings<'a>(&'a self, user: &'a str)
        -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>>;
}

/// Agents and bindings in memory.
#[derive(Debug, Default)]
pub struct InMemoryRegistrar {
    agents: Mutex<HashMap<(String, String), String>>,
    bindings: Mutex<HashMap<String, Vec<Binding>>>,
}

impl InMemoryRegistrar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent; only the HA1 of the password is kept.
    pub fn add_agent(&self, realm: &str, user: &str, password: &str) {
        let ha1 = crate::sip::digest::ha1(user, realm, password);
        lock(&self.agents).insert((realm.to_owned(), user.to_owned()), ha1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registrar for InMemoryRegistrar {
    fn ha1<'a>(
        &'a self,
        realm: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistrarError>> {
        let found = lock(&self.agents)
            .get(&(realm.to_owned(), user.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn bind(&self, binding: Binding) -> BoxFuture<'_, Result<(), RegistrarError>> {
        let mut all = lock(&self.bindings);
        let list = all.entry(binding.user.clone()).or_default();
        list.retain(|b| b.contact != binding.contact);
        if binding.expires_at > SystemTime::now() {
            list.push(binding);
        }
        Box::pin(async { Ok(()) })
    }

    fn unbind_all<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RegistrarError>> {
        lock(&self.bindings).remove(user);
        Box::pin(async { Ok(()) })
    }

    fn bindings<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, RegistrarError>> {
        let now = SystemTime::now();
        let list = lock(&self.bindings)
            .get(user)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(list) })
    }
}
