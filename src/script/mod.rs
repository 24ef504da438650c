//! The Rhai layer: one [`Session`] holds the engine with every idsync
//! binding registered, the variables of a REPL or script, and the functions
//! it has defined. Bindings live one family per file.

pub mod ad_rights;
pub mod azure;
pub mod config_file;
pub mod connect;
pub mod context;
pub mod convert;
pub mod cwd;
pub mod display;
pub mod dry_run;
pub mod entry_api;
pub mod help;
pub mod interrupt;
pub mod limits;
pub mod mapping_api;
pub mod objects;
pub mod password;
pub mod profiles;
pub mod redact;
pub mod run_mode;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod sql;
pub mod stdlib;
pub mod stdlib_fns;
pub mod store;
pub mod sync_api;
pub mod text;
pub mod unique_api;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rhai::{
    AST, Array, Dynamic, Engine, EvalAltResult, ParseError, ParseErrorType, Position, Scope,
    exported_module,
};

use crate::model::{Entry, Secret};
use objects::Connection;

/// A script error, already worded: `file:line:col: cause`, the offending
/// line and a caret under the position.
#[derive(Debug, Clone)]
pub struct ScriptError {
    /// The full text to print.
    pub message: String,
    /// Exit code requested by `exit(n)`, when that is what ended the script.
    pub exit_code: Option<i32>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptError {}

/// The status given to `exit(n)`, on its way to the top level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExitRequest(pub(crate) i64);

/// An engine plus the state of one shell or script run.
pub struct Session {
    engine: Arc<Engine>,
    scope: Scope<'static>,
    functions: AST,
}

/// Builds the engine with every idsync binding.
pub fn engine() -> Engine {
    // Fixed hashing seeds: Rhai names each closure after a hash of its body,
    // and sync step fingerprints (stored with each link) include those
    // names; with ahash's per-process random seeds every run would look
    // like a rule change and recompare every object.
    let _ = rhai::config::hashing::set_hashing_seed(Some([
        0x6964_7379_6e63_0001,
        0x6964_7379_6e63_0002,
        0x6964_7379_6e63_0003,
        0x6964_7379_6e63_0004,
    ]));
    let mut engine = Engine::new();
    engine.set_max_expr_depths(256, 256);
    limits::Limits::from_env().apply(&mut engine);
    display::register(&mut engine);
    engine
        .register_type_with_name::<Entry>("Entry")
        .register_type_with_name::<Connection>("Connection")
        .register_type_with_name::<Secret>("Secret");
    engine.register_global_module(exported_module!(entry_api::entry_api).into());
    engine.register_global_module(exported_module!(objects::objects).into());
    engine.register_global_module(exported_module!(connect::connect_api).into());
    engine.register_global_module(exported_module!(secrets::secrets_api).into());
    engine.register_global_module(exported_module!(profiles::profiles_api).into());
    engine.register_global_module(exported_module!(text::text_api).into());
    engine.register_global_module(exported_module!(help::help_api).into());
    engine.register_global_module(exported_module!(sync_api::sync_api).into());
    engine.register_global_module(exported_module!(unique_api::unique_api).into());
    engine.register_global_module(exported_module!(azure::azure_api).into());
    engine.register_global_module(exported_module!(ad_rights::ad_rights_api).into());
    engine.register_global_module(exported_module!(config_file::config_file_api).into());
    engine.register_global_module(exported_module!(sql::sql_api).into());
    engine.register_global_module(exported_module!(store::store_api).into());
    engine.register_global_module(exported_module!(service::service_api).into());
    engine.register_global_module(exported_module!(password::password_api).into());
    engine.register_global_module(exported_module!(run_mode::run_mode_api).into());
    engine
        .register_type_with_name::<sync_api::Step>("Step")
        .register_type_with_name::<sync_api::Workflow>("Workflow");
    engine.register_global_module(exported_module!(mapping_api::mapping_api).into());
    stdlib::register(&mut engine);
    engine.on_print(|s| {
        use std::io::Write;
        if run_mode::quiet() {
            return;
        }
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, "{s}")
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    });
    // Rhai's own `exit(v)` ends the script with `v` as its *value*, so the
    // status would be lost: ours carries it in a type no script can build.
    engine.register_fn("exit", |code: i64| -> Result<Dynamic, Box<EvalAltResult>> {
        if !(0..=255).contains(&code) {
            return Err(format!("exit({code}): an exit status is a number from 0 to 255").into());
        }
        Err(EvalAltResult::Exit(Dynamic::from(ExitRequest(code)), Position::NONE).into())
    });
    engine.register_fn("exit", || -> Result<Dynamic, Box<EvalAltResult>> {
        Err(EvalAltResult::Exit(Dynamic::from(ExitRequest(0)), Position::NONE).into())
    });
    // Ctrl-C stops a running script at its next operation (not catchable).
    engine.on_progress(|_| interrupt::on_progress());
    engine.on_debug(|s, src, pos| match src {
        Some(src) => eprintln!("{src}:{pos}: {s}"),
        None => eprintln!("{pos}: {s}"),
    });
    engine
}

impl Session {
    /// A new session; `args` become the `ARGS` array.
    pub fn new(args: Vec<String>) -> Session {
        let mut scope = Scope::new();
        let args: Array = args.into_iter().map(Dynamic::from).collect();
        scope.push_constant("ARGS", args);
        Session {
            engine: Arc::new(engine()),
            scope,
            functions: AST::empty(),
        }
    }

    /// The engine (for help and completion).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Evaluates `code` (named `source` in errors), keeping variables and
    /// functions for the next call.
    pub fn eval(&mut self, code: &str, source: &str) -> Result<Dynamic, ScriptError> {
        let mut ast = self
            .engine
            .compile_with_scope(&self.scope, code)
            .map_err(|e| parse_error(&e, code, source))?;
        ast.set_source(source);
        let full = Arc::new(self.functions.merge(&ast));
        // Closures given to sync steps are called later, with this AST.
        context::set_eval_env(self.engine.clone(), full.clone());
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &full);
        self.functions += ast.clone_functions_only();
        match result {
            Ok(v) if v.is::<ExitRequest>() => Err(ScriptError {
                message: String::new(),
                exit_code: Some(v.cast::<ExitRequest>().0.clamp(0, 255) as i32),
            }),
            Ok(v) => Ok(v),
            Err(e) => match *e {
                EvalAltResult::Exit(v, _) => Err(ScriptError {
                    message: String::new(),
                    exit_code: Some(v.as_int().map(|n| n as i32).unwrap_or(0)),
                }),
                EvalAltResult::ErrorTerminated(..) if interrupt::is_interrupted() => {
                    Err(ScriptError {
                        message: "interrupted".into(),
                        exit_code: None,
                    })
                }
                _ => {
                    let hint = help::did_you_mean(&self.engine, &self.script_function_names(), &e);
                    let mut err = runtime_error(*e, code, source);
                    if let Some(h) = hint {
                        err.message.push_str(&format!("\n{h}"));
                    }
                    Err(err)
                }
            },
        }
    }

    /// Runs a script file.
    pub fn run_file(&mut self, path: &Path) -> Result<Dynamic, ScriptError> {
        let name = path.display().to_string();
        let code = std::fs::read_to_string(path).map_err(|e| ScriptError {
            message: format!("error: {name}: cannot read the script: {e}"),
            exit_code: None,
        })?;
        // SCRIPT_DIR: the folder of the script, for files shipped beside it.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        self.scope
            .set_or_push("SCRIPT_DIR", dir.display().to_string());
        // A shebang line is blanked, keeping line numbers.
        let code = match code.strip_prefix("#!") {
            Some(rest) => rest
                .find('\n')
                .map(|i| rest[i..].to_string())
                .unwrap_or_default(),
            None => code,
        };
        self.eval(&code, &name)
    }

    /// Turns values that only make sense inside scripts (connections,
    /// secrets) into printable text; other values are returned as they are.
    pub fn printable(&self, v: Dynamic) -> Dynamic {
        self.printable_at(v, 0)
    }

    /// [`Session::printable`] at a nesting depth; deeper than the renderer
    /// prints, a value is left as it is (no recursion into 20,000 levels).
    fn printable_at(&self, v: Dynamic, depth: usize) -> Dynamic {
        if depth > 2 * display::MAX_DEPTH {
            return v;
        }
        if v.is::<Connection>() {
            let c = v.cast::<Connection>();
            return Dynamic::from(format!("Connection({})", c.0.describe()));
        }
        if v.is::<Secret>() {
            return Dynamic::from(v.cast::<Secret>().to_string());
        }
        // Also inside arrays and maps (e.g. a map holding a secret).
        if v.is_array() {
            let a = v.cast::<Array>();
            return Dynamic::from_array(
                a.into_iter()
                    .map(|x| self.printable_at(x, depth + 1))
                    .collect(),
            );
        }
        if v.is_map() {
            let m = v.cast::<rhai::Map>();
            return Dynamic::from_map(
                m.into_iter()
                    .map(|(k, x)| (k, self.printable_at(x, depth + 1)))
                    .collect(),
            );
        }
        v
    }

    /// Variables with their types, for completion: `Entry`, `Step`, ...,
    /// and `Connection:KIND` for a connection.
    pub fn variable_types(&self) -> Vec<(String, String)> {
        self.scope
            .iter()
            .map(|(n, _, v)| {
                let t = match v.read_lock::<Connection>() {
                    Some(c) => format!("Connection:{}", c.0.kind()),
                    None => self.engine.map_type_name(v.type_name()).to_string(),
                };
                (n.to_string(), t)
            })
            .collect()
    }

    /// Names of variables in scope (for completion).
    pub fn variable_names(&self) -> Vec<String> {
        self.scope.iter().map(|(n, _, _)| n.to_string()).collect()
    }

    /// Names of script-defined functions (for completion).
    pub fn script_function_names(&self) -> Vec<String> {
        self.functions
            .iter_functions()
            .map(|f| f.name.to_string())
            .collect()
    }

    /// True when `code` is unfinished (open bracket or string, or the
    /// parser ran out of input), so a REPL should read another line.
    pub fn is_incomplete(&self, code: &str) -> bool {
        if brackets_open(code) {
            return true;
        }
        matches!(
            self.engine.compile_with_scope(&self.scope, code),
            Err(ParseError(ref t, _)) if matches!(**t, ParseErrorType::UnexpectedEOF)
        )
    }
}

/// True when a bracket, brace, parenthesis, string or backtick is still open.
fn brackets_open(code: &str) -> bool {
    let mut depth: i32 = 0;
    let mut quote: Option<char> = None;
    let mut chars = code.chars().peekable();
    let mut line_comment = false;
    while let Some(c) = chars.next() {
        if line_comment {
            if c == '\n' {
                line_comment = false;
            }
            continue;
        }
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '/' if chars.peek() == Some(&'/') => line_comment = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth > 0 || matches!(quote, Some('`') | Some('"'))
}

fn caret(code: &str, pos: Position) -> String {
    let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
        return String::new();
    };
    let Some(text) = code.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    // A password typed as a literal is masked here as in the history file;
    // the caret keeps pointing at the same token.
    let shown = redact::redact(text);
    let col = if shown == text {
        col
    } else {
        let before: String = text.chars().take(col.saturating_sub(1)).collect();
        redact::redact(&before).chars().count() + 1
    };
    let (shown, col) = window(&shown, col, 60);
    let width = line.to_string().len();
    format!(
        "\n{:width$} |\n{line} | {shown}\n{:width$} | {}^",
        "",
        "",
        " ".repeat(col.saturating_sub(1)),
        width = width
    )
}

/// A long source line (a 300 KB filter written literally) cut to `around`
/// characters each side of the 1-based column `col`, with `…` where it is
/// cut; returns the text and the column of the same character in it.
fn window(text: &str, col: usize, around: usize) -> (String, usize) {
    let total = text.chars().count();
    if total <= 2 * around + 1 {
        return (text.to_string(), col);
    }
    let at = col.saturating_sub(1).min(total);
    let start = at.saturating_sub(around);
    let out = crate::model::filter::quote_window(text, col, around);
    (out, at - start + 1 + usize::from(start > 0))
}

fn location(source: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{source}:{l}:{c}"),
        (Some(l), None) => format!("{source}:{l}"),
        _ => source.to_string(),
    }
}

fn parse_error(e: &ParseError, code: &str, source: &str) -> ScriptError {
    let pos = e.1;
    ScriptError {
        message: format!(
            "error: {}: syntax error: {}{}",
            location(source, pos),
            e.0,
            caret(code, pos)
        ),
        exit_code: None,
    }
}

/// Words a runtime error: the innermost cause, its position, the line.
fn runtime_error(e: EvalAltResult, code: &str, source: &str) -> ScriptError {
    let mut err = e;
    let mut outer_pos = Position::NONE;
    let mut chain = Vec::new();
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) => {
                if !pos.is_none() {
                    outer_pos = pos;
                }
                chain.push(name);
                err = *inner;
            }
            EvalAltResult::ErrorInModule(_, inner, pos) => {
                if !pos.is_none() {
                    outer_pos = pos;
                }
                err = *inner;
            }
            other => {
                err = other;
                break;
            }
        }
    }
    let mut pos = err.take_position();
    if pos.is_none() {
        pos = outer_pos;
    }
    let cause = match &err {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorDataTooLarge(what, _) => limits::Limits::from_env().explain(what),
        other => other.to_string(),
    };
    let via = if chain.is_empty() {
        String::new()
    } else {
        format!(
            " (in {})",
            chain
                .iter()
                .map(|n| format!("{n}()"))
                .collect::<Vec<_>>()
                .join(" <- ")
        )
    };
    ScriptError {
        message: format!(
            "error: {}: {cause}{via}{}",
            location(source, pos),
            caret(code, pos)
        ),
        exit_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_and_keeps_state() {
        let mut s = Session::new(vec!["a".into()]);
        assert_eq!(s.eval("40 + 2", "t").unwrap().as_int().unwrap(), 42);
        let _ = s.eval("let x = 5; fn dbl(n) { n * 2 }", "t").unwrap();
        assert_eq!(s.eval("dbl(x)", "t").unwrap().as_int().unwrap(), 10);
        assert_eq!(s.eval("ARGS[0]", "t").unwrap().to_string(), "a");
    }

    #[test]
    fn errors_have_position_and_caret() {
        let mut s = Session::new(vec![]);
        let e = s.eval("let a = 1;\nlet b = a +;", "f.rhai").unwrap_err();
        assert!(e.message.starts_with("error: f.rhai:2:"), "{}", e.message);
        assert!(
            e.message.contains("let b = a +;") && e.message.contains('^'),
            "{}",
            e.message
        );
        let e = s
            .eval("let x = 1;\nldap_escape(1, 2, 3)", "g.rhai")
            .unwrap_err();
        assert!(e.message.starts_with("error: g.rhai:2:1:"), "{}", e.message);
    }

    #[test]
    fn a_long_line_is_echoed_as_a_window_with_the_caret_in_place() {
        let long = format!("let f = \"{}\"; f.foo()", "x".repeat(60_000));
        let e = Session::new(vec![]).eval(&long, "t").unwrap_err();
        assert!(e.message.len() < 600, "{}", e.message);
        let lines: Vec<&str> = e.message.lines().collect();
        let (code, caret) = (lines[2], lines[3]);
        let at = caret.chars().count() - 1;
        assert_eq!(code.chars().nth(at), Some('f'), "{}", e.message);
        assert!(code.contains("…") && code.ends_with("f.foo()"), "{code}");
        let (w, c) = window("abcdef", 3, 1);
        assert_eq!((w.as_str(), c), ("…bcd…", 3));
    }

    #[test]
    fn incomplete_input_detected() {
        let s = Session::new(vec![]);
        assert!(s.is_incomplete("fn f() {"));
        assert!(s.is_incomplete("let a = [1,"));
        assert!(s.is_incomplete("let s = `abc"));
        assert!(!s.is_incomplete("let a = 1;"));
        assert!(!s.is_incomplete("let a = \"{\";"));
    }

    #[test]
    fn help_comes_from_doc_comments() {
        let s = Session::new(vec![]);
        let h = help::render(s.engine(), Some("search"));
        assert!(
            h.contains("Connection.search(filter: String) -> Array"),
            "{h}"
        );
        assert!(h.contains("paging under the hood"), "{h}");
        assert!(
            h.contains("c.search(\"(&(objectClass=user)(sn=Lee))\")"),
            "{h}"
        );
        let idx = help::render(s.engine(), None);
        for name in [
            "connect_ldap",
            "secret",
            ".search()",
            ".set_password()",
            "ldap_escape",
            ".dn",
        ] {
            assert!(idx.contains(name), "{name} missing from\n{idx}");
        }
    }

    #[test]
    fn secrets_never_print() {
        // SAFETY-free: a unique variable name, set before any thread reads it.
        unsafe { std::env::set_var("IDSYNC_TEST_SECRET_XYZ", "hunter2-value") };
        let mut s = Session::new(vec![]);
        let v = s
            .eval(
                "let p = secret(\"IDSYNC_TEST_SECRET_XYZ\"); `${p}` + \" \" + p",
                "t",
            )
            .unwrap();
        assert!(!v.to_string().contains("hunter2"), "{v}");
        assert!(
            v.to_string()
                .contains("<secret env:IDSYNC_TEST_SECRET_XYZ>")
        );
    }
}
