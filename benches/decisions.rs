//! Per-request cost of the gateway's pure decisions: identity, upstream
//! header policy, session tokens and route lookup. Each runs on every proxied
//! request before any upstream I/O, so together they are the gateway's own
//! latency floor; no network or runtime is involved.
//!
//! `cargo bench --bench decisions -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
use mcp_gateway::config::{Settings, Source};
use mcp_gateway::headers::{HeaderPolicy, RequestFacts};
use mcp_gateway::identity::{AuthPolicy, Identity, IdentitySource};
use mcp_gateway::routing::{self, Route, RouteTable};
use mcp_gateway::session::{PinnedSession, SessionKeys, SessionKind};
use std::hint::black_box;
use std::net::IpAddr;

const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The headers an MCP client sends on a `tools/call` POST, without credentials.
const MCP_POST: [(&str, &str); 7] = [
    ("host", "gateway.example.com"),
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
    ("mcp-protocol-version", "2025-06-18"),
    ("user-agent", "claude-code/1.0.43"),
    ("content-length", "187"),
    ("accept-encoding", "gzip, deflate"),
];

fn policy(pairs: &[(&str, &str)]) -> AuthPolicy {
    AuthPolicy::global(&Settings::load(&Source::from_pairs(pairs.iter().copied()), None).unwrap())
}

fn identity(c: &mut Criterion) {
    let mut proxied = headers(&MCP_POST);
    proxied.append(
        "x-authenticated-user",
        HeaderValue::from_static("alice@example.com"),
    );
    let proxy_only = [
        ("MCP_CLIENT_AUTH_ENABLED", "false"),
        ("TRUST_PROXY_AUTH", "true"),
    ];
    let any_peer = policy(&proxy_only);
    let cidr = policy(&[
        proxy_only[0],
        proxy_only[1],
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let peer: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
    assert!(cidr.authenticate(&proxied, peer).is_ok());

    let claims = serde_json::json!({"sub": "alice", "exp": get_current_timestamp() + 3600});
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut bearer = headers(&MCP_POST);
    bearer.append(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let jwt = policy(&[("JWT_SECRET_KEY", JWT_SECRET)]);
    assert_eq!(
        jwt.authenticate(&bearer, peer).unwrap().source,
        IdentitySource::Jwt
    );

    let mut g = c.benchmark_group("identity");
    g.bench_function("proxy_header", |b| {
        b.iter(|| any_peer.authenticate(black_box(&proxied), black_box(peer)))
    });
    g.bench_function("proxy_header_trusted_cidr", |b| {
        b.iter(|| cidr.authenticate(black_box(&proxied), black_box(peer)))
    });
    // The gateway remembers verified tokens: a client's repeated token is the
    // common case (cached); a token seen for the first time pays the full
    // verification plus the insert (uncached).
    g.bench_function("jwt_hs256_cached", |b| {
        b.iter(|| jwt.authenticate(black_box(&bearer), black_box(peer)))
    });
    let mut n = 0u64;
    g.bench_function("jwt_hs256_uncached", |b| {
        b.iter_batched(
            || {
                n += 1;
                let claims = serde_json::json!({"sub": format!("user-{n}"), "exp": get_current_timestamp() + 3600});
                let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap();
                let mut h = headers(&MCP_POST);
                h.append("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
                h
            },
            |h| jwt.authenticate(black_box(&h), black_box(peer)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn header_policy(c: &mut Criterion) {
    // Every class the policy distinguishes: allowlisted, passthrough-listed,
    // gateway credentials, base headers the client tries to set, and junk.
    let mut client = headers(&MCP_POST);
    for pair in [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-request-id", "req-8f14e45f"),
        ("x-tenant-id", "acme"),
        ("x-trace-id", "trace-1234"),
        ("x-groups", "eng"),
        ("authorization", "Bearer gateway-token"),
        ("cookie", "session=abc; theme=dark"),
        (
            "x-upstream-authorization",
            "Bearer ghp_upstreamtoken0123456789",
        ),
        ("x-authenticated-user", "mallory"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("x-internal-secret", "do-not-forward"),
    ] {
        client.append(
            HeaderName::from_static(pair.0),
            HeaderValue::from_static(pair.1),
        );
    }
    assert_eq!(client.len(), 20);
    let identity_header = HeaderName::from_static("x-authenticated-user");
    let policy = HeaderPolicy {
        passthrough: ["x-tenant-id", "x-trace-id", "x-groups", "x-region"]
            .map(HeaderName::from_static)
            .to_vec(),
        overwrite_base: false,
        identity_headers: vec![identity_header.clone()],
        identity_out: identity_header,
        credential: Default::default(),
    };
    let alice = Identity {
        user: "alice@example.com".into(),
        source: IdentitySource::ProxyHeader,
    };
    let facts = RequestFacts {
        identity: &alice,
        peer: Some("10.1.2.3".parse().unwrap()),
        peer_trusted: true,
        upstream_host: &HeaderValue::from_static("github-mcp.internal:3001"),
        upstream_session: None,
    };
    let edits = policy.plan(&client, &facts);
    let mut upstream = client.clone();
    edits.apply(&mut upstream);
    assert!(upstream.get("authorization").is_some() && edits.dropped.is_empty());

    c.bench_function("headers/policy_20_headers", |b| {
        b.iter(|| policy.plan(black_box(&client), black_box(&facts)))
    });
}

fn session(c: &mut Criterion) {
    let keys = SessionKeys::from_secrets(Some("session-secret-of-thirty-two-byt"), None).unwrap();
    let kind = SessionKind::Streamable;
    let target = PinnedSession {
        replica: 0x9e37_79b9_7f4a_7c15,
        upstream_id: "5f2b8c1e9a7d4e3f8b6a0c2d1e4f7a9b".into(),
    };
    let now = get_current_timestamp();
    let expires = now + 86_400;
    let token = keys
        .seal(kind, "github", "alice", &target, expires)
        .unwrap();
    assert_eq!(
        keys.open(kind, "github", "alice", &token, now),
        Ok(target.clone())
    );

    let mut g = c.benchmark_group("session");
    g.bench_function("seal", |b| {
        b.iter(|| {
            keys.seal(
                kind,
                black_box("github"),
                black_box("alice"),
                black_box(&target),
                expires,
            )
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            keys.open(
                kind,
                black_box("github"),
                black_box("alice"),
                black_box(&token),
                now,
            )
        })
    });
    g.finish();
}

fn route_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing/lookup");
    for n in [10, 100, 1000] {
        let names: Vec<String> = (0..n).map(|i| format!("server-{i:04}")).collect();
        let table = RouteTable::new(names.iter().map(String::as_str));
        let path = format!("/servers/{}/mcp", names[n / 2]);
        g.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| match routing::classify(black_box(path)) {
                Route::Server { name, .. } => table.lookup(name),
                _ => None,
            })
        });
    }
    g.finish();
}

criterion_group!(benches, identity, header_policy, session, route_lookup);
criterion_main!(benches);
