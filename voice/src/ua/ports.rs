//! The two ports the user agent asks the outside for, and in-memory adapters of both for
//! tests and the standalone binary.
//!
//! - [`CallRouter`]: dialled number (the request URI's user part) → organisation and the
//!   application that answers it, or `None` (the caller gets 404).
//! - [`CallStore`]: every step of the call machine (`state_machines::call`), reported in
//!   order per call. The user agent waits for the store before it acts on a step: the 200
//!   OK after `answer` is committed, the 200 to a BYE after the end is. A step the store
//!   refuses ends the call (cause `failed`). `gateway` implements it on its database (and
//!   event log).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

/// A boxed future, the return type of the ports' methods (object-safe async).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a dialled number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The organisation that owns the number.
    pub org: String,
    /// What answers: `echo`, `menu`, `play:FILE.wav` (interpreted by the call application).
    pub app: String,
    /// The registered agent the application's transfer (`menu` key 1) reaches; `None`:
    /// the application cannot transfer on this route.
    pub agent: Option<String>,
    /// Whether the caller may transfer the call itself with REFER; otherwise 403.
    pub allow_refer: bool,
}

impl Route {
    /// A route to `app` for `org`, with no agent and no REFER.
    pub fn new(org: &str, app: &str) -> Route {
        Route {
            org: org.to_owned(),
            app: app.to_owned(),
            agent: None,
            allow_refer: false,
        }
    }

    /// The agent the application's transfer goes to.
    pub fn with_agent(mut self, agent: &str) -> Route {
        self.agent = Some(agent.to_owned());
        self
    }

    /// Lets the caller transfer with REFER.
    pub fn allowing_refer(mut self) -> Route {
        self.allow_refer = true;
        self
    }
}

/// Why a route could not be looked up (the caller gets 503 and may retry).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("routing table unavailable")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Dialled number → route. Implemented by `gateway` over its DID table.
pub trait CallRouter: Send + Sync + 'static {
    fn route<'a>(&'a self, number: &'a str) -> BoxFuture<'a, Result<Option<Route>, RouteError>>;
}

/// The call machine's vocabulary, the one the user agent steps and the store persists.
pub use state_machines::call::{CallEvent, CallState, EndCause};

/// One step of one call's machine, as the user agent took it: the event and the state it
/// led to. The store commits it (and may re-check it against its own copy of the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTransition {
    /// Our id of the call, unique (the SIP Call-ID is chosen by the caller).
    pub call_id: String,
    pub sip_call_id: String,
    pub org: String,
    /// The caller's From URI.
    pub from: String,
    /// The dialled number.
    pub to: String,
    /// A call we placed: `from` is our caller id and `to` the party we called.
    pub outbound: bool,
    /// `None`: the call starts (ringing); else the machine's event.
    pub event: Option<CallEvent>,
    /// The state after the step.
    pub state: CallState,
    /// Free detail: the rejecting status, the transfer target, why it failed.
    pub detail: Option<String>,
    pub at: SystemTime,
}

/// Why the store did not acknowledge a transition.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("call store unavailable")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stored state does not take the step as the user agent did (another writer, or
    /// a lost step): the call must end rather than go on with two states.
    #[error("stored call state {stored:?} differs from the stepped {stepped:?}")]
    Diverged {
        /// What the store holds.
        stored: CallState,
        /// What the user agent's machine reached.
        stepped: CallState,
    },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where call transitions are committed. `record` resolves once the transition is durable.
pub trait CallStore: Send + Sync + 'static {
    fn record(&self, transition: CallTransition) -> BoxFuture<'_, Result<(), StoreError>>;

    /// About how long a transition recorded now would wait before its commit starts (zero
    /// when the store cannot tell). New calls are shed with 503 while it exceeds
    /// [`super::AdmissionConfig::max_store_lag`].
    fn lag(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A router over a fixed table, with an optional catch-all route.
#[derive(Debug, Clone, Default)]
pub struct StaticRouter {
    routes: HashMap<String, Route>,
    fallback: Option<Route>,
}

impl StaticRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// `number` to `app` of `org` (no agent, no REFER).
    pub fn with(self, number: &str, org: &str, app: &str) -> Self {
        self.with_route(number, Route::new(org, app))
    }

    /// `number` to a route.
    pub fn with_route(mut self, number: &str, route: Route) -> Self {
        self.routes.insert(number.to_owned(), route);
        self
    }

    /// Every number not in the table goes here.
    pub fn with_fallback(mut self, org: &str, app: &str) -> Self {
        self.fallback = Some(Route::new(org, app));
        self
    }
}

impl CallRouter for StaticRouter {
    fn route<'a>(&'a self, number: &'a str) -> BoxFuture<'a, Result<Option<Route>, RouteError>> {
        let found = self.routes.get(number).or(self.fallback.as_ref()).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// A store that keeps every transition in memory.
#[derive(Debug, Default)]
pub struct InMemoryCallStore {
    transitions: Mutex<Vec<CallTransition>>,
}

impl InMemoryCallStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every transition so far, in the order recorded.
    pub fn transitions(&self) -> Vec<CallTransition> {
        self.lock().clone()
    }

    /// How many calls reached this (live) state.
    pub fn count(&self, state: CallState) -> usize {
        self.lock().iter().filter(|t| t.state == state).count()
    }

    /// How many calls ended, whatever the cause.
    pub fn ended(&self) -> usize {
        self.lock().iter().filter(|t| t.state.is_terminal()).count()
    }

    /// How many calls ended with this cause.
    pub fn ended_with(&self, cause: EndCause) -> usize {
        self.count(CallState::Ended { cause })
    }

    /// The states one call went through, in order.
    pub fn states_of(&self, call_id: &str) -> Vec<CallState> {
        self.lock()
            .iter()
            .filter(|t| t.call_id == call_id)
            .map(|t| t.state)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallTransition>> {
        // A panic while holding the lock leaves a valid Vec; keep serving.
        self.transitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CallStore for InMemoryCallStore {
    fn record(&self, transition: CallTransition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().push(transition);
        Box::pin(async { Ok(()) })
    }
}
