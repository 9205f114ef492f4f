//! Filler tools (`--extra-tools N`): a server with a catalog the size of a
//! real one, for the federation benchmark (1,000 servers × 100 tools from
//! one process). Shaped like real tools (a sentence of description, a small
//! input schema), as `examples/catalog_memory.rs` builds them, so the
//! gateway's catalog holds what it would in production.

use serde_json::{json, Value};

const PREFIX: &str = "tool_";

/// The `tools/list` entries of `count` filler tools: `tool_0` … `tool_{count-1}`.
pub fn tools(count: usize) -> impl Iterator<Item = Value> {
    (0..count).map(|n| {
        json!({
            "name": format!("{PREFIX}{n}"),
            "description": format!("Filler tool {n}: searches things and returns what it found."),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "required": ["query"],
            },
        })
    })
}

/// The text a call of filler tool `name` answers, if `count` filler tools
/// include it.
pub fn call(name: &str, count: usize, arguments: Option<&Value>) -> Option<String> {
    let n: usize = name.strip_prefix(PREFIX)?.parse().ok()?;
    // `tool_07` is not `tool_7`: only the names `tools` lists are tools.
    if n >= count || format!("{PREFIX}{n}") != name {
        return None;
    }
    let query = arguments
        .and_then(|a| a.get("query"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(format!("{name}: nothing found for {query:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_exactly_the_tools_it_answers() {
        let listed: Vec<Value> = tools(3).collect();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2]["name"], "tool_2");
        assert_eq!(listed[0]["inputSchema"]["required"], json!(["query"]));
        let args = json!({"query": "x"});
        assert_eq!(
            call("tool_2", 3, Some(&args)).as_deref(),
            Some("tool_2: nothing found for \"x\"")
        );
        for unknown in ["tool_3", "tool_02", "tool_", "tool_-1", "echo", "tool_1x"] {
            assert_eq!(call(unknown, 3, Some(&args)), None, "{unknown}");
        }
        assert_eq!(tools(0).count(), 0);
    }
}
