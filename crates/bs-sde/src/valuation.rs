//! ISK value of a killmail from market prices: pure, no IO.
//!
//! Model (eve-platform.md §6.6): value = hull + Σ item unit price × quantity, recursing into
//! containers, split into destroyed and dropped:
//!
//! * The hull always counts as destroyed.
//! * Each item contributes `quantity_destroyed × price` to destroyed and `quantity_dropped ×
//!   price` to dropped. Items nested in a container carry their own quantities on ESI
//!   killmails, so they are valued the same way, independently of the container's fate.
//! * `singleton == 2` marks a blueprint copy: worth 0 ISK (copies cannot be sold on the market,
//!   and the market price of the type is the original's — counting it would inflate kills
//!   by billions). A copy is not counted as a missing price.
//! * The unit price is `average_price`, falling back to `adjusted_price` (see
//!   [`crate::Price::unit_value`]). A type with neither counts once in `missing_prices` per
//!   line item and contributes 0.
//!
//! This is an estimate: zKillboard's own values (when a live entry has them) take precedence.

use serde::{Deserialize, Serialize};

use crate::prices::MarketPrices;

/// `singleton` value that marks a blueprint copy on killmails.
pub const SINGLETON_BLUEPRINT_COPY: i32 = 2;

/// One killmail item, the subset valuation needs (mapped from the killmail model at the edge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValuationItem {
    pub type_id: i64,
    /// Inventory flag (slot or hold); kept for callers that split by location.
    pub flag: i32,
    pub singleton: i32,
    pub quantity_destroyed: i64,
    pub quantity_dropped: i64,
    /// Contents, when the item is a container.
    pub items: Vec<ValuationItem>,
}

/// The computed value of a killmail, in ISK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Valuation {
    /// Hull plus everything destroyed.
    pub isk_destroyed: f64,
    /// Everything dropped (loot).
    pub isk_dropped: f64,
    /// Always exactly `isk_destroyed + isk_dropped`.
    pub isk_total: f64,
    /// The hull's share (included in `isk_destroyed`).
    pub hull: f64,
    /// Line items (hull included) that had no usable price.
    pub missing_prices: u32,
}

/// Values a killmail: the victim's ship and its items, with `prices`.
pub fn value_killmail(
    victim_ship_type: i64,
    items: &[ValuationItem],
    prices: &MarketPrices,
) -> Valuation {
    let mut v = Valuation::default();
    match prices.unit_value(victim_ship_type) {
        Some(p) => v.hull = p,
        None => v.missing_prices += 1,
    }
    let mut destroyed = v.hull;
    let mut dropped = 0.0;
    add_items(
        items,
        prices,
        &mut destroyed,
        &mut dropped,
        &mut v.missing_prices,
    );
    v.isk_destroyed = destroyed;
    v.isk_dropped = dropped;
    v.isk_total = destroyed + dropped;
    v
}

fn add_items(
    items: &[ValuationItem],
    prices: &MarketPrices,
    destroyed: &mut f64,
    dropped: &mut f64,
    missing: &mut u32,
) {
    for item in items {
        if item.singleton != SINGLETON_BLUEPRINT_COPY {
            match prices.unit_value(item.type_id) {
                Some(p) => {
                    // Negative quantities are bad input; they count as zero rather than
                    // subtracting value.
                    *destroyed += p * item.quantity_destroyed.max(0) as f64;
                    *dropped += p * item.quantity_dropped.max(0) as f64;
                }
                None => *missing += 1,
            }
        }
        add_items(&item.items, prices, destroyed, dropped, missing);
    }
}
