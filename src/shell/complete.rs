//! Tab completion: functions and variables, methods and attribute names
//! after a dot, saved connection names inside `connection("`.

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
        pool.extend(n.methods.iter().cloned());
        pool.extend(attrs());
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
        }))
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
        let (_, c) = complete(&n, &attrs, "ad.s", 4);
        let got: Vec<_> = c.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(got, ["sAMAccountName", "search", "set_password", "sn"]);
        let (s, c) = complete(&n, &none, "let a = connection(\"co", 22);
        assert_eq!(s, 20);
        assert_eq!(c[0].replacement, "corp-ad");
    }
}
