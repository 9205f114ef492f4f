//! The upstream side of server→client requests (`federation::relay` is the
//! front's): an upstream session opened for one front client knows the
//! calls in flight on it, so a server request can travel with the call it
//! serves (on that call's event stream) and end when the call ends.

use crate::federation::relay::{attribute, FrontClient};
use rmcp::model::{ClientResult, ErrorData, RequestId, ServerRequest};
use rmcp::service::{InboundStreamOrigin, RequestContext};
use rmcp::RoleClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One front client's side of an upstream session: the calls in flight,
/// so a server request can travel with the call it serves and end with it.
pub struct SessionRelay {
    client: FrontClient,
    limit: Duration,
    /// The upstream request id of each call in flight.
    calls: Mutex<HashMap<RequestId, InFlight>>,
}

struct InFlight {
    /// The client's own request the call serves.
    front: Option<RequestId>,
    /// Fires when the call ends: its server requests end too.
    ended: CancellationToken,
}

impl SessionRelay {
    pub fn new(client: FrontClient, limit: Duration) -> Self {
        SessionRelay {
            client,
            limit,
            calls: Mutex::default(),
        }
    }

    /// Records a call in flight until the returned guard is dropped.
    pub fn track(self: &Arc<Self>, upstream: RequestId, front: Option<RequestId>) -> CallWatch {
        let ended = CancellationToken::new();
        self.lock().insert(
            upstream.clone(),
            InFlight {
                front,
                ended: ended.clone(),
            },
        );
        CallWatch {
            relay: self.clone(),
            upstream,
            _end: ended.drop_guard(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, InFlight>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn forward(
        &self,
        request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let carried_by = match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id),
            _ => None,
        };
        let (origin, call_ended) = {
            let calls = self.lock();
            match attribute(carried_by, calls.iter()) {
                Some(call) => (call.front.clone(), Some(call.ended.clone())),
                None => (None, None),
            }
        };
        // The upstream cancelling its request, or the call it serves
        // ending (answered, failed, timed out), ends the wait.
        let upstream_cancelled = context.ct.clone();
        let stop = async move {
            match call_ended {
                Some(call) => tokio::select! {
                    _ = upstream_cancelled.cancelled() => {}
                    _ = call.cancelled() => {}
                },
                None => upstream_cancelled.cancelled().await,
            }
        };
        self.client.forward(request, origin, self.limit, stop).await
    }
}

/// Forgets a call when it ends, and ends its server requests.
pub struct CallWatch {
    relay: Arc<SessionRelay>,
    upstream: RequestId,
    _end: tokio_util::sync::DropGuard,
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        self.relay.lock().remove(&self.upstream);
    }
}

/// A result of the kind asked for, whichever way the untagged answer was read.
pub fn typed<T: serde::de::DeserializeOwned>(result: ClientResult) -> Result<T, ErrorData> {
    serde_json::to_value(result)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ErrorData::internal_error(format!("the client's answer is malformed: {e}"), None)
        })
}

#[cfg(test)]
mod tests {
    #![allow(deprecated)]
    use super::*;
    use rmcp::model::{CreateMessageResult, CustomResult, ElicitResult};
    use serde_json::json;

    #[test]
    fn an_answer_is_read_as_the_kind_asked_for_or_refused() {
        // However the untagged answer was parsed, its fields decide.
        let sampled = ClientResult::CustomResult(CustomResult::new(json!({
            "model": "m", "role": "assistant", "content": {"type": "text", "text": "hi"}})));
        let result: CreateMessageResult = typed(sampled).expect("a sampling result");
        assert_eq!(result.model, "m");
        let roots = ClientResult::CustomResult(CustomResult::new(json!({"roots": []})));
        let err = typed::<ElicitResult>(roots).expect_err("not an elicitation answer");
        assert!(err.message.contains("malformed"), "{}", err.message);
    }
}
