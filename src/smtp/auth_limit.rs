//! Failed SMTP AUTH attempts counted per client address, across connections and
//! listeners, so that reconnecting does not reset a password guesser's budget. Once a
//! client reaches the limit within the window, its AUTH commands are refused with
//! 454 4.7.0 until the window ends, without checking the password at all: a locked-out
//! guesser costs no argon2 work either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Clients remembered at once, at most: a flood from many addresses costs a bounded map.
const MAX_CLIENTS: usize = 16_384;

/// Shared by every listener of the daemon; clones share the counts.
#[derive(Debug, Clone)]
pub struct AuthLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the first failure of this window happened.
    since: Instant,
}

impl AuthLimiter {
    /// At most `max_failures` failed attempts per client address within `window`.
    pub fn new(max_failures: u32, window: Duration) -> AuthLimiter {
        AuthLimiter {
            inner: Arc::new(Inner {
                max_failures: max_failures.max(1),
                window,
                clients: Mutex::default(),
            }),
        }
    }

    /// Whether `ip` may try to authenticate now. Unix-socket clients (no address) always may.
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        self.allows_at(ip, Instant::now())
    }

    /// Records the outcome of a checked attempt: a failure counts, a success forgets the
    /// client's failures.
    pub fn record(&self, ip: Option<IpAddr>, ok: bool) {
        self.record_at(ip, ok, Instant::now());
    }

    fn allows_at(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let Some(ip) = ip else { return true };
        let clients = self.clients();
        match clients.get(&ip.to_canonical()) {
            Some(f) => f.count < self.inner.max_failures || self.expired(f, now),
            None => true,
        }
    }

    fn record_at(&self, ip: Option<IpAddr>, ok: bool, now: Instant) {
        let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
            return;
        };
        let mut clients = self.clients();
        if ok {
            clients.remove(&ip);
            return;
        }
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
            clients.retain(|_, f| !self.expired(f, now));
            if clients.len() >= MAX_CLIENTS {
                // Still full of live entries: forget the oldest window to make room.
                if let Some(oldest) = clients.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
                    clients.remove(&oldest);
                }
            }
        }
        let entry = clients.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
        });
        if self.expired(entry, now) {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    fn expired(&self, f: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(f.since) >= self.inner.window
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_is_locked_out_after_the_limit_until_the_window_ends() {
        let limiter = AuthLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allows_at(Some(A), t0));
            limiter.record_at(Some(A), false, t0);
        }
        assert!(!limiter.allows_at(Some(A), t0 + Duration::from_secs(59)));
        assert!(
            limiter.allows_at(Some(B), t0),
            "other clients are not affected"
        );
        assert!(
            limiter.allows_at(None, t0),
            "unix-socket clients are never limited"
        );
        assert!(limiter.allows_at(Some(A), t0 + Duration::from_secs(60)));
        // The next failure starts a fresh window.
        limiter.record_at(Some(A), false, t0 + Duration::from_secs(61));
        assert!(limiter.allows_at(Some(A), t0 + Duration::from_secs(61)));
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let limiter = AuthLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.record_at(Some(A), false, t0);
        limiter.record_at(Some(A), true, t0);
        limiter.record_at(Some(A), false, t0);
        assert!(limiter.allows_at(Some(A), t0));
    }

    #[test]
    fn an_ipv4_client_is_one_client_over_ipv6_too() {
        let limiter = AuthLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        limiter.record_at(Some(mapped), false, t0);
        assert!(!limiter.allows_at(Some(A), t0));
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_addresses() {
        let limiter = AuthLimiter::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            limiter.record_at(Some(IpAddr::V4(i.into())), false, t0);
        }
        assert!(limiter.clients().len() <= MAX_CLIENTS);
    }
}
