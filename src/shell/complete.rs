//! Tab completion: functions and variables; after a dot the methods of
//! what is before it (a connection's methods for its kind only, an entry's
//! methods and attribute names); saved connection names inside
//! `connection("`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustyline::completion::Pair;

/// What completion can offer; refreshed by the REPL after each input.
#[derive(Default, Clone)]
pub struct Names {
    /// Global functions (registered and script-defined).
    pub functions: Vec<String>,
    /// Methods and properties of idsync types.
    pub methods: Vec<String>,
    /// Variables in scope.
    pub variables: Vec<String>,
    /// Saved connection profile names.
    pub profiles: Vec<String>,
    /// Methods and properties by the type they belong to (`Connection`, `Entry`, ...).
    pub methods_of: HashMap<String, Vec<String>>,
    /// The type of each variable: `Entry`, `Step`, ..., and `Connection:ldap`
    /// (a connection with its kind).
    pub var_types: HashMap<String, String>,
}

/// Connection methods that only a Microsoft Graph connection has.
const GRAPH_ONLY: &[&str] = &[
    "users",
    "groups",
    "users_delta",
    "groups_delta",
    "save_delta",
    "enable_role",
    "roles",
    "role_templates",
    "role_members",
    "add_role_member",
    "remove_role_member",
];

/// Connection methods that only a directory (LDAP) connection has.
const DIRECTORY_ONLY: &[&str] = &[
    "ls",
    "tree",
    "check_password_rights",
    "grant_password_rights",
];

/// What is before the dot at `dot` (the index of the `.`): a variable's
/// type, `Entry` for an element of an array or the result of `get`, or
/// `None` when completion cannot tell.
fn receiver_type(n: &Names, line: &str, dot: usize) -> Option<String> {
    let before = &line[..dot];
    if before.ends_with(']') {
        return Some("Entry".into());
    }
    if before.ends_with(')') {
        // `x.get("...")`: the call's name is before its opening parenthesis.
        let mut depth = 0i32;
        for (i, ch) in before.char_indices().rev() {
            match ch {
                ')' => depth += 1,
                '(' => {
                    depth -= 1;
                    if depth == 0 {
                        let name_start = word_start(before, i);
                        return (&before[name_start..i] == "get").then(|| "Entry".into());
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    let start = word_start(before, before.len());
    let word = &before[start..];
    if word.is_empty() || before[..start].ends_with('.') {
        return None;
    }
    n.var_types.get(word).cloned()
}

/// The methods offered after a dot on a value of type `ty`.
fn methods_for(n: &Names, ty: &str) -> Option<Vec<String>> {
    let (base, kind) = match ty.split_once(':') {
        Some((b, k)) => (b, Some(k)),
        None => (ty, None),
    };
    let list = n.methods_of.get(base)?;
    Some(
        list.iter()
            .filter(|m| match (base, kind) {
                ("Connection", Some(k)) => {
                    (k == "graph" || !GRAPH_ONLY.contains(&m.as_str()))
                        && (k == "ldap" || !DIRECTORY_ONLY.contains(&m.as_str()))
                }
                _ => true,
            })
            .cloned()
            .collect(),
    )
}

/// Rhai keywords worth completing.
const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "for", "in", "if", "else", "while", "loop", "break", "continue",
    "return", "true", "false", "switch", "print", "throw", "try", "catch",
];

/// Where the word being completed starts.
fn word_start(line: &str, pos: usize) -> usize {
    line[..pos]
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
        .last()
        .map(|(i, _)| i)
        .unwrap_or(pos)
}

/// Completes the word before `pos`. `attrs` is asked only after a dot.
pub fn complete(
    names: &Arc<Mutex<Names>>,
    attrs: &dyn Fn() -> Vec<String>,
    line: &str,
    pos: usize,
) -> (usize, Vec<Pair>) {
    let pos = pos.min(line.len());
    let Ok(n) = names.lock().map(|n| n.clone()) else {
        return (pos, Vec::new());
    };
    let before = &line[..pos];
    // Inside connection("...: saved profile names.
    for opener in ["connection(\"", "remove_connection(\""] {
        if let Some(i) = before.rfind(opener) {
            let arg = &before[i + opener.len()..];
            if !arg.contains('"') {
                let start = i + opener.len();
                return (start, filter(&n.profiles, arg, false));
            }
        }
    }
    let start = word_start(line, pos);
    let word = &line[start..pos];
    let after_dot = line[..start].ends_with('.');
    let mut pool: Vec<String> = Vec::new();
    if after_dot {
        let ty = receiver_type(&n, line, start - 1);
        match ty
            .as_deref()
            .and_then(|t| methods_for(&n, t).map(|m| (t, m)))
        {
            // A connection, a step, ...: its own methods only.
            Some((t, methods)) => {
                pool.extend(methods);
                if t == "Entry" {
                    pool.extend(attrs());
                }
            }
            None => {
                pool.extend(n.methods.iter().cloned());
                pool.extend(attrs());
            }
        }
        return (start, filter(&pool, word, true));
    }
    pool.extend(n.functions.iter().cloned());
    pool.extend(n.variables.iter().cloned());
    pool.extend(KEYWORDS.iter().map(|s| s.to_string()));
    (start, filter(&pool, word, false))
}

fn filter(pool: &[String], word: &str, ignore_case: bool) -> Vec<Pair> {
    let lw = word.to_ascii_lowercase();
    let mut out: Vec<String> = pool
        .iter()
        .filter(|c| {
            if ignore_case {
                c.to_ascii_lowercase().starts_with(&lw)
            } else {
                c.starts_with(word)
            }
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out.into_iter()
        .map(|c| Pair {
            display: c.clone(),
            replacement: c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Arc<Mutex<Names>> {
        Arc::new(Mutex::new(Names {
            functions: vec!["connect_ldap".into(), "connections".into(), "secret".into()],
            methods: vec!["search".into(), "set_password".into()],
            variables: vec!["ad".into()],
            profiles: vec!["corp-ad".into(), "lab".into()],
            methods_of: HashMap::from([
                (
                    "Connection".to_string(),
                    vec![
                        "search".to_string(),
                        "set_password".into(),
                        "users".into(),
                        "ls".into(),
                    ],
                ),
                ("Entry".to_string(), vec!["has".to_string(), "dn".into()]),
            ]),
            var_types: HashMap::from([
                ("ad".to_string(), "Connection:ldap".to_string()),
                ("az".to_string(), "Connection:graph".to_string()),
                ("u".to_string(), "Entry".to_string()),
            ]),
        }))
    }

    fn got(c: &[Pair]) -> Vec<&str> {
        c.iter().map(|p| p.replacement.as_str()).collect()
    }

    #[test]
    fn after_a_dot_the_receiver_s_own_methods_and_an_entry_s_attributes() {
        let n = names();
        let attrs = || vec!["sAMAccountName".to_string(), "sn".to_string(), "uid".into()];
        // An LDAP connection: no Graph-only method, no attribute names.
        assert_eq!(
            got(&complete(&n, &attrs, "ad.", 3).1),
            ["ls", "search", "set_password"]
        );
        assert_eq!(got(&complete(&n, &attrs, "ad.u", 4).1), Vec::<&str>::new());
        // A Graph connection: its methods, not the directory's ls.
        assert_eq!(
            got(&complete(&n, &attrs, "az.", 3).1),
            ["search", "set_password", "users"]
        );
        // An entry (a variable, an element, the result of get): methods and attributes.
        assert_eq!(
            got(&complete(&n, &attrs, "u.s", 3).1),
            ["sAMAccountName", "sn"]
        );
        assert_eq!(got(&complete(&n, &attrs, "xs[0].u", 7).1), ["uid"]);
        assert_eq!(got(&complete(&n, &attrs, "ad.get(\"x\").h", 13).1), ["has"]);
    }

    #[test]
    fn completes_by_context() {
        let n = names();
        let none = || Vec::new();
        let (s, c) = complete(&n, &none, "let x = conn", 12);
        assert_eq!(s, 8);
        assert_eq!(
            c.iter().map(|p| p.replacement.as_str()).collect::<Vec<_>>(),
            ["connect_ldap", "connections"]
        );
        let attrs = || vec!["sAMAccountName".to_string(), "sn".to_string()];
        // Something completion cannot type: every method and attribute.
        let (_, c) = complete(&n, &attrs, "f().s", 5);
        let got: Vec<_> = c.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(got, ["sAMAccountName", "search", "set_password", "sn"]);
        let (s, c) = complete(&n, &none, "let a = connection(\"co", 22);
        assert_eq!(s, 20);
        assert_eq!(c[0].replacement, "corp-ad");
    }
}
