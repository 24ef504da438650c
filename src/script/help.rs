//! `help()` and `help("name")`, built from the doc comments of the
//! registered functions (the same metadata Rhai keeps), so help and code
//! cannot drift. Also the function and method names for completion.

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
    let t = t
        .strip_prefix("Result<")
        .and_then(|x| x.split(", Box<EvalAltResult>").next())
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
        let params: Vec<(String, String)> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("_").to_string(),
                    clean_type(p["type"].as_str().unwrap_or("?")),
                )
            })
            .filter(|(n, t)| n != "ctx" && t != "NativeCallContext")
            .collect();
        let ret = clean_type(f["returnType"].as_str().unwrap_or("()"));
        let first_custom = params
            .first()
            .filter(|(_, t)| matches!(t.as_str(), "Connection" | "Entry" | "Secret"))
            .map(|(_, t)| t.clone());
        let (is_method, shown) = match &first_custom {
            Some(_) => (true, &params[1..]),
            None => (false, &params[..]),
        };
        let args = shown
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        let signature = match (&first_custom, is_property) {
            (Some(t), true) => format!("{t}.{name} -> {ret}"),
            (Some(t), false) => format!("{t}.{name}({args}) -> {ret}"),
            (None, _) => format!("{name}({args}) -> {ret}"),
        };
        out.push(FnDoc {
            name,
            signature,
            doc: doc.join("\n").trim().to_string(),
            is_method,
            is_property,
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
                let near: Vec<&str> = docs
                    .iter()
                    .filter(|d| {
                        d.name.contains(&t.to_ascii_lowercase()) || t.contains(d.name.as_str())
                    })
                    .map(|d| d.name.as_str())
                    .collect();
                let mut s = format!("no help for '{t}'");
                if !near.is_empty() {
                    let mut near = near;
                    near.dedup();
                    s.push_str(&format!("; did you mean: {}", near.join(", ")));
                }
                s.push_str(". help() lists every function.");
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

fn index(docs: &[FnDoc]) -> String {
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
            let first = d.doc.lines().next().unwrap_or("");
            let label = if d.is_property {
                format!(".{}", d.name)
            } else if d.is_method {
                format!(".{}()", d.name)
            } else {
                format!("{}()", d.name)
            };
            s.push_str(&format!("  {label:<22} {first}\n"));
        }
    };
    section("Functions", &|d: &FnDoc| !d.is_method);
    section("Connection and entry methods", &|d: &FnDoc| {
        d.is_method && !d.is_property
    });
    section("Properties", &|d: &FnDoc| d.is_property);
    s.push_str("\nShell: exit, clear, history; Tab completes names, variables, connections and attributes.");
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
