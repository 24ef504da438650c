//! `help()` and `help("name")`, built from the doc comments of the
//! registered functions (the same metadata Rhai keeps), so help and code
//! cannot drift. Also the function and method names for completion, and
//! the examples of the doc comments (which tests run).

use rhai::Engine;
use serde_json::Value as Json;

/// One registered function's documentation.
#[derive(Clone, Debug)]
pub struct FnDoc {
    /// Name as scripts call it.
    pub name: String,
    /// Cleaned signature, e.g. `Connection.search(filter: String, opts: Map) -> Array`.
    pub signature: String,
    /// Doc comment text without the `///` markers.
    pub doc: String,
    /// True when it is called as a method (`c.search(...)`).
    pub is_method: bool,
    /// True for property getters (`e.dn`).
    pub is_property: bool,
    /// The type a method or property belongs to (`Connection`, `Step`, ...):
    /// the first parameter's type of a function registered with a `&mut`
    /// receiver (how Rhai passes the object of `x.f()` and `x.prop`).
    pub receiver: Option<String>,
}

impl FnDoc {
    /// The Rhai examples of the doc comment: the text of each
    /// `` ```rhai `` ... `` ``` `` block, in order.
    pub fn examples(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in self.doc.lines() {
            let fence = line.trim_start().strip_prefix("```");
            match (&mut current, fence) {
                (None, Some(lang)) if lang.trim() == "rhai" => current = Some(Vec::new()),
                (Some(lines), Some(_)) => {
                    out.push(lines.join("\n"));
                    current = None;
                }
                (Some(lines), None) => lines.push(line),
                (None, _) => {}
            }
        }
        out
    }
}

fn clean_type(t: &str) -> String {
    let t = t
        .trim()
        .trim_start_matches("&mut ")
        .trim_start_matches('&')
        .trim();
    let t = t
        .strip_prefix("ScriptResult<")
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t);
    // `Result<T, Box<EvalAltResult>>`, with or without a path on the error type
    let t = t
        .strip_prefix("Result<")
        .and_then(|x| x.rsplit_once("Box<"))
        .map(|(ok, _)| ok.trim_end().trim_end_matches(',').trim_end())
        .unwrap_or(t);
    let t = t.rsplit("::").next().unwrap_or(t);
    match t {
        "str" | "ImmutableString" => "String".into(),
        "()" => "()".into(),
        "Dynamic" => "any".into(),
        "i64" | "INT" => "int".into(),
        other => other.to_string(),
    }
}

/// All documented functions registered in `engine` (not the standard library).
pub fn collect(engine: &Engine) -> Vec<FnDoc> {
    let Ok(json) = engine.gen_fn_metadata_to_json(false) else {
        return Vec::new();
    };
    let Ok(meta) = serde_json::from_str::<Json>(&json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in meta["functions"].as_array().into_iter().flatten() {
        let raw_name = f["name"].as_str().unwrap_or_default();
        if raw_name.starts_with("index$")
            || raw_name.starts_with("set$")
            || raw_name.starts_with("anon$")
        {
            continue;
        }
        let (name, is_property) = match raw_name.strip_prefix("get$") {
            Some(p) => (p.to_string(), true),
            None => (raw_name.to_string(), false),
        };
        let doc: Vec<String> = f["docComments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
            .map(|l| {
                let l = l.trim_start();
                l.strip_prefix("/// ")
                    .or_else(|| l.strip_prefix("///"))
                    .unwrap_or(l)
                    .to_string()
            })
            .collect();
        if doc.is_empty() || name == "to_string" || name == "to_debug" {
            continue;
        }
        // (name, raw type as registered, e.g. `&mut Step`)
        let params: Vec<(String, &str)> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("_").to_string(),
                    p["type"].as_str().unwrap_or("?"),
                )
            })
            .filter(|(n, t)| n != "ctx" && clean_type(t) != "NativeCallContext")
            .collect();
        let ret = clean_type(f["returnType"].as_str().unwrap_or("()"));
        // A method or getter gets its object as a `&mut` first parameter.
        let receiver = params
            .first()
            .filter(|(_, t)| t.trim_start().starts_with("&mut "))
            .map(|(_, t)| clean_type(t));
        let shown = if receiver.is_some() {
            &params[1..]
        } else {
            &params[..]
        };
        let args = shown
            .iter()
            .map(|(n, t)| format!("{n}: {}", clean_type(t)))
            .collect::<Vec<_>>()
            .join(", ");
        let signature = match (&receiver, is_property) {
            (Some(t), true) => format!("{t}.{name} -> {ret}"),
            (Some(t), false) => format!("{t}.{name}({args}) -> {ret}"),
            (None, _) => format!("{name}({args}) -> {ret}"),
        };
        out.push(FnDoc {
            name,
            signature,
            doc: doc.join("\n").trim().to_string(),
            is_method: receiver.is_some(),
            is_property,
            receiver,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.signature.cmp(&b.signature)));
    out
}

/// The help text: an index for `None`, the full entry for a name.
pub fn render(engine: &Engine, topic: Option<&str>) -> String {
    let docs = collect(engine);
    match topic.map(str::trim) {
        None | Some("") => index(&docs),
        Some(t) => {
            let hits: Vec<&FnDoc> = docs
                .iter()
                .filter(|d| d.name.eq_ignore_ascii_case(t))
                .collect();
            if hits.is_empty() {
                let pool: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
                let near = closest(t, &pool, 5);
                let mut s = format!("no help for '{t}'");
                if !near.is_empty() {
                    s.push_str(&format!("; did you mean: {}", near.join(", ")));
                }
                s.push_str(". help() lists every function.");
                s.push_str(&format!(
                    "\nIf '{t}' is an attribute: e.{t} reads () when the entry has no such attribute; e.has(\"{t}\") tells whether it has one."
                ));
                return s;
            }
            let mut s = String::new();
            for (i, d) in hits.iter().enumerate() {
                if i > 0 {
                    s.push_str("\n\n");
                }
                s.push_str(&d.signature);
                s.push('\n');
                for line in d.doc.lines() {
                    if line.trim_start().starts_with("```") {
                        continue;
                    }
                    s.push_str("    ");
                    s.push_str(line);
                    s.push('\n');
                }
            }
            s.trim_end().to_string()
        }
    }
}

/// Width of the name column of the index (two spaces of indent included).
const LABEL: usize = 24;

/// The width the index is wrapped to: the terminal's, else 100 columns.
fn index_width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .unwrap_or(100)
        .clamp(60, 160)
}

/// The first sentence of a doc comment, whole: its first paragraph up to
/// the first full stop that ends a sentence (not the one of "e.g.").
pub fn first_sentence(doc: &str) -> String {
    let para: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.starts_with("```"))
        .collect();
    let text = para.join(" ");
    for (i, _) in text.match_indices(". ") {
        let before = &text[..i];
        let word = before.rsplit(' ').next().unwrap_or("");
        if ["e.g", "i.e", "etc", "vs"].contains(&word.trim_start_matches('(')) {
            continue;
        }
        return text[..=i].to_string();
    }
    text
}

/// `text` in lines of at most `width` characters, broken between words
/// (a longer word stands on its own line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Up to `max` names of `pool` closest to `word` (edit distance, case
/// ignored), nearest first; names containing the word count as close.
pub fn closest<'a>(word: &str, pool: &[&'a str], max: usize) -> Vec<&'a str> {
    let w = word.to_ascii_lowercase();
    if w.is_empty() {
        return Vec::new();
    }
    let limit = (w.chars().count() / 3).max(1) + usize::from(w.len() > 4);
    let mut scored: Vec<(usize, &str)> = pool
        .iter()
        .filter_map(|&n| {
            let l = n.to_ascii_lowercase();
            let d = strsim::damerau_levenshtein(&w, &l);
            if d <= limit {
                Some((d, n))
            } else if w.len() >= 3 && l.contains(&w) {
                Some((limit + 1, n))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(max).map(|(_, n)| n).collect()
}

/// A "did you mean" line for an error that names an unknown function,
/// method or property (`extra`: the script's own functions); `None` for
/// other errors or when nothing is close.
pub fn did_you_mean(
    engine: &Engine,
    extra: &[String],
    err: &rhai::EvalAltResult,
) -> Option<String> {
    use rhai::EvalAltResult as E;
    let mut e = err;
    while let E::ErrorInFunctionCall(_, _, inner, _) | E::ErrorInModule(_, inner, _) = e {
        e = inner;
    }
    let E::ErrorFunctionNotFound(sig, _) = e else {
        return None;
    };
    let name = sig.split([' ', '(']).next().unwrap_or("").trim();
    let (name, property) = match name
        .strip_prefix("get$")
        .or_else(|| name.strip_prefix("set$"))
    {
        Some(p) => (p, true),
        None => (name, false),
    };
    // The receiver's type, as Rhai names it in the signature: `(Connection, &str)`.
    let first_type = sig
        .split_once('(')
        .and_then(|(_, rest)| rest.split([',', ')']).next())
        .map(|t| {
            t.trim()
                .trim_start_matches("&mut ")
                .trim_start_matches('&')
                .to_string()
        })
        .unwrap_or_default();
    let docs = collect(engine);
    let on_type: Vec<&FnDoc> = docs
        .iter()
        .filter(|d| d.receiver.as_deref() == Some(first_type.as_str()))
        .collect();
    let pool: Vec<&str> = if !on_type.is_empty() {
        on_type.iter().map(|d| d.name.as_str()).collect()
    } else {
        docs.iter()
            .filter(|d| d.receiver.is_none())
            .map(|d| d.name.as_str())
            .chain(extra.iter().map(String::as_str))
            .collect()
    };
    let near = closest(name, &pool, 3);
    if near.is_empty() {
        return None;
    }
    let shown: Vec<String> = near
        .iter()
        .map(|n| {
            let is_prop = docs.iter().any(|d| d.name == *n && d.is_property);
            match (on_type.is_empty(), is_prop || property) {
                (false, true) => format!(".{n}"),
                (false, false) => format!(".{n}()"),
                (true, _) => format!("{n}()"),
            }
        })
        .collect();
    Some(format!(
        "did you mean {}? (help(\"{}\") explains it)",
        shown.join(" or "),
        near[0]
    ))
}

fn index(docs: &[FnDoc]) -> String {
    let width = index_width();
    let mut s = String::from("idsync functions (help(\"name\") for details and an example):\n");
    let mut section = |title: &str, filter: &dyn Fn(&FnDoc) -> bool| {
        let mut seen: Vec<&str> = Vec::new();
        let rows: Vec<&FnDoc> = docs.iter().filter(|d| filter(d)).collect();
        if rows.is_empty() {
            return;
        }
        s.push_str(&format!("\n{title}\n"));
        for d in rows {
            if seen.contains(&d.name.as_str()) {
                continue;
            }
            seen.push(&d.name);
            let first = first_sentence(&d.doc);
            let label = if d.is_property {
                format!(".{}", d.name)
            } else if d.is_method {
                format!(".{}()", d.name)
            } else {
                format!("{}()", d.name)
            };
            let lines = wrap(&first, width.saturating_sub(LABEL + 1).max(30));
            for (i, line) in lines.iter().enumerate() {
                let l = if i == 0 { label.as_str() } else { "" };
                s.push_str(&format!("  {l:<w$} {line}\n", w = LABEL - 2));
            }
            if lines.is_empty() {
                s.push_str(&format!("  {label}\n"));
            }
        }
    };
    section("Functions", &|d: &FnDoc| d.receiver.is_none());
    // One section per type that has methods or properties, as registered.
    let mut types: Vec<&str> = docs.iter().filter_map(|d| d.receiver.as_deref()).collect();
    types.sort_unstable();
    types.dedup();
    for t in types {
        section(&format!("{t} methods and properties"), &|d: &FnDoc| {
            d.receiver.as_deref() == Some(t)
        });
    }
    s.push_str("\nEntries: e.mail or e[\"mail\"] reads an attribute; one the entry lacks reads as (), so test with e.has(\"mail\").");
    s.push_str("\nShell: help, exit, clear, history (typed without parentheses); cd(c, dn), pwd() and ls() walk a directory; Tab completes names, variables, connections and attributes.");
    s
}

/// Names for completion: (functions, methods and properties).
pub fn names(engine: &Engine) -> (Vec<String>, Vec<String>) {
    let docs = collect(engine);
    let mut funcs: Vec<String> = docs
        .iter()
        .filter(|d| !d.is_method)
        .map(|d| d.name.clone())
        .collect();
    let mut methods: Vec<String> = docs
        .iter()
        .filter(|d| d.is_method)
        .map(|d| d.name.clone())
        .collect();
    funcs.dedup();
    methods.sort();
    methods.dedup();
    (funcs, methods)
}

/// Help bindings.
#[rhai::export_module]
pub mod help_api {
    use rhai::NativeCallContext;

    /// Lists every idsync function with a one-line description.
    ///
    /// Example:
    /// ```rhai
    /// help()
    /// ```
    #[rhai_fn(name = "help")]
    pub fn help_index(ctx: NativeCallContext) -> String {
        super::render(ctx.engine(), None)
    }

    /// Shows a function's signature(s), description and an example.
    ///
    /// Example:
    /// ```rhai
    /// help("search")
    /// ```
    #[rhai_fn(name = "help")]
    pub fn help_topic(ctx: NativeCallContext, name: &str) -> String {
        super::render(ctx.engine(), Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::{Array, FuncRegistration};

    /// The index section that starts with `title` (up to the next blank line).
    fn section(index: &str, title: &str) -> String {
        index
            .split("\n\n")
            .find(|b| b.starts_with(title))
            .unwrap_or_else(|| panic!("no section '{title}' in\n{index}"))
            .to_string()
    }

    #[test]
    fn step_and_workflow_methods_print_under_their_types() {
        let e = crate::script::engine();
        let run = render(&e, Some("run"));
        for sig in [
            "Step.run() -> Map",
            "Step.run(opts: Map) -> Map",
            "Workflow.run() -> Array",
            "Workflow.run(opts: Map) -> Array",
        ] {
            assert!(run.contains(sig), "{sig} missing from\n{run}");
        }
        assert!(!run.contains("run(s: Step"), "{run}");
        assert!(
            render(&e, Some("name")).starts_with("Step.name -> String"),
            "{}",
            render(&e, Some("name"))
        );
        let idx = render(&e, None);
        let functions = section(&idx, "Functions");
        for m in [".name", "  run()", "  preview()", ".search()", ".dn"] {
            assert!(
                !functions.contains(m),
                "{m} listed as a function:\n{functions}"
            );
        }
        let step = section(&idx, "Step methods and properties");
        for m in [".name ", ".preview()", ".run()"] {
            assert!(step.contains(m), "{m} missing from\n{step}");
        }
        let workflow = section(&idx, "Workflow methods and properties");
        assert!(workflow.contains(".run()"), "{workflow}");
        let conn = section(&idx, "Connection methods and properties");
        assert!(
            conn.contains(".search()") && conn.contains(".kind"),
            "{conn}"
        );
        assert!(section(&idx, "Entry methods and properties").contains(".dn"));
        // A function that takes connections by value is called as a function.
        let bs = render(&e, Some("backsync"));
        assert!(
            bs.contains("backsync(ad: Connection, az: Connection) -> Map"),
            "{bs}"
        );
        assert!(functions.contains("backsync()"), "{functions}");
        // Completion offers the methods after a dot.
        let (funcs, methods) = names(&e);
        assert!(methods.contains(&"run".to_string()) && methods.contains(&"name".into()));
        assert!(!funcs.contains(&"run".to_string()) && !funcs.contains(&"name".into()));
    }

    #[derive(Clone)]
    struct Plan;

    #[test]
    fn a_new_type_s_methods_print_under_it() {
        let mut e = crate::script::engine();
        e.register_type_with_name::<Plan>("Plan");
        FuncRegistration::new("rows")
            .with_params_info(["p: &mut Plan", "Array"])
            .with_comments(["/// The plan's rows."])
            .register_into_engine(&mut e, |_: &mut Plan| Array::new());
        FuncRegistration::new("get$size")
            .with_params_info(["p: &mut Plan", "i64"])
            .with_comments(["/// How many rows."])
            .register_into_engine(&mut e, |_: &mut Plan| 0_i64);
        assert_eq!(
            render(&e, Some("rows")),
            "Plan.rows() -> Array\n    The plan's rows."
        );
        assert!(render(&e, Some("size")).starts_with("Plan.size -> int"));
        let plan = section(&render(&e, None), "Plan methods and properties");
        assert!(
            plan.contains(".rows()") && plan.contains(".size "),
            "{plan}"
        );
    }

    #[test]
    fn help_prints_every_example_that_examples_returns() {
        let e = crate::script::engine();
        for d in collect(&e) {
            let shown = render(&e, Some(&d.name));
            for ex in d.examples() {
                for line in ex.lines() {
                    assert!(
                        shown.contains(&format!("    {line}")),
                        "help(\"{}\") does not print `{line}`:\n{shown}",
                        d.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_index_shows_each_first_sentence_whole_and_wrapped() {
        let e = crate::script::engine();
        let idx = index(&collect(&e));
        // Every index line fits the width, and every documented first
        // sentence appears whole (joined back from its wrapped lines).
        let width = index_width();
        for l in idx.lines().filter(|l| l.starts_with("  ")) {
            let name_col = l.chars().take(LABEL).collect::<String>();
            if name_col.trim().chars().count() <= LABEL - 3 {
                assert!(l.chars().count() <= width, "too wide: {l}");
            }
        }
        let joined: String = idx
            .lines()
            .map(|l| l.chars().skip(LABEL).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut shown: Vec<(Option<String>, String)> = Vec::new();
        for d in collect(&e) {
            // The index shows the first doc of each name in each section.
            let key = (d.receiver.clone(), d.name.clone());
            if shown.contains(&key) {
                continue;
            }
            shown.push(key);
            let first = first_sentence(&d.doc);
            let words: Vec<&str> = first.split_whitespace().collect();
            assert!(
                joined.contains(&words.join(" ")),
                "first sentence of {} not whole in the index: {first}",
                d.name
            );
        }
        // The sentence of csv-like docs that used to be cut ("...each row is an").
        assert_eq!(
            first_sentence("Reads rows; each row is an\nentry. More text.\n\nExample:"),
            "Reads rows; each row is an entry."
        );
        assert_eq!(
            first_sentence("Sets x (e.g. 3). Then y."),
            "Sets x (e.g. 3)."
        );
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
    }

    #[test]
    fn unknown_names_get_the_closest_real_ones() {
        let e = crate::script::engine();
        let h = render(&e, Some("serch"));
        assert!(h.contains("did you mean: search"), "{h}");
        assert!(h.contains("e.has(\"serch\")"), "{h}");
        assert_eq!(
            closest("conect_ldap", &["connect_ldap", "search"], 3),
            ["connect_ldap"]
        );
        assert!(closest("zzzzqq", &["search", "get"], 3).is_empty());
        let err = e.eval::<rhai::Dynamic>(r#"conect_ldap("x")"#).unwrap_err();
        let hint = did_you_mean(&e, &[], &err).unwrap_or_default();
        assert!(hint.starts_with("did you mean connect_ldap()"), "{hint}");
        let err = e.eval::<rhai::Dynamic>(r#"zzqqxx()"#).unwrap_err();
        assert_eq!(did_you_mean(&e, &[], &err), None);
        let err = e.eval::<rhai::Dynamic>(r#"hepl()"#).unwrap_err();
        let hint = did_you_mean(&e, &[], &err).unwrap_or_default();
        assert!(hint.starts_with("did you mean help()"), "{hint}");
        let err = e
            .eval::<rhai::Dynamic>(r#"fn my_fun() { 1 } my_fnu()"#)
            .unwrap_err();
        let hint = did_you_mean(&e, &["my_fun".into()], &err).unwrap_or_default();
        assert!(hint.contains("my_fun()"), "{hint}");
    }

    #[test]
    fn return_types_with_a_path_on_the_error_read_plainly() {
        let e = crate::script::engine();
        let h = render(&e, Some("env"));
        assert!(h.contains("env(name: String) -> String"), "{h}");
        assert!(!h.contains("EvalAltResult"), "{h}");
    }

    #[test]
    fn examples_are_the_rhai_blocks_of_the_doc() {
        let d = FnDoc {
            name: "f".into(),
            signature: "f()".into(),
            doc: "Does f.\n\nExample:\n```rhai\nlet a = 1;\nf(a)\n```\nMore.\n```text\nnot rhai\n```\n```rhai\nf()\n```".into(),
            is_method: false,
            is_property: false,
            receiver: None,
        };
        assert_eq!(
            d.examples(),
            vec!["let a = 1;\nf(a)".to_string(), "f()".into()]
        );
        let e = crate::script::engine();
        let search: Vec<FnDoc> = collect(&e)
            .into_iter()
            .filter(|d| d.name == "search")
            .collect();
        assert!(
            search
                .iter()
                .any(|d| d.examples() == ["c.search(\"(&(objectClass=user)(sn=Lee))\")"]),
            "{search:?}"
        );
    }
}
