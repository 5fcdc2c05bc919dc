//! The one integration-test binary of bs-sso: the JWT attack table, OAuth flows against
//! the fake SSO, the token cipher, `return_to` sanitising and the small primitives.

mod cipher;
mod flows;
mod jwt_attacks;
mod primitives;
mod redirect;
mod support;
