//! The service loop: evaluates the script, then until stopped fires each
//! schedule on time (never overlapping itself: a tick that comes while the
//! previous run still runs is skipped), interrupts a run past its timeout,
//! counts refusals and failures towards quarantine (backoff doubling up to
//! once a day, one alert), keeps the service lease (or stands by), and
//! answers signals: SIGTERM/SIGINT stop the runs between writes, record
//! them and exit; SIGHUP re-reads the script (a script that fails keeps the
//! old schedules, and the log says why).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::http::Pages;
use super::instance::Instance;
use super::notify::{self, Message};
use super::runner::{self, Outcome, Result as RunResult};
use crate::script::Session;
use crate::script::service::{
    Declared, Every, NotifyWhen, QUARANTINE_KEY, SCHEDULE_KEY, ScheduleDef, cron_next,
    format_duration, get_json, parse_cron, take_declared,
};
use crate::store::StateStore;
use crate::sync::cancel::Cancel;
use crate::sync::clock;

/// How the service was started.
pub struct Options {
    /// The service script.
    pub script: PathBuf,
    /// Preview only, never the lease.
    pub staging: bool,
    /// Lease heartbeat interval.
    pub heartbeat: Duration,
    /// Lease period (a holder silent this long is replaced).
    pub lease_period: Duration,
    /// `--listen`, overriding the script's `serve`.
    pub listen: Option<std::net::SocketAddr>,
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// The longest quarantine backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// One line on stderr, timestamped.
pub fn log(line: &str) {
    eprintln!("{} idsync service: {line}", clock::iso(clock::now_ms()));
}

/// A schedule's state while the service runs.
struct Sched {
    def: ScheduleDef,
    next_ms: i64,
    last_full_ms: i64,
    running: Option<Running>,
    streak: u32,
    last: Option<(i64, Outcome)>,
    /// Quarantined: backoff (ms) and the next attempt.
    quarantine: Option<(i64, i64)>,
    runs_by_result: HashMap<&'static str, u64>,
    written: u64,
}

struct Running {
    handle: JoinHandle<Outcome>,
    cancel: Cancel,
    deadline_ms: Option<i64>,
    started_ms: i64,
    timed_out: bool,
    /// A periodic full run (`full_every`).
    full: bool,
}

/// True when a full run that ended with `result` did its job: it read and
/// compared everything. One that failed, was refused, interrupted or found
/// the step busy did not, so the next run is full again instead of waiting
/// for the next `full_every`.
fn full_run_done(result: &RunResult) -> bool {
    matches!(result, RunResult::Ok | RunResult::Partial)
}

fn interval_ms(def: &ScheduleDef, now: i64) -> i64 {
    match &def.every {
        Every::Interval(d) => d.as_millis() as i64,
        Every::Cron(c) => parse_cron(c)
            .ok()
            .and_then(|c| {
                let a = cron_next(&c, now)?;
                Some(cron_next(&c, a)? - a)
            })
            .unwrap_or(60_000),
    }
}

fn first_fire(def: &ScheduleDef, now: i64) -> i64 {
    match &def.every {
        Every::Interval(_) => now,
        Every::Cron(c) => parse_cron(c)
            .ok()
            .and_then(|c| cron_next(&c, now))
            .unwrap_or(i64::MAX),
    }
}

/// The first fire time after `now` in the schedule's rhythm from `prev`.
fn next_fire(def: &ScheduleDef, prev: i64, now: i64) -> i64 {
    match &def.every {
        Every::Interval(d) => {
            let step = (d.as_millis() as i64).max(1);
            let mut n = prev + step;
            if n <= now {
                n += ((now - n) / step + 1) * step;
            }
            n
        }
        Every::Cron(c) => parse_cron(c)
            .ok()
            .and_then(|c| cron_next(&c, now))
            .unwrap_or(i64::MAX),
    }
}

impl Sched {
    fn new(def: ScheduleDef, now: i64) -> Sched {
        Sched {
            next_ms: first_fire(&def, now),
            def,
            last_full_ms: now,
            running: None,
            streak: 0,
            last: None,
            quarantine: None,
            runs_by_result: HashMap::new(),
            written: 0,
        }
    }
}

/// Evaluates the script in a fresh session; what it declared, or why not.
fn evaluate(path: &Path) -> Result<(Session, Declared), String> {
    let _ = take_declared();
    let _ = crate::script::password::take_declared();
    let mut s = Session::new(Vec::new());
    match s.run_file(path) {
        Ok(_) => {
            let d = take_declared();
            if d.schedules.is_empty() && !crate::script::password::declared_any() {
                return Err(format!(
                    "{}: the script schedules nothing and declares no password endpoint (add schedule(step, #{{ every: \"30m\" }}), password_writeback(...) or password_sync(...))",
                    path.display()
                ));
            }
            Ok((s, d))
        }
        Err(e) => {
            let _ = take_declared();
            Err(e.message)
        }
    }
}

fn install_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = crate::script::runtime::runtime();
    let _g = rt.enter();
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        log("cannot take over the signals; SIGTERM ends the process at once");
        return;
    };
    rt.spawn(async move {
        loop {
            tokio::select! {
                Some(()) = term.recv() => STOP.store(true, Ordering::SeqCst),
                Some(()) = int.recv() => STOP.store(true, Ordering::SeqCst),
                Some(()) = hup.recv() => RELOAD.store(true, Ordering::SeqCst),
                else => return,
            }
        }
    });
}

/// Runs the service until SIGTERM; the process's exit status.
pub fn run(opts: Options) -> u8 {
    // A step lease left by a killed instance blocks no longer than the
    // service lease: the standby that took over can run the step.
    crate::sync::lease::set_lease_period_ms(opts.lease_period.as_millis() as i64);
    install_signals();
    let store = match crate::script::context::store() {
        Ok(s) => s,
        Err(e) => {
            log(&format!("cannot open the state store: {e}"));
            return 1;
        }
    };
    let (mut _session, mut declared) = match evaluate(&opts.script) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let pages = Arc::new(Mutex::new(Pages::default()));
    if let Some(addr) = opts.listen.or(declared.listen) {
        match super::http::serve(addr, pages.clone()) {
            Ok(a) => log(&format!("serving /health and /metrics on http://{a}")),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    }
    if let Err(e) = super::password::start(store.clone(), opts.staging) {
        eprintln!("error: {e}");
        return 2;
    }
    let mut inst = Instance::new(store.clone(), opts.lease_period);
    let now = clock::now_ms();
    let mut scheds: Vec<Sched> = declared
        .schedules
        .iter()
        .cloned()
        .map(|d| Sched::new(d, now))
        .collect();
    log(&format!(
        "started{} as {} with {} schedule(s): {}",
        if opts.staging {
            " in staging mode (previews only, nothing is written)"
        } else {
            ""
        },
        inst.id,
        scheds.len(),
        scheds
            .iter()
            .map(|s| format!("{} ({})", s.def.name(), s.def.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let hb_ms = opts.heartbeat.as_millis() as i64;
    let mut last_beat = i64::MIN;
    loop {
        let now = clock::now_ms();
        if STOP.load(Ordering::SeqCst) {
            return stop(&mut scheds, &mut inst, &store);
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            match evaluate(&opts.script) {
                Ok((s, d)) => {
                    scheds = reload(std::mem::take(&mut scheds), &d, now);
                    super::password::reload();
                    _session = s;
                    declared = d;
                    log(&format!(
                        "SIGHUP: re-read {}: {} schedule(s): {}",
                        opts.script.display(),
                        scheds.len(),
                        scheds
                            .iter()
                            .map(|s| s.def.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Err(e) => log(&format!(
                    "SIGHUP: {} could not be re-read; keeping the current schedules. Why: {e}",
                    opts.script.display()
                )),
            }
        }
        if now.saturating_sub(last_beat) >= hb_ms {
            last_beat = now;
            if opts.staging {
                inst.record("staging");
            } else {
                if let Some(line) = inst.tick() {
                    log(&line);
                }
                inst.record(if inst.active { "active" } else { "standby" });
                for line in inst.forget_dead() {
                    log(&line);
                }
            }
        }
        let may_run = opts.staging || inst.active;
        for s in scheds.iter_mut() {
            reap(s, &store, &declared, &inst, opts.staging);
            if let Some(r) = s.running.as_mut()
                && !r.timed_out
                && r.deadline_ms.is_some_and(|d| now >= d)
            {
                r.timed_out = true;
                r.cancel.cancel();
                log(&format!(
                    "{}: timeout ({}) reached; interrupting the run",
                    s.def.name(),
                    s.def.timeout.map(format_duration).unwrap_or_default()
                ));
            }
            if !opts.staging {
                check_quarantine(s, &store);
            }
            if !may_run || now < s.next_ms {
                continue;
            }
            let due = s.next_ms;
            s.next_ms = next_fire(&s.def, due, now);
            if s.running.is_some() {
                log(&format!(
                    "{}: previous run still running; this tick is skipped",
                    s.def.name()
                ));
                continue;
            }
            if let Some((_, next_try)) = s.quarantine
                && now < next_try
            {
                continue;
            }
            start(s, &store, opts.staging, now);
        }
        // Only the active instance writes the schedules' state (a standby's
        // would overwrite it with its own idle view).
        if !opts.staging && inst.active {
            for s in &scheds {
                save_state(s, &store);
            }
        }
        render(&pages, &scheds, &inst, opts.staging);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(s: &mut Sched, store: &Arc<dyn StateStore>, staging: bool, now: i64) {
    // `last_full_ms` moves on only when a full run succeeds (see `reap`).
    let full = s
        .def
        .full_every
        .is_some_and(|f| now - s.last_full_ms >= f.as_millis() as i64);
    let cancel = Cancel::new();
    let (target, store2, c2) = (s.def.target.clone(), store.clone(), cancel.clone());
    log(&format!(
        "{}: {}run starts{}",
        s.def.name(),
        if staging { "staging preview " } else { "" },
        if full { " (full)" } else { "" }
    ));
    let handle = std::thread::Builder::new()
        .name("idsync-run".into())
        .spawn(move || runner::execute(&target, &store2, full, staging, c2));
    match handle {
        Ok(handle) => {
            s.running = Some(Running {
                handle,
                cancel,
                deadline_ms: s.def.timeout.map(|t| now + t.as_millis() as i64),
                started_ms: now,
                timed_out: false,
                full,
            })
        }
        Err(e) => log(&format!("{}: cannot start the run: {e}", s.def.name())),
    }
}

/// Collects a finished run: history is written by the run itself; here the
/// streak, quarantine, notifications and metrics.
fn reap(s: &mut Sched, store: &Arc<dyn StateStore>, d: &Declared, inst: &Instance, staging: bool) {
    if !s.running.as_ref().is_some_and(|r| r.handle.is_finished()) {
        return;
    }
    let Some(r) = s.running.take() else { return };
    let out = match r.handle.join() {
        Ok(o) => o,
        Err(_) => Outcome {
            result: RunResult::Failed,
            counts: json!({}),
            written: 0,
            message: "the run ended unexpectedly (internal error)".into(),
            log: None,
            seconds: 0.0,
        },
    };
    let name = s.def.name();
    log(&format!(
        "{name}: {} in {:.1} s: {}{}",
        out.result.word(),
        out.seconds,
        out.message,
        out.log
            .as_deref()
            .map(|l| format!(" (log: {l})"))
            .unwrap_or_default()
    ));
    if r.full && full_run_done(&out.result) {
        s.last_full_ms = r.started_ms;
    }
    *s.runs_by_result.entry(out.result.word()).or_default() += 1;
    s.written += out.written;
    let now = clock::now_ms();
    let msg = |event: &str| Message {
        subject: format!("idsync: {name} {event}"),
        event: event.into(),
        step: name.clone(),
        reason: out.message.clone(),
        counts: out.counts.clone(),
        log: out.log.clone(),
        instance: inst.id.clone(),
    };
    let wanted = match s.def.notify {
        NotifyWhen::Never => false,
        NotifyWhen::Always => out.result != RunResult::Busy,
        NotifyWhen::OnFailure => matches!(out.result, RunResult::Failed | RunResult::Partial),
        NotifyWhen::OnRefusal => out.result == RunResult::Refused,
    };
    if wanted {
        notify::send(&d.notify, msg(out.result.word()), log);
    }
    match out.result {
        RunResult::Refused | RunResult::Failed if !staging => {
            s.streak += 1;
            if s.streak >= s.def.quarantine_after {
                let base = interval_ms(&s.def, now);
                let backoff = match s.quarantine {
                    None => base.saturating_mul(2),
                    Some((b, _)) => b.saturating_mul(2),
                }
                .min(MAX_BACKOFF.as_millis() as i64);
                let first = s.quarantine.is_none();
                s.quarantine = Some((backoff, now + backoff));
                if first {
                    let reason = format!(
                        "{} {} times in a row; last: {}",
                        out.result.word(),
                        s.streak,
                        out.message
                    );
                    let q = json!({
                        "since_ms": now, "reason": reason, "failures": s.streak,
                        "log": out.log, "counts": out.counts,
                    });
                    let _ = store.put_setting(&format!("{QUARANTINE_KEY}{name}"), &q.to_string());
                    log(&format!(
                        "{name}: QUARANTINED: {reason}; next try in {} (doubling up to once a day); release(\"{name}\") or a good manual run lifts it",
                        format_duration(Duration::from_millis(backoff as u64))
                    ));
                    let mut m = msg("quarantined");
                    m.reason = reason;
                    notify::send(&d.notify, m, log);
                } else {
                    log(&format!(
                        "{name}: still quarantined; next try in {}",
                        format_duration(Duration::from_millis(backoff as u64))
                    ));
                }
            }
        }
        RunResult::Ok | RunResult::Partial => {
            s.streak = 0;
            if s.quarantine.take().is_some() {
                let _ = crate::script::service::lift_quarantine(store.as_ref(), &name);
                log(&format!("{name}: ran well again; quarantine lifted"));
            }
        }
        _ => {}
    }
    s.last = Some((r.started_ms, out));
}

/// Picks up a `release()` from any shell (the quarantine record is gone) or
/// a good manual run since the quarantine began.
fn check_quarantine(s: &mut Sched, store: &Arc<dyn StateStore>) {
    if s.quarantine.is_none() {
        return;
    }
    let name = s.def.name();
    let Some(q) = get_json(store.as_ref(), &format!("{QUARANTINE_KEY}{name}")) else {
        s.quarantine = None;
        s.streak = 0;
        log(&format!("{name}: quarantine released"));
        return;
    };
    let since = q["since_ms"].as_i64().unwrap_or(i64::MAX);
    let good = store.runs(Some(&name), 5).ok().is_some_and(|runs| {
        runs.iter().any(|r| {
            r.status == "ok"
                && r.started_ms > since
                && !r
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("staging preview"))
        })
    });
    if good {
        let _ = crate::script::service::lift_quarantine(store.as_ref(), &name);
        s.quarantine = None;
        s.streak = 0;
        log(&format!(
            "{name}: a good run since the quarantine began; quarantine lifted"
        ));
    }
}

fn save_state(s: &Sched, store: &Arc<dyn StateStore>) {
    let (last_ms, status, message) = match &s.last {
        Some((t, o)) => (
            Json::from(*t),
            Json::from(o.result.word()),
            Json::from(o.message.clone()),
        ),
        None => (Json::Null, Json::Null, Json::Null),
    };
    let next = match s.quarantine {
        Some((_, t)) => t.max(s.next_ms),
        None => s.next_ms,
    };
    let v = json!({
        "when": s.def.describe(), "next_ms": next, "last_ms": last_ms,
        "last_status": status, "last_message": message,
        "running": s.running.is_some(),
    });
    let key = format!("{SCHEDULE_KEY}{}", s.def.name());
    let text = v.to_string();
    // Written only when it changed (the store is shared).
    if store.get_setting(&key).ok().flatten().as_deref() != Some(text.as_str()) {
        let _ = store.put_setting(&key, &text);
    }
}

/// The schedules after SIGHUP: same-named ones keep their state (and their
/// run in progress); new ones start fresh; removed ones are dropped (a run
/// of theirs in progress finishes on its own).
fn reload(old: Vec<Sched>, d: &Declared, now: i64) -> Vec<Sched> {
    let mut old: HashMap<String, Sched> = old.into_iter().map(|s| (s.def.name(), s)).collect();
    d.schedules
        .iter()
        .cloned()
        .map(|def| match old.remove(&def.name()) {
            Some(mut s) => {
                let changed = s.def.describe() != def.describe();
                s.def = def;
                if changed {
                    s.next_ms = first_fire(&s.def, now);
                }
                s
            }
            None => Sched::new(def, now),
        })
        .collect()
}

/// SIGTERM: interrupt the runs (they stop between writes and record
/// themselves), wait for them, give the lease up.
fn stop(scheds: &mut [Sched], inst: &mut Instance, store: &Arc<dyn StateStore>) -> u8 {
    let running: Vec<String> = scheds
        .iter()
        .filter(|s| s.running.is_some())
        .map(|s| s.def.name())
        .collect();
    log(&format!(
        "stopping (SIGTERM){}",
        if running.is_empty() {
            String::new()
        } else {
            format!(
                "; interrupting {} after the writes in flight",
                running.join(", ")
            )
        }
    ));
    for s in scheds.iter_mut() {
        if let Some(r) = &s.running {
            r.cancel.cancel();
        }
    }
    // Also the process's interrupt token: a step's Rhai closure that is
    // busy stops at its next operation, as under Ctrl-C.
    crate::script::interrupt::token().cancel();
    for s in scheds.iter_mut() {
        if let Some(r) = s.running.take()
            && let Ok(o) = r.handle.join()
        {
            log(&format!(
                "{}: {}: {}",
                s.def.name(),
                o.result.word(),
                o.message
            ));
        }
        if inst.active {
            save_state(s, store);
        }
    }
    inst.leave();
    log("stopped");
    0
}

fn render(pages: &Arc<Mutex<Pages>>, scheds: &[Sched], inst: &Instance, staging: bool) {
    let role = if staging {
        "staging"
    } else if inst.active {
        "active"
    } else {
        "standby"
    };
    let holder = if staging { None } else { inst.holder() };
    let health = json!({
        "status": "ok",
        "instance": inst.id,
        "role": role,
        "lease_holder": holder,
        "schedules": scheds.iter().map(|s| json!({
            "name": s.def.name(),
            "when": s.def.describe(),
            "running": s.running.is_some(),
            "last_result": s.last.as_ref().map(|(_, o)| o.result.word()),
            "next_run": clock::iso(s.next_ms),
            "quarantined": s.quarantine.is_some(),
        })).collect::<Vec<_>>(),
    });
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut m = String::new();
    m.push_str(
        "# HELP idsync_runs_total Scheduled runs by result.\n# TYPE idsync_runs_total counter\n",
    );
    for s in scheds {
        let mut by: Vec<_> = s.runs_by_result.iter().collect();
        by.sort();
        for (r, n) in by {
            m.push_str(&format!(
                "idsync_runs_total{{schedule=\"{}\",result=\"{r}\"}} {n}\n",
                esc(&s.def.name())
            ));
        }
    }
    m.push_str("# HELP idsync_objects_written_total Objects written by scheduled runs.\n# TYPE idsync_objects_written_total counter\n");
    for s in scheds {
        m.push_str(&format!(
            "idsync_objects_written_total{{schedule=\"{}\"}} {}\n",
            esc(&s.def.name()),
            s.written
        ));
    }
    m.push_str("# HELP idsync_last_run_duration_seconds Duration of the last finished run.\n# TYPE idsync_last_run_duration_seconds gauge\n");
    for s in scheds {
        if let Some((_, o)) = &s.last {
            m.push_str(&format!(
                "idsync_last_run_duration_seconds{{schedule=\"{}\"}} {:.3}\n",
                esc(&s.def.name()),
                o.seconds
            ));
        }
    }
    m.push_str("# HELP idsync_quarantined 1 when the schedule is quarantined.\n# TYPE idsync_quarantined gauge\n");
    for s in scheds {
        m.push_str(&format!(
            "idsync_quarantined{{schedule=\"{}\"}} {}\n",
            esc(&s.def.name()),
            u8::from(s.quarantine.is_some())
        ));
    }
    m.push_str("# HELP idsync_lease_holder 1 when this instance holds the service lease.\n# TYPE idsync_lease_holder gauge\n");
    m.push_str(&format!(
        "idsync_lease_holder{{instance=\"{}\",holder=\"{}\"}} {}\n",
        esc(&inst.id),
        esc(holder.as_deref().unwrap_or("")),
        u8::from(inst.active)
    ));
    let mut p = pages.lock().unwrap_or_else(|e| e.into_inner());
    p.health = health.to_string();
    p.metrics = m;
}
