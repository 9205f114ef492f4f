//! The registry's PostgreSQL cut under traffic: the data plane keeps
//! serving its last snapshot, the admin API refuses writes with a JSON
//! 503, and once the database is back writes go through and are routed
//! with nothing written before the cut lost. PostgreSQL only: the cut is a
//! relay between the gateway and the server (a SQLite file cannot go away).

use crate::harness::*;
use crate::registry_env::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the database stays cut while the client sends requests.
const CUT: Duration = Duration::from_secs(5);

#[test]
fn a_database_cut_under_traffic_loses_no_request_and_no_write() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let relay = Relay::start(db.pg_addr());
    let demo = Demo::start("cut");
    let a = Admin::start(&db.url_via(&relay), "servers: []\n");
    assert_eq!(a.create("before", &demo.url(), "").status, 201);
    eventually(
        "routed before the cut",
        || a.log(),
        || route_status(&a.gw, "before") == 200,
    );

    relay.cut();
    let cut_at = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let gw_addr = a.gw.addr.clone();
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Acquire) {
                let status = route_status_at(&gw_addr, "before");
                sent += 1;
                if status != 200 {
                    failed.push(status);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (sent, failed)
        })
    };

    let started = Instant::now();
    let write = a.create("during", &demo.url(), "");
    println!(
        "an admin write while cut answered in {:?}",
        started.elapsed()
    );
    assert_eq!(write.status, 503, "{}", write.body);
    let error = &write.json()["error"];
    assert_eq!(error["status"], 503, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("unavailable"),
        "{error}"
    );
    // The admin service's readiness is the database's; the data plane's
    // is its snapshot, which it keeps serving.
    let admin_ready = request(&a.addr, "GET", "/ready", &[], "");
    assert_eq!(admin_ready.status, 503, "{}", admin_ready.body);
    assert!(
        admin_ready.json()["error"].is_object(),
        "{}",
        admin_ready.body
    );
    assert_eq!(a.gw.request("GET", "/ready", &[], "").status, 200);
    if let Some(rest) = CUT.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Release);
    let (sent, failed) = client.join().expect("the client thread");
    println!(
        "{sent} MCP requests over {:?} of cut, {} failed",
        cut_at.elapsed(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed while cut: {failed:?}");
    assert!(sent > 50, "the client kept sending: {sent}");

    relay.resume();
    eventually(
        "an admin write after the cut",
        || a.log(),
        || {
            let r = a.create("after", &demo.url(), "");
            assert!(matches!(r.status, 201 | 409 | 503), "{r:?}");
            r.status == 201 || r.status == 409
        },
    );
    eventually(
        "the write after the cut routed",
        || a.log(),
        || route_status(&a.gw, "after") == 200,
    );
    assert_eq!(a.call("GET", "/api/servers/before", "").status, 200);
    assert_eq!(a.call("GET", "/api/servers/during", "").status, 404);
    let names: Vec<String> = a.call("GET", "/api/servers", "").json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"before".to_string()) && names.contains(&"after".to_string()));
    assert_eq!(route_status(&a.gw, "before"), 200);
}
