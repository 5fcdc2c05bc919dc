//! Pure enrichment: a killmail + static data + names + prices → [`KillmailEnriched`].
//!
//! Architecture invariant: nothing here does IO or reads the clock. The service gathers
//! what it knows (the bundled SDE, types/systems ESI told it about, resolved names, the
//! current prices) into a [`Catalog`] and calls [`enrich`]; the result also says which ids
//! were missing ([`Missing`]) so the caller can ask ESI for exactly those, in bulk, and
//! enrich again later. An unknown id is never an error: the field stays `None` and the
//! killmail is still published.

pub mod catalog;

use std::collections::BTreeSet;

use bs_domain::{Attacker, Item, Killmail, KillmailSource, Zkb};
use bs_events::enriched::value_source;
use bs_events::{
    Affiliation, EnrichedAttacker, EnrichedShip, EnrichedSystem, EnrichedVictim, IskValue,
    KillmailEnriched, ZkbFlags,
};
use bs_sde::ValuationItem;

pub use catalog::{Catalog, ExtraSystem, ExtraType, NameBook, NameState};

/// The version of the enrichment rules. Bump it when the output of [`enrich`] changes for
/// the same input: stored rows with an older version are re-enriched (and re-published) in
/// the background. A change of the static data bundle does the same through its own version.
///
/// 2: corporation and alliance tickers (filled after `enrich` by `crate::tickers`).
pub const RULES_VERSION: u32 = 2;

/// What a killmail needs from the world, as the ingestion event carries it.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub killmail: &'a Killmail,
    pub hash: &'a str,
    pub zkb: Option<&'a Zkb>,
    pub source: KillmailSource,
}

/// Ids the catalog did not know, to resolve through ESI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Characters, corporations and alliances (`POST /universe/names`).
    pub names: BTreeSet<i64>,
    /// Ship and weapon types (`GET /universe/types/{id}`).
    pub types: BTreeSet<i64>,
    /// Solar systems (`GET /universe/systems/{id}`).
    pub systems: BTreeSet<i64>,
    /// Player corporations whose ticker is unknown (`GET /corporations/{id}`; see `crate::tickers`).
    pub corporation_tickers: BTreeSet<i64>,
    /// Alliances whose ticker is unknown (`GET /alliances/{id}`).
    pub alliance_tickers: BTreeSet<i64>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.types.is_empty()
            && self.systems.is_empty()
            && self.corporation_tickers.is_empty()
            && self.alliance_tickers.is_empty()
    }

    pub fn extend(&mut self, other: &Missing) {
        self.names.extend(&other.names);
        self.types.extend(&other.types);
        self.systems.extend(&other.systems);
        self.corporation_tickers.extend(&other.corporation_tickers);
        self.alliance_tickers.extend(&other.alliance_tickers);
    }
}

/// The enriched killmail and what was missing to complete it.
#[derive(Clone, Debug, PartialEq)]
pub struct Enriched {
    pub event: KillmailEnriched,
    pub missing: Missing,
}

/// Ids on a killmail that a name lookup may be needed for (characters, non-NPC
/// corporations, alliances), whether or not they are known yet. Used to resolve a whole
/// batch in one bulk call before enriching it.
pub fn name_ids(km: &Killmail, catalog: &Catalog<'_>, out: &mut BTreeSet<i64>) {
    let mut add = |character: Option<i64>, corporation: Option<i64>, alliance: Option<i64>| {
        out.extend(character.filter(|&id| id > 0));
        out.extend(corporation.filter(|&id| id > 0 && catalog.npc_corporation_name(id).is_none()));
        out.extend(alliance.filter(|&id| id > 0));
    };
    add(
        km.victim.character_id,
        km.victim.corporation_id,
        km.victim.alliance_id,
    );
    for a in &km.attackers {
        add(a.character_id, a.corporation_id, a.alliance_id);
    }
}

/// Enriches one killmail. Deterministic: the same input and catalog give the same output.
pub fn enrich(input: Input<'_>, catalog: &Catalog<'_>) -> Enriched {
    let km = input.killmail;
    let mut missing = Missing::default();

    let system = system(km.solar_system_id, catalog, &mut missing);
    let victim = EnrichedVictim {
        who: affiliation(
            km.victim.character_id,
            km.victim.corporation_id,
            km.victim.alliance_id,
            km.victim.faction_id,
            catalog,
            &mut missing,
        ),
        ship: ship(km.victim.ship_type_id, catalog, &mut missing),
        damage_taken: km.victim.damage_taken,
        position: km.victim.position,
    };
    let mut attackers: Vec<EnrichedAttacker> = km
        .attackers
        .iter()
        .map(|a| attacker(a, catalog, &mut missing))
        .collect();
    sort_attackers(&mut attackers);

    let isk = isk(km, input.zkb, catalog);
    let zkb = input.zkb.map(|z| ZkbFlags {
        npc: z.npc,
        solo: z.solo,
        awox: z.awox,
        points: z.points,
        labels: z.labels.clone(),
    });
    let event = KillmailEnriched {
        killmail_id: km.killmail_id,
        killmail_time: km.killmail_time,
        hash: input.hash.to_owned(),
        source: input.source,
        moon_id: km.moon_id,
        war_id: km.war_id,
        system,
        victim,
        attacker_count: u32::try_from(attackers.len()).unwrap_or(u32::MAX),
        attackers,
        isk,
        zkb,
        pilot_count: u32::try_from(km.pilot_count()).unwrap_or(u32::MAX),
        names_pending: !missing.is_empty(),
        enrichment_version: RULES_VERSION,
        revision: 0,
    };
    Enriched { event, missing }
}

/// Final blow first, then damage (descending), then ids: ESI's order is not stable.
pub fn sort_attackers(attackers: &mut [EnrichedAttacker]) {
    attackers.sort_by(|a, b| {
        b.final_blow
            .cmp(&a.final_blow)
            .then(b.damage_done.cmp(&a.damage_done))
            .then(a.who.character_id.cmp(&b.who.character_id))
            .then(
                a.ship
                    .as_ref()
                    .map(|s| s.type_id)
                    .cmp(&b.ship.as_ref().map(|s| s.type_id)),
            )
            .then(a.weapon_type_id.cmp(&b.weapon_type_id))
            .then(a.who.corporation_id.cmp(&b.who.corporation_id))
            .then(a.who.faction_id.cmp(&b.who.faction_id))
    });
}

fn system(id: i64, catalog: &Catalog<'_>, missing: &mut Missing) -> EnrichedSystem {
    if let Some(s) = catalog.sde.system(id) {
        return EnrichedSystem {
            id,
            name: Some(s.name.clone()),
            constellation_id: Some(s.constellation_id),
            constellation_name: Some(s.constellation_name.clone()),
            region_id: Some(s.region_id),
            region_name: Some(s.region_name.clone()),
            security_status: Some(s.security_status),
            security_type: Some(s.security_type.as_str().to_owned()),
        };
    }
    if let Some(extra) = catalog.system(id) {
        let constellation = catalog.sde.constellation(extra.constellation_id);
        let region_id = constellation.map(|c| c.region_id);
        let region_name = region_id
            .and_then(|r| catalog.sde.region(r))
            .map(|r| r.name.clone());
        let security_type =
            bs_sde::security_type(id, region_id.unwrap_or(0), extra.security_status);
        return EnrichedSystem {
            id,
            name: Some(extra.name.clone()),
            constellation_id: Some(extra.constellation_id),
            constellation_name: constellation.map(|c| c.name.clone()),
            region_id,
            region_name,
            security_status: Some(extra.security_status),
            security_type: Some(security_type.as_str().to_owned()),
        };
    }
    if !catalog.is_known_unknown_system(id) {
        missing.systems.insert(id);
    }
    // Identity alone still tells wormhole and abyssal space apart from k-space.
    let security_type = match id {
        31_000_000..=31_999_999 => Some("wormhole".to_owned()),
        32_000_000..=32_999_999 => Some("abyssal".to_owned()),
        _ => None,
    };
    EnrichedSystem {
        id,
        name: None,
        constellation_id: None,
        constellation_name: None,
        region_id: None,
        region_name: None,
        security_status: None,
        security_type,
    }
}

fn ship(type_id: i64, catalog: &Catalog<'_>, missing: &mut Missing) -> EnrichedShip {
    let (type_name, group_id) = match catalog.sde.type_info(type_id) {
        Some(t) => (Some(t.name.clone()), Some(t.group_id)),
        None => match catalog.extra_type(type_id) {
            Some(t) => (Some(t.name.clone()), Some(t.group_id)),
            None => {
                if !catalog.is_known_unknown_type(type_id) {
                    missing.types.insert(type_id);
                }
                (None, None)
            }
        },
    };
    let group = group_id.and_then(|g| catalog.sde.group(g));
    EnrichedShip {
        type_id,
        type_name,
        group_id,
        group_name: group.map(|g| g.name.clone()),
        category_id: group.map(|g| g.category_id),
        class: group.map(|g| {
            bs_sde::ship_class_for(g.id, g.category_id)
                .as_str()
                .to_owned()
        }),
    }
}

fn type_name(type_id: i64, catalog: &Catalog<'_>, missing: &mut Missing) -> Option<String> {
    if let Some(t) = catalog.sde.type_info(type_id) {
        return Some(t.name.clone());
    }
    if let Some(t) = catalog.extra_type(type_id) {
        return Some(t.name.clone());
    }
    if !catalog.is_known_unknown_type(type_id) {
        missing.types.insert(type_id);
    }
    None
}

fn affiliation(
    character_id: Option<i64>,
    corporation_id: Option<i64>,
    alliance_id: Option<i64>,
    faction_id: Option<i64>,
    catalog: &Catalog<'_>,
    missing: &mut Missing,
) -> Affiliation {
    let mut lookup = |id: Option<i64>| -> Option<String> {
        let id = id?;
        match catalog.names.get(id) {
            NameState::Known(name) => Some(name.to_owned()),
            NameState::DoesNotExist => None,
            NameState::Missing => {
                missing.names.insert(id);
                None
            }
        }
    };
    let character_name = lookup(character_id);
    let corporation_name = match corporation_id.and_then(|c| catalog.npc_corporation_name(c)) {
        Some(npc) => Some(npc.to_owned()),
        None => lookup(corporation_id),
    };
    let alliance_name = lookup(alliance_id);
    Affiliation {
        character_id,
        character_name,
        corporation_id,
        corporation_name,
        alliance_id,
        alliance_name,
        faction_id,
        faction_name: faction_id
            .and_then(|f| catalog.sde.faction(f))
            .map(|f| f.name.clone()),
        // Tickers are filled after `enrich` by `crate::tickers`.
        ..Affiliation::default()
    }
}

fn attacker(a: &Attacker, catalog: &Catalog<'_>, missing: &mut Missing) -> EnrichedAttacker {
    EnrichedAttacker {
        who: affiliation(
            a.character_id,
            a.corporation_id,
            a.alliance_id,
            a.faction_id,
            catalog,
            missing,
        ),
        ship: a.ship_type_id.map(|t| ship(t, catalog, missing)),
        weapon_type_id: a.weapon_type_id,
        weapon_type_name: a
            .weapon_type_id
            .and_then(|t| type_name(t, catalog, missing)),
        damage_done: a.damage_done,
        final_blow: a.final_blow,
        security_status: a.security_status,
        is_npc: a.is_npc(),
    }
}

/// zKillboard's values when the entry has them, else hull + items from market prices.
fn isk(km: &Killmail, zkb: Option<&Zkb>, catalog: &Catalog<'_>) -> IskValue {
    if let Some(total) = zkb
        .and_then(|z| z.total_value)
        .filter(|t| t.is_finite() && *t >= 0.0)
    {
        let z = zkb.unwrap_or(&DEFAULT_ZKB);
        let dropped = z
            .dropped_value
            .filter(|d| d.is_finite() && *d >= 0.0)
            .unwrap_or(0.0);
        let destroyed = z
            .destroyed_value
            .filter(|d| d.is_finite() && *d >= 0.0)
            .unwrap_or((total - dropped).max(0.0));
        return IskValue {
            destroyed,
            dropped,
            total,
            value_source: value_source::ZKB.into(),
        };
    }
    let items: Vec<ValuationItem> = km.victim.items.iter().map(valuation_item).collect();
    let v = bs_sde::value_killmail(km.victim.ship_type_id, &items, catalog.prices);
    IskValue {
        destroyed: v.isk_destroyed,
        dropped: v.isk_dropped,
        total: v.isk_total,
        value_source: value_source::COMPUTED.into(),
    }
}

static DEFAULT_ZKB: Zkb = Zkb {
    location_id: None,
    hash: String::new(),
    fitted_value: None,
    dropped_value: None,
    destroyed_value: None,
    total_value: None,
    points: None,
    npc: false,
    solo: false,
    awox: false,
    labels: Vec::new(),
    href: None,
};

fn valuation_item(item: &Item) -> ValuationItem {
    ValuationItem {
        type_id: item.item_type_id,
        flag: i32::try_from(item.flag).unwrap_or(0),
        singleton: i32::try_from(item.singleton).unwrap_or(0),
        quantity_destroyed: item.quantity_destroyed.unwrap_or(0),
        quantity_dropped: item.quantity_dropped.unwrap_or(0),
        items: item.items.iter().map(valuation_item).collect(),
    }
}

#[cfg(test)]
mod tests;
