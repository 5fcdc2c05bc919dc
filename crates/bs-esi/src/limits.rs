//! The budget model: floating-window rate-limit groups and the legacy error limit.
//!
//! Pure logic: every method takes `now` and touches no clock, socket or lock, so the
//! client wraps one `Budget` in a mutex and the unit tests below drive it with synthetic
//! instants. The model is deliberately pessimistic:
//!
//! * every request in flight on a floating-window route has 2 tokens reserved (a 2xx);
//!   a 4xx costs 5, which `rate_limit_margin` absorbs;
//! * server headers are trusted only when they show *less* capacity than the local
//!   model (other processes on the same IP), never more;
//! * every request in flight on an error-limited route counts as a potential error,
//!   so concurrent requests cannot together overrun the error budget;
//! * a route whose regime is not known yet is probed with one request at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Token cost of a response in a floating-window group (ESI rate-limiting docs).
pub fn token_cost(status: u16) -> u32 {
    match status {
        200..=299 => 2,
        300..=399 => 1,
        429 => 0,
        400..=499 => 5,
        _ => 0,
    }
}

/// Whether a status counts against the legacy error limit ("non-2xx/3xx").
pub fn is_error_status(status: u16) -> bool {
    !(200..400).contains(&status)
}

/// Parses `X-Ratelimit-Limit` values such as `150/15m`, `3600/900s`, `60/1h`.
pub fn parse_limit(value: &str) -> Option<(u32, Duration)> {
    let (tokens, window) = value.trim().split_once('/')?;
    let tokens = tokens.trim().parse().ok()?;
    let window = window.trim();
    let split = window
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(window.len());
    let (number, unit) = window.split_at(split);
    let number: u64 = number.parse().ok()?;
    let secs = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return None,
    };
    Some((tokens, Duration::from_secs(secs)))
}

/// Floating-window headers of one response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateHeaders {
    pub group: String,
    pub limit: u32,
    pub window: Duration,
    pub remaining: Option<u32>,
}

/// Legacy error-limit headers of one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorHeaders {
    pub remain: u32,
    pub reset: Duration,
}

/// What the budget needs to know about a finished attempt.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `None` when no response arrived (timeout, connection error).
    pub status: Option<u16>,
    pub rate: Option<RateHeaders>,
    pub errors: Option<ErrorHeaders>,
    pub retry_after: Option<Duration>,
}

/// Why a request may not go yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    RateLimit {
        group: String,
    },
    ErrorBudget,
    /// Another request is probing the route's regime, or reservations fill the group;
    /// both clear when a response completes.
    InFlight,
}

/// The outcome of asking for permission to send.
#[derive(Debug)]
pub enum Decision {
    Go(Ticket),
    Wait { wait: Duration, reason: WaitReason },
}

/// Permission to send one request; hand it back to [`Budget::complete`].
#[derive(Debug)]
#[must_use]
pub struct Ticket {
    endpoint: &'static str,
    group: Option<String>,
    reserved: u32,
    counts_as_error_risk: bool,
    probe: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Regime {
    Floating(String),
    Legacy,
}

#[derive(Debug)]
struct Group {
    limit: u32,
    window: Duration,
    spent: VecDeque<(Instant, u32)>,
    reserved: u32,
    blocked_until: Option<Instant>,
}

impl Group {
    fn prune(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.spent.front() {
            if now.saturating_duration_since(at) >= self.window {
                self.spent.pop_front();
            } else {
                break;
            }
        }
    }

    fn spent_total(&self) -> u32 {
        self.spent.iter().map(|&(_, c)| c).sum()
    }
}

#[derive(Debug, Default)]
struct ErrorWindow {
    remain: Option<u32>,
    reset_at: Option<Instant>,
    in_flight: u32,
    blocked_until: Option<Instant>,
}

/// The whole budget of one client (per IP and application in ESI's terms).
#[derive(Debug)]
pub struct Budget {
    error_margin: u32,
    rate_margin: u32,
    regimes: HashMap<&'static str, Regime>,
    probing: HashSet<&'static str>,
    groups: HashMap<String, Group>,
    errors: ErrorWindow,
    /// 429s without group headers block the endpoint itself.
    endpoint_blocked: HashMap<&'static str, Instant>,
}

/// Used when a 429 carries no `Retry-After` or a 420 no reset.
const DEFAULT_BLOCK: Duration = Duration::from_secs(60);

/// A short re-check interval for waits that end when some response completes.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(100);

impl Budget {
    pub fn new(error_margin: u32, rate_margin: u32) -> Self {
        Self {
            error_margin,
            rate_margin,
            regimes: HashMap::new(),
            probing: HashSet::new(),
            groups: HashMap::new(),
            errors: ErrorWindow::default(),
            endpoint_blocked: HashMap::new(),
        }
    }

    /// Errors ESI still allows in the current window, if known.
    pub fn error_remain(&self, now: Instant) -> Option<u32> {
        match self.errors.reset_at {
            Some(reset) if reset > now => self.errors.remain,
            _ => None,
        }
    }

    /// Tokens this client believes are left in `group`.
    #[cfg(test)]
    pub fn tokens_left(&mut self, group: &str, now: Instant) -> Option<u32> {
        let g = self.groups.get_mut(group)?;
        g.prune(now);
        Some(g.limit.saturating_sub(g.spent_total() + g.reserved))
    }

    /// Asks whether a request to `endpoint` may be sent now.
    pub fn try_acquire(&mut self, endpoint: &'static str, now: Instant) -> Decision {
        if let Some(until) = self.errors.blocked_until {
            if until > now {
                return Decision::Wait {
                    wait: until - now,
                    reason: WaitReason::ErrorBudget,
                };
            }
            self.errors.blocked_until = None;
        }
        if let Some(&until) = self.endpoint_blocked.get(endpoint) {
            if until > now {
                return Decision::Wait {
                    wait: until - now,
                    reason: WaitReason::RateLimit {
                        group: endpoint.to_owned(),
                    },
                };
            }
            self.endpoint_blocked.remove(endpoint);
        }
        match self.regimes.get(endpoint).cloned() {
            Some(Regime::Floating(group)) => self.acquire_floating(endpoint, group, now),
            Some(Regime::Legacy) => match self.error_gate(now) {
                Some(wait) => wait,
                None => {
                    self.errors.in_flight += 1;
                    Decision::Go(Ticket {
                        endpoint,
                        group: None,
                        reserved: 0,
                        counts_as_error_risk: true,
                        probe: false,
                    })
                }
            },
            None => {
                if self.probing.contains(endpoint) {
                    return Decision::Wait {
                        wait: IN_FLIGHT_RECHECK,
                        reason: WaitReason::InFlight,
                    };
                }
                if let Some(wait) = self.error_gate(now) {
                    return wait;
                }
                self.probing.insert(endpoint);
                self.errors.in_flight += 1;
                Decision::Go(Ticket {
                    endpoint,
                    group: None,
                    reserved: 0,
                    counts_as_error_risk: true,
                    probe: true,
                })
            }
        }
    }

    fn error_gate(&mut self, now: Instant) -> Option<Decision> {
        let reset_at = self.errors.reset_at?;
        if reset_at <= now {
            // A new fixed window: the budget is full again until a header says otherwise.
            self.errors.remain = None;
            self.errors.reset_at = None;
            return None;
        }
        let remain = self.errors.remain?;
        if remain.saturating_sub(self.errors.in_flight) <= self.error_margin {
            return Some(Decision::Wait {
                wait: reset_at - now,
                reason: WaitReason::ErrorBudget,
            });
        }
        None
    }

    fn acquire_floating(&mut self, endpoint: &'static str, name: String, now: Instant) -> Decision {
        let margin = self.rate_margin;
        let Some(g) = self.groups.get_mut(&name) else {
            // Regime known but group state lost cannot happen; treat as unknown.
            self.regimes.remove(endpoint);
            return self.try_acquire(endpoint, now);
        };
        if let Some(until) = g.blocked_until {
            if until > now {
                return Decision::Wait {
                    wait: until - now,
                    reason: WaitReason::RateLimit { group: name },
                };
            }
            g.blocked_until = None;
        }
        g.prune(now);
        let need = token_cost(200) + margin;
        let used = g.spent_total() + g.reserved;
        if used + need <= g.limit {
            g.reserved += token_cost(200);
            return Decision::Go(Ticket {
                endpoint,
                group: Some(name),
                reserved: token_cost(200),
                counts_as_error_risk: false,
                probe: false,
            });
        }
        // Find the moment enough spent tokens slide out of the window.
        let mut freed = 0;
        for &(at, cost) in &g.spent {
            freed += cost;
            if used - freed + need <= g.limit {
                return Decision::Wait {
                    wait: (at + g.window).saturating_duration_since(now),
                    reason: WaitReason::RateLimit { group: name },
                };
            }
        }
        Decision::Wait {
            wait: IN_FLIGHT_RECHECK,
            reason: WaitReason::InFlight,
        }
    }

    /// Records the result of the attempt that `ticket` allowed.
    pub fn complete(&mut self, ticket: Ticket, seen: &Observed, now: Instant) {
        if ticket.probe {
            self.probing.remove(ticket.endpoint);
        }
        if ticket.counts_as_error_risk {
            self.errors.in_flight = self.errors.in_flight.saturating_sub(1);
        }
        if let Some(g) = ticket.group.as_ref().and_then(|n| self.groups.get_mut(n)) {
            g.reserved = g.reserved.saturating_sub(ticket.reserved);
        }

        // Learn the route's regime from its headers (they are mutually exclusive).
        if let Some(rate) = &seen.rate {
            self.regimes
                .insert(ticket.endpoint, Regime::Floating(rate.group.clone()));
        } else if seen.errors.is_some() {
            self.regimes.insert(ticket.endpoint, Regime::Legacy);
        } else if seen.status.is_some_and(|s| s != 429) && ticket.probe {
            // A route that answers without either header family: treat it as
            // error-limited (the safe side) rather than probing it forever.
            self.regimes.insert(ticket.endpoint, Regime::Legacy);
        }

        let floating_group = seen.rate.as_ref().map(|r| r.group.clone()).or(ticket.group);
        match &floating_group {
            Some(name) => self.record_floating(name, seen, now),
            None => self.record_legacy(ticket.endpoint, seen, now),
        }
        if let Some(h) = seen.errors {
            self.record_error_headers(h, now);
        }
        if seen.status == Some(420) {
            let until = self
                .errors
                .reset_at
                .filter(|&r| r > now)
                .unwrap_or(now + DEFAULT_BLOCK);
            self.errors.remain = Some(0);
            self.errors.blocked_until = Some(until);
        }
    }

    fn record_floating(&mut self, name: &str, seen: &Observed, now: Instant) {
        let group = self.groups.entry(name.to_owned()).or_insert_with(|| Group {
            limit: seen.rate.as_ref().map_or(0, |r| r.limit),
            window: seen
                .rate
                .as_ref()
                .map_or(Duration::from_secs(900), |r| r.window),
            spent: VecDeque::new(),
            reserved: 0,
            blocked_until: None,
        });
        if let Some(rate) = &seen.rate {
            group.limit = rate.limit;
            group.window = rate.window;
        }
        group.prune(now);
        // No response: assume the server may have counted a success.
        let cost = seen.status.map_or(token_cost(200), token_cost);
        if cost > 0 {
            group.spent.push_back((now, cost));
        }
        // On a 429 `Retry-After` is the authority; its Remaining of 0 would otherwise
        // block the group for a whole window.
        let remaining = seen.rate.as_ref().and_then(|r| r.remaining);
        if let Some(remaining) = remaining.filter(|_| seen.status != Some(429)) {
            let server_used = group.limit.saturating_sub(remaining);
            let local = group.spent_total() + group.reserved;
            if server_used > local {
                // Someone else spends from our bucket: adopt the lower capacity.
                group.spent.push_back((now, server_used - local));
            }
        }
        if seen.status == Some(429) {
            group.blocked_until = Some(now + seen.retry_after.unwrap_or(DEFAULT_BLOCK));
        }
    }

    fn record_legacy(&mut self, endpoint: &'static str, seen: &Observed, now: Instant) {
        let is_error = seen.status.is_none_or(is_error_status);
        if is_error && seen.errors.is_none() {
            // Timeouts count too; without headers, decrement our own estimate.
            if let (Some(remain), Some(reset)) = (self.errors.remain, self.errors.reset_at)
                && reset > now
            {
                self.errors.remain = Some(remain.saturating_sub(1));
            }
        }
        if seen.status == Some(429) {
            self.endpoint_blocked
                .insert(endpoint, now + seen.retry_after.unwrap_or(DEFAULT_BLOCK));
        }
    }

    fn record_error_headers(&mut self, h: ErrorHeaders, now: Instant) {
        let reset_at = now + h.reset;
        let same_window = self
            .errors
            .reset_at
            .is_some_and(|r| r > now && r.max(reset_at) - r.min(reset_at) < Duration::from_secs(2));
        if same_window {
            // Responses arrive out of order; the lowest report of this window wins.
            let remain = self.errors.remain.map_or(h.remain, |r| r.min(h.remain));
            self.errors.remain = Some(remain);
        } else {
            self.errors.remain = Some(h.remain);
            self.errors.reset_at = Some(reset_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(d: Decision) -> Ticket {
        match d {
            Decision::Go(t) => t,
            Decision::Wait { wait, reason } => panic!("expected go, got wait {wait:?} {reason:?}"),
        }
    }

    fn floating(status: u16, remaining: u32) -> Observed {
        Observed {
            status: Some(status),
            rate: Some(RateHeaders {
                group: "killmail".into(),
                limit: 20,
                window: Duration::from_secs(10),
                remaining: Some(remaining),
            }),
            ..Observed::default()
        }
    }

    fn legacy(status: u16, remain: u32, reset: u64) -> Observed {
        Observed {
            status: Some(status),
            errors: Some(ErrorHeaders {
                remain,
                reset: Duration::from_secs(reset),
            }),
            ..Observed::default()
        }
    }

    #[test]
    fn parses_limit_header_units() {
        assert_eq!(
            parse_limit("150/15m"),
            Some((150, Duration::from_secs(900)))
        );
        assert_eq!(
            parse_limit("3600/900s"),
            Some((3600, Duration::from_secs(900)))
        );
        assert_eq!(parse_limit("60/1h"), Some((60, Duration::from_secs(3600))));
        assert_eq!(parse_limit("x/15m"), None);
        assert_eq!(parse_limit("10/5d"), None);
    }

    #[test]
    fn unknown_route_is_probed_one_at_a_time() {
        let mut b = Budget::new(5, 2);
        let t0 = Instant::now();
        let probe = go(b.try_acquire("killmail", t0));
        assert!(matches!(
            b.try_acquire("killmail", t0),
            Decision::Wait {
                reason: WaitReason::InFlight,
                ..
            }
        ));
        b.complete(probe, &floating(200, 18), t0);
        let _second = go(b.try_acquire("killmail", t0));
    }

    #[test]
    fn floating_group_waits_for_oldest_tokens_to_slide_out() {
        let mut b = Budget::new(5, 2);
        let t0 = Instant::now();
        let probe = go(b.try_acquire("killmail", t0));
        b.complete(probe, &floating(200, 18), t0);
        // 20 tokens, margin 2: 18 usable, 2 spent, so 8 more successes fit.
        let t1 = t0 + Duration::from_secs(1);
        for k in 1..=8 {
            let t = go(b.try_acquire("killmail", t1));
            b.complete(t, &floating(200, 18 - 2 * k), t1);
        }
        match b.try_acquire("killmail", t1) {
            Decision::Wait { wait, reason } => {
                assert_eq!(
                    reason,
                    WaitReason::RateLimit {
                        group: "killmail".into()
                    }
                );
                assert_eq!(wait, Duration::from_secs(9));
            }
            Decision::Go(_) => panic!("group should be full"),
        }
        let _after = go(b.try_acquire("killmail", t0 + Duration::from_secs(10)));
    }

    #[test]
    fn lower_server_remaining_is_adopted_higher_is_ignored() {
        let mut b = Budget::new(5, 0);
        let t0 = Instant::now();
        let t = go(b.try_acquire("killmail", t0));
        // The server says 10 are used (someone else spent 8): adopt.
        b.complete(t, &floating(200, 10), t0);
        assert_eq!(b.tokens_left("killmail", t0), Some(10));
        let t = go(b.try_acquire("killmail", t0));
        // A later, more generous report must not give tokens back.
        b.complete(t, &floating(200, 19), t0);
        assert_eq!(b.tokens_left("killmail", t0), Some(8));
    }

    #[test]
    fn status_429_blocks_the_group_for_retry_after() {
        let mut b = Budget::new(5, 0);
        let t0 = Instant::now();
        let t = go(b.try_acquire("killmail", t0));
        let mut seen = floating(429, 0);
        seen.retry_after = Some(Duration::from_secs(3));
        b.complete(t, &seen, t0);
        assert!(matches!(
            b.try_acquire("killmail", t0 + Duration::from_secs(2)),
            Decision::Wait { .. }
        ));
        let _ = go(b.try_acquire("killmail", t0 + Duration::from_secs(3)));
    }

    #[test]
    fn error_budget_stops_at_margin_counting_in_flight() {
        let mut b = Budget::new(3, 0);
        let t0 = Instant::now();
        let t = go(b.try_acquire("names", t0));
        b.complete(t, &legacy(404, 6, 30), t0);
        // 6 remain, margin 3: three may be in flight (6-2 = 4 > 3), a fourth may not.
        let a = go(b.try_acquire("names", t0));
        let c = go(b.try_acquire("names", t0));
        let d = go(b.try_acquire("names", t0));
        assert!(matches!(
            b.try_acquire("names", t0),
            Decision::Wait {
                reason: WaitReason::ErrorBudget,
                ..
            }
        ));
        b.complete(a, &legacy(200, 6, 30), t0);
        b.complete(c, &legacy(200, 6, 30), t0);
        b.complete(d, &legacy(200, 6, 30), t0);
        // Until the window resets, the gate stays shut after more errors.
        let t = go(b.try_acquire("names", t0));
        b.complete(t, &legacy(500, 3, 30), t0);
        match b.try_acquire("names", t0 + Duration::from_secs(10)) {
            Decision::Wait { wait, .. } => assert_eq!(wait, Duration::from_secs(20)),
            Decision::Go(_) => panic!("budget at margin"),
        }
        let _ = go(b.try_acquire("names", t0 + Duration::from_secs(30)));
    }

    #[test]
    fn out_of_order_reports_in_one_window_keep_the_lowest() {
        let mut b = Budget::new(0, 0);
        let t0 = Instant::now();
        let t = go(b.try_acquire("names", t0));
        b.complete(t, &legacy(404, 50, 30), t0);
        let t = go(b.try_acquire("names", t0));
        b.complete(t, &legacy(200, 55, 30), t0);
        assert_eq!(b.error_remain(t0), Some(50));
        // A new window (reset jumps up) replaces the value.
        let t1 = t0 + Duration::from_secs(31);
        let t = go(b.try_acquire("names", t1));
        b.complete(t, &legacy(200, 100, 60), t1);
        assert_eq!(b.error_remain(t1), Some(100));
    }

    #[test]
    fn status_420_blocks_every_route_until_reset() {
        let mut b = Budget::new(0, 0);
        let t0 = Instant::now();
        let t = go(b.try_acquire("names", t0));
        b.complete(t, &legacy(420, 0, 12), t0);
        assert!(matches!(
            b.try_acquire("killmail", t0),
            Decision::Wait {
                reason: WaitReason::ErrorBudget,
                ..
            }
        ));
        let _ = go(b.try_acquire("killmail", t0 + Duration::from_secs(12)));
    }

    #[test]
    fn token_costs_follow_the_documented_table() {
        assert_eq!(token_cost(200), 2);
        assert_eq!(token_cost(304), 1);
        assert_eq!(token_cost(404), 5);
        assert_eq!(token_cost(429), 0);
        assert_eq!(token_cost(503), 0);
        assert!(is_error_status(404) && is_error_status(503) && !is_error_status(304));
    }
}
