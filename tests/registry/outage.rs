//! PostgreSQL cut off while the sync runs: the data plane keeps its last
//! servers, writes answer `Unavailable`, and everything recovers by itself.

use crate::databases::*;
use mcp_gateway::registry::sync::{self, SyncOptions};
use mcp_gateway::registry::{DatabaseUrl, Enabled, Registry, RegistryError};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A TCP relay to PostgreSQL that the test can cut: while down, every
/// relayed connection is closed and new ones are closed on arrival.
async fn relay(target: String) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (up_tx, up_rx) = watch::channel(true);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut up = up_rx.clone();
            if !*up.borrow() {
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = copy_bidirectional(&mut client, &mut server) => {}
                    _ = up.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    (port, up_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_and_restored_under_the_sync() {
    let dbs = test_databases().await;
    let Some(db) = dbs.into_iter().find(|d| d.label == "postgres") else {
        eprintln!("*** postgres_cut_and_restored_under_the_sync skipped: no TEST_DATABASE_URL ***");
        return;
    };
    let DatabaseUrl::Postgres(direct) = &db.url else {
        unreachable!()
    };
    let direct = direct.expose().to_string();
    // postgres://user@host:port/db -> the relay's port instead.
    let (head, tail) = direct.split_once('@').unwrap();
    let (hostport, dbname) = tail.split_once('/').unwrap();
    let (port, up) = relay(hostport.to_string()).await;
    let relayed = DatabaseUrl::parse(&format!("{head}@127.0.0.1:{port}/{dbname}")).unwrap();

    let writer = db.open().await;
    writer.create(draft("before"), &admin()).await.unwrap();
    let (tx, mut applied) = mpsc::unbounded_channel::<Vec<String>>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop, shutdown) = watch::channel(false);
    let mut options = SyncOptions::new(relayed, secret());
    options.retry_max = Duration::from_secs(1);
    options.recheck_interval = Duration::from_secs(1);
    let apply: sync::ApplySpecs = Arc::new(move |enabled: Enabled| {
        let _ = tx.send(enabled.servers.into_iter().map(|s| s.name).collect());
    });
    let task = tokio::spawn(sync::run(
        options,
        apply,
        Box::new(move |reg| {
            let _ = ready_tx.send(reg);
        }),
        shutdown,
    ));
    let guard = Duration::from_secs(30);
    let first = tokio::time::timeout(guard, applied.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, ["before"]);
    let follower = ready_rx.await.unwrap();

    up.send(false).unwrap();
    writer.create(draft("during"), &admin()).await.unwrap();
    // Give the follower's checks time to hit the cut relay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        follower.ping().await,
        Err(RegistryError::Unavailable(_))
    ));
    assert!(matches!(
        follower.create(draft("refused"), &admin()).await,
        Err(RegistryError::Unavailable(_))
    ));
    while let Ok(names) = applied.try_recv() {
        assert!(!names.is_empty(), "the outage emptied the routing table");
    }

    up.send(true).unwrap();
    loop {
        let names = tokio::time::timeout(guard, applied.recv())
            .await
            .expect("recovered within the guard")
            .unwrap();
        assert!(!names.is_empty());
        if names == ["before", "during"] {
            break;
        }
    }
    follower.create(draft("after"), &admin()).await.unwrap();
    assert!(writer.get("after").await.is_ok());
    stop.send(true).unwrap();
    tokio::time::timeout(guard, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(follower);
    writer.close().await;
    db.drop_db().await;
}
