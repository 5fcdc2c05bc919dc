//! Pure mapping from bus events to search documents, plus the activity counters used for
//! ranking (kills, losses and battles per entity).
//!
//! Architecture invariant: nothing here does IO or reads the clock; `now` is a parameter.
//!
//! The events carry ids and names but no counters, and a search backend cannot be read by id,
//! so the [`Indexer`] keeps a small in-memory mirror of every entity it has seen (name,
//! affiliation, counters) and of the live battle snapshots. Every upsert writes a whole
//! document rendered from that mirror, so applying the same events twice (a redelivered
//! batch, a batch retried after the backend was down) yields the same documents:
//! * a killmail is counted once per process, by id, at its first sighting (its participants
//!   never change between revisions, only their names);
//! * a battle's contribution to `battleCount` is the set of entities of its latest snapshot,
//!   diffed on every update and withdrawn on merge or delete;
//! * older revisions of a killmail or a battle are ignored; an equal revision is re-applied
//!   (that is how a retried batch re-emits its documents).
//!
//! The mirror is persisted: every batch's [`Changes`] carry a [`StateDelta`] (the touched
//! entities, killmail revisions and battles) that the service writes to its own database
//! before the documents (see `crate::store`), and [`Indexer::restore`] loads it at start, so a
//! restart keeps the activity ranking and a killmail seen before the restart is not counted
//! again. Tickers come from `killmail.enriched` (`corporation_ticker`, `alliance_ticker`,
//! filled by enrichment, possibly in a later revision); NPC corporations fall back to the SDE.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use bs_events::{
    Affiliation, BattleSnapshot, BattleStatus, Envelope, KillmailEnriched, battle, topics,
};
use bs_sde::StaticData;
use bs_search_index::{
    AllianceDoc, BattleDoc, CharacterDoc, Collection, ConstellationDoc, CorporationDoc, Document,
    KillmailDoc, RegionDoc, ShipTypeDoc, SystemDoc, activity_score, battle_score,
};

/// The SDE category of ships (indexed as `ship_types` at start).
const SHIP_CATEGORY: i64 = 6;

/// The kinds of entity the mirror tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityKind {
    Character,
    Corporation,
    Alliance,
    System,
    ShipType,
    /// Regions and constellations (from the SDE): battles and kills in them.
    Region,
    Constellation,
}

impl EntityKind {
    /// The collection documents of this kind go to.
    pub fn collection(self) -> Collection {
        match self {
            EntityKind::Character => Collection::Characters,
            EntityKind::Corporation => Collection::Corporations,
            EntityKind::Alliance => Collection::Alliances,
            EntityKind::System => Collection::Systems,
            EntityKind::ShipType => Collection::ShipTypes,
            EntityKind::Region => Collection::Regions,
            EntityKind::Constellation => Collection::Constellations,
        }
    }

    /// The stored code of the kind (`search_entities.kind`).
    pub fn code(self) -> i64 {
        match self {
            EntityKind::Character => 1,
            EntityKind::Corporation => 2,
            EntityKind::Alliance => 3,
            EntityKind::System => 4,
            EntityKind::ShipType => 5,
            EntityKind::Region => 6,
            EntityKind::Constellation => 7,
        }
    }

    /// The inverse of [`EntityKind::code`].
    pub fn from_code(code: i64) -> Option<EntityKind> {
        Some(match code {
            1 => EntityKind::Character,
            2 => EntityKind::Corporation,
            3 => EntityKind::Alliance,
            4 => EntityKind::System,
            5 => EntityKind::ShipType,
            6 => EntityKind::Region,
            7 => EntityKind::Constellation,
            _ => return None,
        })
    }

    /// The kind stored in `collection`, if it is an entity collection.
    pub fn of(collection: Collection) -> Option<EntityKind> {
        Some(match collection {
            Collection::Characters => EntityKind::Character,
            Collection::Corporations => EntityKind::Corporation,
            Collection::Alliances => EntityKind::Alliance,
            Collection::Systems => EntityKind::System,
            Collection::ShipTypes => EntityKind::ShipType,
            Collection::Regions => EntityKind::Region,
            Collection::Constellations => EntityKind::Constellation,
            Collection::Battles | Collection::Killmails => return None,
        })
    }
}

pub type EntityKey = (EntityKind, i64);

/// What the mirror knows about one entity (stored as JSON in `search_entities.body`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entity {
    pub name: Option<String>,
    /// Corporations and alliances: the ticker, as the latest killmail carrying one said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticker: Option<String>,
    /// Characters: their corporation; corporations: none.
    pub corp_id: Option<i64>,
    /// Characters and corporations: their alliance (as of the latest killmail seen).
    pub alliance_id: Option<i64>,
    /// Ship types: the group, as the killmail named it (fallback when the SDE lacks the type).
    pub group: Option<(i64, String)>,
    /// Killmails on which the entity was an attacker (systems: every kill there).
    pub kills: u32,
    /// Killmails on which the entity was the victim (ship types: times that hull died).
    pub losses: u32,
    /// Battles whose latest snapshot names the entity.
    pub battles: u32,
    /// Latest kill or battle time seen, Unix seconds.
    pub last_seen: i64,
}

/// The activity figures of an area (system, constellation, region) as its documents carry them.
struct AreaActivity {
    battles: i64,
    kills: i64,
    last_battle_at: Option<i64>,
    /// Battles (recent ones weigh more) plus a tenth of the kills there, capped.
    score: i64,
}

impl Entity {
    fn area_activity(&self, now: i64) -> AreaActivity {
        AreaActivity {
            battles: i64::from(self.battles),
            kills: i64::from(self.kills),
            last_battle_at: (self.battles > 0).then_some(self.last_seen),
            score: activity_score(i64::from(self.battles), self.last_seen, now)
                + i64::from(self.kills).min(1_000) / 10,
        }
    }
}

/// One decoded bus record.
#[derive(Debug, Clone)]
pub enum Input {
    Killmail(Box<KillmailEnriched>),
    Battle(BattleSnapshot),
    /// `killmail.deleted`, by key (no payload contract exists yet).
    KillmailDeleted(i64),
    /// `battle.deleted`, by key (no payload contract exists yet).
    BattleDeleted(i64),
}

/// Decodes a record of one of the consumed topics; `Err` is a counted rejection.
pub fn decode(topic: &str, key: &str, payload: &[u8]) -> Result<Input, String> {
    let by_key = || {
        key.trim()
            .parse::<i64>()
            .map_err(|_| format!("bad key {key:?}"))
    };
    match topic {
        topics::KILLMAIL_DELETED => return by_key().map(Input::KillmailDeleted),
        topics::BATTLE_DELETED => return by_key().map(Input::BattleDeleted),
        _ => {}
    }
    let env = Envelope::from_bytes(payload).map_err(|e| e.to_string())?;
    let snapshot = match topic {
        topics::KILLMAIL_ENRICHED => {
            return env
                .decode::<KillmailEnriched>()
                .map(|k| Input::Killmail(Box::new(k)))
                .map_err(|e| e.to_string());
        }
        topics::BATTLE_CREATED => env.decode::<battle::BattleCreated>().map(|b| b.0),
        topics::BATTLE_UPDATED => env.decode::<battle::BattleUpdated>().map(|b| b.0),
        topics::BATTLE_ENDED => env.decode::<battle::BattleEnded>().map(|b| b.0),
        topics::BATTLE_MERGED => env.decode::<battle::BattleMerged>().map(|b| b.0),
        other => return Err(format!("unexpected topic {other}")),
    };
    snapshot.map(Input::Battle).map_err(|e| e.to_string())
}

/// The documents and deletions one batch produces. Last write per (collection, id) wins.
#[derive(Debug, Default)]
pub struct Changes {
    ops: BTreeMap<(Collection, String), Option<Document>>,
    /// Entities whose document must be re-rendered at the end of the batch.
    dirty: BTreeSet<EntityKey>,
    /// Battles whose document must be re-rendered (names of their alliances changed).
    dirty_battles: BTreeSet<i64>,
    /// Mirror state touched by the batch, to persist ([`Changes::state`]).
    touched_entities: BTreeSet<EntityKey>,
    touched_killmails: BTreeSet<i64>,
    touched_battles: BTreeSet<i64>,
    state: StateDelta,
}

/// A battle's persisted mirror state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BattleState {
    pub battle_id: i64,
    pub revision: u64,
    /// `None` once merged or deleted (then `revision` guards against late older updates).
    pub live: Option<(BattleSnapshot, Vec<EntityKey>)>,
}

/// The mirror rows one batch changed (written by the service before its documents).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDelta {
    pub entities: Vec<(EntityKey, Entity)>,
    /// `(killmail_id, revision)`.
    pub killmails: Vec<(i64, u32)>,
    pub battles: Vec<BattleState>,
}

impl StateDelta {
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.killmails.is_empty() && self.battles.is_empty()
    }
}

impl Changes {
    fn upsert(&mut self, doc: Document) {
        self.ops
            .insert((doc.collection(), doc.id().to_owned()), Some(doc));
    }

    fn delete(&mut self, c: Collection, id: String) {
        self.ops.insert((c, id), None);
    }

    /// Documents to upsert and ids to delete per collection.
    pub fn split(self) -> (Vec<Document>, BTreeMap<Collection, Vec<String>>) {
        let mut upserts = Vec::new();
        let mut deletes: BTreeMap<Collection, Vec<String>> = BTreeMap::new();
        for ((c, id), op) in self.ops {
            match op {
                Some(doc) => upserts.push(doc),
                None => deletes.entry(c).or_default().push(id),
            }
        }
        (upserts, deletes)
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.dirty.is_empty() && self.dirty_battles.is_empty()
    }

    /// The mirror rows to persist (filled by [`Indexer::finish`]).
    pub fn state(&self) -> &StateDelta {
        &self.state
    }
}

/// The event → document mapper and its mirror of entities and battles.
pub struct Indexer {
    sde: &'static StaticData,
    entities: HashMap<EntityKey, Entity>,
    /// Highest revision applied per killmail; presence = its counters are in.
    killmail_revisions: HashMap<i64, u32>,
    /// Latest snapshot per live (not merged, not deleted) battle.
    battles: HashMap<i64, BattleSnapshot>,
    /// Entities each live battle contributes to `battles` counters.
    battle_members: HashMap<i64, Vec<EntityKey>>,
    /// Revisions of merged or deleted battles, so a late older update does not resurrect them.
    gone_battles: HashMap<i64, u64>,
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}

impl Indexer {
    pub fn new(sde: &'static StaticData) -> Indexer {
        Indexer {
            sde,
            entities: HashMap::new(),
            killmail_revisions: HashMap::new(),
            battles: HashMap::new(),
            battle_members: HashMap::new(),
            gone_battles: HashMap::new(),
        }
    }

    /// Loads a persisted mirror (at start, before the first batch).
    pub fn restore(
        &mut self,
        entities: impl IntoIterator<Item = (EntityKey, Entity)>,
        killmails: impl IntoIterator<Item = (i64, u32)>,
        battles: impl IntoIterator<Item = BattleState>,
    ) {
        self.entities.extend(entities);
        self.killmail_revisions.extend(killmails);
        for b in battles {
            match b.live {
                Some((snapshot, members)) => {
                    self.gone_battles.remove(&b.battle_id);
                    self.battle_members.insert(b.battle_id, members);
                    self.battles.insert(b.battle_id, snapshot);
                }
                None => {
                    self.battles.remove(&b.battle_id);
                    self.battle_members.remove(&b.battle_id);
                    self.gone_battles.insert(b.battle_id, b.revision);
                }
            }
        }
    }

    /// The mirror's view of an entity.
    pub fn entity(&self, kind: EntityKind, id: i64) -> Option<&Entity> {
        self.entities.get(&(kind, id))
    }

    /// Number of entities in the mirror (for `/status`).
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    /// Applies one record; the documents come out of [`Indexer::finish`].
    pub fn apply(&mut self, input: &Input, changes: &mut Changes) {
        match input {
            Input::Killmail(km) => self.apply_killmail(km, changes),
            Input::Battle(b) => self.apply_battle(b, changes),
            Input::KillmailDeleted(id) => {
                // Counters stay: a deleted mail is rare and only nudges ranking.
                changes.delete(Collection::Killmails, id.to_string());
            }
            Input::BattleDeleted(id) => {
                let rev = self.battles.get(id).map_or(0, |b| b.revision);
                self.withdraw_battle(*id, rev, changes);
            }
        }
    }

    fn learn(&mut self, who: &Affiliation, changes: &mut Changes) {
        for (kind, id, ticker) in [
            (
                EntityKind::Corporation,
                who.corporation_id,
                &who.corporation_ticker,
            ),
            (EntityKind::Alliance, who.alliance_id, &who.alliance_ticker),
        ] {
            if let (Some(id), Some(t)) = (id.filter(|&i| i > 0), ticker.as_ref())
                && !t.trim().is_empty()
            {
                let e = self.entities.entry((kind, id)).or_default();
                if e.ticker.as_deref() != Some(t) {
                    e.ticker = Some(t.clone());
                }
            }
        }
        let mut name = |kind: EntityKind, id: Option<i64>, n: &Option<String>| {
            let Some(id) = id.filter(|&i| i > 0) else {
                return;
            };
            let e = self.entities.entry((kind, id)).or_default();
            if let Some(n) = n.as_ref().filter(|n| !n.trim().is_empty())
                && e.name.as_deref() != Some(n)
            {
                e.name = Some(n.clone());
                if kind != EntityKind::Character {
                    // Battles show corporation and alliance names: re-render those naming it.
                    for (bid, members) in &self.battle_members {
                        if members.contains(&(kind, id)) {
                            changes.dirty_battles.insert(*bid);
                        }
                    }
                }
            }
            changes.dirty.insert((kind, id));
        };
        name(EntityKind::Character, who.character_id, &who.character_name);
        name(
            EntityKind::Corporation,
            who.corporation_id,
            &who.corporation_name,
        );
        name(EntityKind::Alliance, who.alliance_id, &who.alliance_name);
        if let Some(c) = who.character_id.filter(|&i| i > 0)
            && let Some(e) = self.entities.get_mut(&(EntityKind::Character, c))
        {
            e.corp_id = who.corporation_id;
            e.alliance_id = who.alliance_id;
        }
        if let Some(c) = who.corporation_id.filter(|&i| i > 0)
            && let Some(e) = self.entities.get_mut(&(EntityKind::Corporation, c))
        {
            e.alliance_id = who.alliance_id;
        }
    }

    fn apply_killmail(&mut self, km: &KillmailEnriched, changes: &mut Changes) {
        let id = km.killmail_id;
        let first = match self.killmail_revisions.get(&id) {
            Some(&seen) if km.revision < seen => return, // stale revision
            Some(_) => false,
            None => true,
        };
        self.killmail_revisions.insert(id, km.revision);
        changes.touched_killmails.insert(id);
        let when = ts(km.killmail_time);

        self.learn(&km.victim.who, changes);
        for a in km.attackers.iter().filter(|a| !a.is_npc) {
            self.learn(&a.who, changes);
        }
        let ship = &km.victim.ship;
        {
            let e = self
                .entities
                .entry((EntityKind::ShipType, ship.type_id))
                .or_default();
            if let Some(n) = &ship.type_name {
                e.name = Some(n.clone());
            }
            if let (Some(g), Some(gn)) = (ship.group_id, &ship.group_name) {
                e.group = Some((g, gn.clone()));
            }
            changes.dirty.insert((EntityKind::ShipType, ship.type_id));
        }
        changes.dirty.insert((EntityKind::System, km.system.id));
        let areas = area_keys(self.sde, km.system.id);
        for k in &areas {
            changes.dirty.insert(*k);
        }

        if first {
            let mut bump = |key: EntityKey, kill: bool| {
                let e = self.entities.entry(key).or_default();
                if kill {
                    e.kills += 1;
                } else {
                    e.losses += 1;
                }
                e.last_seen = e.last_seen.max(when);
            };
            let v = &km.victim.who;
            for (kind, id) in [
                (EntityKind::Character, v.character_id),
                (EntityKind::Corporation, v.corporation_id),
                (EntityKind::Alliance, v.alliance_id),
            ] {
                if let Some(id) = id.filter(|&i| i > 0) {
                    bump((kind, id), false);
                }
            }
            bump((EntityKind::ShipType, ship.type_id), false);
            bump((EntityKind::System, km.system.id), true);
            for k in &areas {
                bump(*k, true);
            }
            // One kill per entity per mail, however many of its pilots were on it.
            let mut seen: HashSet<EntityKey> = HashSet::new();
            for a in km.attackers.iter().filter(|a| !a.is_npc) {
                for (kind, id) in [
                    (EntityKind::Character, a.who.character_id),
                    (EntityKind::Corporation, a.who.corporation_id),
                    (EntityKind::Alliance, a.who.alliance_id),
                ] {
                    if let Some(id) = id.filter(|&i| i > 0)
                        && seen.insert((kind, id))
                    {
                        bump((kind, id), true);
                    }
                }
            }
        }
        changes.upsert(Document::Killmail(killmail_doc(km)));
    }

    fn apply_battle(&mut self, b: &BattleSnapshot, changes: &mut Changes) {
        let id = b.battle_id;
        if let Some(&gone) = self.gone_battles.get(&id)
            && b.revision <= gone
            && b.status != BattleStatus::Merged
        {
            return; // an older update of a battle already merged away
        }
        if let Some(cur) = self.battles.get(&id)
            && b.revision < cur.revision
        {
            return;
        }
        if b.status == BattleStatus::Merged {
            self.withdraw_battle(id, b.revision, changes);
            return;
        }
        self.gone_battles.remove(&id);
        let members = battle_members(self.sde, b);
        let old = self.battle_members.remove(&id).unwrap_or_default();
        let end = ts(b.end_time);
        for k in &old {
            if !members.contains(k)
                && let Some(e) = self.entities.get_mut(k)
            {
                e.battles = e.battles.saturating_sub(1);
                changes.dirty.insert(*k);
            }
        }
        for k in &members {
            let e = self.entities.entry(*k).or_default();
            if !old.contains(k) {
                e.battles += 1;
            }
            e.last_seen = e.last_seen.max(end);
            changes.dirty.insert(*k);
        }
        self.battle_members.insert(id, members);
        self.battles.insert(id, b.clone());
        changes.dirty_battles.insert(id);
        changes.touched_battles.insert(id);
    }

    /// Removes a merged or deleted battle: its document and its counter contributions.
    fn withdraw_battle(&mut self, id: i64, revision: u64, changes: &mut Changes) {
        for k in self.battle_members.remove(&id).unwrap_or_default() {
            if let Some(e) = self.entities.get_mut(&k) {
                e.battles = e.battles.saturating_sub(1);
                changes.dirty.insert(k);
            }
        }
        self.battles.remove(&id);
        self.gone_battles.insert(id, revision);
        changes.dirty_battles.remove(&id);
        changes.touched_battles.insert(id);
        changes.delete(Collection::Battles, id.to_string());
    }

    /// Renders every document the batch touched (entities after all their counter changes).
    pub fn finish(&self, mut changes: Changes, now: i64) -> Changes {
        for key in std::mem::take(&mut changes.dirty) {
            changes.touched_entities.insert(key);
            if let Some(doc) = self.render_entity(key, now) {
                changes.upsert(doc);
            }
        }
        let mut state = StateDelta::default();
        for key in std::mem::take(&mut changes.touched_entities) {
            if let Some(e) = self.entities.get(&key) {
                state.entities.push((key, e.clone()));
            }
        }
        for id in std::mem::take(&mut changes.touched_killmails) {
            if let Some(&rev) = self.killmail_revisions.get(&id) {
                state.killmails.push((id, rev));
            }
        }
        for id in std::mem::take(&mut changes.touched_battles) {
            state.battles.push(match self.battles.get(&id) {
                Some(b) => BattleState {
                    battle_id: id,
                    revision: b.revision,
                    live: Some((
                        b.clone(),
                        self.battle_members.get(&id).cloned().unwrap_or_default(),
                    )),
                },
                None => BattleState {
                    battle_id: id,
                    revision: self.gone_battles.get(&id).copied().unwrap_or(0),
                    live: None,
                },
            });
        }
        changes.state = state;
        for id in std::mem::take(&mut changes.dirty_battles) {
            if let Some(b) = self.battles.get(&id) {
                changes.upsert(Document::Battle(self.battle_doc(b)));
            }
        }
        changes
    }

    fn name_of(&self, kind: EntityKind, id: i64) -> Option<String> {
        self.entities.get(&(kind, id)).and_then(|e| e.name.clone())
    }

    fn render_entity(&self, (kind, id): EntityKey, now: i64) -> Option<Document> {
        let e = self.entities.get(&(kind, id)).cloned().unwrap_or_default();
        let sid = id.to_string();
        Some(match kind {
            EntityKind::Character => {
                // Battle snapshots name no pilots: a character's battleCount is the number of
                // killmails it was on.
                let involved = i64::from(e.kills + e.losses);
                Document::Character(CharacterDoc {
                    id: sid,
                    name: e.name?,
                    corp_id: e.corp_id.map(|c| c.to_string()),
                    corp_name: e.corp_id.and_then(|c| self.corp_name(c)),
                    alliance_id: e.alliance_id.map(|a| a.to_string()),
                    alliance_name: e
                        .alliance_id
                        .and_then(|a| self.name_of(EntityKind::Alliance, a)),
                    battle_count: involved,
                    last_seen_at: e.last_seen,
                    activity_score: activity_score(involved, e.last_seen, now),
                })
            }
            EntityKind::Corporation => {
                let npc = self.sde.npc_corporation(id);
                Document::Corporation(CorporationDoc {
                    id: sid,
                    name: e.name.or_else(|| npc.map(|n| n.name.clone()))?,
                    ticker: e
                        .ticker
                        .clone()
                        .or_else(|| npc.map(|n| n.ticker.clone()))
                        .unwrap_or_default(),
                    alliance_id: e.alliance_id.map(|a| a.to_string()),
                    alliance_name: e
                        .alliance_id
                        .and_then(|a| self.name_of(EntityKind::Alliance, a)),
                    battle_count: i64::from(e.battles),
                    last_seen_at: e.last_seen,
                    activity_score: activity_score(i64::from(e.battles), e.last_seen, now)
                        + i64::from(e.kills + e.losses).min(1_000) / 10,
                })
            }
            EntityKind::Alliance => Document::Alliance(AllianceDoc {
                id: sid,
                name: e.name?,
                ticker: e.ticker.unwrap_or_default(),
                battle_count: i64::from(e.battles),
                last_seen_at: e.last_seen,
                activity_score: activity_score(i64::from(e.battles), e.last_seen, now)
                    + i64::from(e.kills + e.losses).min(1_000) / 10,
            }),
            EntityKind::System => {
                let mut d = system_doc(self.sde, id)?;
                let a = e.area_activity(now);
                (d.battle_count, d.last_battle_at, d.activity_score) =
                    (a.battles, a.last_battle_at, a.score);
                Document::System(d)
            }
            EntityKind::Region => {
                let mut d = region_doc(self.sde, id)?;
                let a = e.area_activity(now);
                (
                    d.battle_count,
                    d.kill_count,
                    d.last_battle_at,
                    d.activity_score,
                ) = (a.battles, a.kills, a.last_battle_at, a.score);
                Document::Region(d)
            }
            EntityKind::Constellation => {
                let mut d = constellation_doc(self.sde, id)?;
                let a = e.area_activity(now);
                (
                    d.battle_count,
                    d.kill_count,
                    d.last_battle_at,
                    d.activity_score,
                ) = (a.battles, a.kills, a.last_battle_at, a.score);
                Document::Constellation(d)
            }
            EntityKind::ShipType => {
                let mut d = ship_type_doc(self.sde, id).or_else(|| {
                    let (gid, gname) = e.group.clone().unwrap_or((0, String::new()));
                    Some(ShipTypeDoc {
                        id: sid,
                        name: e.name.clone()?,
                        group_id: gid.to_string(),
                        group_name: gname,
                        ..Default::default()
                    })
                })?;
                d.kill_count = i64::from(e.losses);
                d.activity_score = activity_score(i64::from(e.losses), e.last_seen, now);
                Document::ShipType(d)
            }
        })
    }

    fn corp_name(&self, id: i64) -> Option<String> {
        self.name_of(EntityKind::Corporation, id)
            .or_else(|| self.sde.npc_corporation(id).map(|n| n.name.clone()))
    }

    fn battle_doc(&self, b: &BattleSnapshot) -> BattleDoc {
        let system = b.system_ids.first().and_then(|&s| self.sde.system(s));
        let mut alliance_ids = Vec::new();
        let mut corp_ids = Vec::new();
        for side in &b.sides {
            for a in &side.alliance_ids {
                if !alliance_ids.contains(a) {
                    alliance_ids.push(*a);
                }
            }
            for c in &side.corporation_ids {
                if !corp_ids.contains(c) {
                    corp_ids.push(*c);
                }
            }
        }
        let start = ts(b.start_time);
        let end = ts(b.end_time);
        let isk = b.total_isk_destroyed.max(0.0) as i64;
        BattleDoc {
            id: b.battle_id.to_string(),
            system_id: b.system_ids.first().map(i64::to_string).unwrap_or_default(),
            system_name: system.map_or_else(
                || format!("System {}", b.system_ids.first().copied().unwrap_or(0)),
                |s| s.name.clone(),
            ),
            region_id: b.region_ids.first().map(i64::to_string).unwrap_or_default(),
            region_name: system.map(|s| s.region_name.clone()).unwrap_or_default(),
            space_type: b
                .security_types
                .first()
                .cloned()
                .or_else(|| system.map(|s| s.security_type.as_str().to_owned()))
                .unwrap_or_default(),
            security_level: system.and_then(|s| s.security_class.clone()),
            start_time: start,
            end_time: end,
            duration: end - start,
            total_kills: i64::from(b.total_kills),
            total_participants: i64::from(b.pilots),
            total_isk_destroyed: isk,
            alliance_names: alliance_ids
                .iter()
                .filter_map(|&a| self.name_of(EntityKind::Alliance, a))
                .collect(),
            alliance_ids: alliance_ids.iter().map(i64::to_string).collect(),
            corp_names: corp_ids.iter().filter_map(|&c| self.corp_name(c)).collect(),
            corp_ids: corp_ids.iter().map(i64::to_string).collect(),
            character_names: Vec::new(),
            battle_score: battle_score(isk, i64::from(b.total_kills), i64::from(b.pilots)),
        }
    }
}

/// The region and constellation of a system (empty when the SDE does not know it).
fn area_keys(sde: &StaticData, system_id: i64) -> Vec<EntityKey> {
    sde.system(system_id)
        .map(|s| {
            vec![
                (EntityKind::Region, s.region_id),
                (EntityKind::Constellation, s.constellation_id),
            ]
        })
        .unwrap_or_default()
}

/// The entities a battle snapshot counts for: its systems (and their constellations and
/// regions) and its sides' main alliances and corporations.
fn battle_members(sde: &StaticData, b: &BattleSnapshot) -> Vec<EntityKey> {
    let mut out: Vec<EntityKey> = Vec::new();
    let mut add = |k: EntityKey| {
        if k.1 > 0 && !out.contains(&k) {
            out.push(k);
        }
    };
    for s in &b.system_ids {
        add((EntityKind::System, *s));
        for k in area_keys(sde, *s) {
            add(k);
        }
    }
    for side in &b.sides {
        for a in &side.alliance_ids {
            add((EntityKind::Alliance, *a));
        }
        for c in &side.corporation_ids {
            add((EntityKind::Corporation, *c));
        }
    }
    out
}

/// The flat killmail document.
pub fn killmail_doc(km: &KillmailEnriched) -> KillmailDoc {
    let v = &km.victim;
    let mut alliance_ids: Vec<i64> = Vec::new();
    let mut alliance_names: Vec<String> = Vec::new();
    let mut corp_ids: Vec<i64> = Vec::new();
    for a in &km.attackers {
        if let Some(al) = a.who.alliance_id.filter(|&i| i > 0)
            && !alliance_ids.contains(&al)
        {
            alliance_ids.push(al);
            if let Some(n) = &a.who.alliance_name {
                alliance_names.push(n.clone());
            }
        }
        if let Some(c) = a.who.corporation_id.filter(|&i| i > 0)
            && !corp_ids.contains(&c)
        {
            corp_ids.push(c);
        }
    }
    let s = |id: Option<i64>| id.filter(|&i| i > 0).map(|i| i.to_string());
    KillmailDoc {
        id: km.killmail_id.to_string(),
        killmail_time: ts(km.killmail_time),
        system_id: km.system.id.to_string(),
        system_name: km
            .system
            .name
            .clone()
            .unwrap_or_else(|| format!("System {}", km.system.id)),
        region_id: s(km.system.region_id).unwrap_or_default(),
        region_name: km.system.region_name.clone().unwrap_or_default(),
        space_type: km.system.security_type.clone().unwrap_or_default(),
        victim_character_id: s(v.who.character_id),
        victim_character_name: v.who.character_name.clone(),
        victim_corp_id: s(v.who.corporation_id),
        victim_corp_name: v.who.corporation_name.clone(),
        victim_alliance_id: s(v.who.alliance_id),
        victim_alliance_name: v.who.alliance_name.clone(),
        ship_type_id: v.ship.type_id.to_string(),
        ship_type_name: v
            .ship
            .type_name
            .clone()
            .unwrap_or_else(|| format!("Type {}", v.ship.type_id)),
        ship_group_id: v.ship.group_id.map(|g| g.to_string()).unwrap_or_default(),
        ship_group_name: v.ship.group_name.clone().unwrap_or_default(),
        isk_value: km.isk.total.max(0.0) as i64,
        attacker_count: i64::from(km.attacker_count),
        attacker_alliance_ids: alliance_ids.iter().map(i64::to_string).collect(),
        attacker_alliance_names: alliance_names,
        attacker_corp_ids: corp_ids.iter().map(i64::to_string).collect(),
        battle_id: None,
    }
}

fn system_doc(sde: &StaticData, id: i64) -> Option<SystemDoc> {
    let s = sde.system(id)?;
    Some(SystemDoc {
        id: id.to_string(),
        name: s.name.clone(),
        region_id: s.region_id.to_string(),
        region_name: s.region_name.clone(),
        constellation_id: s.constellation_id.to_string(),
        constellation_name: s.constellation_name.clone(),
        space_type: s.security_type.as_str().to_owned(),
        security_level: s.security_class.clone(),
        security_status: s.security_status,
        battle_count: 0,
        last_battle_at: None,
        activity_score: 0,
    })
}

fn region_doc(sde: &StaticData, id: i64) -> Option<RegionDoc> {
    let r = sde.region(id)?;
    Some(RegionDoc {
        id: id.to_string(),
        name: r.name.clone(),
        ..Default::default()
    })
}

fn constellation_doc(sde: &StaticData, id: i64) -> Option<ConstellationDoc> {
    let c = sde.constellation(id)?;
    Some(ConstellationDoc {
        id: id.to_string(),
        name: c.name.clone(),
        region_id: c.region_id.to_string(),
        region_name: sde
            .region(c.region_id)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        ..Default::default()
    })
}

fn ship_type_doc(sde: &StaticData, id: i64) -> Option<ShipTypeDoc> {
    let t = sde.type_info(id)?;
    let g = sde.group(t.group_id)?;
    Some(ShipTypeDoc {
        id: id.to_string(),
        name: t.name.clone(),
        group_id: g.id.to_string(),
        group_name: g.name.clone(),
        kill_count: 0,
        activity_score: 0,
    })
}

/// Every solar system, constellation and region and every published ship type of the SDE,
/// with zero activity: what is searchable before the first killmail. The SDE has no listing of
/// regions and constellations, so they are the ones that have systems.
pub fn static_docs(sde: &StaticData) -> Vec<Document> {
    let mut docs: Vec<Document> = sde
        .systems()
        .filter_map(|s| system_doc(sde, s.id))
        .map(Document::System)
        .collect();
    let regions: BTreeSet<i64> = sde.systems().map(|s| s.region_id).collect();
    let constellations: BTreeSet<i64> = sde.systems().map(|s| s.constellation_id).collect();
    docs.extend(
        regions
            .into_iter()
            .filter_map(|id| region_doc(sde, id))
            .map(Document::Region),
    );
    docs.extend(
        constellations
            .into_iter()
            .filter_map(|id| constellation_doc(sde, id))
            .map(Document::Constellation),
    );
    docs.extend(
        sde.types()
            .filter(|t| {
                t.published
                    && sde
                        .type_category(t.id)
                        .is_some_and(|c| c.id == SHIP_CATEGORY)
            })
            .filter_map(|t| ship_type_doc(sde, t.id))
            .map(Document::ShipType),
    );
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_docs_cover_systems_and_ships() {
        let docs = static_docs(StaticData::bundled());
        let count = |c: Collection| docs.iter().filter(|d| d.collection() == c).count();
        let systems = count(Collection::Systems);
        let ships = count(Collection::ShipTypes);
        assert!(systems > 5_000, "{systems}");
        assert!(ships > 300, "{ships}");
        // Known space has 60+ regions, wormhole space and Pochven add more.
        assert!(
            count(Collection::Regions) > 60,
            "{}",
            count(Collection::Regions)
        );
        assert!(count(Collection::Constellations) > 500);
        assert!(
            docs.iter()
                .any(|d| matches!(d, Document::Region(r) if r.name == "Delve"))
        );
        assert!(
            docs.iter()
                .any(|d| matches!(d, Document::System(s) if s.name == "O-IVNH"))
        );
        assert!(
            docs.iter()
                .any(|d| matches!(d, Document::ShipType(s) if s.name == "Rifter"))
        );
    }

    #[test]
    fn undecodable_records_are_rejections() {
        assert!(decode(topics::KILLMAIL_ENRICHED, "1", b"{").is_err());
        assert!(decode(topics::BATTLE_DELETED, "x", b"").is_err());
        assert!(matches!(
            decode(topics::KILLMAIL_DELETED, "42", b""),
            Ok(Input::KillmailDeleted(42))
        ));
    }
}
