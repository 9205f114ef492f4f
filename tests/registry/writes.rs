//! Reads and writes through the `Registry` interface, on both stores.

use crate::databases::*;
use mcp_gateway::config::{AuthMode, UpstreamCredential};
use mcp_gateway::registry::{
    validate_draft, AuditQuery, ListQuery, Origin, Registry, RegistryError, ServerPatch,
};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_list_with_filters_and_paging() {
    for db in test_databases().await {
        let reg = db.open().await;
        for (name, enabled, tags, description) in [
            ("alpha", true, vec!["prod", "git"], "Source hosting"),
            ("beta", false, vec!["prod"], "Tickets"),
            ("gamma", true, vec!["dev"], "Search the WIKI"),
            ("delta", true, vec![], ""),
            ("epsilon", true, vec!["production"], "Wiki mirror"),
        ] {
            let mut d = draft(name);
            d.enabled = enabled;
            d.tags = tags.into_iter().map(String::from).collect();
            d.description = description.into();
            let r = reg.create(d, &admin()).await.unwrap();
            assert_eq!((r.version, r.origin.clone()), (1, Origin::Api));
        }
        let got = reg.get("gamma").await.unwrap();
        assert_eq!(got.draft.description, "Search the WIKI");
        assert_eq!(got.draft.urls, ["http://127.0.0.1:9/gamma/mcp"]);
        assert_eq!(
            reg.get("nope").await.unwrap_err(),
            RegistryError::NotFound("nope".into())
        );

        let names = |q: ListQuery| {
            let reg = &reg;
            async move {
                let page = reg.list(&q).await.unwrap();
                let names: Vec<String> = page.items.iter().map(|r| r.draft.name.clone()).collect();
                (names, page.total)
            }
        };
        let all = names(ListQuery::default()).await;
        assert_eq!(
            all.0,
            ["alpha", "beta", "delta", "epsilon", "gamma"],
            "{}",
            db.label
        );
        assert_eq!(all.1, 5);
        let disabled = names(ListQuery {
            enabled: Some(false),
            ..Default::default()
        })
        .await;
        assert_eq!(disabled.0, ["beta"]);
        // A tag matches whole: "prod" is not "production".
        let prod = names(ListQuery {
            tag: Some("prod".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(prod.0, ["alpha", "beta"], "{}", db.label);
        let wiki = names(ListQuery {
            search: Some("wiki".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(wiki.0, ["epsilon", "gamma"], "{}", db.label);
        let by_name = names(ListQuery {
            search: Some("ELT".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_name.0, ["delta"]);
        let page = names(ListQuery {
            offset: 1,
            limit: 2,
            ..Default::default()
        })
        .await;
        assert_eq!(page, (vec!["beta".to_string(), "delta".into()], 5));
        let combined = names(ListQuery {
            enabled: Some(true),
            tag: Some("prod".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(combined, (vec!["alpha".to_string()], 1));
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_drafts_and_duplicates_write_nothing() {
    for db in test_databases().await {
        let reg = db.open().await;
        reg.create(draft("alpha"), &admin()).await.unwrap();
        let generation = reg.generation().await.unwrap();
        assert_eq!(
            reg.create(draft("alpha"), &admin()).await.unwrap_err(),
            RegistryError::Exists("alpha".into())
        );
        let mut bad = draft("Bad Name");
        bad.urls = vec![];
        assert!(matches!(
            reg.create(bad, &admin()).await.unwrap_err(),
            RegistryError::Invalid { field, .. } if field == "name"
        ));
        let mut jwt = draft("jwt");
        jwt.auth_mode = AuthMode::Jwt;
        jwt.proxy_header = Some("X-User".into());
        assert!(matches!(
            reg.create(jwt, &admin()).await.unwrap_err(),
            RegistryError::Invalid { field, .. } if field == "proxy_header"
        ));
        assert_eq!(reg.generation().await.unwrap(), generation, "{}", db.label);
        assert_eq!(reg.audit(&AuditQuery::default()).await.unwrap().total, 1);
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_refresh_interval_is_stored_validated_replaced_and_cleared() {
    for db in test_databases().await {
        let reg = db.open().await;
        let mut d = draft("alpha");
        d.refresh_interval = Some(30);
        let r = reg.create(d, &admin()).await.unwrap();
        assert_eq!(r.draft.refresh_interval, Some(30), "{}", db.label);
        let got = reg.get("alpha").await.unwrap();
        assert_eq!(got.draft.refresh_interval, Some(30), "{}", db.label);
        assert_eq!(
            validate_draft(&got.draft).unwrap().refresh_interval,
            Some(std::time::Duration::from_secs(30))
        );
        let mut replaced = got.draft.clone();
        replaced.refresh_interval = Some(600);
        let r = reg.update("alpha", replaced, 1, &admin()).await.unwrap();
        assert_eq!(r.draft.refresh_interval, Some(600), "{}", db.label);
        let clear = ServerPatch {
            refresh_interval: Some(None),
            ..Default::default()
        };
        reg.patch("alpha", clear, None, &admin()).await.unwrap();
        assert_eq!(reg.get("alpha").await.unwrap().draft.refresh_interval, None);
        let mut bad = draft("beta");
        bad.refresh_interval = Some(0);
        match reg.create(bad, &admin()).await.unwrap_err() {
            RegistryError::Invalid { field, .. } => assert_eq!(field, "refresh_interval"),
            other => panic!("{}: {other:?}", db.label),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_is_a_conflict_and_changes_nothing() {
    for db in test_databases().await {
        let reg = db.open().await;
        reg.create(draft("alpha"), &admin()).await.unwrap();
        let mut v2 = draft("alpha");
        v2.description = "second".into();
        let r = reg.update("alpha", v2, 1, &admin()).await.unwrap();
        assert_eq!(r.version, 2);
        let generation = reg.generation().await.unwrap();
        let mut stale = draft("alpha");
        stale.description = "stale".into();
        assert_eq!(
            reg.update("alpha", stale, 1, &admin()).await.unwrap_err(),
            RegistryError::Conflict {
                name: "alpha".into(),
                current_version: 2
            }
        );
        let patch = ServerPatch {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            reg.patch("alpha", patch, Some(1), &admin()).await,
            Err(RegistryError::Conflict {
                current_version: 2,
                ..
            })
        ));
        assert!(matches!(
            reg.delete("alpha", Some(1), &admin()).await,
            Err(RegistryError::Conflict {
                current_version: 2,
                ..
            })
        ));
        let now = reg.get("alpha").await.unwrap();
        assert_eq!((now.version, now.draft.description.as_str()), (2, "second"));
        assert!(now.draft.enabled);
        assert_eq!(reg.generation().await.unwrap(), generation, "{}", db.label);
        assert_eq!(reg.audit(&AuditQuery::default()).await.unwrap().total, 2);
        let mut renamed = draft("beta");
        renamed.description = "x".into();
        assert!(matches!(
            reg.update("alpha", renamed, 2, &admin()).await,
            Err(RegistryError::Invalid { field, .. }) if field == "name"
        ));
        assert!(matches!(
            reg.update("ghost", draft("ghost"), 1, &admin()).await,
            Err(RegistryError::NotFound(_))
        ));
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_updates_one_wins() {
    for db in test_databases().await {
        let reg = Arc::new(db.open().await);
        reg.create(draft("alpha"), &admin()).await.unwrap();
        let tasks: Vec<_> = ["one", "two"]
            .into_iter()
            .map(|who| {
                let reg = reg.clone();
                tokio::spawn(async move {
                    let mut d = draft("alpha");
                    d.description = who.into();
                    reg.update("alpha", d, 1, &admin()).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(wins.len(), 1, "{}: {results:?}", db.label);
        assert!(results.iter().any(|r| matches!(
            r,
            Err(RegistryError::Conflict {
                current_version: 2,
                ..
            })
        )));
        let stored = reg.get("alpha").await.unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.draft.description, wins[0].draft.description);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_delete_are_audited_without_secrets() {
    for db in test_databases().await {
        let reg = db.open().await;
        let mut d = draft("alpha");
        d.upstream_auth = bearer("tok-SECRET-1");
        reg.create(d, &admin()).await.unwrap();
        let patch = ServerPatch {
            enabled: Some(false),
            upstream_auth: Some(UpstreamCredential::Basic {
                username: "bob".into(),
                password: mcp_gateway::config::Secret::new("pw-SECRET-2"),
            }),
            ..Default::default()
        };
        let r = reg.patch("alpha", patch, None, &admin()).await.unwrap();
        assert_eq!(r.version, 2);
        assert!(!r.draft.enabled);
        assert!(
            matches!(&r.draft.upstream_auth, UpstreamCredential::Basic { username, .. } if username == "bob")
        );
        assert_eq!(
            reg.get("alpha").await.unwrap().draft.upstream_auth,
            r.draft.upstream_auth
        );
        reg.delete("alpha", Some(2), &admin()).await.unwrap();
        assert!(matches!(
            reg.get("alpha").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(matches!(
            reg.delete("alpha", None, &admin()).await,
            Err(RegistryError::NotFound(_))
        ));

        let audit = reg.audit(&AuditQuery::default()).await.unwrap();
        let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["delete", "patch", "create"], "newest first");
        assert!(audit
            .items
            .iter()
            .all(|e| e.actor == "admin@example.com" && e.server == "alpha"));
        let text = format!("{:?}", audit.items);
        assert!(!text.contains("SECRET"), "{}: {text}", db.label);
        let created = &audit.items[2];
        assert_eq!(created.before, None);
        let after = created.after.as_ref().unwrap();
        assert_eq!(
            after["upstream_auth"],
            serde_json::json!({"type": "bearer", "token": "set"})
        );
        let patched = audit.items[1].after.as_ref().unwrap();
        assert_eq!(patched["upstream_auth"]["password"], "set");
        assert_eq!(patched["enabled"], false);
        assert_eq!(audit.items[0].after, None);
        let one = reg
            .audit(&AuditQuery {
                server: Some("alpha".into()),
                offset: 1,
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!((one.total, one.items[0].action.as_str()), (3, "patch"));
        assert_eq!(
            reg.audit(&AuditQuery {
                server: Some("other".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .total,
            0
        );
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_servers_are_upserted_read_only_and_removed_with_the_file() {
    for db in test_databases().await {
        let reg = db.open().await;
        reg.create(draft("api-made"), &admin()).await.unwrap();
        let specs: Vec<_> = ["github", "wiki"]
            .iter()
            .map(|n| validate_draft(&draft(n)).unwrap())
            .collect();
        let summary = reg
            .upsert_config(&specs, &[], "gateway.yaml")
            .await
            .unwrap();
        assert_eq!(summary.created, ["github", "wiki"]);
        let github = reg.get("github").await.unwrap();
        let owned = Origin::Config {
            file: "gateway.yaml".into(),
        };
        assert_eq!(github.origin, owned);
        let refused = RegistryError::ConfigOwned {
            name: "github".into(),
            file: "gateway.yaml".into(),
        };
        assert_eq!(
            reg.update("github", draft("github"), 1, &admin())
                .await
                .unwrap_err(),
            refused
        );
        assert_eq!(
            reg.patch("github", ServerPatch::default(), None, &admin())
                .await
                .unwrap_err(),
            refused
        );
        assert_eq!(
            reg.delete("github", None, &admin()).await.unwrap_err(),
            refused
        );

        // The same file again changes nothing, not even the generation.
        let generation = reg.generation().await.unwrap();
        assert!(reg
            .upsert_config(&specs, &[], "gateway.yaml")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(reg.generation().await.unwrap(), generation, "{}", db.label);

        // wiki leaves the file; github changes; the API's server is kept.
        let mut moved = draft("github");
        moved.urls = vec!["http://127.0.0.1:10/mcp".into()];
        let summary = reg
            .upsert_config(&[validate_draft(&moved).unwrap()], &[], "gateway.yaml")
            .await
            .unwrap();
        assert_eq!(
            (summary.updated, summary.removed),
            (vec!["github".to_string()], vec!["wiki".to_string()])
        );
        assert_eq!(reg.get("github").await.unwrap().version, 2);
        assert!(matches!(
            reg.get("wiki").await,
            Err(RegistryError::NotFound(_))
        ));
        assert_eq!(reg.get("api-made").await.unwrap().origin, Origin::Api);
        let audit = reg.audit(&AuditQuery::default()).await.unwrap();
        let config: Vec<_> = audit
            .items
            .iter()
            .filter(|e| e.action == "config")
            .map(|e| (e.server.as_str(), e.actor.as_str(), e.after.is_some()))
            .collect();
        assert_eq!(
            config,
            [
                ("wiki", "config:gateway.yaml", false),
                ("github", "config:gateway.yaml", true),
                ("wiki", "config:gateway.yaml", true),
                ("github", "config:gateway.yaml", true),
            ]
        );
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_write_bumps_the_generation() {
    for db in test_databases().await {
        let reg = db.open().await;
        let g0 = reg.generation().await.unwrap();
        reg.create(draft("a"), &admin()).await.unwrap();
        reg.patch(
            "a",
            ServerPatch {
                enabled: Some(false),
                ..Default::default()
            },
            None,
            &admin(),
        )
        .await
        .unwrap();
        reg.update("a", draft("a"), 2, &admin()).await.unwrap();
        reg.delete("a", None, &admin()).await.unwrap();
        assert_eq!(reg.generation().await.unwrap(), g0 + 4, "{}", db.label);
        reg.ping().await.unwrap();
        drop(reg);
        db.drop_db().await;
    }
}
