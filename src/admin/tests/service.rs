//! The service: built from settings (its socket bound then), serving,
//! stopping when Pingora's shutdown is signalled.

use super::*;
use crate::admin::AdminService;
use crate::config::{Settings, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn built_from_settings_it_serves_until_shutdown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let settings = Settings::load(
        &Source::from_pairs([
            ("MCP_CLIENT_AUTH_ENABLED", "false"),
            ("TRUST_PROXY_AUTH", "true"),
            ("ADMIN_PORT", port.as_str()),
            ("PLATFORM_ADMIN_PASSWORD", "pw-from-settings"),
        ]),
        None,
    )
    .expect("settings");
    let service = Arc::new(
        AdminService::from_settings(
            &settings,
            Arc::new(MemoryRegistry::default()),
            Arc::new(MemoryRegistry::default()),
            Arc::new(FixedHealth::default()),
            false,
        )
        .expect("service"),
    );
    assert_eq!(service.addr.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(
        service.state.effective_config["ADMIN_PORT"],
        port.parse::<u16>().unwrap()
    );

    let (stop, watch) = tokio::sync::watch::channel(false);
    let running = {
        let service = service.clone();
        tokio::spawn(async move { service.run(watch).await })
    };
    let reply = loop {
        // Until the listener is bound.
        if let Ok(mut conn) = tokio::net::TcpStream::connect(service.addr).await {
            conn.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut reply = String::new();
            conn.read_to_string(&mut reply).await.expect("read");
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#"{"status":"ok"}"#), "{reply}");
    stop.send(true).expect("signal");
    running.await.expect("the service stops on shutdown");
}
