#!/usr/bin/env python3
"""Builds the small conformance fixtures in this folder from /work/shared/data (real data).

Run from anywhere: python3 build_fixtures.py [/path/to/shared/data]. Output is deterministic.
Every value comes from the real files (ESI entity lists, SDE CSVs, EVE Ref killmails of
2021-11-27..12-02, derived-top-fights.json); activity counts are computed from that week.
Killmail ISK is the victim ship's 2025 ESI average price (only an order of magnitude).
"""
import csv, gzip, json, os, sys
from datetime import datetime
from collections import Counter, defaultdict

DATA = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"
OUT = os.path.dirname(os.path.abspath(__file__))

def gz_json(p):
    with gzip.open(os.path.join(DATA, p), "rt") as f:
        return json.load(f)

def csv_rows(p):
    path = os.path.join(DATA, p)
    f = gzip.open(path, "rt") if p.endswith(".gz") else open(path)
    return list(csv.DictReader(f))

regions = {r["regionID"]: r for r in csv_rows("sde/mapRegions.csv")}
consts = {c["constellationID"]: c for c in csv_rows("sde/mapConstellations.csv")}
systems = {s["solarSystemID"]: s for s in csv_rows("sde/mapSolarSystems.csv.gz")}
groups = {g["groupID"]: g for g in csv_rows("sde/invGroups.csv")}
types = {t["typeID"]: t for t in csv_rows("sde/invTypes.csv.gz")}
prices = {str(p["type_id"]): p.get("average_price") or p.get("adjusted_price") or 0
          for p in gz_json("esi/markets-prices-2025-05-13.json.gz")}
alliances = {str(a["id"]): a for a in gz_json("esi/entities/alliances-id-name-ticker.json.gz")}
corps = {str(c["id"]): c for c in gz_json("esi/entities/corporations-id-name-ticker.json.gz")}
chars = {str(c["character_id"]): c["name"] for c in gz_json("esi/characters-id-name.json.gz")}
fights = json.load(open(os.path.join(DATA, "killmails/derived-top-fights.json")))["fights"]

def unix(iso):
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())

def space_type(sys_row):
    region = regions[sys_row["regionID"]]
    if region["space"] == "wormhole":
        return "wormhole"
    if sys_row["regionID"] == "10000070":
        return "pochven"
    sec = float(sys_row["security"])
    sec = round(sec, 1) if sec > 0.05 or sec <= 0 else 0.1
    return "highsec" if sec >= 0.45 else ("lowsec" if sec > 0.0 else "nullsec")

# One pass over the week: activity counts and the killmails the fixtures need.
want_km = set()
for f in fights[:14]:
    want_km.update(f["killmail_ids"][:20])
kms = {}
sys_kills, ship_kills, ally_seen, corp_seen, char_seen = Counter(), Counter(), Counter(), Counter(), Counter()
for day in ["27", "28", "29", "30"]:
    name = f"killmails/everef-killmails-2021-11-{day}.jsonl.gz"
    with gzip.open(os.path.join(DATA, name), "rt") as fh:
        for line in fh:
            k = json.loads(line)
            sys_kills[str(k["solar_system_id"])] += 1
            ship_kills[str(k["victim"]["ship_type_id"])] += 1
            for p in [k["victim"]] + k["attackers"]:
                for key, ctr in (("alliance_id", ally_seen), ("corporation_id", corp_seen), ("character_id", char_seen)):
                    if p.get(key):
                        ctr[str(p[key])] += 1
            if k["killmail_id"] in want_km:
                kms[k["killmail_id"]] = k

def km_doc(k, battle_id):
    s = systems[str(k["solar_system_id"])]
    v = k["victim"]
    ship = types.get(str(v["ship_type_id"]), {})
    grp = groups.get(ship.get("groupID", ""), {})
    doc = {
        "id": str(k["killmail_id"]),
        "killmailTime": unix(k["killmail_time"]),
        "systemId": s["solarSystemID"], "systemName": s["solarSystemName"],
        "regionId": s["regionID"], "regionName": regions[s["regionID"]]["regionName"],
        "spaceType": space_type(s),
        "shipTypeId": str(v["ship_type_id"]), "shipTypeName": ship.get("typeName", ""),
        "shipGroupId": ship.get("groupID", ""), "shipGroupName": grp.get("groupName", ""),
        "iskValue": int(float(prices.get(str(v["ship_type_id"]), 0))),
        "attackerCount": len(k["attackers"]),
        "attackerAllianceIds": sorted({str(a["alliance_id"]) for a in k["attackers"] if a.get("alliance_id")})[:10],
        "battleId": battle_id,
    }
    doc["attackerAllianceNames"] = sorted({alliances[a]["name"] for a in doc["attackerAllianceIds"] if a in alliances})
    doc["attackerCorpIds"] = sorted({str(a["corporation_id"]) for a in k["attackers"] if a.get("corporation_id")})[:10]
    for key, field, table in (("character_id", "victimCharacter", None), ("corporation_id", "victimCorp", corps), ("alliance_id", "victimAlliance", alliances)):
        if v.get(key):
            doc[field + "Id"] = str(v[key])
            name = chars.get(str(v[key])) if table is None else table.get(str(v[key]), {}).get("name")
            if name:
                doc[field + "Name"] = name
    return doc

battles, killmails = [], []
used_allies, used_corps, used_chars, used_systems = set(), set(), set(), set()
for f in fights[:14]:
    if f["start"][:10] > "2021-11-30":
        continue
    bid = f"battle-{f['solar_system_id']}-{f['start'][:16].replace(':', '').replace('-', '')}"
    ks = [kms[i] for i in f["killmail_ids"][:20] if i in kms]
    if not ks:
        continue
    s = systems[str(f["solar_system_id"])]
    ally_ids = Counter(); corp_ids = Counter(); char_ids = Counter()
    for k in ks:
        killmails.append(km_doc(k, bid))
        for p in [k["victim"]] + k["attackers"]:
            if p.get("alliance_id"): ally_ids[str(p["alliance_id"])] += 1
            if p.get("corporation_id"): corp_ids[str(p["corporation_id"])] += 1
            if p.get("character_id"): char_ids[str(p["character_id"])] += 1
    top_allies = [a for a, _ in ally_ids.most_common(10) if a in alliances]
    top_corps = [c for c, _ in corp_ids.most_common(10) if c in corps]
    top_chars = [c for c, _ in char_ids.most_common(200) if c in chars][:50]
    used_allies.update(top_allies); used_corps.update(top_corps); used_chars.update(top_chars)
    used_systems.add(s["solarSystemID"])
    isk = sum(int(float(prices.get(str(k["victim"]["ship_type_id"]), 0))) for k in ks)
    battles.append({
        "id": bid, "systemId": s["solarSystemID"], "systemName": s["solarSystemName"],
        "regionId": s["regionID"], "regionName": regions[s["regionID"]]["regionName"],
        "spaceType": space_type(s), "startTime": unix(f["start"]), "endTime": unix(f["end"]),
        "totalKills": f["kills"], "totalParticipants": f["pilots"], "totalIskDestroyed": isk,
        "allianceIds": top_allies, "allianceNames": [alliances[a]["name"] for a in top_allies],
        "corpIds": top_corps, "corpNames": [corps[c]["name"] for c in top_corps],
        "characterNames": [chars[c] for c in top_chars],
    })

# Entities: everything the battles reference, the most active, and awkward names.
awkward_allies = {"99000026", "99000163", "99000289", "99000423", "99000814", "99000954",
                  "99010549", "99014066", "498125261", "1354830081", "1727758877", "1900696668", "99003581"}
act_allies = {a for a, _ in ally_seen.most_common(150) if a in alliances}
ally_out = sorted(used_allies | awkward_allies | act_allies, key=int)
corp_pick = {c for c, _ in corp_seen.most_common(250) if c in corps} | used_corps
corp_pick |= {c for c, v in corps.items() if v["ticker"] in ("GSF", "-A-", "SUMOS", "CONDI") or "'" in v["name"]} 
corp_out = sorted(corp_pick, key=int)[:600]
char_pick = {c for c, _ in char_seen.most_common(3000) if c in chars} | used_chars
char_pick |= {c for c, n in chars.items() if "'" in n or len(n) <= 3}
char_out = sorted(char_pick, key=int)

sys_pick = {s for s, v in systems.items() if regions[v["regionID"]]["regionName"] in
            ("Curse", "Cloud Ring", "Pure Blind", "The Citadel", "Etherium Reach", "Tribute", "The Forge")}
sys_pick |= used_systems | {"31000368", "31000005", "30000142"}
sys_pick |= {s for s, v in systems.items() if len(v["solarSystemName"]) <= 2}

def write(name, rows):
    with open(os.path.join(OUT, name), "w") as fh:
        for r in rows:
            fh.write(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n")

write("alliances.jsonl", [{"id": a, "name": alliances[a]["name"], "ticker": alliances[a]["ticker"], "seen": ally_seen[a]} for a in ally_out])
write("corporations.jsonl", [{"id": c, "name": corps[c]["name"], "ticker": corps[c]["ticker"], "seen": corp_seen[c]} for c in corp_out])
write("characters.jsonl", [{"id": c, "name": chars[c], "seen": char_seen[c]} for c in char_out])
write("systems.jsonl", [{
    "id": s, "name": systems[s]["solarSystemName"], "regionId": systems[s]["regionID"],
    "regionName": regions[systems[s]["regionID"]]["regionName"],
    "constellationId": systems[s]["constellationID"],
    "constellationName": consts[systems[s]["constellationID"]]["constellationName"],
    "security": float(systems[s]["security"]), "spaceType": space_type(systems[s]), "kills": sys_kills[s],
} for s in sorted(sys_pick, key=int)])
ships = [t for t in types.values() if t["published"] == "1" and groups.get(t["groupID"], {}).get("categoryID") == "6"]
write("ship_types.jsonl", [{"id": t["typeID"], "name": t["typeName"], "groupId": t["groupID"],
    "groupName": groups[t["groupID"]]["groupName"], "kills": ship_kills[t["typeID"]]} for t in sorted(ships, key=lambda t: int(t["typeID"]))])
write("battles.jsonl", battles)
write("killmails.jsonl", killmails)
