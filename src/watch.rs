//! Wakes long-polling readers of an operation when PostgreSQL announces that it changed.
//!
//! A trigger on `operations` sends the id on the `operations_changed` channel when a change of
//! status, AWS status or update time commits, from any process. One listener per process
//! (see [`crate::worker::listen_for_work`]) passes each id to [`OperationWatchers::announce`],
//! which wakes only the readers of that operation. The readers woken by one announcement share
//! one read of the operation, so a thousand readers cost one query, not a thousand.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::operations::OperationRow;

/// Channel on which the `operations_announce_change` trigger sends the id of a changed operation.
pub const CHANGED_CHANNEL: &str = "operations_changed";

/// The readers of one operation.
#[derive(Debug, Default)]
struct Watched {
    notify: Notify,
    /// Number of announcements of this operation so far.
    announcements: AtomicU64,
    /// The last read of the operation.
    latest: tokio::sync::Mutex<Option<SharedRead>>,
}

/// A read of an operation that readers share.
#[derive(Debug)]
struct SharedRead {
    /// Number of announcements made before the read.
    announcements: u64,
    started: Instant,
    row: OperationRow,
}

/// Readers waiting for changes, by operation id.
#[derive(Debug, Clone)]
pub struct OperationWatchers {
    waiting: Arc<Mutex<HashMap<Uuid, Arc<Watched>>>>,
    /// Maximum wait that a reader may request.
    pub max_wait: Duration,
    /// Cancelled when the process shuts down, which ends every wait.
    closing: CancellationToken,
}

impl OperationWatchers {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            waiting: Arc::default(),
            max_wait,
            closing: CancellationToken::new(),
        }
    }

    /// Ends every wait, now and later, so that a shutting-down process responds to its
    /// long-polling readers at once instead of after its grace period.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once [`Self::close`] was called.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Registers interest in one operation until the returned watch is dropped.
    pub fn watch(&self, id: Uuid) -> OperationWatch {
        let watched = self.lock().entry(id).or_default().clone();
        OperationWatch {
            id,
            watched,
            watchers: self.clone(),
        }
    }

    /// Wakes the readers of operation `id`.
    pub fn announce(&self, id: Uuid) {
        if let Some(watched) = self.lock().get(&id) {
            watched.announce();
        }
    }

    /// Wakes every reader, as after a lost listener connection, when announcements may have
    /// been missed. Each reader reads its operation again.
    pub fn announce_all(&self) {
        for watched in self.lock().values() {
            watched.announce();
        }
    }

    /// Returns the number of operations that readers wait for.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Watched>>> {
        // The map stays consistent even if a holder panicked: each change is a single call.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Watched {
    fn announce(&self) {
        // Counted before the wake-up, so that woken readers see the new announcement.
        self.announcements.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// One reader's interest in an operation.
#[derive(Debug)]
pub struct OperationWatch {
    id: Uuid,
    watched: Arc<Watched>,
    watchers: OperationWatchers,
}

impl OperationWatch {
    /// Returns the notification to wait on. Call `enable` on it before reading the operation,
    /// so that a change committed between the read and the wait is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.watched.notify.notified()
    }

    /// Returns the operation as read after the latest announcement and no earlier than
    /// `not_before`. The first reader to ask runs `read`, and the others wait for its result and
    /// share it. A read that started before a request arrived can miss a commit that the caller
    /// already saw through another process, whose announcement has not arrived here yet, so
    /// each request passes its arrival time.
    pub async fn read<E, F>(
        &self,
        not_before: Instant,
        read: impl FnOnce() -> F,
    ) -> Result<OperationRow, E>
    where
        F: Future<Output = Result<OperationRow, E>>,
    {
        let announcements = self.watched.announcements.load(Ordering::SeqCst);
        let mut latest = self.watched.latest.lock().await;
        if let Some(shared) = latest.as_ref()
            && shared.announcements >= announcements
            && shared.started >= not_before
        {
            return Ok(shared.row.clone());
        }
        let started = Instant::now();
        let row = read().await?;
        *latest = Some(SharedRead {
            announcements,
            started,
            row: row.clone(),
        });
        Ok(row)
    }
}

impl Drop for OperationWatch {
    fn drop(&mut self) {
        let mut waiting = self.watchers.lock();
        // The map holds one reference and this watch another, so no other reader is left.
        if let Some(watched) = waiting.get(&self.id)
            && Arc::ptr_eq(watched, &self.watched)
            && Arc::strong_count(watched) == 2
        {
            waiting.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn announce_wakes_only_readers_of_that_operation() {
        let watchers = OperationWatchers::new(Duration::from_secs(1));
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let first_watch = watchers.watch(first);
        let second_watch = watchers.watch(second);
        let first_notified = first_watch.notified();
        let second_notified = second_watch.notified();
        tokio::pin!(first_notified, second_notified);
        first_notified.as_mut().enable();
        second_notified.as_mut().enable();

        watchers.announce(first);

        let woken = tokio::time::timeout(Duration::from_millis(50), first_notified).await;
        let not_woken = tokio::time::timeout(Duration::from_millis(50), second_notified).await;
        assert!(woken.is_ok());
        assert!(not_woken.is_err());
    }

    #[test]
    fn last_dropped_watch_removes_entry() {
        let watchers = OperationWatchers::new(Duration::from_secs(1));
        let id = Uuid::new_v4();
        let first = watchers.watch(id);
        let second = watchers.watch(id);

        drop(first);
        let after_first = watchers.watched();
        drop(second);

        assert_eq!(after_first, 1);
        assert_eq!(watchers.watched(), 0);
    }
}
