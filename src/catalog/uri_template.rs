//! Whether a URI is one an RFC 6570 URI template (a server's
//! `resources/templates/list` entry) can produce: how `resources/read` of a
//! URI no server lists finds the server that serves it. Pure.
//!
//! Matching is by shape, not by expansion: the template's literal parts must
//! appear in order, and each `{expression}` takes what its operator may
//! expand to. A simple `{var}` (and `{.var}`, `{;var}`) never spans `/`,
//! `?` or `#`, since expansion percent-encodes them; `{+var}`, `{#var}`,
//! `{/var}`, `{?var}` and `{&var}` may hold anything.

/// Longer URIs are not matched (the work grows with the length).
pub const MAX_URI_LEN: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    /// A `{...}` expression; `reserved`: it may expand to `/`, `?` and `#`.
    Expression {
        reserved: bool,
    },
}

/// The template's parts, or `None` when a brace is unbalanced (such a
/// template matches nothing rather than everything).
fn parts(template: &str) -> Option<Vec<Part<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                out.push(Part::Literal(rest));
                break;
            }
            Some(at) if rest.as_bytes()[at] == b'}' => return None,
            Some(at) => {
                if at > 0 {
                    out.push(Part::Literal(&rest[..at]));
                }
                let close = rest[at..].find('}')? + at;
                let body = &rest[at + 1..close];
                if body.is_empty() || body.contains('{') {
                    return None;
                }
                let reserved = matches!(body.as_bytes()[0], b'+' | b'#' | b'/' | b'?' | b'&');
                out.push(Part::Expression { reserved });
                rest = &rest[close + 1..];
            }
        }
    }
    Some(out)
}

/// Whether `uri` has the shape of an expansion of `template`.
pub fn template_matches(template: &str, uri: &str) -> bool {
    if uri.len() > MAX_URI_LEN {
        return false;
    }
    let Some(parts) = parts(template) else {
        return false;
    };
    // The offsets where the parts so far can end, part by part: linear in
    // the URI's length per part, whatever the template (no backtracking).
    let uri = uri.as_bytes();
    let n = uri.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for part in &parts {
        let mut next = vec![false; n + 1];
        match part {
            Part::Literal(lit) => {
                for at in (0..=n).filter(|&at| reach[at]) {
                    if uri[at..].starts_with(lit.as_bytes()) {
                        next[at + lit.len()] = true;
                    }
                }
            }
            Part::Expression { reserved } => {
                let mut open = false;
                for at in 0..=n {
                    open |= reach[at];
                    next[at] = open;
                    if !reserved && matches!(uri.get(at), Some(b'/' | b'?' | b'#')) {
                        open = false;
                    }
                }
            }
        }
        reach = next;
    }
    reach[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_variable_takes_one_segment() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(t, "demo://resource/dynamic/text/5"));
        assert!(template_matches(
            t,
            "demo://resource/dynamic/text/abc%2Fdef"
        ));
        assert!(!template_matches(t, "demo://resource/dynamic/text/5/more"));
        assert!(!template_matches(t, "demo://resource/dynamic/blob/5"));
        assert!(!template_matches(t, "demo://resource/dynamic/text"));
    }

    #[test]
    fn literals_around_and_between_variables_must_all_appear() {
        let t = "file:///{dir}/notes-{name}.md";
        assert!(template_matches(t, "file:///home/notes-a.md"));
        assert!(!template_matches(t, "file:///home/notes-a.txt"));
        assert!(!template_matches(t, "file:///home/sub/notes-a.md"));
        // Two variables in a row still find their split.
        assert!(template_matches("x://{a}{b}/end", "x://abc/end"));
    }

    #[test]
    fn reserved_and_path_operators_span_slashes() {
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches(
            "repo://{owner}{/path*}",
            "repo://me/src/lib.rs"
        ));
        assert!(template_matches(
            "search://q{?term,limit}",
            "search://q?term=x&limit=5"
        ));
        assert!(!template_matches(
            "search://q{?term}",
            "search://other?term=x"
        ));
    }

    #[test]
    fn a_template_without_variables_is_one_uri_and_a_broken_one_none() {
        assert!(template_matches("demo://readme", "demo://readme"));
        assert!(!template_matches("demo://readme", "demo://readme2"));
        assert!(!template_matches("demo://{id", "demo://{id"));
        assert!(!template_matches("demo://id}", "demo://id}"));
        assert!(!template_matches("demo://{}", "demo://x"));
    }

    #[test]
    fn a_hostile_template_or_uri_stays_cheap() {
        let t = "x://".to_string() + &"{a}".repeat(40) + "!";
        let uri = "x://".to_string() + &"a".repeat(2000);
        assert!(!template_matches(&t, &uri));
        let long = "x://".to_string() + &"a".repeat(MAX_URI_LEN);
        assert!(!template_matches("x://{+all}", &long));
    }
}
