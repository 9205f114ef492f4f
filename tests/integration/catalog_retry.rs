//! A server whose tools could not be gathered (down when the gateway
//! started, as when it starts after the gateway) is gathered again soon,
//! not a whole refresh interval (300 s) later.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A front for `demo` that answers 503 to everything until `up` is set,
/// then passes connections through to it.
fn switchable_front(demo: &Demo) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let up = Arc::new(AtomicBool::new(false));
    let (target, switch) = (demo.addr.clone(), up.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (target, up) = (target.clone(), switch.clone());
            std::thread::spawn(move || pass_or_refuse(conn, &target, &up));
        }
    });
    (format!("http://{addr}/mcp"), up)
}

fn pass_or_refuse(mut conn: TcpStream, target: &str, up: &AtomicBool) {
    if !up.load(Ordering::SeqCst) {
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let _ = conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (mut c2, mut s2) = (
        conn.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let (mut server, mut conn) = (server, conn);
    let _ = std::io::copy(&mut server, &mut conn);
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

fn listed(gw: &Gateway) -> bool {
    gw.request("GET", "/tools", &ALICE, "")
        .json()
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["available"] == true))
}

#[test]
fn a_server_down_at_the_start_is_listed_once_it_answers() {
    let demo = Demo::start("late");
    let (url, up) = switchable_front(&demo);
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("late", &[url])]));
    // The first gathering fails (503): nothing available.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!listed(&gw), "listed while the server answered 503");
    up.store(true, Ordering::SeqCst);
    // Well within the default refresh interval of 300 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listed(&gw) {
        assert!(
            Instant::now() < deadline,
            "not listed a minute after the server came up:\n{}",
            gw.proc.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
