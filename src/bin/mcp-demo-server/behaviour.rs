//! How the demo server may misbehave, for tests of the gateway's handling
//! of upstreams that are valid but unusual, or broken.

/// What the legacy stream announces first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEndpoint {
    Path,
    Invalid,
    Huge,
    Missing,
}

impl SseEndpoint {
    pub fn parse(mode: &str) -> Option<Self> {
        match mode {
            "path" => Some(SseEndpoint::Path),
            "invalid" => Some(SseEndpoint::Invalid),
            "huge" => Some(SseEndpoint::Huge),
            "missing" => Some(SseEndpoint::Missing),
            _ => None,
        }
    }

    pub fn first_event(self, sid: &str) -> String {
        // An absolute path, as the official Python SDK sends, so clients resolve
        // it against the URL they used (through the gateway, that is the gateway).
        let data = match self {
            SseEndpoint::Path => format!("/message?sessionId={sid}"),
            SseEndpoint::Invalid => format!("http://[::1/message?sessionId={sid}"),
            SseEndpoint::Huge => format!("/message?sessionId={sid}&pad={}", "x".repeat(2048)),
            SseEndpoint::Missing => {
                return format!(
                    ": {}\n\nevent: message\ndata: {{}}\n\n",
                    "x".repeat(9 * 1024)
                )
            }
        };
        format!("event: endpoint\ndata: {data}\n\n")
    }
}

/// How the server behaves beyond the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub echo_session_id: bool,
    pub sse_endpoint: SseEndpoint,
    /// List the `countdown` tool, which reports progress.
    pub progress_tool: bool,
    /// Offer a prompt (`greet`) and a resource (`demo://readme`).
    pub prompts_and_resources: bool,
    /// Filler tools listed besides the real ones (`filler.rs`).
    pub extra_tools: usize,
    /// GET streams without the periodic tick.
    pub quiet_streams: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            echo_session_id: false,
            sse_endpoint: SseEndpoint::Path,
            progress_tool: false,
            prompts_and_resources: false,
            extra_tools: 0,
            quiet_streams: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_misbehaviours() {
        let event = |mode| SseEndpoint::parse(mode).unwrap().first_event("s1");
        assert_eq!(
            event("path"),
            "event: endpoint\ndata: /message?sessionId=s1\n\n"
        );
        assert!(event("invalid").contains("data: http://[::1/"));
        assert!(event("huge").len() > 2048);
        let missing = event("missing");
        assert!(missing.len() > 8 * 1024 && !missing.contains("endpoint"));
        assert!(SseEndpoint::parse("other").is_none());
    }
}
