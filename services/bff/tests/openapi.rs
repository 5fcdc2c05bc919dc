//! The OpenAPI document validates structurally and matches the routes: every documented path
//! is routed (answers JSON that is not the API's "no such route"), every routed path is
//! documented, and every `$ref` resolves.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::http::{get, json, w};

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap());
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_routes() {
    let w = w().await;
    let doc = json(&w.url("/api/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("JSON numbers")
    );
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = bs_bff::api::ROUTES.iter().copied().collect();
    assert_eq!(documented, routed, "documented vs routed");
    // Every $ref points at a component that exists.
    let mut rs = Vec::new();
    refs(&doc, &mut rs);
    assert!(!rs.is_empty());
    for r in rs {
        let ptr = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(ptr).is_some(), "dangling {r}");
    }
    // Real ids to substitute.
    let report = json(&w.url(&format!("/api/battles/{}", w.largest))).await;
    let alliance = report["sides"][0]["alliance_ids"][0].as_i64().unwrap();
    let character = report["participants"][0]["character_id"].as_i64().unwrap();
    let killmail = report["killmail_ids"][0].as_i64().unwrap();
    for (path, item) in paths {
        let ops = item.as_object().unwrap();
        assert!(!ops.is_empty(), "{path} has no operation");
        for (method, op) in ops {
            assert!(
                ["get", "post", "put", "delete"].contains(&method.as_str()),
                "{path} {method}"
            );
            let success = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|c| c.starts_with('2') || c == "101");
            assert!(op["summary"].is_string() && success, "{path} {method}");
            // Every path parameter of the template is declared.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_template: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_template, "{path}");
        }
        let id = if path.starts_with("/api/battles") {
            w.largest
        } else if path.starts_with("/api/characters") {
            character
        } else if path.starts_with("/api/killmails") {
            killmail
        } else {
            alliance
        };
        let url = path
            .replace("{kind}", "alliance")
            .replace("{id}", &id.to_string());
        // The path's first operation, as documented (GET where there is one).
        let method = if ops.contains_key("get") {
            "get"
        } else {
            ops.keys().next().unwrap().as_str()
        };
        let (status, ct, body) = if method == "get" {
            get(&w.url(&url)).await
        } else {
            let r = reqwest::Client::new()
                .request(method.to_uppercase().parse().unwrap(), w.url(&url))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, ct, r.text().await.unwrap())
        };
        assert!(ct.starts_with("application/json"), "{url}: {ct}");
        assert!(
            !body.contains("no such API route"),
            "{url} is documented but not routed"
        );
        // Search and notification are absent from the test world and answer 503; the
        // WebSockets want an upgrade (426); everything else 200.
        let notification = bs_bff::notify::ROUTES.contains(&path.as_str());
        let want = if path.starts_with("/api/ws") {
            426
        } else if path.starts_with("/api/search") || notification {
            503
        } else {
            200
        };
        assert_eq!(status, want, "{method} {url}: {body}");
    }
}
