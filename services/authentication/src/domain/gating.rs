//! Corporation/alliance gating of the primary character.
//!
//! Order (deny wins): a denied corporation or alliance is refused whatever else is
//! configured; then, if membership is not required, everyone else is allowed; otherwise
//! an allowed corporation or alliance is required. Only the account's primary
//! character is gated (alts are never gated), at login and again in the background.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::rbac::Role;

/// The `auth_config` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatingConfig {
    /// When true, only the allow lists get in. When false, everyone not denied does.
    pub require_membership: bool,
    pub allowed_corporations: BTreeSet<i64>,
    pub allowed_alliances: BTreeSet<i64>,
    pub denied_corporations: BTreeSet<i64>,
    pub denied_alliances: BTreeSet<i64>,
    /// The role a new account gets in every feature except `admin` (`None`: no role).
    pub default_role: Option<Role>,
}

impl Default for GatingConfig {
    fn default() -> Self {
        Self {
            require_membership: false,
            allowed_corporations: BTreeSet::new(),
            allowed_alliances: BTreeSet::new(),
            denied_corporations: BTreeSet::new(),
            denied_alliances: BTreeSet::new(),
            default_role: Some(Role::User),
        }
    }
}

/// Where a character stands: its corporation (always) and alliance (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affiliation {
    pub corporation_id: i64,
    pub alliance_id: Option<i64>,
}

/// The gate's answer, with the reason shown to users and written to the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateDecision {
    Allowed(&'static str),
    Denied(&'static str),
}

impl GateDecision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed(_))
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Allowed(r) | Self::Denied(r) => r,
        }
    }
}

impl GatingConfig {
    /// Whether deciding needs the character's affiliation at all.
    pub fn needs_affiliation(&self) -> bool {
        self.require_membership
            || !self.denied_corporations.is_empty()
            || !self.denied_alliances.is_empty()
    }

    /// The gate for a primary character with `affiliation` (`None`: unknown).
    /// An unknown affiliation passes only when no rule needs it.
    pub fn check(&self, affiliation: Option<Affiliation>) -> GateDecision {
        let Some(a) = affiliation else {
            return if self.needs_affiliation() {
                GateDecision::Denied("affiliation_unknown")
            } else {
                GateDecision::Allowed("membership_not_required")
            };
        };
        if self.denied_corporations.contains(&a.corporation_id) {
            return GateDecision::Denied("corporation_denied");
        }
        if a.alliance_id
            .is_some_and(|id| self.denied_alliances.contains(&id))
        {
            return GateDecision::Denied("alliance_denied");
        }
        if !self.require_membership {
            return GateDecision::Allowed("membership_not_required");
        }
        if self.allowed_corporations.contains(&a.corporation_id) {
            return GateDecision::Allowed("corporation_allowed");
        }
        if a.alliance_id
            .is_some_and(|id| self.allowed_alliances.contains(&id))
        {
            return GateDecision::Allowed("alliance_allowed");
        }
        GateDecision::Denied("not_a_member")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aff(corp: i64, alliance: Option<i64>) -> Option<Affiliation> {
        Some(Affiliation {
            corporation_id: corp,
            alliance_id: alliance,
        })
    }

    #[test]
    fn deny_wins_over_allow() {
        let cfg = GatingConfig {
            require_membership: true,
            allowed_alliances: [99].into(),
            denied_corporations: [7].into(),
            ..GatingConfig::default()
        };
        assert_eq!(
            cfg.check(aff(7, Some(99))),
            GateDecision::Denied("corporation_denied")
        );
        assert_eq!(
            cfg.check(aff(8, Some(99))),
            GateDecision::Allowed("alliance_allowed")
        );
        assert_eq!(
            cfg.check(aff(8, None)),
            GateDecision::Denied("not_a_member")
        );
        assert_eq!(cfg.check(None), GateDecision::Denied("affiliation_unknown"));
    }

    #[test]
    fn deny_lists_apply_without_required_membership() {
        let cfg = GatingConfig {
            denied_alliances: [5].into(),
            ..GatingConfig::default()
        };
        assert_eq!(
            cfg.check(aff(1, Some(5))),
            GateDecision::Denied("alliance_denied")
        );
        assert!(cfg.check(aff(1, Some(6))).is_allowed());
        assert!(!cfg.check(None).is_allowed());
    }

    #[test]
    fn open_by_default_and_empty_allow_lists_admit_nobody_when_required() {
        assert!(GatingConfig::default().check(None).is_allowed());
        let closed = GatingConfig {
            require_membership: true,
            ..GatingConfig::default()
        };
        assert!(!closed.check(aff(1, Some(2))).is_allowed());
        let corp = GatingConfig {
            require_membership: true,
            allowed_corporations: [1].into(),
            ..closed
        };
        assert_eq!(
            corp.check(aff(1, None)),
            GateDecision::Allowed("corporation_allowed")
        );
    }
}
