//! What an SSO callback means for a character, and the unlink/primary rules.
//!
//! Identity is `(character_id, owner_hash)`: a new owner hash means the character was
//! sold or transferred, so it is detached from its old account (tokens deleted,
//! sessions through it revoked, audited) before anything else happens, and the new
//! owner starts from scratch. A character that belongs to another account with the
//! same owner is never moved silently: linking it is refused.

/// A character as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    pub account_id: String,
    pub owner_hash: String,
}

/// Why the callback came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A login from a browser without a session.
    Login,
    /// Adding a character to this (logged-in) account.
    Link { account_id: String },
}

/// What to do with the character after an optional owner-change detach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Then {
    /// First login: a new account with this character as primary.
    CreateAccount,
    /// A known character logs in to its account.
    LoginTo(String),
    /// Attach the character to this account.
    AttachTo(String),
    /// Already on this account: refresh its tokens and name.
    AlreadyLinked(String),
    /// It belongs to another account with the same owner: refuse.
    RefuseOtherAccount,
}

/// The plan for one callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `Some(old account)`: the owner hash changed, detach first.
    pub detach_from: Option<String>,
    pub then: Then,
}

pub fn plan(existing: Option<&Existing>, owner_hash: &str, intent: &Intent) -> Plan {
    let owner_changed = existing.is_some_and(|e| e.owner_hash != owner_hash);
    let detach_from = existing
        .filter(|_| owner_changed)
        .map(|e| e.account_id.clone());
    // After a detach the character is as good as new.
    let current = existing.filter(|_| !owner_changed);
    let then = match (intent, current) {
        (Intent::Login, None) => Then::CreateAccount,
        (Intent::Login, Some(e)) => Then::LoginTo(e.account_id.clone()),
        (Intent::Link { account_id }, None) => Then::AttachTo(account_id.clone()),
        (Intent::Link { account_id }, Some(e)) if e.account_id == *account_id => {
            Then::AlreadyLinked(account_id.clone())
        }
        (Intent::Link { .. }, Some(_)) => Then::RefuseOtherAccount,
    };
    Plan { detach_from, then }
}

/// Why a character cannot be unlinked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnlinkError {
    #[error("that character is not on your account")]
    NotYours,
    #[error("the last character of an account cannot be unlinked")]
    LastCharacter,
    #[error("the primary character cannot be unlinked; make another character primary first")]
    Primary,
}

/// Checks an unlink of `target` from an account holding `characters` with `primary`.
pub fn can_unlink(
    characters: &[i64],
    primary: Option<i64>,
    target: i64,
) -> Result<(), UnlinkError> {
    if !characters.contains(&target) {
        return Err(UnlinkError::NotYours);
    }
    if characters.len() <= 1 {
        return Err(UnlinkError::LastCharacter);
    }
    if primary == Some(target) {
        return Err(UnlinkError::Primary);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(account: &str, owner: &str) -> Existing {
        Existing {
            account_id: account.into(),
            owner_hash: owner.into(),
        }
    }

    #[test]
    fn login_plans() {
        assert_eq!(
            plan(None, "o1", &Intent::Login),
            Plan {
                detach_from: None,
                then: Then::CreateAccount
            }
        );
        let e = existing("a", "o1");
        assert_eq!(
            plan(Some(&e), "o1", &Intent::Login).then,
            Then::LoginTo("a".into())
        );
        let sold = plan(Some(&e), "o2", &Intent::Login);
        assert_eq!(
            sold,
            Plan {
                detach_from: Some("a".into()),
                then: Then::CreateAccount
            }
        );
    }

    #[test]
    fn link_plans() {
        let link_b = Intent::Link {
            account_id: "b".into(),
        };
        assert_eq!(plan(None, "o", &link_b).then, Then::AttachTo("b".into()));
        assert_eq!(
            plan(Some(&existing("b", "o")), "o", &link_b).then,
            Then::AlreadyLinked("b".into())
        );
        assert_eq!(
            plan(Some(&existing("a", "o")), "o", &link_b).then,
            Then::RefuseOtherAccount
        );
        let moved = plan(Some(&existing("a", "o")), "new", &link_b);
        assert_eq!(
            moved,
            Plan {
                detach_from: Some("a".into()),
                then: Then::AttachTo("b".into())
            }
        );
    }

    #[test]
    fn unlink_rules() {
        assert_eq!(
            can_unlink(&[1], Some(1), 1),
            Err(UnlinkError::LastCharacter)
        );
        assert_eq!(can_unlink(&[1, 2], Some(1), 1), Err(UnlinkError::Primary));
        assert_eq!(can_unlink(&[1, 2], Some(1), 3), Err(UnlinkError::NotYours));
        assert_eq!(can_unlink(&[1, 2], Some(1), 2), Ok(()));
    }
}
