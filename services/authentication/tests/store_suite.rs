//! The `AuthStore` conformance suite: every body runs on SQLite and on PostgreSQL
//! (`BATTLESCOPE_TEST_POSTGRES`; skipped locally when unset, mandatory under CI=true).

use std::sync::Arc;

use bs_authentication::domain::gating::GatingConfig;
use bs_authentication::domain::rbac::{Feature, Role};
use bs_authentication::model::{
    Account, AccountQuery, AuditQuery, Character, LoginState, NewAudit, SessionRow, TokenRow,
    TokenStatus,
};
use bs_authentication::{AuthStore, SqlAuthStore};
use bs_store::Backend;
use bs_store::sqlx;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

crate::store_backends::on_both_backends!(
    "auth_suite";
    accounts_and_characters,
    detach_repicks_the_primary_and_revokes_sessions,
    tokens_compare_and_swap,
    sessions,
    login_states_are_single_use,
    roles_config_and_secrets,
    audit_chain_is_append_only_and_verifiable,
    concurrent_audit_appends_keep_one_chain,
);

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

fn account(id: &str, primary: i64) -> Account {
    Account {
        id: id.into(),
        display_name: format!("Account {id}"),
        primary_character_id: Some(primary),
        blocked: false,
        block_reason: None,
        super_admin: false,
        authz_version: 1,
        created_at: t0(),
        last_login_at: None,
    }
}

fn character(id: i64, account: &str, linked_minutes: i64) -> Character {
    Character {
        character_id: id,
        account_id: account.into(),
        name: format!("Pilot {id}"),
        owner_hash: format!("owner-{id}"),
        corporation_id: Some(98_000_001),
        alliance_id: None,
        scopes: vec!["publicData".into()],
        affiliation_checked_at: None,
        linked_at: t0() + TimeDelta::minutes(linked_minutes),
    }
}

fn token(character_id: i64, account: &str) -> TokenRow {
    TokenRow {
        character_id,
        account_id: account.into(),
        refresh_token_enc: format!("v1:k1:cipher-{character_id}"),
        access_token_enc: Some("v1:k1:access".into()),
        key_id: "k1".into(),
        access_expires_at: t0() + TimeDelta::minutes(20),
        next_refresh_at: t0() + TimeDelta::minutes(15),
        status: TokenStatus::Valid,
        rt_version: 1,
        failures: 0,
        last_error: None,
        updated_at: t0(),
    }
}

fn session(hash: &str, account: &str, via: i64) -> SessionRow {
    SessionRow {
        id_hash: hash.into(),
        public_id: format!("pub-{hash}"),
        account_id: account.into(),
        via_character_id: via,
        method: "sso".into(),
        created_at: t0(),
        last_seen_at: t0(),
        expires_at: t0() + TimeDelta::days(1),
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        revoked_at: None,
        revoked_reason: None,
    }
}

async fn accounts_and_characters(s: &SqlAuthStore) {
    let roles = [
        (Feature::BattleReports, Role::User),
        (Feature::Search, Role::User),
    ];
    s.create_account(
        &account("a1", 1),
        &character(1, "a1", 0),
        Some(&token(1, "a1")),
        &roles,
    )
    .await
    .unwrap();
    s.create_account(&account("a2", 2), &character(2, "a2", 0), None, &[])
        .await
        .unwrap();
    // A duplicate character makes the whole creation fail, leaving nothing behind.
    assert!(
        s.create_account(&account("a3", 1), &character(1, "a3", 0), None, &[])
            .await
            .is_err()
    );
    assert!(s.account("a3").await.unwrap().is_none());

    s.attach_character(&character(3, "a1", 5), Some(&token(3, "a1")))
        .await
        .unwrap();
    let chars: Vec<i64> = s
        .characters_of("a1")
        .await
        .unwrap()
        .iter()
        .map(|c| c.character_id)
        .collect();
    assert_eq!(chars, vec![1, 3]);
    assert_eq!(
        s.character(3).await.unwrap().unwrap().scopes,
        vec!["publicData".to_owned()]
    );

    assert!(s.set_primary("a1", 3).await.unwrap());
    assert!(
        !s.set_primary("a1", 2).await.unwrap(),
        "not a character of a1"
    );
    assert_eq!(
        s.account("a1").await.unwrap().unwrap().primary_character_id,
        Some(3)
    );

    s.update_character_identity(3, "Renamed", &["a".into(), "b".into()])
        .await
        .unwrap();
    s.update_affiliation(3, 98_000_002, Some(99_000_001), t0())
        .await
        .unwrap();
    let c = s.character(3).await.unwrap().unwrap();
    assert_eq!(
        (c.name.as_str(), c.corporation_id, c.alliance_id),
        ("Renamed", Some(98_000_002), Some(99_000_001))
    );
    assert_eq!(c.affiliation_checked_at, Some(t0()));
    let due: Vec<i64> = s
        .characters_due_affiliation(t0(), 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.character_id)
        .collect();
    assert_eq!(due, vec![1, 2], "never-checked first; 3 was checked at t0");

    let (found, total) = s
        .list_accounts(&AccountQuery {
            query: Some("RENAMED".into()),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!((found.len(), total), (1, 1));
    assert_eq!(found[0].id, "a1");
    let (all, total) = s
        .list_accounts(&AccountQuery {
            query: None,
            limit: 1,
            offset: 1,
        })
        .await
        .unwrap();
    assert_eq!((all.len(), total), (1, 2));

    assert!(s.set_blocked("a2", true, Some("spam")).await.unwrap());
    let a2 = s.account("a2").await.unwrap().unwrap();
    assert!(a2.blocked && a2.block_reason.as_deref() == Some("spam") && a2.authz_version == 2);
    assert_eq!(s.count_super_admins().await.unwrap(), 0);
    s.set_super_admin("a1", true).await.unwrap();
    s.set_super_admin("a2", true).await.unwrap();
    assert_eq!(
        s.count_super_admins().await.unwrap(),
        1,
        "blocked SuperAdmins do not count"
    );

    assert!(s.delete_character(3).await.unwrap());
    assert!(s.token(3).await.unwrap().is_none());
    assert!(!s.delete_character(3).await.unwrap());
}

async fn detach_repicks_the_primary_and_revokes_sessions(s: &SqlAuthStore) {
    s.create_account(
        &account("a", 1),
        &character(1, "a", 0),
        Some(&token(1, "a")),
        &[],
    )
    .await
    .unwrap();
    s.attach_character(&character(2, "a", 1), None)
        .await
        .unwrap();
    s.attach_character(&character(3, "a", 2), None)
        .await
        .unwrap();
    s.insert_session(&session("h1", "a", 1)).await.unwrap();
    s.insert_session(&session("h2", "a", 2)).await.unwrap();
    s.insert_session(&session("h3", "a", 3)).await.unwrap();

    // An alt: only the sessions through it go.
    let r = s.detach_character(3, t0()).await.unwrap().unwrap();
    assert_eq!(
        (r.was_primary, r.new_primary, r.sessions_revoked),
        (false, Some(1), 1)
    );
    assert_eq!(
        s.session("h3")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("owner_changed")
    );
    assert!(s.session("h1").await.unwrap().unwrap().revoked_at.is_none());

    // The primary: the next-oldest becomes primary, and every session goes (the gate changed).
    let r = s.detach_character(1, t0()).await.unwrap().unwrap();
    assert_eq!(
        (r.was_primary, r.new_primary, r.sessions_revoked),
        (true, Some(2), 2)
    );
    assert!(s.token(1).await.unwrap().is_none());
    assert_eq!(
        s.account("a").await.unwrap().unwrap().primary_character_id,
        Some(2)
    );
    assert!(s.sessions_of("a", t0()).await.unwrap().is_empty());
    assert!(s.detach_character(1, t0()).await.unwrap().is_none());
}

async fn tokens_compare_and_swap(s: &SqlAuthStore) {
    s.create_account(
        &account("a", 1),
        &character(1, "a", 0),
        Some(&token(1, "a")),
        &[],
    )
    .await
    .unwrap();
    let row = s.token(1).await.unwrap().unwrap();
    assert_eq!(row, token(1, "a"));
    assert!(s.tokens_due(t0(), 10).await.unwrap().is_empty());
    assert_eq!(
        s.tokens_due(t0() + TimeDelta::minutes(15), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let newer = TokenRow {
        refresh_token_enc: "v1:k2:rotated".into(),
        key_id: "k2".into(),
        ..row.clone()
    };
    assert!(s.swap_token(row.rt_version, &newer).await.unwrap());
    // A second refresher holding the old version loses.
    assert!(
        !s.swap_token(
            row.rt_version,
            &TokenRow {
                refresh_token_enc: "v1:k2:stale".into(),
                ..row.clone()
            }
        )
        .await
        .unwrap()
    );
    let now = s.token(1).await.unwrap().unwrap();
    assert_eq!(
        (now.refresh_token_enc.as_str(), now.rt_version),
        ("v1:k2:rotated", 2)
    );

    assert_eq!(s.tokens_not_under_key("k2", 10).await.unwrap().len(), 0);
    assert_eq!(s.tokens_not_under_key("k3", 10).await.unwrap().len(), 1);

    s.record_token_failure(1, "transient", t0() + TimeDelta::hours(1), t0())
        .await
        .unwrap();
    let failed = s.token(1).await.unwrap().unwrap();
    assert_eq!((failed.failures, failed.status), (1, TokenStatus::Valid));
    assert_eq!(failed.refresh_token_enc, "v1:k2:rotated");
    let version = s.token(1).await.unwrap().unwrap().rt_version;
    assert!(
        !s.mark_token_dead(1, Some(version - 1), "invalid_grant", t0())
            .await
            .unwrap(),
        "a stale refresher cannot kill it"
    );
    assert_eq!(
        s.token(1).await.unwrap().unwrap().status,
        TokenStatus::Valid
    );
    assert!(
        s.mark_token_dead(1, Some(version), "invalid_grant", t0())
            .await
            .unwrap()
    );
    let dead = s.token(1).await.unwrap().unwrap();
    assert_eq!(
        (dead.status, dead.access_token_enc),
        (TokenStatus::Dead, None)
    );
    assert!(
        s.tokens_due(t0() + TimeDelta::days(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "dead grants are never due"
    );
    // A new login upserts a live grant again.
    s.upsert_token(&token(1, "a")).await.unwrap();
    assert_eq!(
        s.token(1).await.unwrap().unwrap().status,
        TokenStatus::Valid
    );
}

async fn sessions(s: &SqlAuthStore) {
    s.create_account(&account("a", 1), &character(1, "a", 0), None, &[])
        .await
        .unwrap();
    s.create_account(&account("b", 2), &character(2, "b", 0), None, &[])
        .await
        .unwrap();
    s.insert_session(&session("h1", "a", 1)).await.unwrap();
    s.insert_session(&SessionRow {
        created_at: t0() + TimeDelta::minutes(1),
        ..session("h2", "a", 1)
    })
    .await
    .unwrap();
    s.insert_session(&session("hb", "b", 2)).await.unwrap();
    let listed: Vec<String> = s
        .sessions_of("a", t0())
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id_hash)
        .collect();
    assert_eq!(listed, vec!["h2", "h1"], "newest first");

    s.touch_session("h1", t0() + TimeDelta::minutes(5))
        .await
        .unwrap();
    s.touch_session("h1", t0() + TimeDelta::minutes(2))
        .await
        .unwrap();
    assert_eq!(
        s.session("h1").await.unwrap().unwrap().last_seen_at,
        t0() + TimeDelta::minutes(5),
        "never moves back"
    );

    // A user cannot revoke another account's session by its public id.
    assert!(
        s.revoke_session_by_public_id("pub-hb", Some("a"), "user_revoked", t0())
            .await
            .unwrap()
            .is_none()
    );
    let r = s
        .revoke_session_by_public_id("pub-hb", None, "admin_revoked", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.account_id, "b");
    assert!(
        s.revoke_session_by_public_id("pub-hb", None, "admin_revoked", t0())
            .await
            .unwrap()
            .is_none()
    );

    assert!(s.revoke_session("h1", "logout", t0()).await.unwrap());
    assert!(
        !s.revoke_session("h1", "logout", t0()).await.unwrap(),
        "idempotent"
    );
    assert_eq!(
        s.revoke_account_sessions("a", "account_blocked", t0())
            .await
            .unwrap(),
        1
    );
    assert!(s.sessions_of("a", t0()).await.unwrap().is_empty());
    // Expired sessions are not listed, and purge removes old ones.
    assert!(
        s.sessions_of("b", t0() + TimeDelta::days(2))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.purge_sessions(t0() + TimeDelta::days(2)).await.unwrap(),
        3
    );
}

async fn login_states_are_single_use(s: &SqlAuthStore) {
    let state = LoginState {
        state_hash: "sh".into(),
        binding_hash: "bh".into(),
        purpose: "login".into(),
        account_id: None,
        pkce_verifier_enc: "v1:k1:pkce".into(),
        return_to: "/x".into(),
        created_at: t0(),
    };
    s.insert_login_state(&state).await.unwrap();
    assert!(
        s.insert_login_state(&state).await.is_err(),
        "a state is unique"
    );
    assert_eq!(s.count_login_states().await.unwrap(), 1);
    // Many concurrent callbacks with the same state: exactly one gets it.
    let store = Arc::new(s.clone());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.take_login_state("sh").await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if let Some(got) = t.await.unwrap() {
            assert_eq!(got, state);
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    s.insert_login_state(&LoginState {
        state_hash: "old".into(),
        ..state.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        s.purge_login_states(t0() + TimeDelta::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(s.take_login_state("old").await.unwrap().is_none());
}

async fn roles_config_and_secrets(s: &SqlAuthStore) {
    s.create_account(
        &account("a", 1),
        &character(1, "a", 0),
        None,
        &[(Feature::Search, Role::User)],
    )
    .await
    .unwrap();
    s.set_role(
        "a",
        Feature::BattleReports,
        Some(Role::Fc),
        Some("admin"),
        t0(),
    )
    .await
    .unwrap();
    s.set_role(
        "a",
        Feature::BattleReports,
        Some(Role::Director),
        Some("admin"),
        t0(),
    )
    .await
    .unwrap();
    s.set_role("a", Feature::Search, None, Some("admin"), t0())
        .await
        .unwrap();
    let roles = s.roles_of("a").await.unwrap();
    assert_eq!(
        roles.into_iter().collect::<Vec<_>>(),
        vec![(Feature::BattleReports, Role::Director)]
    );
    assert_eq!(
        s.account("a").await.unwrap().unwrap().authz_version,
        4,
        "each role change bumps the version"
    );

    assert!(s.gating_config().await.unwrap().is_none());
    let cfg = GatingConfig {
        require_membership: true,
        allowed_alliances: [1, 2].into(),
        ..GatingConfig::default()
    };
    s.put_gating_config(&cfg, Some("a"), t0()).await.unwrap();
    s.put_gating_config(&cfg, Some("a"), t0()).await.unwrap();
    assert_eq!(s.gating_config().await.unwrap(), Some(cfg));

    assert_eq!(
        s.secret_or_insert("csrf_key", "first", t0()).await.unwrap(),
        "first"
    );
    assert_eq!(
        s.secret_or_insert("csrf_key", "second", t0())
            .await
            .unwrap(),
        "first",
        "the first writer wins"
    );
}

async fn audit_chain_is_append_only_and_verifiable(s: &SqlAuthStore) {
    for i in 0..5 {
        let e = NewAudit {
            actor_account_id: (i % 2 == 0).then(|| "admin".to_owned()),
            action: if i == 3 {
                "account.blocked".into()
            } else {
                "account.login".into()
            },
            target_type: "account".into(),
            target_id: format!("acc-{i}"),
            ip: "127.0.0.1".into(),
            metadata: json!({"i": i}),
        };
        let stored = s
            .append_audit(&e, t0() + TimeDelta::seconds(i))
            .await
            .unwrap();
        assert_eq!(stored.metadata, json!({"i": i}));
    }
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(5));
    let all = s
        .audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|p| p[0].seq > p[1].seq), "newest first");
    assert!(
        all.windows(2).all(|p| p[0].prev_hash == p[1].hash),
        "linked"
    );
    let blocked = s
        .audit(&AuditQuery {
            action: Some("account.blocked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(blocked.len(), 1);
    let by_actor = s
        .audit(&AuditQuery {
            actor_account_id: Some("admin".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor.len(), 3);
    let page = s
        .audit(&AuditQuery {
            before_seq: Some(all[1].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 3);

    // The schema refuses edits and deletions.
    let pool = s.database().pool();
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(pool)
            .await
            .is_err()
    );
    // Even someone who bypasses that is caught by the chain.
    let (disable, enable) = match s.database().backend() {
        Backend::Sqlite => ("DROP TRIGGER audit_log_no_update", None),
        Backend::Postgres => (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
            Some("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change"),
        ),
    };
    sqlx::query(disable).execute(pool).await.unwrap();
    let victim = all[2].seq;
    sqlx::query("UPDATE audit_log SET metadata = '{\"i\":99}' WHERE seq = $1")
        .bind(victim)
        .execute(pool)
        .await
        .unwrap();
    if let Some(enable) = enable {
        sqlx::query(enable).execute(pool).await.unwrap();
    }
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(victim));
}

async fn concurrent_audit_appends_keep_one_chain(s: &SqlAuthStore) {
    let store = Arc::new(s.clone());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            let e = NewAudit {
                actor_account_id: None,
                action: "session.revoked".into(),
                target_type: "session".into(),
                target_id: format!("s{i}"),
                ip: "system".into(),
                metadata: json!({}),
            };
            st.append_audit(&e, t0()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(16));
}
