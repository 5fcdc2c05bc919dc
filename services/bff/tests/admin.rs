//! The `/admin` pages' forms in the authentication world of [`crate::account`]: accounts
//! (search, block/unblock, sessions), roles per feature, corporation/alliance gating,
//! ingestion rulesets and backfill jobs, the clusterer settings (stored in the battle service)
//! and the audit log.

use crate::account::{Agent, CONFIG_LOCK, Cast, HOME_ALLIANCE, HOME_CORP, SUPERADMIN, aw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_can_be_found_blocked_unblocked_and_given_roles() {
    let w = aw().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(96_100_001, "Blockee Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let mut u = Agent::login(w, 96_100_001).await;
    let id = u.account_id().await;
    // Search.
    let list = sa.get("/admin/accounts?q=Blockee").await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&format!("/admin/accounts/{id}")),
        "{}",
        list.body
    );
    let detail = sa.get(&format!("/admin/accounts/{id}")).await;
    assert!(detail.body.contains("Blockee Pilot"));
    assert!(
        detail.body.contains("End session"),
        "the user's session is listed"
    );
    // A role per feature: the user gains the admin section.
    let t = sa.csrf();
    let r = sa
        .post(
            &format!("/admin/accounts/{id}/roles"),
            &[("csrf_token", &t), ("feature", "admin"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.location, format!("/admin/accounts/{id}?ok=role_saved"));
    let page = sa.get(&r.location).await;
    assert!(page.body.contains("Role saved."));
    assert!(
        page.body
            .contains("<option value=\"admin\" selected>admin</option>")
    );
    let overview = u.get("/admin").await;
    assert!(overview.status == 200);
    // The lifecycle status (verification, gaps, retention runs) is on the admin overview too.
    assert!(
        overview.body.contains("Data lifecycle"),
        "{}",
        overview.body
    );
    assert!(u.get("/").await.body.contains("href=\"/admin\""));
    // Revoke it again (an empty role).
    let t = sa.csrf();
    sa.post(
        &format!("/admin/accounts/{id}/roles"),
        &[("csrf_token", &t), ("feature", "admin"), ("role", "")],
    )
    .await;
    assert_eq!(u.get("/admin").await.status, 403);
    // Block: the user's next page shows the blocked state.
    let t = sa.csrf();
    let r = sa
        .post(
            &format!("/admin/accounts/{id}/block"),
            &[("csrf_token", &t), ("blocked", "1"), ("reason", "testing")],
        )
        .await;
    assert_eq!(
        r.location,
        format!("/admin/accounts/{id}?ok=blocked"),
        "{}",
        r.body
    );
    let page = sa.get(&r.location).await;
    assert!(page.body.contains("Blocked") && page.body.contains("testing"));
    // Blocking ends the sessions at once, and a new login is refused with a clear page.
    let blocked = u.get("/characters").await;
    assert_eq!(blocked.status, 401, "{}", blocked.body);
    assert!(blocked.body.contains("You have been logged out"));
    let mut again = Agent::new(w);
    let start = again.get("/auth/login").await;
    let done = again.through_sso(&start, 96_100_001).await;
    assert_eq!(done.location, "/?auth_error=account_blocked");
    let page = again.get(&done.location).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("This account is blocked"));
    // Unblock; the old session stays ended, a new login works.
    let t = sa.csrf();
    let r = sa
        .post(
            &format!("/admin/accounts/{id}/block"),
            &[("csrf_token", &t), ("blocked", "0")],
        )
        .await;
    assert_eq!(r.location, format!("/admin/accounts/{id}?ok=unblocked"));
    let mut u = Agent::login(w, 96_100_001).await;
    assert_eq!(u.get("/characters").await.status, 200);
    // End every session of the account.
    let t = sa.csrf();
    let r = sa
        .post(
            &format!("/admin/accounts/{id}/sessions/end"),
            &[("csrf_token", &t)],
        )
        .await;
    assert_eq!(
        r.location,
        format!("/admin/accounts/{id}?ok=sessions_ended")
    );
    assert_eq!(u.get("/characters").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_without_superadmin_sees_the_refusal_of_superadmin_only_changes() {
    let w = aw().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(96_200_001, "Plain Admin", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(96_200_002, "Victim Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let mut admin = Agent::login(w, 96_200_001).await;
    let mut victim = Agent::login(w, 96_200_002).await;
    let (admin_id, victim_id) = (admin.account_id().await, victim.account_id().await);
    let t = sa.csrf();
    sa.post(
        &format!("/admin/accounts/{admin_id}/roles"),
        &[("csrf_token", &t), ("feature", "admin"), ("role", "admin")],
    )
    .await;
    assert_eq!(admin.get("/admin/accounts").await.status, 200);
    let t = admin.csrf();
    let r = admin
        .post(
            &format!("/admin/accounts/{victim_id}/block"),
            &[("csrf_token", &t), ("blocked", "1")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("need") && r.body.contains("SuperAdmin"),
        "{}",
        r.body
    );
    assert_eq!(victim.get("/characters").await.status, 200, "not blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gating_lists_take_ids_and_names_and_show_what_changed() {
    let w = aw().await;
    let _lock = CONFIG_LOCK.lock().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    for (list, entity) in [
        ("allowed_corporations", "98600001"),
        ("denied_corporations", "Some Corp [98600002]"),
        ("allowed_alliances", "Friends (99600003)"),
    ] {
        let t = sa.csrf();
        let r = sa
            .post(
                "/admin/gating/entries",
                &[
                    ("csrf_token", &t),
                    ("list", list),
                    ("entity", entity),
                    ("op", "add"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(
            r.location.starts_with("/admin/gating?ok=gating_saved"),
            "{}",
            r.location
        );
    }
    let page = sa.get("/admin/gating").await;
    for id in ["98600001", "98600002", "99600003"] {
        assert!(page.body.contains(&format!("data-id=\"{id}\"")), "{id}");
    }
    // A name that resolves to nothing (no search service here): a clear refusal.
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/gating/entries",
            &[
                ("csrf_token", &t),
                ("list", "denied_alliances"),
                ("entity", "Nobody Alliance"),
                ("op", "add"),
            ],
        )
        .await;
    assert_eq!(r.location, "/admin/gating?error=invalid_entity");
    assert!(sa.get(&r.location).await.body.contains("numeric id"));
    // Remove them again and check the setting form round-trips.
    for (list, id) in [
        ("allowed_corporations", "98600001"),
        ("denied_corporations", "98600002"),
        ("allowed_alliances", "99600003"),
    ] {
        let t = sa.csrf();
        sa.post(
            "/admin/gating/entries",
            &[
                ("csrf_token", &t),
                ("list", list),
                ("entity", id),
                ("op", "remove"),
            ],
        )
        .await;
    }
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/gating/settings",
            &[("csrf_token", &t), ("default_role", "user")],
        )
        .await;
    assert!(
        r.location.starts_with("/admin/gating?ok=gating_saved"),
        "{}",
        r.location
    );
    let config = sa.get("/services/authentication/admin/config").await.json();
    assert_eq!(config["allowed_corporations"], serde_json::json!([]));
    assert_eq!(config["require_membership"], false);
    assert_eq!(config["default_role"], "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rulesets_and_backfill_jobs_from_the_ingestion_page() {
    let w = aw().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    // Save a ruleset; the page shows it back.
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/ingestion/ruleset",
            &[
                ("csrf_token", &t),
                ("min_pilots", "3"),
                ("tracked_system_ids", "30000142, 30002187"),
                ("tracked_security_types", "nullsec"),
                ("tracked_security_types", "wormhole"),
                ("tracked_alliance_ids", ""),
                ("tracked_corporation_ids", ""),
                ("tracked_character_ids", ""),
            ],
        )
        .await;
    assert_eq!(
        r.location, "/admin/ingestion?ok=ruleset_saved",
        "{}",
        r.body
    );
    let page = sa.get(&r.location).await;
    assert!(page.body.contains("value=\"3\""));
    assert!(page.body.contains("30000142, 30002187"));
    assert!(page.body.contains("value=\"nullsec\" checked"));
    assert!(page.body.contains("value=\"wormhole\" checked"));
    assert!(!page.body.contains("value=\"highsec\" checked"));
    // An incoherent ruleset is refused with the service's reason.
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/ingestion/ruleset",
            &[("csrf_token", &t), ("only_tracked_entities", "on")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("needs at least one tracked"), "{}", r.body);
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/ingestion/ruleset",
            &[("csrf_token", &t), ("tracked_system_ids", "Jita")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("`Jita` is not an id"));
    // Put the default back.
    let t = sa.csrf();
    sa.post(
        "/admin/ingestion/ruleset",
        &[("csrf_token", &t), ("min_pilots", "0")],
    )
    .await;
    // Start a backfill job, see it, cancel it.
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/ingestion/backfill",
            &[
                ("csrf_token", &t),
                ("from", "2021-01-01"),
                ("to", "2021-01-03"),
                ("source", "everef"),
            ],
        )
        .await;
    assert_eq!(r.location, "/admin/ingestion?ok=job_started", "{}", r.body);
    let page = sa.get("/admin/ingestion").await;
    assert!(
        page.body.contains("2021-01-01 → 2021-01-03"),
        "{}",
        page.body
    );
    let job = page
        .body
        .split("data-job=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let t = sa.csrf();
    let r = sa
        .post(
            &format!("/admin/ingestion/backfill/{job}/cancel"),
            &[("csrf_token", &t)],
        )
        .await;
    assert_eq!(
        r.location, "/admin/ingestion?ok=job_cancelled",
        "{}",
        r.body
    );
    let page = sa.get("/admin/ingestion").await;
    let status = page
        .body
        .split(&format!("data-job=\"{job}\" data-status=\""))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Offline, the job may have failed before the cancel arrived; it is not running.
    assert!(
        matches!(status.as_str(), "cancelled" | "failed" | "completed"),
        "{status}"
    );
    // A bad range is refused with the reason.
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/ingestion/backfill",
            &[
                ("csrf_token", &t),
                ("from", "2021-02-01"),
                ("to", "2021-01-01"),
                ("source", "everef"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("is after"), "{}", r.body);
    // Each change is in the audit log under the SuperAdmin's account; refused ones are not.
    let me = sa.account_id().await;
    for action in ["ingestion.backfill.start", "ingestion.backfill.cancel"] {
        let page = sa
            .get(&format!("/admin/audit?action={action}&target={job}"))
            .await;
        assert_eq!(
            page.body.matches(&format!("<code>{action}</code>")).count(),
            1,
            "{}",
            page.body
        );
        assert!(page.body.contains(&me), "{}", page.body);
    }
    let started = sa
        .get(&format!(
            "/admin/audit?action=ingestion.backfill.start&target={job}"
        ))
        .await;
    assert!(started.body.contains("2021-01-03"), "{}", started.body);
    let rulesets = sa
        .get(&format!(
            "/admin/audit?action=ingestion.ruleset.update&actor={me}"
        ))
        .await;
    assert_eq!(
        rulesets
            .body
            .matches("<code>ingestion.ruleset.update</code>")
            .count(),
        2,
        "the saved ruleset and the reset, not the two refused: {}",
        rulesets.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_by_action_and_actor() {
    let w = aw().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(96_500_001, "Audited Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let mut u = Agent::login(w, 96_500_001).await;
    let id = u.account_id().await;
    let t = sa.csrf();
    sa.post(
        &format!("/admin/accounts/{id}/roles"),
        &[("csrf_token", &t), ("feature", "search"), ("role", "fc")],
    )
    .await;
    let page = sa
        .get(&format!("/admin/audit?action=role.changed&target={id}"))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<code>role.changed</code>"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("account {id}")));
    assert!(!page.body.contains("<code>account.login</code>"));
    let logins = sa
        .get(&format!("/admin/audit?action=account.login&actor={id}"))
        .await;
    assert!(
        logins.body.contains("<code>account.login</code>") || logins.body.contains("No entries.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusterer_settings_are_changed_by_admins_only_with_csrf_and_clear_refusals() {
    let w = aw().await;
    // The battle service's settings are global to this world: one test changes them.
    let _lock = CONFIG_LOCK.lock().await;
    let mut cast = Cast::new(w, 96_700_000).await;
    let form = |t: &str, gap: &str| {
        vec![
            ("csrf_token".to_owned(), t.to_owned()),
            ("gap".to_owned(), gap.to_owned()),
            ("min_kills".to_owned(), "4".to_owned()),
            ("min_pilots".to_owned(), "6".to_owned()),
            ("reopen_window".to_owned(), "72h".to_owned()),
        ]
    };
    async fn post(a: &mut Agent, path: &str, f: &[(String, String)]) -> crate::account::Page {
        let borrowed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        a.post(path, &borrowed).await
    }
    // The configuration's values, in a form, with the battle service's counters.
    let page = cast.admin.get("/admin/clusterer").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("name=\"gap\" value=\"30m\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("nothing stored"));
    assert!(
        page.body.contains("battles_total"),
        "the battle service answers"
    );
    assert!(!page.body.contains("Revert to the configuration"));
    // Lower roles cannot post (nor see the page); visitors are asked to log in.
    for (role, agent) in [
        ("user", &mut cast.user),
        ("fc", &mut cast.fc),
        ("director", &mut cast.director),
    ] {
        assert_eq!(agent.get("/admin/clusterer").await.status, 403, "{role}");
        let t = agent.csrf();
        let r = post(agent, "/admin/clusterer", &form(&t, "5m")).await;
        assert_eq!(r.status, 403, "{role}: {}", r.body);
        let r = post(agent, "/admin/clusterer/revert", &form(&t, "")[..1]).await;
        assert_eq!(r.status, 403, "{role}");
    }
    let r = post(&mut cast.anonymous, "/admin/clusterer", &form("x", "5m")).await;
    assert_eq!(r.status, 401);
    // A missing or foreign CSRF token is refused, and nothing changes.
    let r = post(&mut cast.admin, "/admin/clusterer", &form("", "5m")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"));
    let r = post(
        &mut cast.admin,
        "/admin/clusterer",
        &form("not-the-token", "5m"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let settings = cast.admin.get("/services/battle/settings").await.json();
    assert_eq!(settings["source"], "config", "{settings}");
    // An invalid value shows the form again with the reason and what was typed.
    let t = cast.admin.csrf();
    let r = post(&mut cast.admin, "/admin/clusterer", &form(&t, "soon")).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("Not saved"), "{}", r.body);
    assert!(r.body.contains("`soon` is not a duration"), "{}", r.body);
    assert!(
        r.body
            .contains("name=\"gap\" value=\"soon\" aria-invalid=\"true\"")
    );
    let t = cast.admin.csrf();
    let mut bad = form(&t, "2h");
    bad[4].1 = "1h".into();
    let r = post(&mut cast.admin, "/admin/clusterer", &bad).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("must be at least the gap"), "{}", r.body);
    assert_eq!(
        cast.admin.get("/services/battle/settings").await.json()["source"],
        "config"
    );
    // An Admin saves: 303 with a flash, the page shows the stored values and who stored them,
    // and the battle service runs with them.
    let t = cast.admin.csrf();
    let r = post(&mut cast.admin, "/admin/clusterer", &form(&t, "20m")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location, "/admin/clusterer?ok=clusterer_saved");
    let page = cast.admin.get(&r.location).await;
    assert!(
        page.body.contains("Clusterer settings saved"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"gap\" value=\"20m\""));
    assert!(page.body.contains("name=\"min_kills\" value=\"4\""));
    assert!(page.body.contains("Settings stored by an administrator"));
    assert!(page.body.contains("Admin 96700000"), "who changed them");
    let settings = cast.admin.get("/services/battle/settings").await.json();
    assert_eq!(settings["source"], "stored");
    assert_eq!(settings["effective"]["gap_ms"], 20 * 60_000);
    assert_eq!(settings["running"], true);
    // A SuperAdmin reverts to the configuration.
    let t = cast.superadmin.csrf();
    let r = post(
        &mut cast.superadmin,
        "/admin/clusterer/revert",
        &form(&t, "")[..1],
    )
    .await;
    assert_eq!(
        r.location, "/admin/clusterer?ok=clusterer_reverted",
        "{}",
        r.body
    );
    let page = cast.superadmin.get(&r.location).await;
    assert!(page.body.contains("reverted to the configuration"));
    assert!(page.body.contains("name=\"gap\" value=\"30m\""));
    assert_eq!(
        cast.admin.get("/services/battle/settings").await.json()["source"],
        "config"
    );
    // Both changes are in the audit log, each under its author; the refusals are not.
    let admin_id = cast.admin.account_id().await;
    let superadmin_id = cast.superadmin.account_id().await;
    for (action, who) in [
        ("battle.settings.update", &admin_id),
        ("battle.settings.revert", &superadmin_id),
    ] {
        let page = cast
            .superadmin
            .get(&format!("/admin/audit?action={action}&target=clusterer"))
            .await;
        assert_eq!(
            page.body.matches(&format!("<code>{action}</code>")).count(),
            1,
            "{}",
            page.body
        );
        assert!(page.body.contains(who.as_str()), "{}", page.body);
    }
}
