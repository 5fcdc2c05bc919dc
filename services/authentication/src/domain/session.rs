//! Session lifetime: an idle timeout (since the last request) and an absolute one
//! (since login), whichever comes first.

use chrono::{DateTime, TimeDelta, Utc};

/// How long sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: TimeDelta,
    pub absolute: TimeDelta,
    /// `last_seen` is written at most this often (a write per request is waste).
    pub touch_every: TimeDelta,
}

/// A stored session's state at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Active { touch: bool },
    IdleExpired,
    AbsoluteExpired,
    Revoked,
}

/// The times a stored session carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimes {
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked: bool,
}

impl SessionPolicy {
    pub fn state(&self, s: SessionTimes, now: DateTime<Utc>) -> SessionState {
        if s.revoked {
            return SessionState::Revoked;
        }
        if now >= s.created_at + self.absolute {
            return SessionState::AbsoluteExpired;
        }
        if now >= s.last_seen_at + self.idle {
            return SessionState::IdleExpired;
        }
        SessionState::Active {
            touch: now >= s.last_seen_at + self.touch_every,
        }
    }

    /// When a session created at `created_at` expires at the latest.
    pub fn absolute_expiry(&self, created_at: DateTime<Utc>) -> DateTime<Utc> {
        created_at + self.absolute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let p = SessionPolicy {
            idle: TimeDelta::hours(1),
            absolute: TimeDelta::hours(8),
            touch_every: TimeDelta::minutes(1),
        };
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut s = SessionTimes {
            created_at: t0,
            last_seen_at: t0,
            revoked: false,
        };
        assert_eq!(p.state(s, t0), SessionState::Active { touch: false });
        assert_eq!(
            p.state(s, t0 + TimeDelta::minutes(2)),
            SessionState::Active { touch: true }
        );
        assert_eq!(
            p.state(s, t0 + TimeDelta::hours(1)),
            SessionState::IdleExpired
        );
        s.last_seen_at = t0 + TimeDelta::hours(7) + TimeDelta::minutes(30);
        assert_eq!(
            p.state(s, t0 + TimeDelta::hours(7) + TimeDelta::minutes(45)),
            SessionState::Active { touch: true }
        );
        assert_eq!(
            p.state(s, t0 + TimeDelta::hours(8)),
            SessionState::AbsoluteExpired
        );
        s.revoked = true;
        assert_eq!(p.state(s, t0), SessionState::Revoked);
    }
}
