//! Short-lived in-memory copies of what read requests need most often: API keys looked up by
//! hash, and the response bodies of `GET` workforce and `GET` operation.
//!
//! PostgreSQL stays the source of truth. Triggers on `workforces`, `operations` and `api_keys`
//! announce each changed row on [`INVALIDATION_CHANNEL`] when the change commits, from any
//! process, and the listener of this process (see [`crate::worker::listen_for_work`]) removes the
//! copies. Writers in this process also remove them right after their commit, so a reader in
//! this process never gets a copy older than its own change. Copies are used only while the
//! listener is connected, and none is older than the configured maximum age, which bounds
//! staleness if a notification were ever lost.
//!
//! A copy is stored only when no removal happened during the read that produced it: every
//! removal advances an epoch, and a reader takes the epoch before its query (a [`Ticket`]).
//! A row read before a concurrent commit can therefore not outlive that commit's removal.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Channel on which the triggers of migration `0007` name the rows that changed.
pub const INVALIDATION_CHANNEL: &str = "read_cache_invalidated";

/// Copies kept per kind of row; reaching it empties that kind, which is rare and harmless.
const MAX_ENTRIES: usize = 10_000;

/// The epoch taken before a read; storing its result is allowed only if no removal happened
/// since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

/// The rows named by a notification on [`INVALIDATION_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Workforce {
        region: String,
        name: String,
    },
    Operation(Uuid),
    ApiKey(Uuid),
    /// Anything not understood, which removes every copy.
    Everything,
}

impl Invalidation {
    /// Parses a payload: `workforce/<region>/<name>`, `operation/<id>` or `api_key/<id>`.
    pub fn parse(payload: &str) -> Self {
        let mut parts = payload.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("workforce"), Some(region), Some(name)) => Self::Workforce {
                region: region.to_owned(),
                name: name.to_owned(),
            },
            (Some("operation"), Some(id), None) => {
                id.parse().map_or(Self::Everything, Self::Operation)
            }
            (Some("api_key"), Some(id), None) => id.parse().map_or(Self::Everything, Self::ApiKey),
            _ => Self::Everything,
        }
    }
}

/// A stored copy and when it was read.
struct Entry<V> {
    value: Arc<V>,
    read_at: Instant,
}

struct Table<K, V>(Mutex<HashMap<K, Entry<V>>>);

impl<K: Eq + Hash, V> Table<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        // Each change of the map is one call, so a panic elsewhere cannot leave it half done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Cached rows of one process. Cloning shares them.
#[derive(Clone)]
pub struct ReadCache(Arc<Inner>);

struct Inner {
    /// Zero turns the cache off.
    max_age: Duration,
    /// Set while the listener receives invalidations.
    listening: AtomicBool,
    epoch: AtomicU64,
    api_keys: Table<[u8; 32], crate::auth::api_keys::ApiKeyRow>,
    /// Keyed by [`workforce_key`].
    workforces: Table<String, CachedWorkforce>,
    operations: Table<Uuid, CachedOperation>,
}

/// A workforce's response body with what the handler still needs on every read.
pub struct CachedWorkforce {
    pub row: crate::db::workforces::WorkforceRow,
    /// Whether an operation of the workforce was unfinished at the read.
    pub in_flight: bool,
    pub body: axum::body::Bytes,
    pub etag: axum::http::HeaderValue,
}

/// An operation's response body and its ETag.
pub struct CachedOperation {
    pub body: axum::body::Bytes,
    pub etag: axum::http::HeaderValue,
}

impl ReadCache {
    /// Creates a cache whose copies live at most `max_age`. Zero turns it off.
    pub fn new(max_age: Duration) -> Self {
        Self(Arc::new(Inner {
            max_age,
            listening: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            api_keys: Table::new(),
            workforces: Table::new(),
            operations: Table::new(),
        }))
    }

    /// Creates a cache that stores nothing, for tools and tests that read the database directly.
    pub fn disabled() -> Self {
        Self::new(Duration::ZERO)
    }

    fn enabled(&self) -> bool {
        !self.0.max_age.is_zero() && self.0.listening.load(Ordering::SeqCst)
    }

    /// Marks the listener as connected, after its `LISTEN` succeeded. Everything stored before
    /// is dropped, because changes made while no connection listened were not announced.
    pub fn listening_started(&self) {
        self.invalidate(&Invalidation::Everything);
        self.0.listening.store(true, Ordering::SeqCst);
    }

    /// Marks the listener as lost: until it listens again, every read goes to the database.
    pub fn listening_stopped(&self) {
        self.0.listening.store(false, Ordering::SeqCst);
        self.invalidate(&Invalidation::Everything);
    }

    /// Takes the ticket that a read needs to store its result.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.enabled().then(|| self.0.epoch.load(Ordering::SeqCst)))
    }

    /// Removes the copies that a committed change made stale.
    pub fn invalidate(&self, invalidation: &Invalidation) {
        // The epoch moves first, so a reader that stores after this point finds it changed and
        // stores nothing.
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
        match invalidation {
            Invalidation::Workforce { region, name } => {
                self.0
                    .workforces
                    .lock()
                    .remove(&workforce_key(region, name));
            }
            Invalidation::Operation(id) => {
                self.0.operations.lock().remove(id);
            }
            Invalidation::ApiKey(id) => {
                self.0
                    .api_keys
                    .lock()
                    .retain(|_, entry| entry.value.id != *id);
            }
            Invalidation::Everything => {
                self.0.api_keys.lock().clear();
                self.0.workforces.lock().clear();
                self.0.operations.lock().clear();
            }
        }
    }

    /// Removes the copies of an operation and of its workforce, after a change of this process
    /// committed.
    pub fn invalidate_operation(&self, id: Uuid, region: &str, workforce_name: &str) {
        self.invalidate(&Invalidation::Operation(id));
        self.invalidate(&Invalidation::Workforce {
            region: region.to_owned(),
            name: workforce_name.to_owned(),
        });
    }

    pub fn api_key(&self, hash: &[u8; 32]) -> Option<Arc<crate::auth::api_keys::ApiKeyRow>> {
        self.get(&self.0.api_keys, hash)
    }

    pub fn store_api_key(
        &self,
        ticket: Ticket,
        hash: [u8; 32],
        row: Arc<crate::auth::api_keys::ApiKeyRow>,
    ) {
        self.store(&self.0.api_keys, ticket, hash, row);
    }

    pub fn workforce(&self, region: &str, name: &str) -> Option<Arc<CachedWorkforce>> {
        if !self.enabled() {
            return None;
        }
        // The key is built on the stack, because a cached read makes no other allocation here.
        // A pair too long for the buffer belongs to no valid workforce and is not cached.
        let mut buffer = [0u8; 128];
        let length = region.len() + 1 + name.len();
        if length > buffer.len() {
            return None;
        }
        buffer[..region.len()].copy_from_slice(region.as_bytes());
        buffer[region.len()] = b'/';
        buffer[region.len() + 1..length].copy_from_slice(name.as_bytes());
        let key = std::str::from_utf8(&buffer[..length]).ok()?;
        self.get(&self.0.workforces, key)
    }

    pub fn store_workforce(&self, ticket: Ticket, value: Arc<CachedWorkforce>) {
        let key = workforce_key(&value.row.region, &value.row.name);
        self.store(&self.0.workforces, ticket, key, value);
    }

    pub fn operation(&self, id: Uuid) -> Option<Arc<CachedOperation>> {
        self.get(&self.0.operations, &id)
    }

    pub fn store_operation(&self, ticket: Ticket, id: Uuid, value: Arc<CachedOperation>) {
        self.store(&self.0.operations, ticket, id, value);
    }

    fn get<K, Q, V>(&self, table: &Table<K, V>, key: &Q) -> Option<Arc<V>>
    where
        K: Eq + Hash + std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.enabled() {
            return None;
        }
        let mut map = table.lock();
        let entry = map.get(key)?;
        if entry.read_at.elapsed() < self.0.max_age {
            return Some(entry.value.clone());
        }
        map.remove(key);
        None
    }

    fn store<K: Eq + Hash, V>(&self, table: &Table<K, V>, ticket: Ticket, key: K, value: Arc<V>) {
        let Some(epoch) = ticket.0 else {
            return;
        };
        let mut map = table.lock();
        // Checked under the lock that a removal also takes, after the epoch moved.
        if !self.enabled() || self.0.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                value,
                read_at: Instant::now(),
            },
        );
    }
}

/// Returns the cache key of a workforce: its region and name joined by `/`, which neither a
/// region code nor a workforce name contains.
fn workforce_key(region: &str, name: &str) -> String {
    let mut key = String::with_capacity(region.len() + 1 + name.len());
    key.push_str(region);
    key.push('/');
    key.push_str(name);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening_cache() -> ReadCache {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.listening_started();
        cache
    }

    fn operation(text: &str) -> Arc<CachedOperation> {
        Arc::new(CachedOperation {
            body: axum::body::Bytes::copy_from_slice(text.as_bytes()),
            etag: axum::http::HeaderValue::from_static("\"1\""),
        })
    }

    #[test]
    fn parses_each_payload_kind() {
        let id = Uuid::new_v4();
        assert_eq!(
            Invalidation::parse("workforce/us-east-1/team-a"),
            Invalidation::Workforce {
                region: "us-east-1".into(),
                name: "team-a".into()
            }
        );
        assert_eq!(
            Invalidation::parse(&format!("operation/{id}")),
            Invalidation::Operation(id)
        );
        assert_eq!(
            Invalidation::parse(&format!("api_key/{id}")),
            Invalidation::ApiKey(id)
        );
        assert_eq!(
            Invalidation::parse("operation/not-a-uuid"),
            Invalidation::Everything
        );
        assert_eq!(Invalidation::parse(""), Invalidation::Everything);
    }

    #[test]
    fn stored_copy_is_served_until_invalidated() {
        let cache = listening_cache();
        let id = Uuid::new_v4();
        cache.store_operation(cache.ticket(), id, operation("first"));
        assert_eq!(&cache.operation(id).unwrap().body[..], b"first");

        cache.invalidate(&Invalidation::Operation(id));
        assert!(cache.operation(id).is_none());
    }

    #[test]
    fn read_overlapping_a_removal_is_not_stored() {
        let cache = listening_cache();
        let id = Uuid::new_v4();
        let ticket = cache.ticket();
        // A change commits and is announced while the read runs.
        cache.invalidate(&Invalidation::Operation(id));
        cache.store_operation(ticket, id, operation("read before the change"));
        assert!(cache.operation(id).is_none());
    }

    #[test]
    fn nothing_is_served_without_a_listener() {
        let cache = ReadCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        cache.store_operation(cache.ticket(), id, operation("never stored"));
        cache.listening_started();
        assert!(cache.operation(id).is_none());

        cache.store_operation(cache.ticket(), id, operation("stored"));
        cache.listening_stopped();
        assert!(cache.operation(id).is_none());
    }

    #[test]
    fn copies_expire_after_max_age() {
        let cache = ReadCache::new(Duration::from_millis(20));
        cache.listening_started();
        let id = Uuid::new_v4();
        cache.store_operation(cache.ticket(), id, operation("short-lived"));
        assert!(cache.operation(id).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.operation(id).is_none());
    }

    #[test]
    fn zero_max_age_turns_the_cache_off() {
        let cache = ReadCache::disabled();
        cache.listening_started();
        let id = Uuid::new_v4();
        cache.store_operation(cache.ticket(), id, operation("ignored"));
        assert!(cache.operation(id).is_none());
    }
}
