//! The key cache: a looked-up key is trusted for a short TTL, so the hot path does not ask the
//! database on every request. Writes on this instance invalidate at once; writes on another
//! replica arrive over Redis, or at the latest when the TTL runs out.

use super::KeyInfo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Entries kept at most; past this, expired ones are dropped, and if that is not enough, all.
const MAX_ENTRIES: usize = 100_000;

/// Keys by hash, each with when it was read.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<KeyInfo>)>>,
    /// Bumped by every invalidation, so a read that raced one is not cached.
    generation: AtomicU64,
}

impl KeyCache {
    /// An empty cache trusting entries for `ttl` (zero: never cache).
    pub fn new(ttl: Duration) -> Self {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`KeyCache::insert`] for a read starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A fresh entry for `token`.
    pub fn get(&self, token: &str) -> Option<Arc<KeyInfo>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(token)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, info)| info.clone())
    }

    /// Caches `info`, unless something was invalidated since `generation` was taken (then the
    /// read may predate a delete, and must not outlive it).
    pub fn insert(&self, generation: u64, info: Arc<KeyInfo>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(info.token.clone(), (Instant::now(), info));
    }

    /// Forgets one key.
    pub fn remove(&self, token: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(token);
    }

    /// Forgets the keys `stale` picks (those whose spend, or whose team's, user's or
    /// organisation's, was just written).
    pub fn remove_where(&self, stale: impl Fn(&KeyInfo) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|_, (_, info)| !stale(info));
    }

    /// Forgets every key (after a team, user or organisation changed, or Redis messages may
    /// have been missed).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(token: &str) -> Arc<KeyInfo> {
        Arc::new(KeyInfo {
            token: token.to_owned(),
            ..KeyInfo::default()
        })
    }

    #[test]
    fn entries_expire_and_invalidation_wins_over_a_racing_read() {
        let c = KeyCache::new(Duration::from_millis(50));
        let g = c.generation();
        c.insert(g, info("a"));
        assert!(c.get("a").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("a").is_none(), "expired");

        let g = c.generation();
        c.remove("a");
        c.insert(g, info("a"));
        assert!(
            c.get("a").is_none(),
            "a read from before the delete is not cached"
        );

        let g = c.generation();
        c.insert(g, info("b"));
        c.insert(g, info("d"));
        c.remove_where(|i| i.token == "d");
        assert!(c.get("d").is_none() && c.get("b").is_some());
        c.clear();
        assert!(c.get("b").is_none());

        let never = KeyCache::new(Duration::ZERO);
        never.insert(never.generation(), info("c"));
        assert!(never.get("c").is_none());
    }
}
