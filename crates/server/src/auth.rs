//! Token authentication with a short-lived cache, and the maintenance switch.
//!
//! A looked-up token is cached for `refresh_interval` (≤ 5 s), so revocation takes effect on
//! every running server within that time without a database read per request. Unknown tokens
//! are cached too (a random 256-bit secret cannot become valid later). Secrets are never kept:
//! the cache is keyed by hash. This module knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{Scope, Token, TokenSecret};
use crate::store::{Store, StoreResult};

/// Entries kept at most; past it the cache starts afresh (a flood of made-up tokens cannot
/// grow memory without bound).
const MAX_ENTRIES: usize = 100_000;

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token header, or an empty one.
    Missing,
    /// Unknown, revoked, malformed, or of the wrong scope.
    Invalid,
}

/// Token hash → (when it was read, what the store said).
type TokenCache = HashMap<[u8; 32], (Instant, Option<Token>)>;

#[derive(Debug)]
pub struct Auth {
    ttl: Duration,
    cache: Mutex<TokenCache>,
}

impl Auth {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a raw header value (`None` when absent) against the store.
    pub async fn check(
        &self,
        store: &Store,
        header: Option<&[u8]>,
        scope: Scope,
    ) -> StoreResult<Result<Token, AuthFailure>> {
        let raw = match header {
            None => return Ok(Err(AuthFailure::Missing)),
            Some(b) if b.trim_ascii().is_empty() => return Ok(Err(AuthFailure::Missing)),
            Some(b) => b.trim_ascii(),
        };
        let Some(secret) = std::str::from_utf8(raw).ok().and_then(TokenSecret::parse) else {
            return Ok(Err(AuthFailure::Invalid));
        };
        let hash = secret.hash();
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&hash.0)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, t)| t.clone())
        };
        let token = match cached {
            Some(t) => t,
            None => {
                let found = store.read_quick(move |s| s.token_by_hash(&hash)).await?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= MAX_ENTRIES {
                    cache.clear();
                }
                cache.insert(hash.0, (Instant::now(), found.clone()));
                found
            }
        };
        Ok(match token {
            Some(t) if t.revoked_at.is_none() && t.scope == scope => Ok(t),
            _ => Err(AuthFailure::Invalid),
        })
    }
}
