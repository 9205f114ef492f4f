//! `/metrics`: who may see the per-user series.

use crate::harness::*;

const TOKEN: &str = "scrape-token-0123456789abcdef";
const ALICE_SERIES: &str = "mcp_authenticated_requests_total{user=\"alice@example.com\"}";

#[test]
fn only_a_scrape_bearing_metrics_token_lists_users() {
    let demo = Demo::start("d");
    let mut env = PROXY_ENV.to_vec();
    env.push(("METRICS_TOKEN", TOKEN));
    let gw = Gateway::start(&env, &servers_yaml(&[("demo", &[demo.url()])]));
    let (r, _) = gw.initialize("demo", &[("X-Authenticated-User", "alice@example.com")]);
    assert_eq!(r.status, 200);

    let anyone = gw.metrics();
    assert!(
        !anyone.contains("alice"),
        "users listed to anyone:\n{anyone}"
    );
    assert!(!anyone.contains("mcp_authenticated_requests_total"));
    assert_eq!(metric(&anyone, "mcp_auth_success_total"), 1.0, "{anyone}");

    let prometheus = gw.metrics_as(TOKEN);
    assert_eq!(metric(&prometheus, ALICE_SERIES), 1.0, "{prometheus}");

    let wrong = gw.request(
        "GET",
        "/metrics",
        &[("Authorization", "Bearer scrape-token-0123456789abcdeX")],
        "",
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(!wrong.body.contains("alice"));
    assert!(wrong.header("www-authenticate").is_some());
}

#[test]
fn without_metrics_token_nobody_lists_users_and_the_log_says_so() {
    let demo = Demo::start("d");
    let gw = Gateway::start(&PROXY_ENV, &servers_yaml(&[("demo", &[demo.url()])]));
    gw.initialize("demo", &[("X-Authenticated-User", "alice@example.com")]);
    for auth in ["", "Bearer guess"] {
        let headers: &[(&str, &str)] = if auth.is_empty() {
            &[]
        } else {
            &[("Authorization", auth)]
        };
        let r = gw.request("GET", "/metrics", headers, "");
        assert_eq!(r.status, 200);
        assert!(!r.body.contains("alice"), "{auth:?}: {}", r.body);
        assert_eq!(metric(&r.body, "mcp_auth_success_total"), 1.0);
    }
    let warning = "METRICS_TOKEN is not set: /metrics leaves out the per-user series";
    let out = gw.proc.output_when(|o| o.contains(warning));
    assert!(out.contains(warning), "{out}");
}
