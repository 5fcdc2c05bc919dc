//! What a notification says: a compact summary (history, WebSocket, generic JSON webhooks)
//! and a Discord message with one rich embed, within Discord's embed limits and with
//! `allowed_mentions` empty so no entity name can ping anyone.

use bs_events::{BattleSnapshot, KillmailEnriched};
use serde_json::{Value, json};

/// The kind of thing a notification is about (part of the idempotency key).
pub const KIND_KILLMAIL: &str = "killmail";
pub const KIND_BATTLE: &str = "battle";

fn isk(v: f64) -> String {
    let (n, unit) = if v >= 1e12 {
        (v / 1e12, "T")
    } else if v >= 1e9 {
        (v / 1e9, "B")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{n:.2}{unit} ISK")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn name(n: &Option<String>, id: Option<i64>) -> String {
    match (n, id) {
        (Some(n), _) => n.clone(),
        (None, Some(id)) => format!("#{id}"),
        (None, None) => "unknown".into(),
    }
}

/// Security status as the game displays it: one decimal, and anything above 0.0 but below
/// 0.05 shows as 0.1 (it is still low-sec).
fn security_display(sec: Option<f64>) -> Option<f64> {
    sec.map(|s| {
        if s > 0.0 && s < 0.05 {
            0.1
        } else {
            (s * 10.0).round() / 10.0
        }
    })
}

/// The summary of a killmail notification.
pub fn killmail_summary(km: &KillmailEnriched) -> Value {
    let fb = km.final_blow();
    json!({
        "kind": KIND_KILLMAIL,
        "killmail_id": km.killmail_id,
        "hash": km.hash,
        "time": km.killmail_time,
        "system_id": km.system.id,
        "system": km.system.name,
        "region": km.system.region_name,
        "security_type": km.system.security_type,
        // The rounded security the game shows (the UI colours it).
        "security": security_display(km.system.security_status),
        "victim": {
            "character_id": km.victim.who.character_id,
            "character": km.victim.who.character_name,
            "corporation_id": km.victim.who.corporation_id,
            "corporation": km.victim.who.corporation_name,
            "alliance_id": km.victim.who.alliance_id,
            "alliance": km.victim.who.alliance_name,
            "ship_type_id": km.victim.ship.type_id,
            "ship": km.victim.ship.type_name,
            "ship_class": km.victim.ship.class,
        },
        "final_blow": fb.map(|a| json!({
            "character_id": a.who.character_id, "character": a.who.character_name,
            "ship_type_id": a.ship.as_ref().map(|s| s.type_id),
        })),
        "attackers": km.attacker_count,
        "pilots": km.pilot_count,
        "isk": km.isk.total,
    })
}

/// The summary of a battle notification.
pub fn battle_summary(b: &BattleSnapshot) -> Value {
    json!({
        "kind": KIND_BATTLE,
        "battle_id": b.battle_id,
        "status": b.status,
        "system_ids": b.system_ids,
        "region_ids": b.region_ids,
        "start_time": b.start_time,
        "end_time": b.end_time,
        "kills": b.total_kills,
        "isk": b.total_isk_destroyed,
        "pilots": b.pilots,
    })
}

/// A Discord webhook message for a killmail. `delivery` goes into the footer so humans can
/// spot duplicates.
pub fn discord_killmail(km: &KillmailEnriched, public_url: &str, delivery: &str) -> Value {
    let victim = name(&km.victim.who.character_name, km.victim.who.character_id);
    let ship = name(&km.victim.ship.type_name, Some(km.victim.ship.type_id));
    let system = name(&km.system.name, Some(km.system.id));
    let zkb = format!("https://zkillboard.com/kill/{}/", km.killmail_id);
    let mut attackers: Vec<String> = km
        .attackers
        .iter()
        .take(5)
        .map(|a| {
            let who = name(&a.who.character_name, a.who.character_id);
            let ship = a
                .ship
                .as_ref()
                .map(|s| name(&s.type_name, Some(s.type_id)))
                .unwrap_or_else(|| "?".into());
            format!("{}{who} ({ship})", if a.final_blow { "★ " } else { "" })
        })
        .collect();
    if km.attackers.len() > 5 {
        attackers.push(format!("… and {} more", km.attackers.len() - 5));
    }
    let corp = name(
        &km.victim.who.corporation_name,
        km.victim.who.corporation_id,
    );
    json!({
        "username": "BattleScope",
        "allowed_mentions": { "parse": [] },
        "embeds": [{
            "title": clip(&format!("{victim} lost a {ship} in {system}"), 256),
            "url": zkb,
            "description": clip(&format!(
                "**{}** destroyed · {} pilots · [BattleScope]({}/killmails/{}) · [zKillboard]({zkb})",
                isk(km.isk.total), km.pilot_count, public_url.trim_end_matches('/'), km.killmail_id
            ), 4096),
            "timestamp": km.killmail_time,
            "thumbnail": { "url": format!("https://images.evetech.net/types/{}/render?size=64", km.victim.ship.type_id) },
            "fields": [
                { "name": "Victim", "value": clip(&format!("{victim}\n{corp}"), 1024), "inline": true },
                { "name": "Ship", "value": clip(&ship, 1024), "inline": true },
                { "name": "System", "value": clip(&format!("{system} ({})", km.system.security_type.as_deref().unwrap_or("?")), 1024), "inline": true },
                { "name": format!("Attackers ({})", km.attacker_count), "value": clip(&attackers.join("\n"), 1024), "inline": false },
            ],
            "footer": { "text": clip(&format!("delivery {delivery}"), 2048) },
        }]
    })
}

/// A Discord webhook message for a battle trigger.
pub fn discord_battle(b: &BattleSnapshot, public_url: &str, delivery: &str) -> Value {
    let link = format!(
        "{}/battles/{}",
        public_url.trim_end_matches('/'),
        b.battle_id
    );
    json!({
        "username": "BattleScope",
        "allowed_mentions": { "parse": [] },
        "embeds": [{
            "title": clip(&format!("Battle {}: {} kills, {}", b.battle_id, b.total_kills, isk(b.total_isk_destroyed)), 256),
            "url": link,
            "description": clip(&format!("{} pilots · {} sides · [BattleScope]({link})", b.pilots, b.sides.len()), 4096),
            "timestamp": b.end_time,
            "footer": { "text": clip(&format!("delivery {delivery}"), 2048) },
        }]
    })
}

/// The generic JSON webhook body.
pub fn generic(summary: &Value, subscription_id: i64, delivery: &str) -> Value {
    json!({ "subscription_id": subscription_id, "delivery": delivery, "notification": summary })
}
