//! Spend of virtual keys, and of the teams, users and organisations they belong to, and its
//! resets every `budget_duration`: each
//! answered call's cost (its tokens at the answering deployment's configured prices) is added
//! here at once and written to the database in batches (`general_settings.proxy_batch_write_at`,
//! as LiteLLM batches its spend updates), and on shutdown. Budget checks count what is still
//! waiting here, so this replica enforces a budget from the very next request.

use super::cache::KeyCache;
use super::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Whose spend a cost adds to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A key, by its hash.
    Key(String),
    /// A team.
    Team(String),
    /// A user.
    User(String),
    /// An organisation.
    Org(String),
}

impl Scope {
    /// Whether a cached key's budget check reads this scope's spend.
    pub fn covers(&self, info: &super::KeyInfo) -> bool {
        match self {
            Scope::Key(token) => info.token == *token,
            Scope::Team(id) => info.team_id.as_deref() == Some(id.as_str()),
            Scope::User(id) => info.user_id.as_deref() == Some(id.as_str()),
            Scope::Org(id) => info.organization_id.as_deref() == Some(id.as_str()),
        }
    }
}

/// Costs recorded here and not yet written to the database.
#[derive(Debug, Default)]
pub struct SpendLedger {
    pending: Mutex<HashMap<Scope, f64>>,
}

impl SpendLedger {
    /// Adds `cost` to every scope of `scopes`.
    pub fn add(&self, scopes: &[Scope], cost: f64) {
        if !(cost.is_finite() && cost > 0.0) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for scope in scopes {
            *pending.entry(scope.clone()).or_default() += cost;
        }
    }

    /// What `scope` spent here that the database does not hold yet.
    pub fn pending(&self, scope: &Scope) -> f64 {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(scope)
            .copied()
            .unwrap_or(0.0)
    }

    /// Writes what is pending to `store` (each scope's spend grows by its amount in one
    /// `UPDATE`), then forgets the cached keys whose checks read those spends, so that their
    /// next check reads the new ones.
    /// What could not be written stays pending for the next flush.
    pub async fn flush(&self, store: &Store, cache: &KeyCache) -> Result<(), StoreError> {
        let snapshot: Vec<(Scope, f64)> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(s, v)| (s.clone(), *v))
            .collect();
        let mut written = Vec::with_capacity(snapshot.len());
        let mut failed = None;
        for (scope, amount) in snapshot {
            match store.add_spend(&scope, amount).await {
                Ok(()) => written.push((scope, amount)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !written.is_empty() {
            // The keys that read these spends are forgotten before the amounts leave `pending`:
            // a check in between counts them twice (a moment's over-count), never zero times.
            cache.remove_where(|info| written.iter().any(|(scope, _)| scope.covers(info)));
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (scope, amount) in written {
                if let Some(left) = pending.get_mut(&scope) {
                    *left -= amount;
                    if *left <= f64::EPSILON {
                        pending.remove(&scope);
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// [`SpendLedger::flush`], a failure only logged: what was not written is kept for the
    /// next time.
    pub async fn write(&self, store: &Store, cache: &KeyCache) {
        if let Err(e) = self.flush(store, cache).await {
            tracing::warn!("spend not written to the key database (kept for the next try): {e}");
        }
    }
}

/// Returns to 0 the spend of every key, team and user whose `budget_duration` has run out,
/// and sets its next reset a duration from now (LiteLLM's rule); one whose duration was removed
/// or cannot be read resets no more. Each reset happens once, whichever replica gets to it
/// first (the others see it when their cached keys expire). Returns how many this call reset.
pub async fn reset_due_budgets(store: &Store, cache: &KeyCache) -> Result<usize, StoreError> {
    let now = super::duration::now_ms();
    let mut reset = Vec::new();
    for (scope, extra, due) in store.due_budget_resets(now).await? {
        let next = budget_reset_at(&extra, now).ok().flatten();
        if store.reset_budget(&scope, due, next).await? {
            reset.push(scope);
        }
    }
    if !reset.is_empty() {
        cache.remove_where(|info| reset.iter().any(|scope| scope.covers(info)));
    }
    Ok(reset.len())
}

/// When a budget with `extra`'s `budget_duration` next resets, counted from `now` (Unix ms);
/// `None` without one.
pub fn budget_reset_at(
    extra: &serde_json::Map<String, serde_json::Value>,
    now: i64,
) -> Result<Option<i64>, super::duration::DurationError> {
    let Some(text) = extra
        .get("budget_duration")
        .and_then(serde_json::Value::as_str)
    else {
        return Ok(None);
    };
    let every = super::duration::parse(text)?;
    Ok(Some(now.saturating_add(
        i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up_per_scope_and_nothing_else_counts() {
        let ledger = SpendLedger::default();
        let key = Scope::Key("h".into());
        let team = Scope::Team("t".into());
        ledger.add(&[key.clone(), team.clone()], 0.25);
        ledger.add(std::slice::from_ref(&key), 0.5);
        for nothing in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            ledger.add(std::slice::from_ref(&key), nothing);
        }
        assert_eq!(ledger.pending(&key), 0.75);
        assert_eq!(ledger.pending(&team), 0.25);
        assert_eq!(ledger.pending(&Scope::User("u".into())), 0.0);
    }
}
