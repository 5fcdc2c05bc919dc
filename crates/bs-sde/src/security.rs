//! Security type of a solar system: identity first, then the displayed (rounded) security status.
//!
//! The rule implemented here, in order:
//!
//! 1. **Pochven**: region 10000070 (its systems keep their k-space ids 30xxxxxx and a true
//!    security of -1.0, so identity must win over the number).
//! 2. **Wormhole**: system ids 31000000..=31999999 or a region in 11000000..=11999999
//!    (J-space, including Thera and the Drifter systems).
//! 3. **Abyssal**: system ids 32000000..=32999999 or a region in 12000000..=12999999. The SDE's
//!    instanced "void" regions (14000000.., systems 34000000..) have no stargates and are
//!    classified as Abyssal too: they are instanced pockets, not navigable space.
//! 4. Otherwise the rounded security status as EVE displays it ([`rounded_security`]):
//!    highsec ≥ 0.5, lowsec 0.1..=0.4, nullsec ≤ 0.0.
//!
//! Rounding follows CCP's developer documentation (docs/guides/system-security): ordinary
//! rounding to one decimal (ties upwards), except that any true security in 0.0 < x < 0.05 shows
//! as 0.1 — a positive true security is always lowsec, never nullsec. Equivalently on the true
//! value: highsec x ≥ 0.45, lowsec 0.0 < x < 0.45, nullsec x ≤ 0.0.

use serde::{Deserialize, Serialize};

/// Pochven's region id.
pub const POCHVEN_REGION_ID: i64 = 10_000_070;

/// Where a solar system sits, as players name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityType {
    Highsec,
    Lowsec,
    Nullsec,
    Wormhole,
    Pochven,
    Abyssal,
}

impl SecurityType {
    /// The lowercase wire name (`"highsec"`, `"wormhole"`, ...), the same as serde's.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityType::Highsec => "highsec",
            SecurityType::Lowsec => "lowsec",
            SecurityType::Nullsec => "nullsec",
            SecurityType::Wormhole => "wormhole",
            SecurityType::Pochven => "pochven",
            SecurityType::Abyssal => "abyssal",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "highsec" => SecurityType::Highsec,
            "lowsec" => SecurityType::Lowsec,
            "nullsec" => SecurityType::Nullsec,
            "wormhole" => SecurityType::Wormhole,
            "pochven" => SecurityType::Pochven,
            "abyssal" => SecurityType::Abyssal,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SecurityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The security status as the EVE client displays it, to one decimal.
///
/// `0.0 < x < 0.05` shows as 0.1; everything else rounds to the nearest tenth with ties going up
/// (0.45 → 0.5, -0.05 → 0.0). The result is never `-0.0`. A NaN input yields NaN.
pub fn rounded_security(true_security: f64) -> f64 {
    if true_security > 0.0 && true_security < 0.05 {
        return 0.1;
    }
    let r = (true_security * 10.0 + 0.5).floor() / 10.0;
    // Normalise -0.0 so that serialised values never show a negative zero.
    if r == 0.0 { 0.0 } else { r }
}

/// Classifies a system. `region_id` may be 0 when unknown; the id ranges still apply.
///
/// A non-finite security status (bad input) is treated as nullsec rather than failing.
pub fn security_type(system_id: i64, region_id: i64, true_security: f64) -> SecurityType {
    if region_id == POCHVEN_REGION_ID {
        return SecurityType::Pochven;
    }
    if (31_000_000..=31_999_999).contains(&system_id)
        || (11_000_000..=11_999_999).contains(&region_id)
    {
        return SecurityType::Wormhole;
    }
    if (32_000_000..=32_999_999).contains(&system_id)
        || (34_000_000..=34_999_999).contains(&system_id)
        || (12_000_000..=12_999_999).contains(&region_id)
        || (14_000_000..=14_999_999).contains(&region_id)
    {
        return SecurityType::Abyssal;
    }
    security_type_from_status(true_security)
}

/// Classifies k-space purely by security status (no identity check).
pub fn security_type_from_status(true_security: f64) -> SecurityType {
    let shown = rounded_security(true_security);
    if shown >= 0.5 {
        SecurityType::Highsec
    } else if shown >= 0.1 {
        SecurityType::Lowsec
    } else {
        // Includes NaN: every comparison above is false.
        SecurityType::Nullsec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_table() {
        let cases = [
            (1.0, 1.0),
            (0.945913116665, 0.9),
            (0.45, 0.5),
            (0.4499, 0.4),
            (0.04, 0.1),
            (0.0001, 0.1),
            (0.05, 0.1),
            (0.0, 0.0),
            (-0.04, 0.0),
            (-0.05, 0.0),
            (-0.3857823318152013, -0.4),
            (-1.0, -1.0),
        ];
        for (input, shown) in cases {
            let got = rounded_security(input);
            assert!((got - shown).abs() < 1e-9, "{input} -> {got}, want {shown}");
        }
        assert!(rounded_security(-0.04).is_sign_positive());
    }

    #[test]
    fn wire_names_round_trip() {
        for t in [
            SecurityType::Highsec,
            SecurityType::Lowsec,
            SecurityType::Nullsec,
            SecurityType::Wormhole,
            SecurityType::Pochven,
            SecurityType::Abyssal,
        ] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(SecurityType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::from_str::<SecurityType>(&json).unwrap(), t);
        }
    }

    #[test]
    fn nan_is_nullsec_not_a_crash() {
        assert_eq!(
            security_type(30_000_001, 10_000_001, f64::NAN),
            SecurityType::Nullsec
        );
    }
}
