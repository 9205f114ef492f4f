//! Virtual servers in the store: the servers' write path (versions, audit,
//! configuration-owned records), one name space with the servers, the
//! YAML file's virtual servers upserted, and the data plane's read.

use crate::databases::*;
use mcp_gateway::config::{validate_virtual_server, AuthMode, VirtualServerFields};
use mcp_gateway::registry::{
    validate_draft, AuditQuery, ListQuery, Origin, Registry, RegistryError, VirtualRegistry,
    VirtualServerDraft, VirtualServerPatch,
};

fn team(include: &[&str]) -> VirtualServerDraft {
    VirtualServerDraft {
        name: "team".into(),
        include: include.iter().map(|s| s.to_string()).collect(),
        auth_mode: AuthMode::Jwt,
        enabled: true,
        ..VirtualServerDraft::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_servers_are_versioned_audited_and_share_the_servers_names() {
    for db in test_databases().await {
        let label = db.label;
        let reg = db.open().await;
        reg.create(draft("github"), &admin()).await.unwrap();
        let g0 = reg.generation().await.unwrap();
        let created = reg
            .create_virtual(team(&["github/*"]), &admin())
            .await
            .unwrap();
        assert_eq!(created.version, 1);
        assert!(reg.generation().await.unwrap() > g0, "{label}");

        // One name space, in both directions.
        let mut clash = team(&[]);
        clash.name = "github".into();
        assert_eq!(
            reg.create_virtual(clash, &admin()).await.unwrap_err(),
            RegistryError::NameTaken {
                name: "github".into(),
                by: "server"
            }
        );
        assert_eq!(
            reg.create(draft("team"), &admin()).await.unwrap_err(),
            RegistryError::NameTaken {
                name: "team".into(),
                by: "virtual server"
            }
        );
        assert!(matches!(
            reg.create_virtual(team(&[]), &admin()).await,
            Err(RegistryError::Exists(_))
        ));
        assert!(matches!(
            reg.create_virtual(team(&["github"]), &admin()).await,
            Err(RegistryError::Invalid { field, .. }) if field == "include[0]"
        ));

        let stale = reg
            .update_virtual("team", team(&["wiki/*"]), 7, &admin())
            .await
            .unwrap_err();
        assert_eq!(
            stale,
            RegistryError::Conflict {
                name: "team".into(),
                current_version: 1
            }
        );
        let patched = reg
            .patch_virtual(
                "team",
                VirtualServerPatch {
                    include: Some(vec!["wiki/search".into()]),
                    ..VirtualServerPatch::default()
                },
                Some(1),
                &admin(),
            )
            .await
            .unwrap();
        assert_eq!((patched.version, patched.draft.include.len()), (2, 1));
        let enabled = reg.load_enabled().await.unwrap();
        assert_eq!(enabled.virtual_servers.len(), 1, "{label}");
        assert_eq!(
            enabled.virtual_servers[0].include[0].to_string(),
            "wiki/search"
        );
        let off = VirtualServerPatch {
            enabled: Some(false),
            ..VirtualServerPatch::default()
        };
        reg.patch_virtual("team", off, None, &admin())
            .await
            .unwrap();
        assert!(reg.load_enabled().await.unwrap().virtual_servers.is_empty());
        reg.delete_virtual("team", Some(3), &admin()).await.unwrap();
        assert!(matches!(
            reg.get_virtual("team").await,
            Err(RegistryError::NotFound(_))
        ));
        let audit = reg
            .audit(&AuditQuery {
                server: Some("team".into()),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let seen: Vec<(&str, &str)> = audit
            .items
            .iter()
            .map(|e| (e.kind.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("virtual_server", "delete"),
                ("virtual_server", "patch"),
                ("virtual_server", "patch"),
                ("virtual_server", "create"),
            ],
            "{label}"
        );
        drop(reg);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_virtual_servers_are_upserted_read_only_and_take_their_names() {
    for db in test_databases().await {
        let label = db.label;
        let reg = db.open().await;
        // Through the API: a server and a virtual server whose names the
        // file is about to give to the other kind.
        reg.create(draft("docs"), &admin()).await.unwrap();
        reg.create_virtual(team(&[]), &admin()).await.unwrap();
        let filed = |name: &str, include: &[String]| {
            validate_virtual_server(
                VirtualServerFields {
                    name,
                    include,
                    auth_mode: AuthMode::Inherit,
                    proxy_header: None,
                    jwt_audience: None,
                    description: "",
                },
                &|f| f.to_string(),
            )
            .unwrap()
        };
        let virtuals = vec![filed("docs", &["team/*".to_string()])];
        let servers = vec![validate_draft(&draft("team")).unwrap()];
        let summary = reg
            .upsert_config(&servers, &virtuals, "g.yaml")
            .await
            .unwrap();
        assert!(summary.virtual_servers_changed, "{label}");
        let mut removed = summary.removed.clone();
        removed.sort();
        assert_eq!(removed, ["docs", "team"], "{label}: the API records went");
        let docs = reg.get_virtual("docs").await.unwrap();
        let owned = Origin::Config {
            file: "g.yaml".into(),
        };
        assert_eq!(docs.origin, owned);
        assert_eq!(reg.get("team").await.unwrap().origin, owned);
        assert!(matches!(
            reg.get("docs").await,
            Err(RegistryError::NotFound(_))
        ));
        assert_eq!(
            reg.delete_virtual("docs", None, &admin())
                .await
                .unwrap_err(),
            RegistryError::ConfigOwned {
                name: "docs".into(),
                file: "g.yaml".into()
            }
        );
        // The same file again writes nothing; without the virtual server
        // the file's record goes.
        let generation = reg.generation().await.unwrap();
        assert!(reg
            .upsert_config(&servers, &virtuals, "g.yaml")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(reg.generation().await.unwrap(), generation, "{label}");
        let summary = reg.upsert_config(&servers, &[], "g.yaml").await.unwrap();
        assert_eq!(summary.removed, ["docs"], "{label}");
        assert!(summary.virtual_servers_changed);
        let page = reg.list_virtual(&ListQuery::default()).await.unwrap();
        assert_eq!(page.total, 0, "{label}");
        drop(reg);
        db.drop_db().await;
    }
}
