//! The engine's loop, behind the [`Store`] port the gateway implements: expand waiting
//! audiences a chunk at a time, act on due recipients a batch at a time, and sleep until the
//! next one is due (or until woken by a new broadcast, an acknowledgement, a failed send).
//!
//! Bulk sends never crowd out conversations: the engine stops feeding the send queue while
//! `max_backlog` broadcast messages still wait there, so escalation timers start when a
//! rung is really on its way, pacing is left to the send worker's per-sender limits, and a
//! 100,000-recipient broadcast sits in the broadcast tables, not in the message queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What a dispatch round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Recipients acted on.
    pub handled: usize,
    /// When the next recipient is due, Unix ms.
    pub next_due: Option<i64>,
}

/// The engine's view of storage and sending; every method is one transaction.
pub trait Store: Send + Sync + 'static {
    /// Expands up to `limit` recipients of audiences still waiting; how many.
    fn expand(&self, limit: usize) -> impl Future<Output = Result<usize, String>> + Send;
    /// Broadcast messages queued and not yet handed to a provider.
    fn backlog(&self) -> impl Future<Output = Result<usize, String>> + Send;
    /// Acts on up to `limit` due recipients.
    fn dispatch(&self, limit: usize) -> impl Future<Output = Result<Tick, String>> + Send;
    /// The clock, Unix ms.
    fn now(&self) -> i64;
}

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Recipients per transaction.
    pub batch: usize,
    /// Broadcast messages allowed to wait in the send queue.
    pub max_backlog: usize,
    /// Longest sleep without a wake-up.
    pub poll: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            // A round holds the (SQLite: only) writer; small rounds keep a conversation's
            // write from waiting behind a long one.
            batch: 50,
            max_backlog: 2_000,
            poll: Duration::from_millis(500),
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run<S: Store>(
    store: S,
    settings: EngineSettings,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let batch = settings.batch.max(1);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut busy = false;
        match store.expand(batch).await {
            Ok(n) => busy |= n > 0,
            Err(e) => tracing::warn!(error = %e, "expanding broadcast audiences failed"),
        }
        let mut sleep = settings.poll;
        let room = match store.backlog().await {
            Ok(b) => settings.max_backlog.saturating_sub(b),
            Err(e) => {
                tracing::warn!(error = %e, "reading the broadcast backlog failed");
                0
            }
        };
        if room == 0 {
            // The send worker drains the queue; look again soon.
            sleep = sleep.min(Duration::from_millis(50));
        } else {
            match store.dispatch(batch.min(room)).await {
                Ok(tick) => {
                    busy |= tick.handled > 0;
                    if let Some(due) = tick.next_due {
                        let wait = (due - store.now()).max(0) as u64;
                        sleep = sleep.min(Duration::from_millis(wait));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dispatching broadcast recipients failed"),
            }
        }
        if busy {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A store with `due` recipients at given times on tokio's (paused) clock.
    struct Fake {
        start: tokio::time::Instant,
        due: Mutex<Vec<i64>>,
        handled_at: Mutex<Vec<i64>>,
        backlog: AtomicUsize,
    }

    impl Store for Arc<Fake> {
        async fn expand(&self, _: usize) -> Result<usize, String> {
            Ok(0)
        }
        async fn backlog(&self) -> Result<usize, String> {
            Ok(self.backlog.load(Ordering::SeqCst))
        }
        async fn dispatch(&self, limit: usize) -> Result<Tick, String> {
            let now = self.now();
            let mut due = self.due.lock().unwrap();
            let mut handled = 0;
            due.retain(|&t| {
                if t <= now && handled < limit {
                    handled += 1;
                    self.handled_at.lock().unwrap().push(now);
                    false
                } else {
                    true
                }
            });
            Ok(Tick {
                handled,
                next_due: due.iter().copied().min(),
            })
        }
        fn now(&self) -> i64 {
            self.start.elapsed().as_millis() as i64
        }
    }

    #[tokio::test(start_paused = true)]
    async fn due_recipients_are_handled_on_time_and_a_full_backlog_holds_dispatch() {
        let fake = Arc::new(Fake {
            start: tokio::time::Instant::now(),
            due: Mutex::new(vec![0, 0, 300_000, 600_000]),
            handled_at: Mutex::new(Vec::new()),
            backlog: AtomicUsize::new(0),
        });
        let (stop, rx) = watch::channel(false);
        let settings = EngineSettings {
            batch: 1,
            max_backlog: 10,
            poll: Duration::from_secs(30),
        };
        let task = tokio::spawn(run(fake.clone(), settings, Arc::new(Notify::new()), rx));
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert_eq!(*fake.handled_at.lock().unwrap(), vec![0, 0, 300_000]);
        // The send queue is full: the 600 s recipient waits until it drains.
        fake.backlog.store(10, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(400)).await;
        assert_eq!(fake.handled_at.lock().unwrap().len(), 3);
        fake.backlog.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at = fake.handled_at.lock().unwrap().clone();
        assert_eq!(at.len(), 4);
        assert!(at[3] >= 701_000 && at[3] <= 701_100, "{at:?}");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
