//! The authentication service's pure rules: no IO, no clock (time is a parameter).
//!
//! * [`rbac`]: features, the role ladder, actions and the authorization decision.
//! * [`gating`]: corporation/alliance gating of the primary character (deny wins).
//! * [`session`]: idle and absolute session expiry.
//! * [`characters`]: what a login or link means for an existing character, and the
//!   unlink/primary rules.
//! * [`audit`]: the hash chain of the append-only audit log.

pub mod audit;
pub mod characters;
pub mod gating;
pub mod rbac;
pub mod session;
