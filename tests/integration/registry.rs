//! The registry end to end with the real binary: what the admin API writes
//! is what the data plane routes, on this process and on a replica sharing
//! the database, across a restart, and never for a server the YAML file
//! owns. Each test runs on SQLite and, with `TEST_DATABASE_URL`, on
//! PostgreSQL.

use crate::harness::*;
use crate::registry_env::*;

#[test]
fn an_api_server_is_routed_disabled_enabled_and_deleted() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("crud");
        let a = Admin::start(&db.url, "servers: []\n");
        assert_eq!(route_status(&a.gw, "crud"), 404);

        let created = a.create("crud", &demo.url(), "");
        assert_eq!(created.status, 201, "{label}: {}", created.body);
        let v1 = created.json()["version"].as_i64().expect("version");
        eventually(
            &format!("{label}: created -> routed"),
            || a.log(),
            || route_status(&a.gw, "crud") == 200,
        );

        let off = a.call("PATCH", "/api/servers/crud", r#"{"enabled":false}"#);
        assert_eq!(off.status, 200, "{label}: {}", off.body);
        eventually(
            &format!("{label}: disabled -> 404"),
            || a.log(),
            || route_status(&a.gw, "crud") == 404,
        );
        let on = a.call("PATCH", "/api/servers/crud", r#"{"enabled":true}"#);
        assert_eq!(on.status, 200, "{label}: {}", on.body);
        let current = on.json()["version"].as_i64().expect("version");
        assert!(current > v1, "{label}: each write bumps the version");
        eventually(
            &format!("{label}: enabled -> routed"),
            || a.log(),
            || route_status(&a.gw, "crud") == 200,
        );

        // A replace based on the first read loses to the two writes since.
        let stale = a.call(
            "PUT",
            "/api/servers/crud",
            &format!(r#"{{"name":"crud","urls":["http://127.0.0.1:9/mcp"],"version":{v1}}}"#),
        );
        assert_eq!(stale.status, 409, "{label}: {}", stale.body);
        let error = &stale.json()["error"];
        assert_eq!(error["field"], "version", "{label}: {error}");
        assert_eq!(error["current_version"], current, "{label}: {error}");
        let kept = a.call("GET", "/api/servers/crud", "").json();
        assert_eq!(kept["version"], current, "{label}: nothing changed");
        assert_eq!(kept["urls"][0], demo.url().as_str(), "{label}: {kept}");
        assert_eq!(route_status(&a.gw, "crud"), 200, "{label}");

        let gone = a.call("DELETE", "/api/servers/crud", "");
        assert_eq!(gone.status, 204, "{label}: {}", gone.body);
        eventually(
            &format!("{label}: deleted -> 404"),
            || a.log(),
            || route_status(&a.gw, "crud") == 404,
        );
        assert_eq!(a.call("GET", "/api/servers/crud", "").status, 404);
    }
}

#[test]
fn a_replica_on_the_same_database_follows_the_admin_api() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("shared");
        let a = Admin::start(&db.url, "servers: []\n");
        let b = replica(&db.url, "servers: []\n");
        assert_eq!(route_status(&b, "shared"), 404);

        let created = a.create("shared", &demo.url(), "");
        assert_eq!(created.status, 201, "{label}: {}", created.body);
        // By design within 2 s (SQLite: a 1 s poll; PostgreSQL: a
        // notification); the deadline is generous for a loaded machine.
        eventually(
            &format!("{label}: created on A -> routed by B"),
            || b.proc.output(),
            || route_status(&b, "shared") == 200,
        );
        let off = a.call("PATCH", "/api/servers/shared", r#"{"enabled":false}"#);
        assert_eq!(off.status, 200, "{label}: {}", off.body);
        eventually(
            &format!("{label}: disabled on A -> 404 on B"),
            || b.proc.output(),
            || route_status(&b, "shared") == 404,
        );
        assert_eq!(a.call("DELETE", "/api/servers/shared", "").status, 204);
        assert_eq!(route_status(&b, "shared"), 404, "{label}");
    }
}

#[test]
fn api_servers_and_their_credentials_survive_a_restart() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("kept");
        let token = format!("restart-token-{}-{label}", std::process::id());
        let auth = format!(r#","upstream_auth":{{"type":"bearer","token":"{token}"}}"#);
        let first = Admin::start(&db.url, "servers: []\n");
        assert_eq!(first.create("kept", &demo.url(), &auth).status, 201);
        let off = first.create("kept-off", &demo.url(), r#","enabled":false"#);
        assert_eq!(off.status, 201, "{label}: {}", off.body);
        eventually(
            &format!("{label}: routed before the restart"),
            || first.log(),
            || route_status(&first.gw, "kept") == 200,
        );
        drop(first);

        let again = Admin::start(&db.url, "servers: []\n");
        // `/ready` means the registry is loaded: routed at once.
        assert_eq!(route_status(&again.gw, "kept"), 200, "{label}");
        assert_eq!(route_status(&again.gw, "kept-off"), 404, "{label}");
        let record = again.call("GET", "/api/servers/kept", "").json();
        assert_eq!(record["upstream_auth"]["token"], "set", "{label}: {record}");
        let seen = again.gw.upstream_view("kept", &ALICE);
        assert_eq!(
            seen["headers"]["authorization"],
            format!("Bearer {token}"),
            "{label}: the decrypted credential reaches the upstream"
        );
        // A replica that never saw the write decrypts it too.
        let b = replica(&db.url, "servers: []\n");
        let seen = b.upstream_view("kept", &ALICE);
        assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));
    }
}

#[test]
fn a_yaml_server_is_read_only_in_the_api_until_sighup_removes_it() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("yaml");
        let a = Admin::start(&db.url, &servers_yaml(&[("from-file", &[demo.url()])]));
        assert_eq!(route_status(&a.gw, "from-file"), 200, "{label}");
        let record = a.call("GET", "/api/servers/from-file", "").json();
        let version = record["version"].as_i64().expect("version");

        let put = a.call(
            "PUT",
            "/api/servers/from-file",
            &format!(
                r#"{{"name":"from-file","urls":["{}"],"version":{version}}}"#,
                demo.url()
            ),
        );
        let patch = a.call("PATCH", "/api/servers/from-file", r#"{"enabled":false}"#);
        let delete = a.call("DELETE", "/api/servers/from-file", "");
        for (what, r) in [("PUT", put), ("PATCH", patch), ("DELETE", delete)] {
            assert_eq!(r.status, 409, "{label}: {what}: {}", r.body);
            let message = r.json()["error"]["message"].to_string();
            assert!(
                message.contains("gateway.yaml"),
                "{label}: {what} names the file: {message}"
            );
        }
        assert_eq!(route_status(&a.gw, "from-file"), 200, "{label}");

        eventually(
            &format!("{label}: the reload service"),
            || a.log(),
            || a.log().contains("SIGHUP reloads the server list"),
        );
        let config = a.gw.proc.log.with_file_name("gateway.yaml");
        std::fs::write(&config, "servers: []\n").expect("rewrite the config file");
        a.gw.proc.signal("-HUP");
        eventually(
            &format!("{label}: SIGHUP -> gone from the API"),
            || a.log(),
            || a.call("GET", "/api/servers/from-file", "").status == 404,
        );
        eventually(
            &format!("{label}: SIGHUP -> gone from the routes"),
            || a.log(),
            || route_status(&a.gw, "from-file") == 404,
        );
    }
}

#[test]
fn credentials_are_encrypted_at_rest_and_never_shown() {
    for db in Db::all() {
        let label = db.label;
        let demo = Demo::start("secret");
        let token = format!("at-rest-token-{}-{label}-7f3a9c", std::process::id());
        let a = Admin::start(&db.url, "servers: []\n");
        let auth = format!(r#","upstream_auth":{{"type":"bearer","token":"{token}"}}"#);
        let created = a.create("secret", &demo.url(), &auth);
        assert_eq!(created.status, 201, "{label}: {}", created.body);
        assert!(!created.body.contains(&token), "{label}: {}", created.body);
        eventually(
            &format!("{label}: routed"),
            || a.log(),
            || route_status(&a.gw, "secret") == 200,
        );
        // It works: the upstream receives it.
        let seen = a.gw.upstream_view("secret", &ALICE);
        assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));

        let record = a.call("GET", "/api/servers/secret", "");
        assert_eq!(record.json()["upstream_auth"]["token"], "set", "{label}");
        assert!(!record.body.contains(&token));
        let list = a.call("GET", "/api/servers", "");
        assert!(!list.body.contains(&token), "{label}: list");
        let audit = a.call("GET", "/api/audit", "");
        assert_eq!(audit.status, 200);
        assert!(audit.json()["total"].as_u64().unwrap_or(0) > 0, "{label}");
        assert!(!audit.body.contains(&token), "{label}: audit");
        assert!(!a.log().contains(&token), "{label}: the log");

        if let Some(file) = &db.sqlite {
            let mut checked = 0;
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let path = format!("{}{suffix}", file.display());
                if let Ok(bytes) = std::fs::read(&path) {
                    checked += bytes.len();
                    assert!(
                        !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                        "{label}: the token is in {path} in clear"
                    );
                }
            }
            println!("{label}: {checked} bytes of database files hold no clear token");
            assert!(checked > 0);
        }
    }
}
