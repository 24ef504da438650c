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
