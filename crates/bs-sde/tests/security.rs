//! Security type and rounding: real systems from the bundle, edges, and properties.

use bs_sde::security::security_type_from_status;
use bs_sde::{SecurityType, StaticData, rounded_security, security_type};
use proptest::prelude::*;

#[test]
fn real_systems_classify_as_eve_shows_them() {
    let sde = StaticData::bundled();
    // (system id, name, displayed security, type)
    let table: &[(i64, &str, f64, SecurityType)] = &[
        (30000142, "Jita", 0.9, SecurityType::Highsec),
        (30002813, "Tama", 0.3, SecurityType::Lowsec),
        (30004759, "1DQ1-A", -0.4, SecurityType::Nullsec),
        (31000368, "J105951", -1.0, SecurityType::Wormhole),
        (31000005, "Thera", -1.0, SecurityType::Wormhole),
        (30003504, "Niarja", -1.0, SecurityType::Pochven),
        (30100000, "Zarzakh", -1.0, SecurityType::Nullsec),
        (32000001, "AD001", -1.0, SecurityType::Abyssal),
        (34000001, "V-001", -1.0, SecurityType::Abyssal),
        // True 0.4503 shows as 0.5: highsec.
        (30000062, "Iosantin", 0.5, SecurityType::Highsec),
        // True 0.4449 shows as 0.4: lowsec.
        (30045342, "Akidagi", 0.4, SecurityType::Lowsec),
        // True 0.0413 shows as 0.1, not 0.0: lowsec.
        (30004301, "Anath", 0.1, SecurityType::Lowsec),
    ];
    for &(id, name, shown, ty) in table {
        let s = sde
            .system(id)
            .unwrap_or_else(|| panic!("{name} {id} missing"));
        assert_eq!(s.name, name);
        assert_eq!(s.security_type, ty, "{name}");
        assert!(
            (s.rounded_security - shown).abs() < 1e-9,
            "{name}: {} vs {shown}",
            s.rounded_security
        );
    }
}

#[test]
fn class_counts_over_the_whole_map() {
    let sde = StaticData::bundled();
    let mut counts = std::collections::BTreeMap::new();
    for s in sde.systems() {
        *counts.entry(s.security_type).or_insert(0) += 1;
    }
    // Computed independently from mapSolarSystems.csv.gz with the same rule (Python).
    assert_eq!(counts[&SecurityType::Highsec], 1193);
    assert_eq!(counts[&SecurityType::Lowsec], 687);
    assert_eq!(counts[&SecurityType::Nullsec], 3525);
    assert_eq!(counts[&SecurityType::Wormhole], 2604);
    assert_eq!(counts[&SecurityType::Pochven], 27);
    assert_eq!(counts[&SecurityType::Abyssal], 400);
}

#[test]
fn edges_by_number() {
    assert_eq!(security_type_from_status(0.45), SecurityType::Highsec);
    assert_eq!(security_type_from_status(0.4499), SecurityType::Lowsec);
    assert_eq!(security_type_from_status(0.04), SecurityType::Lowsec);
    assert_eq!(security_type_from_status(0.0), SecurityType::Nullsec);
    assert_eq!(security_type_from_status(-0.04), SecurityType::Nullsec);
    assert_eq!(security_type_from_status(1.0), SecurityType::Highsec);
    // Identity wins over the number.
    assert_eq!(
        security_type(30003504, 10000070, 0.9),
        SecurityType::Pochven
    );
    assert_eq!(security_type(31000001, 0, 0.9), SecurityType::Wormhole);
    assert_eq!(security_type(32000001, 0, 0.9), SecurityType::Abyssal);
    assert_eq!(
        serde_json::to_value(SecurityType::Pochven).unwrap(),
        serde_json::json!("pochven")
    );
}

proptest! {
    #[test]
    fn rounding_properties(x in -1.0f64..=1.0, y in -1.0f64..=1.0) {
        let r = rounded_security(x);
        // A multiple of 0.1.
        prop_assert!(((r * 10.0) - (r * 10.0).round()).abs() < 1e-9);
        // Within half a step of the true value, except the 0 < x < 0.05 → 0.1 rule.
        prop_assert!((r - x).abs() <= 0.05 + 1e-12 || (x > 0.0 && x < 0.05 && r == 0.1));
        // Monotonic.
        if x <= y {
            prop_assert!(r <= rounded_security(y));
        }
        let t = security_type_from_status(x);
        // Positive true security is never nullsec; non-positive always is.
        prop_assert_eq!(t == SecurityType::Nullsec, x <= 0.0);
        // CCP's equivalent thresholds on the true value (away from float ties at 0.45).
        if x >= 0.45 + 1e-9 {
            prop_assert_eq!(t, SecurityType::Highsec);
        }
        if x > 0.0 && x < 0.45 - 1e-9 {
            prop_assert_eq!(t, SecurityType::Lowsec);
        }
    }

    #[test]
    fn identity_ranges_win(sec in -1.0f64..=1.0, wh in 31_000_000i64..=31_999_999, aby in 32_000_000i64..=32_999_999) {
        prop_assert_eq!(security_type(wh, 11_000_001, sec), SecurityType::Wormhole);
        prop_assert_eq!(security_type(aby, 12_000_001, sec), SecurityType::Abyssal);
        prop_assert_eq!(security_type(30_003_504, 10_000_070, sec), SecurityType::Pochven);
    }
}
