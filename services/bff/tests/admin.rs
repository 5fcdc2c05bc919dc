//! The `/admin` pages' forms in the authentication world of [`crate::account`]: accounts
//! (search, block/unblock, sessions), roles per feature, corporation/alliance gating,
//! ingestion rulesets and backfill jobs, the read-only clusterer settings and the audit log.

use crate::account::{Agent, CONFIG_LOCK, HOME_ALLIANCE, HOME_CORP, SUPERADMIN, aw};

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
    // The clusterer page is read-only and says so.
    let c = sa.get("/admin/clusterer").await;
    assert!(c.body.contains("Read-only"));
    assert!(
        c.body.contains("battles_total"),
        "the battle service answers"
    );
}
