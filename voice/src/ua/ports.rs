//! The two ports the user agent asks the outside for, and in-memory adapters of both for
//! tests and the standalone binary.
//!
//! - [`CallRouter`]: dialled number (the request URI's user part) → organisation and the
//!   application that answers it, or `None` (the caller gets 404).
//! - [`CallStore`]: every call transition, reported in order per call. The user agent waits
//!   for the store to acknowledge `Answered` before it sends the 200 OK: nothing is
//!   acknowledged to a caller before it is committed. `gateway` implements it on its
//!   database (and event log).

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

/// The states a call reports through the store. They map onto the call state machine of
/// `state-machines` (ringing, answered, transferring, bridged, ended with a cause); on hold
/// is the media side's to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    Ringing,
    Answered,
    /// Calling an agent to transfer to (the caller is still with us).
    Transferring,
    /// Caller and agent are connected through us.
    Bridged,
    Ended,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// The caller sent BYE.
    RemoteHangup,
    /// The application hung up (we sent BYE).
    LocalHangup,
    /// The agent the call was bridged to hung up (we sent BYE to the caller).
    AgentHangup,
    /// The caller cancelled before the answer (487).
    Cancelled,
    /// No ACK for our 200 within Timer H (we sent BYE).
    NoAck,
    /// The call reached the configured maximum duration (we sent BYE).
    MaxDuration,
    /// No RTP from the caller for the media timeout (we sent BYE).
    MediaTimeout,
    /// We refused the call after it rang, with this status.
    Rejected { status: u16 },
    /// The store did not acknowledge `Answered`; the caller got 500.
    StoreFailed,
    /// The user agent shut down.
    Shutdown,
}

/// One transition of one call.
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
    pub state: CallState,
    pub cause: Option<EndCause>,
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

    pub fn with(mut self, number: &str, org: &str, app: &str) -> Self {
        let route = Route {
            org: org.to_owned(),
            app: app.to_owned(),
        };
        self.routes.insert(number.to_owned(), route);
        self
    }

    /// Every number not in the table goes here.
    pub fn with_fallback(mut self, org: &str, app: &str) -> Self {
        self.fallback = Some(Route {
            org: org.to_owned(),
            app: app.to_owned(),
        });
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

    /// How many calls reached this state.
    pub fn count(&self, state: CallState) -> usize {
        self.lock().iter().filter(|t| t.state == state).count()
    }

    /// How many calls ended with this cause.
    pub fn ended_with(&self, cause: EndCause) -> usize {
        self.lock()
            .iter()
            .filter(|t| t.state == CallState::Ended && t.cause == Some(cause))
            .count()
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
