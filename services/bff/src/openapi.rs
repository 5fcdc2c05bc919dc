//! The OpenAPI 3.1 document of `/api`, written by hand with `serde_json` (small, no codegen).
//!
//! A test walks it: every path here is routed and answers JSON, and every routed API path
//! ([`crate::api::ROUTES`]) is here.

use serde_json::{Value, json};

fn param(name: &str, loc: &str, ty: &str, desc: &str) -> Value {
    json!({ "name": name, "in": loc, "required": loc == "path", "description": desc, "schema": { "type": ty } })
}

fn path_id(desc: &str) -> Value {
    param("id", "path", "integer", desc)
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({
        "200": { "description": desc, "content": { "application/json": { "schema": schema } } },
        "4XX": { "$ref": "#/components/responses/Error" },
        "503": { "$ref": "#/components/responses/Unavailable" },
    })
}

fn op(summary: &str, tag: &str, params: Vec<Value>, responses: Value) -> Value {
    json!({ "get": { "summary": summary, "tags": [tag], "parameters": params, "responses": responses } })
}

fn battle_filters() -> Vec<Value> {
    vec![
        param(
            "from",
            "query",
            "string",
            "RFC 3339; battles overlapping [from, to] by kill time",
        ),
        param("to", "query", "string", "RFC 3339"),
        param("system_id", "query", "integer", "solar system"),
        param("region_id", "query", "integer", "region"),
        param(
            "security_type",
            "query",
            "string",
            "highsec | lowsec | nullsec | wormhole | pochven",
        ),
        param("alliance_id", "query", "integer", "alliance involved"),
        param("corporation_id", "query", "integer", "corporation involved"),
        param("character_id", "query", "integer", "character involved"),
        param("min_kills", "query", "integer", "at least this many kills"),
        param(
            "min_isk",
            "query",
            "number",
            "at least this much ISK destroyed",
        ),
        param(
            "min_pilots",
            "query",
            "integer",
            "at least this many pilots",
        ),
        param("status", "query", "string", "active | ended"),
        param(
            "sort",
            "query",
            "string",
            "start_time | kills | isk | pilots | duration",
        ),
        param("order", "query", "string", "desc (default) | asc"),
        param(
            "limit",
            "query",
            "integer",
            "page size, at most 500 (default 50)",
        ),
        param(
            "cursor",
            "query",
            "string",
            "the previous page's next_cursor",
        ),
    ]
}

/// Several operations on one path: `(method, summary, parameters, responses)`.
fn ops(tag: &str, list: Vec<(&str, &str, Vec<Value>, Value)>) -> Value {
    let mut m = serde_json::Map::new();
    for (method, summary, params, responses) in list {
        let mut o = json!({ "summary": summary, "tags": [tag], "parameters": params, "responses": responses });
        if matches!(method, "post" | "put") && !summary.contains("(no body)") {
            o["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        m.insert(method.to_owned(), o);
    }
    Value::Object(m)
}

/// Success with another status than 200 (201, 202, 204, 101); `Value::Null`: no body.
fn answered(code: &str, desc: &str, schema: Value) -> Value {
    let body = if schema.is_null() {
        json!({ "description": desc })
    } else {
        json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
    };
    let mut r = json!({
        "4XX": { "$ref": "#/components/responses/Error" },
        "503": { "$ref": "#/components/responses/Unavailable" },
    });
    r[code] = body;
    r
}

/// The notification service's user API as the BFF serves it (see [`crate::notify`]).
fn notification_paths() -> Vec<(&'static str, Value)> {
    let sub = json!({ "$ref": "#/components/schemas/Subscription" });
    let note = json!({ "$ref": "#/components/schemas/Notification" });
    let watch = json!({ "$ref": "#/components/schemas/Watchlist" });
    let arr = |s: &Value| json!({ "type": "array", "items": s });
    let id = || vec![path_id("id")];
    let tag = "notifications";
    vec![
        (
            "/api/subscriptions",
            ops(
                tag,
                vec![
                    (
                        "get",
                        "The caller's subscriptions, each webhook with its delivery status (delivered, pending, failed, last error) and disabled reason",
                        vec![],
                        ok("subscriptions", arr(&sub)),
                    ),
                    (
                        "post",
                        "Create a subscription: {name, filter, websocket?, enabled?, webhooks: [{url, kind: discord|json}]}",
                        vec![],
                        answered("201", "created", sub.clone()),
                    ),
                ],
            ),
        ),
        (
            "/api/subscriptions/{id}",
            ops(
                tag,
                vec![
                    (
                        "get",
                        "One subscription",
                        id(),
                        ok("the subscription", sub.clone()),
                    ),
                    (
                        "put",
                        "Replace a subscription (webhooks keep their id and status by URL)",
                        id(),
                        ok("the subscription", sub.clone()),
                    ),
                    (
                        "delete",
                        "Delete a subscription",
                        id(),
                        answered("204", "deleted", Value::Null),
                    ),
                ],
            ),
        ),
        (
            "/api/subscriptions/{id}/test",
            ops(
                tag,
                vec![(
                    "post",
                    "Send a test notification through every channel (no body)",
                    id(),
                    answered(
                        "202",
                        "queued",
                        json!({ "type": "object", "properties": { "queued": { "type": "integer" } } }),
                    ),
                )],
            ),
        ),
        (
            "/api/notifications",
            ops(
                tag,
                vec![(
                    "get",
                    "The caller's notifications, unread first, newest first",
                    vec![param(
                        "limit",
                        "query",
                        "integer",
                        "at most 500 (default 100)",
                    )],
                    ok("notifications", arr(&note)),
                )],
            ),
        ),
        (
            "/api/notifications/read-all",
            ops(
                tag,
                vec![(
                    "post",
                    "Mark every notification read (no body)",
                    vec![],
                    ok(
                        "how many",
                        json!({ "type": "object", "properties": { "marked": { "type": "integer" } } }),
                    ),
                )],
            ),
        ),
        (
            "/api/notifications/{id}/read",
            ops(
                tag,
                vec![(
                    "post",
                    "Mark one notification read (no body)",
                    id(),
                    answered("204", "marked", Value::Null),
                )],
            ),
        ),
        (
            "/api/watchlists",
            ops(
                tag,
                vec![
                    (
                        "get",
                        "The caller's watchlists",
                        vec![],
                        ok("watchlists", arr(&watch)),
                    ),
                    (
                        "post",
                        "Create a watchlist: {name, characters, corporations, alliances, systems}",
                        vec![],
                        answered("201", "created", watch.clone()),
                    ),
                ],
            ),
        ),
        (
            "/api/watchlists/{id}",
            ops(
                tag,
                vec![(
                    "delete",
                    "Delete a watchlist",
                    id(),
                    answered("204", "deleted", Value::Null),
                )],
            ),
        ),
        (
            "/api/dead-letters",
            ops(
                tag,
                vec![(
                    "get",
                    "The caller's webhook deliveries that failed for good, with the reason",
                    vec![],
                    ok(
                        "dead letters",
                        arr(&json!({ "type": "object", "properties": {
                "delivery_id": { "type": "integer" }, "webhook_id": { "type": "integer" }, "subscription_id": { "type": "integer" },
                "kind": { "type": "string" }, "subject_id": { "type": "integer" }, "attempts": { "type": "integer" }, "reason": { "type": ["string", "null"] }
            } })),
                    ),
                )],
            ),
        ),
        (
            "/api/ws",
            ops(
                tag,
                vec![(
                    "get",
                    "WebSocket: the caller's matches as they happen ({\"type\":\"notification\",\"notification\":…}); session cookie, Origin must be this site's",
                    vec![],
                    answered("101", "switching protocols", Value::Null),
                )],
            ),
        ),
        (
            "/api/ws/public",
            ops(
                tag,
                vec![(
                    "get",
                    "WebSocket: the anonymous live feed of every killmail ({\"type\":\"killmail\",\"killmail\":…}) when the operator allows it; battle-intel feature when login is required",
                    vec![param(
                        "filter",
                        "query",
                        "string",
                        "a notification filter as JSON, e.g. {\"type\":\"security_type\",\"types\":[\"nullsec\"]}",
                    )],
                    answered("101", "switching protocols", Value::Null),
                )],
            ),
        ),
    ]
}

/// The document.
pub fn document() -> Value {
    let obj = |props: Value| json!({ "type": "object", "properties": props });
    let battle_summary = json!({ "$ref": "#/components/schemas/BattleSummary" });
    let redirect = json!({
        "description": "a merged battle: Location is the survivor's URL",
        "content": { "application/json": { "schema": obj(json!({ "redirect_to": { "type": "integer" } })) } }
    });
    let mut battle = op(
        "The full battle report: sides, participants, timeline, killmail ids, names",
        "battles",
        vec![path_id("battle id")],
        ok(
            "the report",
            json!({ "$ref": "#/components/schemas/BattleReport" }),
        ),
    );
    battle["get"]["responses"]["308"] = redirect.clone();
    let mut timeline = op(
        "Kills, losses and ISK per minute per side",
        "battles",
        vec![path_id("battle id")],
        ok(
            "per-minute series",
            obj(json!({
                "id": { "type": "integer" }, "sides": { "type": "integer" },
                "start_time": { "type": "string", "format": "date-time" },
                "end_time": { "type": "string", "format": "date-time" },
                "minutes": { "type": "array", "items": obj(json!({
                    "minute_ms": { "type": "integer" },
                    "kills": { "type": "array", "items": { "type": "integer" } },
                    "losses": { "type": "array", "items": { "type": "integer" } },
                    "isk_destroyed": { "type": "array", "items": { "type": "number" } }
                })) }
            })),
        ),
    );
    timeline["get"]["responses"]["308"] = redirect;
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "BattleScope API",
            "version": "1",
            "description": "The JSON API behind the BattleScope UI. Ids (killmail, battle, character, corporation, alliance, type, system) and ISK amounts are JSON numbers (ids fit in 53 bits; ISK is whole ISK as a float). Times are RFC 3339 UTC. Lists page with an opaque `cursor`: pass the previous answer's `next_cursor`, absent or null on the last page. Errors are `{\"error\": message}`; a service that is not deployed or down answers 503 `{\"error\": \"<service> unavailable\", \"detail\": …}`. When the operator requires login, reads need a session cookie from `/auth/login` and the feature (`battle-reports`, `battle-intel`, `search`). The notification routes always need a session (they are the caller's own); their state changes with a session cookie need the `X-CSRF-Token` header (from `GET /me` or the `battlescope_csrf` cookie)."
        },
        "servers": [{ "url": "/" }],
        "paths": {
            "/api/stats": op("Totals for the dashboard", "status", vec![], ok("totals", json!({ "$ref": "#/components/schemas/Stats" }))),
            "/api/lifecycle": op("Data lifecycle: last verification per day, gaps, retention and re-clustering runs (per service; unavailable ones listed)", "status", vec![], ok("lifecycle", json!({ "type": "object", "required": ["verification", "gaps", "retention_runs", "recluster_runs", "unavailable"] }))),
            "/api/health": op("Health of every service", "status", vec![], ok("per-service health", obj(json!({
                "status": { "type": "string", "enum": ["ok", "degraded"] },
                "services": { "type": "array", "items": obj(json!({
                    "service": { "type": "string" }, "state": { "type": "string", "enum": ["up", "down", "absent"] },
                    "latency_ms": { "type": "number" }, "detail": { "type": "string" }
                })) }
            })))),
            "/api/killmails/recent": op("The live feed: most recent killmails with names, filtered", "killmails", vec![
                param("security_type", "query", "string", "highsec | lowsec | nullsec | wormhole | pochven"),
                param("region_id", "query", "integer", "region"),
                param("system_id", "query", "integer", "solar system"),
                param("alliance_id", "query", "integer", "victim or attacker alliance"),
                param("ship_class", "query", "string", "victim ship class (frigate, cruiser, …)"),
                param("min_isk", "query", "number", "minimum ISK value"),
                param("limit", "query", "integer", "at most 100 (default 50)"),
            ], ok("feed items", obj(json!({ "count": { "type": "integer" }, "items": { "type": "array", "items": { "$ref": "#/components/schemas/FeedItem" } } })))),
            "/api/killmails/{id}": op("One enriched killmail (names, ship, system, ISK)", "killmails", vec![path_id("killmail id")], ok("the enriched killmail", obj(json!({
                "killmail_id": { "type": "integer" }, "killmail_time": { "type": "string", "format": "date-time" },
                "ship_type_name": { "type": ["string", "null"] }, "system_name": { "type": ["string", "null"] },
                "region_name": { "type": ["string", "null"] }, "security_status": { "type": ["number", "null"] },
                "isk_total": { "type": "number" }, "victim": { "type": "object" }, "attackers": { "type": "array" },
                "zkillboard_url": { "type": "string" }
            })))),
            "/api/battles": op("Battles, filtered, sorted, cursor-paged", "battles", battle_filters(), ok("a page", obj(json!({
                "battles": { "type": "array", "items": battle_summary },
                "next_cursor": { "type": ["string", "null"] }
            })))),
            "/api/battles/{id}": battle,
            "/api/battles/{id}/timeline": timeline,
            "/api/characters/{id}/ships": op("Ships a pilot flew or lost", "intel", vec![path_id("character id"), param("limit", "query", "integer", "killmails to read (default 200)")], ok("per ship type and per killmail", obj(json!({
                "character_id": { "type": "integer" }, "ships": { "type": "array" }, "history": { "type": "array" }
            })))),
            "/api/entities/{kind}/{id}": op("Statistics of an alliance, corporation or character", "intel", vec![
                param("kind", "path", "string", "alliance | corporation | character"),
                path_id("entity id"),
            ], ok("statistics over the entity's most recent battles", obj(json!({
                "kind": { "type": "string" }, "id": { "type": "integer" },
                "stats": obj(json!({
                    "name": { "type": ["string", "null"] }, "battles": { "type": "integer" }, "killmails": { "type": "integer" },
                    "kills": { "type": "integer" }, "losses": { "type": "integer" },
                    "isk_destroyed": { "type": "number" }, "isk_lost": { "type": "number" },
                    "efficiency": { "type": ["number", "null"], "description": "destroyed / (destroyed + lost) × 100" },
                    "top_ships": { "type": "array" }, "top_opponents": { "type": "array" }, "top_systems": { "type": "array" },
                    "activity": { "type": "array" }
                })),
                "battles": { "type": "array", "items": battle_summary },
                "battles_counted": { "type": "integer" }
            })))),
            "/api/search": op("Mixed-type search with facets (the search service)", "search", vec![
                param("q", "query", "string", "query text"),
                param("types", "query", "string", "comma-separated: battle, character, corporation, alliance, system, type"),
                param("filters", "query", "string", "filter expression"),
                param("facets", "query", "string", "comma-separated facet fields"),
                param("sort", "query", "string", "sort field"),
                param("page", "query", "integer", "page number"),
            ], ok("hits and facets", obj(json!({ "hits": { "type": "array", "items": { "$ref": "#/components/schemas/Hit" } }, "facets": { "type": "object" } })))),
            "/api/search/autocomplete": op("Name completion for the header search box", "search", vec![
                param("q", "query", "string", "prefix"),
                param("types", "query", "string", "comma-separated types"),
                param("limit", "query", "integer", "at most this many hits"),
            ], ok("hits", obj(json!({ "hits": { "type": "array", "items": { "$ref": "#/components/schemas/Hit" } } })))),
            "/api/openapi.json": op("This document", "status", vec![], ok("OpenAPI 3.1", json!({ "type": "object" }))),
        },
        "components": {
            "responses": {
                "Error": { "description": "bad request, not found, not allowed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Unavailable": { "description": "a service is not deployed or down", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "Error": obj(json!({ "error": { "type": "string" }, "detail": { "type": "string" } })),
                "Stats": obj(json!({
                    "killmails_total": { "type": ["integer", "null"] },
                    "battles_total": { "type": ["integer", "null"] },
                    "active_battles": { "type": ["integer", "null"] },
                    "by_source": { "type": "object" },
                    "last_24h": obj(json!({ "battles": { "type": "integer" }, "kills": { "type": "integer" }, "isk_destroyed": { "type": "number" } })),
                    "ingestion_lag_seconds": { "type": ["integer", "null"] },
                    "enrichment_names_pending": { "type": ["integer", "null"] },
                    "unavailable": { "type": "array", "items": { "type": "string" } }
                })),
                "BattleSummary": obj(json!({
                    "battle_id": { "type": "integer" }, "status": { "type": "string", "enum": ["active", "ended", "merged"] },
                    "system_ids": { "type": "array", "items": { "type": "integer" } },
                    "region_ids": { "type": "array", "items": { "type": "integer" } },
                    "security_types": { "type": "array", "items": { "type": "string" } },
                    "start_time": { "type": "string", "format": "date-time" }, "end_time": { "type": "string", "format": "date-time" },
                    "total_kills": { "type": "integer" }, "total_isk_destroyed": { "type": "number" }, "pilots": { "type": "integer" },
                    "sides": { "type": "array", "items": obj(json!({
                        "index": { "type": "integer" }, "pilots": { "type": "integer" }, "kills": { "type": "integer" }, "losses": { "type": "integer" },
                        "isk_destroyed": { "type": "number" }, "isk_lost": { "type": "number" },
                        "alliance_ids": { "type": "array", "items": { "type": "integer" } },
                        "corporation_ids": { "type": "array", "items": { "type": "integer" } }
                    })) }
                })),
                "BattleReport": obj(json!({
                    "id": { "type": "integer" }, "status": { "type": "string" },
                    "system_ids": { "type": "array", "items": { "type": "integer" } },
                    "start_time": { "type": "string", "format": "date-time" }, "end_time": { "type": "string", "format": "date-time" },
                    "duration_s": { "type": "integer" }, "total_kills": { "type": "integer" }, "total_isk_destroyed": { "type": "number" },
                    "sides": { "type": "array", "items": obj(json!({
                        "index": { "type": "integer" }, "pilots": { "type": "integer" }, "kills": { "type": "integer" }, "losses": { "type": "integer" },
                        "isk_destroyed": { "type": "number" }, "isk_lost": { "type": "number" }, "efficiency": { "type": "number", "description": "0..1" },
                        "alliance_ids": { "type": "array", "items": { "type": "integer" } }, "corporation_ids": { "type": "array", "items": { "type": "integer" } },
                        "fielded_by_class": { "type": "object" }, "lost_by_class": { "type": "object" }
                    })) },
                    "participants": { "type": "array", "items": obj(json!({
                        "character_id": { "type": "integer" }, "corporation_id": { "type": ["integer", "null"] }, "alliance_id": { "type": ["integer", "null"] },
                        "side": { "type": ["integer", "null"] }, "ships": { "type": "array" }, "lost": { "type": "boolean" },
                        "damage_dealt": { "type": "integer" }, "damage_taken": { "type": "integer" }
                    })) },
                    "killmail_ids": { "type": "array", "items": { "type": "integer" } },
                    "timeline": { "type": "array" }, "related_links": { "type": "array", "items": { "type": "string" } },
                    "names": { "type": "object", "description": "kind → id → name" }
                })),
                "FeedItem": obj(json!({
                    "killmail_id": { "type": "integer" }, "time": { "type": "string", "format": "date-time" },
                    "system_id": { "type": "integer" }, "system_name": { "type": "string" }, "security": { "type": ["number", "null"] },
                    "security_type": { "type": ["string", "null"] }, "region_name": { "type": ["string", "null"] },
                    "ship_type_id": { "type": ["integer", "null"] }, "ship_name": { "type": ["string", "null"] }, "ship_class": { "type": ["string", "null"] },
                    "isk": { "type": "number" }, "victim_name": { "type": ["string", "null"] }, "victim_alliance_id": { "type": ["integer", "null"] },
                    "attackers": { "type": "integer" }, "zkb_url": { "type": "string" }
                })),
                "Hit": obj(json!({ "type": { "type": "string" }, "id": { "type": "integer" }, "name": { "type": "string" } })),
                "Subscription": obj(json!({
                    "id": { "type": "integer" }, "account_id": { "type": "string" }, "name": { "type": "string" },
                    "filter": { "type": "object", "description": "a filter: {type: and|or|none_of, of: [...]}, character|corporation|alliance {ids, role}, system|constellation|region {ids}, within_jumps {system_id, jumps}, security_type {types}, ship_type|ship_group {ids}, ship_class {classes}, min_isk {isk}, min_pilots {pilots}, solo, gang, npc, watchlist {id}, battle {min_kills, min_isk}" },
                    "websocket": { "type": "boolean" }, "enabled": { "type": "boolean" },
                    "webhooks": { "type": "array", "items": obj(json!({
                        "id": { "type": "integer" }, "url": { "type": "string" }, "kind": { "type": "string", "enum": ["discord", "json"] },
                        "enabled": { "type": "boolean" }, "disabled_reason": { "type": ["string", "null"] },
                        "status": obj(json!({ "delivered": { "type": "integer" }, "pending": { "type": "integer" }, "failed": { "type": "integer" },
                            "last_error": { "type": ["string", "null"] }, "last_done_at": { "type": ["string", "null"], "format": "date-time" } }))
                    })) },
                    "created_at": { "type": "string", "format": "date-time" }
                })),
                "Notification": obj(json!({
                    "id": { "type": "integer" }, "subscription_id": { "type": "integer" }, "kind": { "type": "string", "enum": ["killmail", "battle", "test"] },
                    "subject_id": { "type": "integer" }, "summary": { "type": "object" }, "created_at": { "type": "string", "format": "date-time" }, "read": { "type": "boolean" }
                })),
                "Watchlist": obj(json!({
                    "id": { "type": "integer" }, "name": { "type": "string" },
                    "characters": { "type": "array", "items": { "type": "integer" } }, "corporations": { "type": "array", "items": { "type": "integer" } },
                    "alliances": { "type": "array", "items": { "type": "integer" } }, "systems": { "type": "array", "items": { "type": "integer" } }
                }))
            }
        }
    });
    for (path, item) in notification_paths() {
        doc["paths"][path] = item;
    }
    doc
}
