//! Feature-scoped role-based access control.
//!
//! Every account holds at most one role per feature on the ladder
//! User (10) < FC (20) < Director (30) < Admin (40); SuperAdmin is a flag on the
//! account that allows everything. An action needs a minimum rank in the feature it
//! is asked about; unknown features and actions are denied (fail closed), and a
//! blocked account is denied everything, SuperAdmin included.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The features access is decided for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Feature {
    #[serde(rename = "battle-reports")]
    BattleReports,
    #[serde(rename = "battle-intel")]
    BattleIntel,
    #[serde(rename = "search")]
    Search,
    #[serde(rename = "notifications")]
    Notifications,
    #[serde(rename = "admin")]
    Admin,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Self::BattleReports,
        Self::BattleIntel,
        Self::Search,
        Self::Notifications,
        Self::Admin,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::BattleReports => "battle-reports",
            Self::BattleIntel => "battle-intel",
            Self::Search => "search",
            Self::Notifications => "notifications",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Feature {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|f| f.key() == s).ok_or(())
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The role ladder; the derived order is the rank order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Fc,
    Director,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::User, Self::Fc, Self::Director, Self::Admin];

    pub fn key(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Fc => "fc",
            Self::Director => "director",
            Self::Admin => "admin",
        }
    }

    pub fn rank(self) -> i64 {
        match self {
            Self::User => 10,
            Self::Fc => 20,
            Self::Director => 30,
            Self::Admin => 40,
        }
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|r| r.key() == s).ok_or(())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// What a caller wants to do within a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read the feature's pages and data.
    View,
    /// Create things in it (saved filters, subscriptions, reports).
    Create,
    /// Edit anybody's things.
    EditAny,
    SettingsRead,
    SettingsUpdate,
    /// Grant and revoke roles in this feature.
    RolesManage,
    /// Manage accounts (block, rename); only meaningful on `admin`.
    UserManage,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Self::View,
        Self::Create,
        Self::EditAny,
        Self::SettingsRead,
        Self::SettingsUpdate,
        Self::RolesManage,
        Self::UserManage,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Create => "create",
            Self::EditAny => "edit.any",
            Self::SettingsRead => "settings.read",
            Self::SettingsUpdate => "settings.update",
            Self::RolesManage => "roles.manage",
            Self::UserManage => "user.manage",
        }
    }

    /// The lowest role allowed to do this.
    pub fn minimum_role(self) -> Role {
        match self {
            Self::View => Role::User,
            Self::Create => Role::Fc,
            Self::EditAny | Self::SettingsRead => Role::Director,
            Self::SettingsUpdate | Self::RolesManage | Self::UserManage => Role::Admin,
        }
    }

    /// Parses `view`, or the prefixed form `feature.view` that older callers send.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix("feature.").unwrap_or(s);
        Self::ALL.into_iter().find(|a| a.key() == s)
    }
}

/// The facts about an account that authorization depends on (from the database,
/// never from the request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub super_admin: bool,
    pub blocked: bool,
    pub roles: BTreeMap<Feature, Role>,
}

/// Why access was allowed or denied; the wire form is [`Reason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    SuperAdmin,
    /// Allowed by this role in the feature.
    Role(Role),
    InsufficientPermissions,
    NoRole,
    UnknownFeature,
    UnknownAction,
    AccountBlocked,
    NotAuthenticated,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuperAdmin => "superadmin",
            Self::Role(Role::User) => "role.user",
            Self::Role(Role::Fc) => "role.fc",
            Self::Role(Role::Director) => "role.director",
            Self::Role(Role::Admin) => "role.admin",
            Self::InsufficientPermissions => "insufficient_permissions",
            Self::NoRole => "no_role",
            Self::UnknownFeature => "unknown_feature",
            Self::UnknownAction => "unknown_action",
            Self::AccountBlocked => "account_blocked",
            Self::NotAuthenticated => "not_authenticated",
        }
    }
}

/// An authorization answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub reason: Reason,
}

impl Decision {
    pub fn allow(reason: Reason) -> Self {
        Self {
            allow: true,
            reason,
        }
    }

    pub fn deny(reason: Reason) -> Self {
        Self {
            allow: false,
            reason,
        }
    }
}

/// Decides `action` on `feature` (both as sent on the wire) for `subject`.
pub fn decide_raw(subject: &Subject, feature: &str, action: &str) -> Decision {
    let Ok(feature) = feature.parse::<Feature>() else {
        return Decision::deny(Reason::UnknownFeature);
    };
    let Some(action) = Action::parse(action) else {
        return Decision::deny(Reason::UnknownAction);
    };
    decide(subject, feature, action)
}

/// Decides `action` on `feature` for `subject`.
pub fn decide(subject: &Subject, feature: Feature, action: Action) -> Decision {
    if subject.blocked {
        return Decision::deny(Reason::AccountBlocked);
    }
    if subject.super_admin {
        return Decision::allow(Reason::SuperAdmin);
    }
    let Some(role) = subject.roles.get(&feature).copied() else {
        return Decision::deny(Reason::NoRole);
    };
    if role >= action.minimum_role() {
        Decision::allow(Reason::Role(role))
    } else {
        Decision::deny(Reason::InsufficientPermissions)
    }
}

/// The administrative operations of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// List accounts, read the audit log and the gating configuration.
    Read,
    /// Block/unblock, rename, change primary, kill anyone's sessions.
    ManageAccounts,
    /// Promote or demote SuperAdmins.
    ManageSuperAdmins,
    /// Change the gating configuration.
    ManageConfig,
    /// Grant or revoke a role in `feature`.
    GrantRole(Feature),
    /// Record an admin change made in another service (ingestion rulesets, backfill jobs,
    /// clusterer settings) in this audit log: the same Admin role those pages require.
    RecordAction,
}

/// Who may run an admin operation. Account, SuperAdmin and gating management stay
/// with SuperAdmins; reading needs Director on `admin`; a feature's Admins may manage
/// roles in their own feature, except on `admin` itself (no self-escalation path).
pub fn decide_admin(subject: &Subject, op: AdminOp) -> Decision {
    if subject.blocked {
        return Decision::deny(Reason::AccountBlocked);
    }
    if subject.super_admin {
        return Decision::allow(Reason::SuperAdmin);
    }
    match op {
        AdminOp::Read => decide(subject, Feature::Admin, Action::SettingsRead),
        AdminOp::RecordAction => decide(subject, Feature::Admin, Action::SettingsUpdate),
        AdminOp::GrantRole(Feature::Admin) => Decision::deny(Reason::InsufficientPermissions),
        AdminOp::GrantRole(feature) => decide(subject, feature, Action::RolesManage),
        AdminOp::ManageAccounts | AdminOp::ManageSuperAdmins | AdminOp::ManageConfig => {
            Decision::deny(Reason::InsufficientPermissions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(feature: Feature, role: Role) -> Subject {
        Subject {
            roles: [(feature, role)].into_iter().collect(),
            ..Subject::default()
        }
    }

    #[test]
    fn the_ladder_decides_each_action() {
        let table = [
            (Role::User, Action::View, true),
            (Role::User, Action::Create, false),
            (Role::Fc, Action::Create, true),
            (Role::Fc, Action::EditAny, false),
            (Role::Director, Action::EditAny, true),
            (Role::Director, Action::SettingsRead, true),
            (Role::Director, Action::SettingsUpdate, false),
            (Role::Admin, Action::SettingsUpdate, true),
            (Role::Admin, Action::RolesManage, true),
        ];
        for (role, action, allowed) in table {
            let d = decide(
                &with(Feature::BattleReports, role),
                Feature::BattleReports,
                action,
            );
            assert_eq!(d.allow, allowed, "{role} {action:?}");
            if allowed {
                assert_eq!(d.reason, Reason::Role(role));
            } else {
                assert_eq!(d.reason, Reason::InsufficientPermissions);
            }
        }
    }

    #[test]
    fn roles_are_per_feature_and_unknowns_fail_closed() {
        let s = with(Feature::BattleReports, Role::Admin);
        assert_eq!(
            decide(&s, Feature::BattleIntel, Action::View),
            Decision::deny(Reason::NoRole)
        );
        assert_eq!(
            decide_raw(&s, "battle-reports", "feature.view").reason,
            Reason::Role(Role::Admin)
        );
        assert_eq!(
            decide_raw(&s, "killboard", "view").reason,
            Reason::UnknownFeature
        );
        assert_eq!(
            decide_raw(&s, "battle-reports", "delete.everything").reason,
            Reason::UnknownAction
        );
    }

    #[test]
    fn superadmin_allows_but_blocked_denies_first() {
        let mut s = Subject {
            super_admin: true,
            ..Subject::default()
        };
        assert_eq!(
            decide(&s, Feature::Admin, Action::UserManage),
            Decision::allow(Reason::SuperAdmin)
        );
        s.blocked = true;
        assert_eq!(
            decide(&s, Feature::Admin, Action::View),
            Decision::deny(Reason::AccountBlocked)
        );
        assert!(!decide_admin(&s, AdminOp::Read).allow);
    }

    #[test]
    fn admin_operations() {
        let director = with(Feature::Admin, Role::Director);
        assert!(decide_admin(&director, AdminOp::Read).allow);
        assert!(!decide_admin(&director, AdminOp::ManageAccounts).allow);
        let reports_admin = with(Feature::BattleReports, Role::Admin);
        assert!(decide_admin(&reports_admin, AdminOp::GrantRole(Feature::BattleReports)).allow);
        assert!(!decide_admin(&reports_admin, AdminOp::GrantRole(Feature::Search)).allow);
        let admin_admin = with(Feature::Admin, Role::Admin);
        assert!(!decide_admin(&admin_admin, AdminOp::GrantRole(Feature::Admin)).allow);
        assert!(!decide_admin(&admin_admin, AdminOp::ManageConfig).allow);
        // Recording another service's admin change: Admin on `admin`, not a Director, not an
        // Admin of another feature.
        assert!(decide_admin(&admin_admin, AdminOp::RecordAction).allow);
        assert!(!decide_admin(&director, AdminOp::RecordAction).allow);
        assert!(!decide_admin(&reports_admin, AdminOp::RecordAction).allow);
    }

    #[test]
    fn wire_names_round_trip() {
        for f in Feature::ALL {
            assert_eq!(f.key().parse::<Feature>(), Ok(f));
        }
        for r in Role::ALL {
            assert_eq!(r.key().parse::<Role>(), Ok(r));
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.key()), Some(a));
        }
    }
}
