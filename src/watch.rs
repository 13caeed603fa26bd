//! Wakes long-polling readers of an operation when PostgreSQL announces that it changed.
//!
//! A trigger on `operations` sends the id on the `operations_changed` channel when a change of
//! status, AWS status or update time commits, from any process. One listener per process
//! (see [`crate::worker::listen_for_work`]) passes each id to [`OperationWatchers::announce`],
//! which wakes only the readers of that operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

/// Channel on which the `operations_announce_change` trigger sends the id of a changed operation.
pub const CHANGED_CHANNEL: &str = "operations_changed";

/// Readers waiting for changes, by operation id.
#[derive(Debug, Clone)]
pub struct OperationWatchers {
    waiting: Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>,
    /// Maximum wait that a reader may request.
    pub max_wait: Duration,
}

impl OperationWatchers {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            waiting: Arc::default(),
            max_wait,
        }
    }

    /// Registers interest in one operation until the returned watch is dropped.
    pub fn watch(&self, id: Uuid) -> OperationWatch {
        let notify = self
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        OperationWatch {
            id,
            notify,
            watchers: self.clone(),
        }
    }

    /// Wakes the readers of operation `id`.
    pub fn announce(&self, id: Uuid) {
        if let Some(notify) = self.lock().get(&id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every reader, as after a lost listener connection, when announcements may have
    /// been missed. Each reader reads its operation again.
    pub fn announce_all(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }

    /// Returns the number of operations that readers wait for.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Notify>>> {
        // The map stays consistent even if a holder panicked: each change is a single call.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One reader's interest in an operation.
#[derive(Debug)]
pub struct OperationWatch {
    id: Uuid,
    notify: Arc<Notify>,
    watchers: OperationWatchers,
}

impl OperationWatch {
    /// Returns the notification to wait on. Call `enable` on it before reading the operation,
    /// so that a change committed between the read and the wait is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for OperationWatch {
    fn drop(&mut self) {
        let mut waiting = self.watchers.lock();
        // The map holds one reference and this watch another; no other reader is left.
        if let Some(notify) = waiting.get(&self.id)
            && Arc::ptr_eq(notify, &self.notify)
            && Arc::strong_count(notify) == 2
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
