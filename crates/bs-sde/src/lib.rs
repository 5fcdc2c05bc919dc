//! EVE static data for BattleScope: types, groups, categories, the map (systems,
//! constellations, regions, stargates), factions and NPC corporations — plus the pure rules
//! built on them: [`SecurityType`], [`ShipClass`] and ISK valuation from market prices.
//!
//! * [`StaticData::bundled`] decodes the compact bundle compiled into the binary (built from
//!   the SDE with the newer EVEShipFit type list merged in, so 2025–26 ships resolve) once, on
//!   first use. [`StaticData::load_dir`] loads a bundle written by an import instead.
//! * [`import_official_sde`] reads CCP's official SDE (JSONL zip or directory) or the CSV layout
//!   of `shared/data/sde` into a [`Bundle`]; [`Bundle::write_dir`] writes it
//!   (`battlescope sde import PATH`).
//! * [`value_killmail`] computes hull + items, destroyed and dropped, from [`MarketPrices`]
//!   (ESI `/markets/prices`, or the bundled 2025-05-13 snapshot via [`MarketPrices::bundled`]).
//!
//! Lookups never fail: unknown ids give `None`, so callers can fall back to ESI. Nothing here
//! does network IO or reads the clock; file IO happens only in the import/load functions.
//!
//! The bundle format is described in [`bundle`]; the security rule in [`security`]; the ship
//! class table in [`ship_class`].

pub mod bundle;
mod error;
mod import;
pub mod prices;
pub mod security;
pub mod ship_class;
mod static_data;
pub mod valuation;

pub use bundle::{BUNDLE_FORMAT, Bundle, BundleManifest};
pub use error::{Error, Result};
pub use import::{build_from_csv, import_official_sde};
pub use prices::{MarketPrices, Price};
pub use security::{SecurityType, rounded_security, security_type};
pub use ship_class::{ShipClass, ship_class_for};
pub use static_data::{
    CategoryInfo, ConstellationInfo, FactionInfo, GroupInfo, NpcCorporationInfo, RegionInfo,
    StaticData, StaticDataStats, SystemInfo, TypeInfo,
};
pub use valuation::{Valuation, ValuationItem, value_killmail};
