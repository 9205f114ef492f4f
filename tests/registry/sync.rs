//! The sync: a change written by one process reaches another's data plane.

use crate::databases::*;
use mcp_gateway::registry::sync::{self, ConfigFile, SyncOptions};
use mcp_gateway::registry::Enabled;
use mcp_gateway::registry::{validate_draft, Origin, Registry, ServerPatch, SqlRegistry};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// A hang guard, not a measurement: the design bound (2 s) is printed.
const GUARD: Duration = Duration::from_secs(20);

struct Running {
    applied: mpsc::UnboundedReceiver<Vec<String>>,
    ready: Option<oneshot::Receiver<Arc<SqlRegistry>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), mcp_gateway::registry::OpenError>>,
}

fn start(options: SyncOptions) -> Running {
    let (tx, applied) = mpsc::unbounded_channel();
    let (ready_tx, ready) = oneshot::channel();
    let (stop, shutdown) = watch::channel(false);
    let apply: sync::ApplySpecs = Arc::new(move |enabled: Enabled| {
        let _ = tx.send(enabled.servers.into_iter().map(|s| s.name).collect());
    });
    let on_ready: sync::OnReady = Box::new(move |reg| {
        let _ = ready_tx.send(reg);
    });
    let task = tokio::spawn(sync::run(options, apply, on_ready, shutdown));
    Running {
        applied,
        ready: Some(ready),
        stop,
        task,
    }
}

impl Running {
    /// Waits for an applied list satisfying `want`; returns how long it took.
    async fn until(&mut self, want: impl Fn(&[String]) -> bool) -> Duration {
        let t0 = Instant::now();
        loop {
            let names = tokio::time::timeout(GUARD, self.applied.recv())
                .await
                .expect("the sync applied nothing within the guard")
                .expect("the sync is running");
            if want(&names) {
                return t0.elapsed();
            }
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("the sync stops when told")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_one_process_reaches_another_within_two_seconds() {
    for db in test_databases().await {
        let writer = db.open().await;
        writer.create(draft("first"), &admin()).await.unwrap();
        let mut options = SyncOptions::new(db.url.clone(), secret());
        options.config = Some(ConfigFile {
            servers: vec![validate_draft(&draft("from-yaml")).unwrap()],
            virtual_servers: Vec::new(),
            file: "g.yaml".into(),
        });
        let mut follower = start(options);
        follower.until(|n| n == ["first", "from-yaml"]).await;
        let ready = follower.ready.take().unwrap().await.unwrap();
        assert_eq!(
            ready.get("from-yaml").await.unwrap().origin,
            Origin::Config {
                file: "g.yaml".into()
            }
        );

        writer.create(draft("second"), &admin()).await.unwrap();
        let created = follower.until(|n| n.iter().any(|s| s == "second")).await;
        let off = ServerPatch {
            enabled: Some(false),
            ..Default::default()
        };
        writer.patch("first", off, None, &admin()).await.unwrap();
        let disabled = follower.until(|n| n == ["from-yaml", "second"]).await;
        println!(
            "{}: change to another process's apply: create {created:?}, disable {disabled:?} (bound 2 s)",
            db.label
        );
        follower.stop().await;
        drop(writer);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_start_up_error_is_returned_not_retried() {
    let db = sqlite_database();
    db.open().await.close().await;
    let options = SyncOptions::new(
        db.url.clone(),
        mcp_gateway::config::Secret::new("wrong-secret-value"),
    );
    let running = start(options);
    let result = tokio::time::timeout(GUARD, running.task)
        .await
        .expect("returns")
        .unwrap();
    assert!(
        matches!(result, Err(mcp_gateway::registry::OpenError::Fatal(_))),
        "{result:?}"
    );
}
