//! Sync in scripts: `sync_step`, `workflow`, `preview`, `run`, `history`,
//! `last_run`, `links`, `unlink` (API §5). Rhai closures become the plain
//! Rust callables the engine takes.

use std::sync::Arc;

use rhai::{AST, Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, Position};

use super::context;
use super::convert::*;
use super::interrupt;
use super::objects::Connection;
use crate::connector::Scope;
use crate::model::{Entry, Value};
use crate::sync::apply::Progress;
use crate::sync::counts::Counts;
use crate::sync::lease::LeaseGuard;
use crate::sync::plan::Plan;
use crate::sync::preview::{self, Row as PreviewRow};
use crate::sync::rules::{
    CreateRule, Deprovision, DeprovisionAction, Flow, FlowSource, MemberRule, ScopeRule, StepDef,
    TextRule, TreeRule,
};
use crate::sync::run::{self, Report, RunError, RunOptions};
use crate::sync::{defaults, workflow};

/// A sync step as scripts hold it.
#[derive(Clone)]
pub struct Step(pub Arc<StepDef>);

/// A named list of steps run in order.
#[derive(Clone)]
pub struct Workflow {
    /// Workflow name.
    pub name: String,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// A Rhai closure bound to the engine and AST that defined it.
#[derive(Clone)]
struct Callable {
    f: FnPtr,
    engine: Arc<Engine>,
    ast: Arc<AST>,
    what: String,
}

impl Callable {
    /// Calls the closure on one entry. `exit(n)` inside it stops the run
    /// (see [`interrupt`]) instead of failing this object.
    fn call(&self, e: &Entry) -> Result<Dynamic, String> {
        self.f
            .call::<Dynamic>(&self.engine, &self.ast, (Dynamic::from(e.clone()),))
            .map_err(|err| {
                let inner = err.unwrap_inner();
                if let EvalAltResult::Exit(v, _) = inner {
                    let code = v
                        .clone()
                        .try_cast::<super::ExitRequest>()
                        .map_or(0, |r| r.0);
                    interrupt::request_exit(code);
                    return format!("{}: exit({code}) stops the run", self.what);
                }
                if interrupt::is_interrupted() {
                    return format!("{}: interrupted", self.what);
                }
                format!("{}: {inner}", self.what)
            })
    }
}

fn callable(f: FnPtr, what: &str) -> ScriptResult<Callable> {
    let (engine, ast) = context::eval_env()?;
    Ok(Callable {
        f,
        engine,
        ast,
        what: what.to_string(),
    })
}

fn values_of(attr: &str, d: &Dynamic) -> Result<Vec<Value>, String> {
    dynamic_to_values(attr, d).map_err(|e| e.to_string())
}

fn text_rule(what: &str, d: &Dynamic) -> ScriptResult<TextRule> {
    if let Some(f) = d.clone().try_cast::<FnPtr>() {
        let c = callable(f, what)?;
        return Ok(TextRule::Compute(Arc::new(move |e: &Entry| {
            let v = c.call(e)?;
            if v.is_unit() {
                return Err("gave no value".into());
            }
            Ok(v.to_string())
        })));
    }
    if d.is_string() {
        return Ok(TextRule::Fixed(d.to_string()));
    }
    Err(rt_err(format!(
        "{what} must be a string or a closure |e| ..., got {}",
        d.type_name()
    )))
}

fn flow(target: &str, d: &Dynamic) -> ScriptResult<Flow> {
    let (value, once) = if let Some(m) = d.read_lock::<Map>() {
        check_keys(&format!("flows.{target}"), &m, &["value", "once"])?;
        let value = m
            .get("value")
            .cloned()
            .ok_or_else(|| rt_err(format!("flows.{target}: needs 'value'")))?;
        (value, opt_bool(&m, "once")?.unwrap_or(false))
    } else {
        (d.clone(), false)
    };
    let attr = target.to_string();
    if let Some(f) = value.clone().try_cast::<FnPtr>() {
        let c = callable(f, &format!("flow {target}"))?;
        let a = attr.clone();
        return Ok(Flow {
            target: attr.as_str().into(),
            source: FlowSource::Compute(Arc::new(move |e: &Entry| values_of(&a, &c.call(e)?))),
            once,
            rule: format!("{target} <- |e| ...").into(),
        });
    }
    if value.is_string() {
        let src = value.to_string();
        return Ok(Flow {
            target: attr.into(),
            rule: format!("{target} <- {src}").into(),
            source: FlowSource::Attr(src),
            once,
        });
    }
    Err(rt_err(format!(
        "flows.{target}: expected a source attribute name, a closure |e| ..., or #{{ value, once }}; got {}",
        value.type_name()
    )))
}

/// Builds a step definition from the script's option map.
fn step_def(
    name: &str,
    source: Connection,
    target: Connection,
    opts: &Map,
) -> ScriptResult<StepDef> {
    check_keys(
        "sync_step",
        opts,
        &[
            "scope",
            "join",
            "create",
            "flows",
            "deprovision",
            "target_base",
            "members",
            "tree",
        ],
    )?;
    let mut fingerprint = String::new();
    let mut scope = ScopeRule::default();
    if let Some(m) = opts
        .get("scope")
        .and_then(|d| d.read_lock::<Map>().map(|m| m.clone()))
    {
        check_keys("scope", &m, &["base", "filter", "scope", "where", "attrs"])?;
        scope.base = opt_str(&m, "base")?;
        scope.filter = opt_str(&m, "filter")?.unwrap_or_default();
        scope.attrs = opt_list(&m, "attrs")?;
        if let Some(s) = opt_str(&m, "scope")? {
            scope.scope = s.parse::<Scope>().map_err(|e| conn_err("scope", e))?;
        }
        if let Some(f) = m.get("where").and_then(|d| d.clone().try_cast::<FnPtr>()) {
            fingerprint.push_str(f.fn_name());
            let c = callable(f, "scope 'where'")?;
            scope.filter_where = Some(Arc::new(move |e: &Entry| {
                let v = c.call(e)?;
                v.as_bool()
                    .map_err(|t| format!("must return true or false, got {t}"))
            }));
        }
        fingerprint.push_str(&format!(
            "|{}|{}",
            scope.base.clone().unwrap_or_default(),
            scope.filter
        ));
    }
    let mut join = Vec::new();
    if let Some(m) = opts
        .get("join")
        .and_then(|d| d.read_lock::<Map>().map(|m| m.clone()))
    {
        for (t, s) in &m {
            if !s.is_string() {
                return Err(rt_err(format!(
                    "join.{t}: expected the source attribute name, got {}",
                    s.type_name()
                )));
            }
            join.push((t.to_string(), s.to_string()));
        }
    }
    let tree = tree_rule(opts)?;
    if let Some(t) = &tree {
        fingerprint.push_str(&format!("|tree:{}>{}", t.source, t.target));
    }
    let create = match opts
        .get("create")
        .and_then(|d| d.read_lock::<Map>().map(|m| m.clone()))
    {
        None => None,
        Some(m) => {
            check_keys("create", &m, &["parent", "rdn", "class"])?;
            let none = Dynamic::from(String::new());
            // A sync-tree gives the place; Entra objects have no RDN
            // (`create: #{ parent: "users" }`).
            let parent = match m.get("parent") {
                Some(p) => p,
                None if tree.is_some() => &none,
                None => {
                    return Err(rt_err(
                        "create: needs 'parent' (the container; for Entra ID \"users\" or \"groups\")",
                    ));
                }
            };
            let rdn = match m.get("rdn") {
                Some(r) => r,
                None if tree.is_some() => &none,
                None if parent.is_string() && !parent.to_string().contains('=') => &none,
                None => return Err(rt_err("create: needs 'rdn'")),
            };
            for d in [parent, rdn] {
                if let Some(f) = d.clone().try_cast::<FnPtr>() {
                    fingerprint.push_str(f.fn_name());
                } else {
                    fingerprint.push_str(&d.to_string());
                }
            }
            Some(CreateRule {
                parent: text_rule("create 'parent'", parent)?,
                rdn: text_rule("create 'rdn'", rdn)?,
                classes: opt_list(&m, "class")?.unwrap_or_default(),
            })
        }
    };
    let mut flows = Vec::new();
    if let Some(m) = opts
        .get("flows")
        .and_then(|d| d.read_lock::<Map>().map(|m| m.clone()))
    {
        for (t, d) in &m {
            let f = flow(t, d)?;
            fingerprint.push_str(&format!("|{}", f.rule));
            if let Some(p) = d.clone().try_cast::<FnPtr>() {
                fingerprint.push_str(p.fn_name());
            }
            flows.push(f);
        }
    }
    let mut deprovision = Deprovision::default();
    if let Some(m) = opts
        .get("deprovision")
        .and_then(|d| d.read_lock::<Map>().map(|m| m.clone()))
    {
        check_keys("deprovision", &m, &["action", "parent", "prefix"])?;
        if let Some(a) = opt_str(&m, "action")? {
            deprovision.action = a.parse::<DeprovisionAction>().map_err(rt_err)?;
        }
        deprovision.parent = opt_str(&m, "parent")?;
        deprovision.prefix = opt_list(&m, "prefix")?.unwrap_or_default();
        if deprovision.action == DeprovisionAction::DisableMove && deprovision.parent.is_none() {
            return Err(rt_err(
                "deprovision: \"disable_move\" needs 'parent' (where leavers go)",
            ));
        }
    }
    if name.trim().is_empty() {
        return Err(rt_err("sync_step: the step needs a name"));
    }
    let members = member_rule(name.trim(), &target, opts)?;
    if let Some(m) = &members {
        fingerprint.push_str(&format!("|members:{}", m.describe()));
        // The members must be read even when the scope names what to read.
        if let Some(attrs) = scope.attrs.as_mut()
            && !attrs.iter().any(|a| a.eq_ignore_ascii_case(&m.source_attr))
        {
            attrs.push(m.source_attr.clone());
        }
    }
    remember_step(name.trim(), &target);
    let target_base = opt_str(opts, "target_base")?;
    target.0.mark_as_target();
    let mut def = StepDef {
        name: name.trim().to_string(),
        source: source.0,
        target: target.0,
        scope,
        join,
        create,
        flows,
        deprovision,
        target_base,
        members,
        tree,
        fingerprint,
    };
    // What the tree and the target imply (the tree's roots as bases; an
    // Entra step's collection and its groups' deprovisioning) is the
    // engine's decision, the same for a Rust caller.
    defaults::apply_defaults(&mut def, opts.contains_key("deprovision"));
    Ok(def)
}

/// `tree: #{ source: "OU=Staff,DC=src,...", target: "ou=staff,dc=example,dc=com" }`.
fn tree_rule(opts: &Map) -> ScriptResult<Option<TreeRule>> {
    let Some(m) = opts
        .get("tree")
        .filter(|d| !d.is_unit())
        .map(|d| {
            d.read_lock::<Map>()
                .map(|m| m.clone())
                .ok_or_else(|| rt_err("tree must be #{ source: DN, target: DN }"))
        })
        .transpose()?
    else {
        return Ok(None);
    };
    check_keys("tree", &m, &["source", "target"])?;
    let get = |k: &str| -> ScriptResult<String> {
        let v = opt_str(&m, k)?.ok_or_else(|| rt_err(format!("tree: needs '{k}' (a DN)")))?;
        crate::model::dn::Dn::parse(&v).map_err(|e| rt_err(format!("tree '{k}': {e}")))?;
        Ok(v)
    };
    Ok(Some(TreeRule {
        source: get("source")?,
        target: get("target")?,
    }))
}

/// Steps defined in this session: (name, where their target points).
static DEFINED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn remember_step(name: &str, target: &Connection) {
    if let Ok(mut d) = DEFINED.lock() {
        d.retain(|(n, _)| n != name);
        d.push((name.to_string(), target.0.describe()));
    }
}

/// `members: "attr"` or `members: #{ source, target, steps }`. By default
/// the member steps are this step (nested groups) and the steps defined
/// before it (in this script or session) that write to the same target.
fn member_rule(name: &str, target: &Connection, opts: &Map) -> ScriptResult<Option<MemberRule>> {
    let Some(d) = opts.get("members").filter(|d| !d.is_unit()) else {
        return Ok(None);
    };
    let default_target = target.0.member_attribute();
    let (source_attr, target_attr, steps) = if d.is_string() {
        (d.to_string(), default_target.to_string(), None)
    } else if let Some(m) = d.read_lock::<Map>() {
        check_keys("members", &m, &["source", "target", "steps"])?;
        let source = opt_str(&m, "source")?.ok_or_else(|| {
            rt_err("members: needs 'source' (the source attribute that lists the members)")
        })?;
        let steps = match m.get("steps") {
            None => None,
            Some(a) => {
                let arr = a.clone().try_cast::<Array>().ok_or_else(|| {
                    rt_err("members: 'steps' must be an array of steps or step names")
                })?;
                let mut names = Vec::new();
                for x in arr {
                    if let Some(st) = x.clone().try_cast::<Step>() {
                        names.push(st.0.name.clone());
                    } else if x.is_string() {
                        names.push(x.to_string());
                    } else {
                        return Err(rt_err(
                            "members: 'steps' must be an array of steps or step names",
                        ));
                    }
                }
                Some(names)
            }
        };
        (
            source,
            opt_str(&m, "target")?.unwrap_or_else(|| default_target.to_string()),
            steps,
        )
    } else {
        return Err(rt_err(format!(
            "members must be a source attribute name or #{{ source, target, steps }}, got {}",
            d.type_name()
        )));
    };
    let steps = match steps {
        Some(s) => s,
        None => {
            // Steps of the same target; a group's members usually come from
            // another source (an HR groups file next to the HR people file).
            let to = target.0.describe();
            let mut v: Vec<String> = DEFINED
                .lock()
                .map(|d| {
                    d.iter()
                        .filter(|(n, t)| n != name && *t == to)
                        .map(|(n, _)| n.clone())
                        .collect()
                })
                .unwrap_or_default();
            if v.is_empty() {
                return Err(rt_err(
                    "members: no step to resolve members through; define the member steps (same target) first, or name them with members: #{ source, steps: [...] }",
                ));
            }
            v.push(name.to_string());
            v
        }
    };
    if steps.is_empty() {
        return Err(rt_err(
            "members: no step to resolve members through; define the member steps (same target) first, or name them with members: #{ source, steps: [...] }",
        ));
    }
    Ok(Some(MemberRule {
        source_attr,
        target_attr: target_attr.into(),
        steps,
        by_anchor: target.0.members_are_anchors(),
    }))
}

/// Options of a run or preview without options: stopped by the interrupt.
fn plain_options() -> RunOptions {
    RunOptions {
        cancel: interrupt::token(),
        ..RunOptions::default()
    }
}

fn run_options(opts: &Map) -> ScriptResult<RunOptions> {
    check_keys("run", opts, &["full", "allow_deletes"])?;
    Ok(RunOptions {
        full: opt_bool(opts, "full")?.unwrap_or(false),
        allow_deletes: opt_num(opts, "allow_deletes")?.map(|n| n as usize),
        cancel: interrupt::token(),
    })
}

/// A preview row as a Rhai map (`()` where the row has no value).
fn row_map(r: PreviewRow) -> Dynamic {
    let text = |v: Option<String>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("step".into(), r.step.into());
    m.insert("op".into(), r.op.into());
    m.insert("object".into(), r.object.into());
    m.insert("attribute".into(), text(r.attribute));
    m.insert("old".into(), text(r.old));
    m.insert("new".into(), text(r.new));
    m.insert("rule".into(), text(r.rule));
    Dynamic::from_map(m)
}

/// The plan as table rows (built by the engine, [`crate::sync::preview`]).
fn plan_rows(step: &StepDef, plan: &Plan, refused: Option<&str>) -> Array {
    preview::rows(step, plan, refused)
        .into_iter()
        .map(row_map)
        .collect()
}

fn report_map(r: &Report) -> Map {
    let c = &r.counts;
    let mut m = Map::new();
    m.insert("step".into(), r.step.clone().into());
    m.insert("status".into(), r.status.clone().into());
    m.insert("run_id".into(), Dynamic::from(r.run_id));
    for (k, v) in c.fields() {
        m.insert(k.into(), Dynamic::from(v as i64));
    }
    m.insert("duration_ms".into(), Dynamic::from(r.duration_ms as i64));
    // `errors`: "object: cause" texts (kept for scripts written against
    // them); `failures`: one map per failed object, the form the shell
    // prints as a list (see shell::report).
    m.insert(
        "errors".into(),
        Dynamic::from_array(
            r.failures
                .iter()
                .map(|f| Dynamic::from(format!("{}: {}", f.object, f.cause)))
                .collect(),
        ),
    );
    m.insert(
        "failures".into(),
        Dynamic::from_array(
            r.failures
                .iter()
                .map(|f| {
                    let mut row = Map::new();
                    row.insert("object".into(), f.object.clone().into());
                    row.insert("operation".into(), f.operation.clone().into());
                    row.insert("cause".into(), f.cause.clone().into());
                    Dynamic::from_map(row)
                })
                .collect(),
        ),
    );
    m.insert(
        "log".into(),
        r.log_path
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT),
    );
    if !r.warnings.is_empty() {
        m.insert(
            "warnings".into(),
            Dynamic::from_array(r.warnings.iter().cloned().map(Dynamic::from).collect()),
        );
    }
    m
}

/// A progress bar on a terminal (stderr), nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(step: &str) -> Bar {
        use std::io::IsTerminal;
        if !std::io::stdout().is_terminal()
            || !std::io::stderr().is_terminal()
            || super::run_mode::quiet()
        {
            return Bar(None);
        }
        let pb = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} objects, {rate}, ETA {eta}",
        ) {
            // A whole number of objects per second (indicatif's {per_sec} has decimals).
            let style = style.with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", s.per_sec().round() as u64);
                },
            );
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(step.to_string());
        Bar(Some(pb))
    }
}

impl Progress for Bar {
    fn tick(&self, done: usize, total: usize) {
        if let Some(pb) = &self.0
            && total >= 100
        {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    }

    fn total(&self, total: usize) {
        if let Some(pb) = &self.0
            && total >= 100
        {
            pb.set_length(total as u64);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// How a stopped command ends the script: `exit(n)` from a closure ends it
/// with `n`; an interrupt (Ctrl-C, SIGTERM) terminates it (not catchable).
fn stopped() -> Box<EvalAltResult> {
    match interrupt::exit_requested() {
        Some(n) => EvalAltResult::Exit(Dynamic::from(super::ExitRequest(n)), Position::NONE).into(),
        None => EvalAltResult::ErrorTerminated(Dynamic::from("interrupted"), Position::NONE).into(),
    }
}

/// Runs one step; `held` is the enclosing workflow's lease.
fn run_step(step: &StepDef, opts: RunOptions, held: Option<&LeaseGuard>) -> ScriptResult<Map> {
    if super::run_mode::dry_run() {
        return super::dry_run::step(step, preview_step(step, opts)?);
    }
    let store = context::store()?;
    let logs = crate::config::home::logs_dir().ok();
    let bar = Bar::new(&step.name);
    // The run watches the interrupt itself (it stops between writes and
    // records what it did), so it is not abandoned like other calls.
    let r =
        super::runtime::block_on_to_end(run::run(step, &store, held, logs.as_deref(), opts, &bar));
    drop(bar);
    step_outcome(r)
}

/// What a step's run gives the script: its report as a map, or the error
/// that ends the script (noting a refused, failed or busy run for the
/// exit status).
fn step_outcome(r: Result<Report, RunError>) -> ScriptResult<Map> {
    match r {
        Ok(report) if report.status == "interrupted" => {
            eprintln!(
                "{}: interrupted (run {} recorded as interrupted): {}; the links of every finished write are stored{}",
                report.step,
                report.run_id,
                report.counts,
                report
                    .log_path
                    .as_deref()
                    .map(|l| format!(" (log: {l})"))
                    .unwrap_or_default()
            );
            Err(stopped())
        }
        Ok(report) => {
            if report.counts.failed > 0 {
                context::note_run_failed();
            }
            Ok(report_map(&report))
        }
        Err(RunError::Refused(m)) => {
            context::note_run_refused();
            Err(rt_err(m))
        }
        Err(RunError::Busy(m)) => busy(m),
        Err(RunError::Failed(m)) => {
            context::note_run_failed();
            Err(rt_err(m))
        }
    }
}

/// A run refused because another run holds the lease (exit 5).
fn busy<T>(m: String) -> ScriptResult<T> {
    context::note_run_busy();
    Err(rt_err(m))
}

fn preview_step(step: &StepDef, opts: RunOptions) -> ScriptResult<Array> {
    let store = context::store()?;
    let allow_deletes = opts.allow_deletes;
    let plan = super::runtime::block_on_to_end(run::preview(step, store.as_ref(), opts));
    if interrupt::is_interrupted() {
        return Err(stopped());
    }
    let plan = plan.map_err(|e| rt_err(e.to_string()))?;
    let refused = run::threshold(&plan, allow_deletes);
    Ok(plan_rows(step, &plan, refused.as_deref()))
}

fn run_record(r: &crate::store::RunRecord) -> Dynamic {
    let mut m = Map::new();
    m.insert("id".into(), Dynamic::from(r.id));
    m.insert("name".into(), r.name.clone().into());
    m.insert("kind".into(), r.kind.clone().into());
    m.insert(
        "started".into(),
        crate::sync::clock::iso(r.started_ms).into(),
    );
    m.insert(
        "finished".into(),
        r.finished_ms
            .map(|f| Dynamic::from(crate::sync::clock::iso(f)))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("status".into(), r.status.clone().into());
    // Every count; `()` while the run is still running (nothing stored yet).
    let counts = Counts::from_json(&r.counts);
    for k in Counts::NAMES {
        m.insert(k.into(), Dynamic::UNIT);
    }
    for (k, v) in counts.iter().flat_map(Counts::fields) {
        m.insert(k.into(), Dynamic::from(v as i64));
    }
    m.insert(
        "message".into(),
        r.message
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "log".into(),
        r.log_path
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT),
    );
    Dynamic::from_map(m)
}

/// Sync bindings.
#[rhai::export_module]
pub mod sync_api {
    use super::*;

    /// Defines a sync step from `source` to `target`. Options: `scope`
    /// (#{ base, filter, scope, where: |e| bool, attrs: [source attributes to
    /// read; default all] }), `join` (#{ targetAttr:
    /// "sourceAttr" }, all must agree), `create` (#{ parent, rdn, class };
    /// parent and rdn are strings or closures), `flows` (#{ targetAttr:
    /// "sourceAttr" | |e| value | #{ value, once: true } }; `()` clears),
    /// `deprovision` (#{ action: "disable_move" | "disable" | "delete" |
    /// "none", parent, prefix: [attrs] }; default "disable"), `target_base`
    /// (where joins look in the target), `members` (a source attribute
    /// listing the group's members — keys, anchors or DNs of source objects
    /// — carried to the target objects that other steps linked them to:
    /// `members: "member"`, or #{ source, target, steps: [users] }; by
    /// default the steps defined before this one with the same target).
    /// `tree` (#{ source: DN, target: DN }: a sync-tree; each object keeps
    /// its path below the source root under the target root, missing
    /// containers are created like their source counterparts, moves between
    /// containers are followed; `create` then needs no `parent`, and `rdn`
    /// defaults to the source object's). For an Entra ID target,
    /// `create: #{ parent: "users" }` (or "groups").
    ///
    /// Example:
    /// ```rhai
    /// let users = sync_step("hr-to-ldap/users", hr, ol, #{ join: #{ employeeNumber: "employee_id" }, create: #{ parent: "ou=people,dc=example,dc=com", rdn: |e| `uid=${e.employee_id}`, class: ["inetOrgPerson"] }, flows: #{ cn: |e| `${e.first} ${e.last}`, sn: "last", employeeNumber: "employee_id" } });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sync_step(
        name: &str,
        source: Connection,
        target: Connection,
        opts: Map,
    ) -> ScriptResult<Step> {
        Ok(Step(Arc::new(step_def(name, source, target, &opts)?)))
    }

    /// Groups steps to run in order under one name.
    ///
    /// Example:
    /// ```rhai
    /// let wf = workflow("hr-to-ldap", [users, groups]);  wf.run()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn workflow(name: &str, steps: Array) -> ScriptResult<Workflow> {
        let mut list = Vec::new();
        for (i, s) in steps.into_iter().enumerate() {
            match s.try_cast::<Step>() {
                Some(st) => list.push(st),
                None => return Err(rt_err(format!("workflow: element {i} is not a sync step"))),
            }
        }
        Ok(Workflow {
            name: name.to_string(),
            steps: list,
        })
    }

    /// What a run would write, object by object and attribute by attribute
    /// (old value, new value, the rule that produced it). Writes nothing,
    /// to the target or to the state store.
    ///
    /// Example:
    /// ```rhai
    /// users.preview()
    /// ```
    #[rhai_fn(name = "preview", return_raw, pure)]
    pub fn step_preview(s: &mut Step) -> ScriptResult<Array> {
        preview_step(&s.0, plain_options())
    }

    /// Preview with options (`full: true` compares every object).
    ///
    /// Example:
    /// ```rhai
    /// users.preview(#{ full: true })
    /// ```
    #[rhai_fn(name = "preview", return_raw, pure)]
    pub fn step_preview_with(s: &mut Step, opts: Map) -> ScriptResult<Array> {
        preview_step(&s.0, run_options(&opts)?)
    }

    /// Runs the step: the same plan as preview, then the writes. Returns a
    /// report (created, updated, renamed, moved, joined, deprovisioned,
    /// unchanged, failed, duration, run id, log file, and `failures`: one
    /// `#{ object, operation, cause }` per failed object). A run that would
    /// deprovision more than 500 objects or 10 % of the links is refused
    /// before writing anything (exit status 4).
    ///
    /// Example:
    /// ```rhai
    /// users.run()
    /// ```
    #[rhai_fn(name = "run", return_raw, pure)]
    pub fn step_run(s: &mut Step) -> ScriptResult<Map> {
        run_step(&s.0, plain_options(), None)
    }

    /// Runs with options: `full: true` (ignore change tracking, compare
    /// everything), `allow_deletes: N` (raise the deletion threshold for
    /// this run only).
    ///
    /// Example:
    /// ```rhai
    /// users.run(#{ allow_deletes: 800 })
    /// ```
    #[rhai_fn(name = "run", return_raw, pure)]
    pub fn step_run_with(s: &mut Step, opts: Map) -> ScriptResult<Map> {
        run_step(&s.0, run_options(&opts)?, None)
    }

    /// The step's name.
    ///
    /// Example:
    /// ```rhai
    /// print(`${users.name}: ${users.preview().len()} change(s)`)
    /// ```
    #[rhai_fn(get = "name", pure)]
    pub fn step_name(s: &mut Step) -> String {
        s.0.name.clone()
    }

    /// Previews every step of the workflow, in order.
    ///
    /// Example:
    /// ```rhai
    /// wf.preview()
    /// ```
    #[rhai_fn(name = "preview", return_raw, pure)]
    pub fn wf_preview(w: &mut Workflow) -> ScriptResult<Array> {
        let mut rows = Array::new();
        for s in &w.steps {
            rows.extend(preview_step(&s.0, plain_options())?);
        }
        Ok(rows)
    }

    /// Runs every step in order; stops at the first step that is refused
    /// or cannot run (a step with failed objects does not stop it). Returns
    /// one report per step. The workflow holds the lease of every step
    /// while it runs: when another run holds one, it is refused before any
    /// step starts (exit status 5). Its history record holds the sum of
    /// every count of the steps that ran.
    ///
    /// Example:
    /// ```rhai
    /// for r in wf.run() { print(`${r.step}: ${r.created} created, ${r.failed} failed`) }
    /// ```
    #[rhai_fn(name = "run", return_raw, pure)]
    pub fn wf_run(w: &mut Workflow) -> ScriptResult<Array> {
        wf_run_with(w, Map::new())
    }

    /// Runs every step with options (see a step's `run`).
    ///
    /// Example:
    /// ```rhai
    /// wf.run(#{ full: true })
    /// ```
    #[rhai_fn(name = "run", return_raw, pure)]
    pub fn wf_run_with(w: &mut Workflow, opts: Map) -> ScriptResult<Array> {
        let o = run_options(&opts)?;
        if crate::script::run_mode::dry_run() {
            // Each step previewed in turn (as the workflow's preview does).
            let mut reports = Array::new();
            for st in &w.steps {
                reports.push(Dynamic::from_map(run_step(&st.0, o.clone(), None)?));
            }
            return Ok(reports);
        }
        let store = context::store()?;
        let logs = crate::config::home::logs_dir().ok();
        let wf = workflow::Workflow {
            name: w.name.clone(),
            steps: w.steps.iter().map(|s| s.0.clone()).collect(),
        };
        let bar = |s: &StepDef| -> Box<dyn Progress> { Box::new(Bar::new(&s.name)) };
        // Like a step's run, the workflow watches the interrupt itself.
        let r = crate::script::runtime::block_on_to_end(workflow::run(
            &wf,
            &store,
            logs.as_deref(),
            o,
            &bar,
        ));
        let r = match r {
            Ok(r) => r,
            Err(RunError::Busy(m)) => return busy(m),
            Err(e) => return Err(rt_err(e.to_string())),
        };
        let mut reports = Array::new();
        for report in r.steps {
            reports.push(Dynamic::from_map(step_outcome(Ok(report))?));
        }
        if let Some(e) = r.stopped {
            step_outcome(Err(e))?;
        }
        Ok(reports)
    }

    /// Every recorded run, newest first (at most 100).
    ///
    /// Example:
    /// ```rhai
    /// history()
    /// ```
    #[rhai_fn(name = "history", return_raw)]
    pub fn history_all() -> ScriptResult<Array> {
        let list = context::store()?
            .runs(None, 100)
            .map_err(|e| rt_err(e.to_string()))?;
        Ok(list.iter().map(run_record).collect())
    }

    /// The runs of one step or workflow, newest first (at most 100).
    ///
    /// Example:
    /// ```rhai
    /// history("hr-to-ldap/users")
    /// ```
    #[rhai_fn(name = "history", return_raw)]
    pub fn history_of(name: &str) -> ScriptResult<Array> {
        let list = context::store()?
            .runs(Some(name), 100)
            .map_err(|e| rt_err(e.to_string()))?;
        Ok(list.iter().map(run_record).collect())
    }

    /// The latest run of a step or workflow, or `()`.
    ///
    /// Example:
    /// ```rhai
    /// last_run("hr-to-ldap/users").status
    /// ```
    #[rhai_fn(return_raw)]
    pub fn last_run(name: &str) -> ScriptResult<Dynamic> {
        let list = context::store()?
            .runs(Some(name), 1)
            .map_err(|e| rt_err(e.to_string()))?;
        Ok(list.first().map(run_record).unwrap_or(Dynamic::UNIT))
    }

    /// The stored links of a step: source anchor, target anchor, target DN.
    ///
    /// Example:
    /// ```rhai
    /// links("hr-to-ldap/users")
    /// ```
    #[rhai_fn(return_raw)]
    pub fn links(step: &str) -> ScriptResult<Array> {
        let mut list = context::store()?
            .links(step)
            .map_err(|e| rt_err(e.to_string()))?;
        list.sort_by(|a, b| a.target_dn.cmp(&b.target_dn));
        Ok(list
            .into_iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("source_anchor".into(), l.source_anchor.into());
                m.insert("target_anchor".into(), l.target_anchor.into());
                m.insert("target_dn".into(), l.target_dn.into());
                m.insert(
                    "updated".into(),
                    crate::sync::clock::iso(l.updated_ms).into(),
                );
                Dynamic::from_map(m)
            })
            .collect())
    }

    /// Forgets one link (by source anchor); true when it existed. The next
    /// run treats that source object as new (join or create).
    ///
    /// Example:
    /// ```rhai
    /// unlink("hr-to-ldap/users", "E1001")
    /// ```
    #[rhai_fn(return_raw)]
    pub fn unlink(step: &str, anchor: &str) -> ScriptResult<bool> {
        let store = context::store()?;
        crate::sync::links::unlink(store.as_ref(), step, anchor).map_err(|e| rt_err(e.to_string()))
    }
}
