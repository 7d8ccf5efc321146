//! A bounded cache with a time to live, for lookups that unauthenticated requests can drive
//! (org slugs in webhook paths, API keys in `Authorization` headers).
//!
//! Such a cache must not grow with what strangers send: it holds at most `capacity` entries
//! (expired ones are swept first when it is full; if it is still full, the entry closest to
//! expiry goes), and its keys are SHA-256 digests of what was presented, so a presented API
//! key is never kept in memory as itself and every key costs the same 32 bytes however long
//! the header was. Misses may be cached too (so a flood of one unknown slug is one query per
//! TTL), and stay bounded like the rest.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Key = [u8; 32];

/// A cache of `V` by string key, bounded in entries and in age.
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    map: Mutex<HashMap<Key, (Instant, V)>>,
}

fn digest(key: &str) -> Key {
    Sha256::digest(key.as_bytes()).into()
}

impl<V: Clone> TtlCache<V> {
    /// A cache whose entries live `ttl` and which holds at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<V> {
        TtlCache {
            ttl,
            capacity: capacity.max(1),
            map: Mutex::default(),
        }
    }

    /// The value cached for `key`, if it is younger than the TTL.
    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.map.lock().expect("not poisoned");
        map.get(&digest(key))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Caches `value` for `key`, making room first when the cache is full.
    pub fn insert(&self, key: &str, value: V) {
        let k = digest(key);
        let mut map = self.map.lock().expect("not poisoned");
        if map.len() >= self.capacity && !map.contains_key(&k) {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| *k)
                    .expect("a full map has an entry");
                map.remove(&oldest);
            }
        }
        map.insert(k, (Instant::now(), value));
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) {
        self.map.lock().expect("not poisoned").remove(&digest(key));
    }

    /// How many entries it holds (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.map.lock().expect("not poisoned").len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let c = TtlCache::new(Duration::from_secs(60), 100);
        for i in 0..10_000 {
            c.insert(&format!("slug-{i}"), i);
        }
        assert_eq!(c.len(), 100);
        // The most recent entries are the ones kept.
        assert_eq!(c.get("slug-9999"), Some(9999));
        assert_eq!(c.get("slug-0"), None);
    }

    #[test]
    fn entries_expire_and_expired_ones_are_swept_first() {
        let c = TtlCache::new(Duration::from_millis(30), 2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None, "expired");
        c.insert("c", 3);
        assert_eq!(c.len(), 1, "both expired entries swept to make room");
        c.insert("c", 4);
        assert_eq!(c.get("c"), Some(4), "replacing a key needs no room");
        c.remove("c");
        assert!(c.is_empty());
    }
}
