//! Tool names across servers: the qualified name `<server><sep><tool>`,
//! the index that resolves a name a client sends (qualified, or bare where
//! one server alone offers it), collisions, and a virtual server's include
//! patterns. Pure: no catalog, no network.

use crate::federation::CallError;
use std::collections::HashMap;

/// `<server><sep><tool>`.
pub fn qualify(server: &str, separator: &str, tool: &str) -> String {
    let mut name = String::with_capacity(server.len() + separator.len() + tool.len());
    name.push_str(server);
    name.push_str(separator);
    name.push_str(tool);
    name
}

/// One tool of the catalog: its server's position and its own within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolRef {
    pub server: u32,
    pub tool: u32,
}

/// Two or more tools that qualify to the same name (server `a-b` tool `c`
/// and server `a` tool `b-c`): neither is callable by that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub qualified: String,
    /// `(server, tool)` of every owner, in catalog order.
    pub owners: Vec<(String, String)>,
}

impl Collision {
    /// One log line.
    pub fn describe(&self) -> String {
        let owners: Vec<String> = self
            .owners
            .iter()
            .map(|(s, t)| format!("server {s} tool {t}"))
            .collect();
        format!(
            "tool name {} is claimed by {}; it is listed as unavailable until one is renamed",
            self.qualified,
            owners.join(" and ")
        )
    }
}

/// Qualified and bare names to tools, built once per catalog.
#[derive(Debug, Default)]
pub struct NameIndex {
    qualified: HashMap<Box<str>, Vec<ToolRef>>,
    bare: HashMap<Box<str>, Vec<ToolRef>>,
}

impl NameIndex {
    /// `servers` yields, per server in catalog order, its name and its
    /// tools' `(qualified, original)` names in their order.
    pub fn build<'a, S, T>(servers: S) -> Self
    where
        S: IntoIterator<Item = T>,
        T: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut index = NameIndex::default();
        for (s, tools) in servers.into_iter().enumerate() {
            for (t, (qualified, original)) in tools.into_iter().enumerate() {
                let at = ToolRef {
                    server: s as u32,
                    tool: t as u32,
                };
                index
                    .qualified
                    .entry(qualified.into())
                    .or_default()
                    .push(at);
                index.bare.entry(original.into()).or_default().push(at);
            }
        }
        index
    }

    /// Whether the qualified name of `at` is shared with another tool.
    pub fn collides(&self, qualified: &str) -> bool {
        self.qualified.get(qualified).is_some_and(|v| v.len() > 1)
    }

    /// Every qualified name more than one tool claims, in name order.
    pub fn collisions(&self) -> Vec<(&str, &[ToolRef])> {
        let mut out: Vec<(&str, &[ToolRef])> = self
            .qualified
            .iter()
            .filter(|(_, owners)| owners.len() > 1)
            .map(|(name, owners)| (&**name, owners.as_slice()))
            .collect();
        out.sort_unstable_by_key(|(name, _)| *name);
        out
    }

    /// The tool `name` denotes among those `visible` admits: a qualified
    /// name first, else a bare tool name that exactly one server offers.
    /// `server_name` names a server for the `Ambiguous` error.
    pub fn resolve(
        &self,
        name: &str,
        visible: impl Fn(ToolRef) -> bool,
        server_name: impl Fn(u32) -> String,
    ) -> Result<ToolRef, CallError> {
        let ambiguous = |refs: Vec<ToolRef>| {
            let mut servers: Vec<String> = refs.iter().map(|r| server_name(r.server)).collect();
            servers.dedup();
            CallError::Ambiguous {
                name: name.to_string(),
                servers,
            }
        };
        if let Some(refs) = self.qualified.get(name) {
            let seen: Vec<ToolRef> = refs.iter().copied().filter(|r| visible(*r)).collect();
            match seen.len() {
                0 => {}
                1 if refs.len() == 1 => return Ok(seen[0]),
                // A collision is refused even where the caller sees one
                // owner only: which tool a name means must not depend on
                // who asks.
                _ => return Err(ambiguous(refs.clone())),
            }
        }
        if let Some(refs) = self.bare.get(name) {
            let seen: Vec<ToolRef> = refs.iter().copied().filter(|r| visible(*r)).collect();
            match seen.len() {
                0 => {}
                1 => return Ok(seen[0]),
                _ => return Err(ambiguous(seen)),
            }
        }
        Err(CallError::UnknownTool(name.to_string()))
    }
}

/// Whether a virtual server's `include` takes `item` (a tool, prompt or
/// resource name as its server calls it) of `server`: `server/*` takes all
/// of the server's, `server/item` that one. The server part is everything
/// before the first `/` (server names have none), so an item name may
/// itself contain `/` (a resource URI).
pub fn includes(patterns: &[String], server: &str, item: &str) -> bool {
    patterns.iter().any(|p| match p.split_once('/') {
        Some((s, rest)) => s == server && (rest == "*" || rest == item),
        None => false,
    })
}

/// Whether any pattern takes something of `server` (a quick skip).
pub fn includes_server(patterns: &[String], server: &str) -> bool {
    patterns
        .iter()
        .any(|p| p.split_once('/').is_some_and(|(s, _)| s == server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(servers: &[(&str, &[&str])], sep: &str) -> (NameIndex, Vec<Vec<(String, String)>>) {
        let names: Vec<Vec<(String, String)>> = servers
            .iter()
            .map(|(s, tools)| {
                tools
                    .iter()
                    .map(|t| (qualify(s, sep, t), t.to_string()))
                    .collect()
            })
            .collect();
        let idx = NameIndex::build(
            names
                .iter()
                .map(|tools| tools.iter().map(|(q, o)| (q.as_str(), o.as_str()))),
        );
        (idx, names)
    }

    fn name_of<'a>(servers: &'a [(&'a str, &'a [&'a str])]) -> impl Fn(u32) -> String + 'a {
        move |i| servers[i as usize].0.to_string()
    }

    #[test]
    fn qualify_joins_with_the_separator() {
        assert_eq!(
            qualify("github", "-", "create_issue"),
            "github-create_issue"
        );
        assert_eq!(qualify("a", "__", "b"), "a__b");
    }

    #[test]
    fn qualified_and_unambiguous_bare_names_resolve() {
        let servers: &[(&str, &[&str])] = &[("demo", &["echo", "whoami"]), ("gh", &["issue"])];
        let (idx, _) = index(servers, "-");
        let all = |_| true;
        let r = idx.resolve("demo-echo", all, name_of(servers)).unwrap();
        assert_eq!((r.server, r.tool), (0, 0));
        let r = idx.resolve("issue", all, name_of(servers)).unwrap();
        assert_eq!((r.server, r.tool), (1, 0));
        assert_eq!(
            idx.resolve("nope", all, name_of(servers)),
            Err(CallError::UnknownTool("nope".into()))
        );
    }

    #[test]
    fn a_bare_name_two_servers_offer_is_ambiguous_naming_both() {
        let servers: &[(&str, &[&str])] = &[("a", &["echo"]), ("b", &["echo"])];
        let (idx, _) = index(servers, "-");
        assert_eq!(
            idx.resolve("echo", |_| true, name_of(servers)),
            Err(CallError::Ambiguous {
                name: "echo".into(),
                servers: vec!["a".into(), "b".into()]
            })
        );
        // Where the caller may use only one of them, the bare name is its.
        let r = idx
            .resolve("echo", |r| r.server == 1, name_of(servers))
            .unwrap();
        assert_eq!(r.server, 1);
    }

    #[test]
    fn tools_outside_what_the_caller_sees_are_unknown() {
        let servers: &[(&str, &[&str])] = &[("a", &["echo"])];
        let (idx, _) = index(servers, "-");
        assert!(matches!(
            idx.resolve("a-echo", |_| false, name_of(servers)),
            Err(CallError::UnknownTool(_))
        ));
    }

    #[test]
    fn colliding_qualified_names_are_reported_and_never_resolve() {
        let servers: &[(&str, &[&str])] = &[("a-b", &["c"]), ("a", &["b-c", "d"])];
        let (idx, _) = index(servers, "-");
        let collisions = idx.collisions();
        assert_eq!(collisions.len(), 1);
        assert_eq!(collisions[0].0, "a-b-c");
        assert_eq!(collisions[0].1.len(), 2);
        assert!(idx.collides("a-b-c"));
        assert!(!idx.collides("a-d"));
        let err = idx
            .resolve("a-b-c", |_| true, name_of(servers))
            .unwrap_err();
        assert_eq!(
            err,
            CallError::Ambiguous {
                name: "a-b-c".into(),
                servers: vec!["a-b".into(), "a".into()]
            }
        );
        // Even a caller who may use only one owner is refused: no shadowing.
        assert!(idx
            .resolve("a-b-c", |r| r.server == 0, name_of(servers))
            .is_err());
        // The bare names stay usable.
        assert_eq!(
            idx.resolve("c", |_| true, name_of(servers)).unwrap().server,
            0
        );
        let c = Collision {
            qualified: "a-b-c".into(),
            owners: vec![("a-b".into(), "c".into()), ("a".into(), "b-c".into())],
        };
        let line = c.describe();
        assert!(line.contains("server a-b tool c") && line.contains("server a tool b-c"));
    }

    #[test]
    fn another_separator_removes_the_collision() {
        let servers: &[(&str, &[&str])] = &[("a-b", &["c"]), ("a", &["b-c"])];
        let (idx, _) = index(servers, "__");
        assert!(idx.collisions().is_empty());
        assert_eq!(
            idx.resolve("a__b-c", |_| true, name_of(servers))
                .unwrap()
                .server,
            1
        );
    }

    #[test]
    fn include_patterns_take_one_item_or_a_whole_server() {
        let inc = vec!["github/create_issue".to_string(), "demo/*".to_string()];
        assert!(includes(&inc, "github", "create_issue"));
        assert!(!includes(&inc, "github", "delete_repo"));
        assert!(includes(&inc, "demo", "echo"));
        assert!(includes(&inc, "demo", "file:///a/b"));
        assert!(!includes(&inc, "demo2", "echo"));
        assert!(!includes(&["demo".to_string()], "demo", "echo"));
        assert!(includes_server(&inc, "github"));
        assert!(!includes_server(&inc, "other"));
        // A pattern's item may contain '/' (resources by URI).
        assert!(includes(&["r/file:///x".to_string()], "r", "file:///x"));
    }
}
