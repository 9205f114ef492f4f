//! Which handler a request path belongs to, and which registered server a
//! name denotes. Pure and allocation-free on the request path.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalEndpoint {
    Health,
    Ready,
    Metrics,
    Version,
}

/// The MCP transports a server is reachable through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Streamable HTTP: POST, GET (SSE stream), DELETE.
    Mcp,
    /// Legacy HTTP+SSE: the event stream.
    Sse,
    /// Legacy HTTP+SSE: where the client POSTs its messages.
    Message,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mcp => "mcp",
            Endpoint::Sse => "sse",
            Endpoint::Message => "message",
        }
    }
}

/// The gateway's own MCP endpoints, served by the federation service.
/// A virtual server's `/servers/{name}/mcp` classifies as a
/// [`Route::Server`]: servers and virtual servers share one name space,
/// so only the snapshot can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FederationPath {
    /// `GET /tools`
    Tools,
    /// `POST /tools/invoke/{name}` (the service reads the name).
    Invoke,
    /// `POST /rpc`
    Rpc,
    /// `/mcp`: the virtual server of everything the caller may use.
    Mcp,
    /// `/ws`: JSON-RPC over WebSocket.
    Ws,
}

impl FederationPath {
    /// Whether refusals take the JSON-RPC shape (MCP-shaped endpoints).
    pub fn speaks_json_rpc(self) -> bool {
        matches!(self, FederationPath::Rpc | FederationPath::Mcp)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Local(LocalEndpoint),
    Server { name: &'a str, endpoint: Endpoint },
    Federation(FederationPath),
    NotFound,
}

/// Classifies a request path (without the query string).
pub fn classify(path: &str) -> Route<'_> {
    match path {
        "/health" | "/healthz" => return Route::Local(LocalEndpoint::Health),
        "/ready" | "/readyz" => return Route::Local(LocalEndpoint::Ready),
        "/metrics" => return Route::Local(LocalEndpoint::Metrics),
        "/version" => return Route::Local(LocalEndpoint::Version),
        "/tools" | "/tools/" => return Route::Federation(FederationPath::Tools),
        "/rpc" => return Route::Federation(FederationPath::Rpc),
        "/mcp" => return Route::Federation(FederationPath::Mcp),
        "/ws" => return Route::Federation(FederationPath::Ws),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/servers/") else {
        return match path.strip_prefix("/tools/invoke/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                Route::Federation(FederationPath::Invoke)
            }
            _ => Route::NotFound,
        };
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((name, tail)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    let endpoint = match tail {
        "mcp" => Endpoint::Mcp,
        "sse" => Endpoint::Sse,
        "message" | "messages" => Endpoint::Message,
        _ => return Route::NotFound,
    };
    if name.is_empty() {
        return Route::NotFound;
    }
    Route::Server { name, endpoint }
}

/// Server name to index in the snapshot's server list: one hash lookup,
/// whatever the number of servers.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_name: HashMap<Box<str>, usize>,
}

impl RouteTable {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        RouteTable {
            by_name: names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (Box::from(n), i))
                .collect(),
        }
    }

    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The value of `key` in a query string, if present once or more (first wins).
pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints() {
        assert_eq!(classify("/health"), Route::Local(LocalEndpoint::Health));
        assert_eq!(classify("/ready"), Route::Local(LocalEndpoint::Ready));
        assert_eq!(classify("/metrics"), Route::Local(LocalEndpoint::Metrics));
        assert_eq!(classify("/version"), Route::Local(LocalEndpoint::Version));
    }

    #[test]
    fn server_routes() {
        assert_eq!(
            classify("/servers/github/mcp"),
            Route::Server {
                name: "github",
                endpoint: Endpoint::Mcp
            }
        );
        assert_eq!(
            classify("/servers/github/mcp/"),
            Route::Server {
                name: "github",
                endpoint: Endpoint::Mcp
            }
        );
        assert_eq!(
            classify("/servers/a-1/sse"),
            Route::Server {
                name: "a-1",
                endpoint: Endpoint::Sse
            }
        );
        assert_eq!(
            classify("/servers/a/message"),
            Route::Server {
                name: "a",
                endpoint: Endpoint::Message
            }
        );
        for bad in [
            "/servers/",
            "/servers//mcp",
            "/servers/a",
            "/servers/a/b/mcp",
            "/",
            "/servers/a/tools",
            "/mcpx",
            "/tools/invoke/",
            "/tools/invoke/a/b",
            "/tools/x",
        ] {
            assert_eq!(classify(bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn federation_routes() {
        use FederationPath::*;
        for (path, want) in [
            ("/tools", Tools),
            ("/tools/", Tools),
            ("/rpc", Rpc),
            ("/mcp", Mcp),
            ("/ws", Ws),
            ("/tools/invoke/github-create_issue", Invoke),
            ("/tools/invoke/a%2Fb", Invoke),
        ] {
            assert_eq!(classify(path), Route::Federation(want), "{path}");
        }
        assert!(Mcp.speaks_json_rpc() && Rpc.speaks_json_rpc());
        assert!(!Tools.speaks_json_rpc() && !Ws.speaks_json_rpc());
        // A virtual server's path is a server path until the snapshot says otherwise.
        assert_eq!(
            classify("/servers/everything/mcp"),
            Route::Server {
                name: "everything",
                endpoint: Endpoint::Mcp
            }
        );
    }

    #[test]
    fn table_lookup() {
        let t = RouteTable::new(["a", "b"]);
        assert_eq!(t.lookup("b"), Some(1));
        assert_eq!(t.lookup("c"), None);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&sessionId=x"), "sessionId"), Some("x"));
        assert_eq!(query_param(Some("a=1"), "sessionId"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
