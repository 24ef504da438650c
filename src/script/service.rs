//! The service in scripts (API §9): `schedule`, `notify`, `serve`, `release`
//! and `status`. A script run normally only *records* what `schedule`,
//! `notify` and `serve` declare (nothing starts); `idsync service FILE`
//! evaluates the script, takes what was recorded ([`take_declared`]) and runs
//! it. What the service remembers in the state store (per-schedule state,
//! quarantines, instance heartbeats) is written under the setting keys
//! defined here, so `status()` and `release()` in any shell read and change
//! the same records the service does, without a change to the store's trait.

use std::sync::Mutex;
use std::time::Duration;

use rhai::{Dynamic, Map};
use serde_json::{Value as Json, json};

use super::context;
use super::convert::{ScriptResult, rt_err};
use super::sync_api::{Step, Workflow};
use crate::model::Secret;
use crate::store::StateStore;
use crate::sync::clock;

/// The setting-key prefix of a schedule's state (`service.schedule.NAME`).
pub const SCHEDULE_KEY: &str = "service.schedule.";
/// The setting-key prefix of a quarantine (`service.quarantine.NAME`).
pub const QUARANTINE_KEY: &str = "service.quarantine.";
/// The setting-key prefix of an instance's heartbeat (`service.instance.HOST:PID`).
pub const INSTANCE_KEY: &str = "service.instance.";
/// The name of the service lease in the store's lease table (not a step).
pub const SERVICE_LEASE: &str = "idsync-service";

/// What a schedule runs.
#[derive(Clone)]
pub enum Target {
    /// One sync step.
    Step(Step),
    /// A workflow (its steps in order, under one lease).
    Workflow(Workflow),
}

impl Target {
    /// The step's or workflow's name (the schedule's name).
    pub fn name(&self) -> String {
        match self {
            Target::Step(s) => s.0.name.clone(),
            Target::Workflow(w) => w.name.clone(),
        }
    }
}

/// When a schedule sends a run notification (alerts on quarantine go always).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyWhen {
    /// Never (only quarantine alerts).
    Never,
    /// When a run failed.
    OnFailure,
    /// When a run was refused by the deletion threshold.
    OnRefusal,
    /// After every run.
    Always,
}

/// How often a schedule fires.
#[derive(Clone, Debug)]
pub enum Every {
    /// A fixed interval (the first run at once).
    Interval(Duration),
    /// A cron pattern (five fields, or six with seconds), in UTC.
    Cron(String),
}

/// One `schedule(...)` as declared.
#[derive(Clone)]
pub struct ScheduleDef {
    /// What runs.
    pub target: Target,
    /// When.
    pub every: Every,
    /// A `full: true` run at most this often.
    pub full_every: Option<Duration>,
    /// A run longer than this is interrupted.
    pub timeout: Option<Duration>,
    /// When run notifications go out.
    pub notify: NotifyWhen,
    /// Refused or failed this many times in a row: quarantined.
    pub quarantine_after: u32,
}

impl ScheduleDef {
    /// The schedule's name: its step's or workflow's.
    pub fn name(&self) -> String {
        self.target.name()
    }

    /// "every 30m" / "cron */5 * * * *", for status and logs.
    pub fn describe(&self) -> String {
        match &self.every {
            Every::Interval(d) => format!("every {}", format_duration(*d)),
            Every::Cron(c) => format!("cron {c}"),
        }
    }
}

/// One `notify(...)`: where alerts and notifications go.
#[derive(Clone, Debug)]
pub enum NotifyDef {
    /// Mail by SMTP.
    Smtp {
        /// Server host name or address.
        host: String,
        /// Server port (587 by default).
        port: u16,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
        /// Login name, if the server wants a login.
        user: Option<String>,
        /// Login password (a secret reference).
        password: Option<Secret>,
        /// `"starttls"` (default, required) or `"none"` (plain text, only when asked).
        tls: String,
    },
    /// A JSON POST to a URL.
    Webhook {
        /// The URL.
        url: String,
    },
}

/// What a script declared for the service.
#[derive(Clone, Default)]
pub struct Declared {
    /// The schedules, in order.
    pub schedules: Vec<ScheduleDef>,
    /// Where alerts go.
    pub notify: Vec<NotifyDef>,
    /// The HTTP address for /health and /metrics.
    pub listen: Option<std::net::SocketAddr>,
}

static DECLARED: Mutex<Option<Declared>> = Mutex::new(None);

fn with_declared<T>(f: impl FnOnce(&mut Declared) -> T) -> T {
    let mut g = DECLARED.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Declared::default))
}

/// Takes (and forgets) what the scripts evaluated so far declared.
pub fn take_declared() -> Declared {
    let mut g = DECLARED.lock().unwrap_or_else(|p| p.into_inner());
    g.take().unwrap_or_default()
}

/// Parses a duration: a number and a unit (`s`, `m`, `h`, `d`), several
/// concatenated (`"1h30m"`). Our own 20 lines rather than a crate: the
/// service needs only these four units, and the error can name the option.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: write a number and a unit s, m, h or d (\"30m\", \"1d\", \"1h30m\")"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A duration as the parser reads it ("1h30m", "10s").
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= n {
            out.push_str(&format!("{}{unit}", s / n));
            s %= n;
        }
    }
    out
}

/// Checks a cron pattern (five fields, or six with seconds first).
pub fn parse_cron(pattern: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::new()
        .parse(pattern)
        .map_err(|e| format!("cron {pattern:?}: {e}"))
}

/// The next time (ms since the epoch) a cron pattern fires after `after_ms`.
pub fn cron_next(cron: &croner::Cron, after_ms: i64) -> Option<i64> {
    let after = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms)?;
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn text(opts: &Map, key: &str, what: &str) -> ScriptResult<Option<String>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .clone()
            .into_string()
            .map(Some)
            .map_err(|t| rt_err(format!("{what}: {key} must be a string, not {t}"))),
    }
}

fn check_keys(what: &str, opts: &Map, allowed: &[&str]) -> ScriptResult<()> {
    for k in opts.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(rt_err(format!(
                "{what}: unknown option {k:?} (known: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn schedule_def(target: Target, opts: &Map) -> ScriptResult<ScheduleDef> {
    let what = format!("schedule({})", target.name());
    check_keys(
        &what,
        opts,
        &[
            "every",
            "cron",
            "full_every",
            "timeout",
            "notify",
            "quarantine_after",
        ],
    )?;
    let dur = |key: &str| -> ScriptResult<Option<Duration>> {
        text(opts, key, &what)?
            .map(|t| parse_duration(&t).map_err(|e| rt_err(format!("{what}: {key}: {e}"))))
            .transpose()
    };
    let every = match (dur("every")?, text(opts, "cron", &what)?) {
        (Some(d), None) => Every::Interval(d),
        (None, Some(c)) => {
            parse_cron(&c).map_err(|e| rt_err(format!("{what}: {e}")))?;
            Every::Cron(c)
        }
        (Some(_), Some(_)) => {
            return Err(rt_err(format!(
                "{what}: give either every or cron, not both"
            )));
        }
        (None, None) => {
            return Err(rt_err(format!(
                "{what}: say when it runs: #{{ every: \"30m\" }} or #{{ cron: \"*/30 * * * *\" }}"
            )));
        }
    };
    let notify = match text(opts, "notify", &what)?.as_deref() {
        None | Some("never") => NotifyWhen::Never,
        Some("on_failure") => NotifyWhen::OnFailure,
        Some("on_refusal") => NotifyWhen::OnRefusal,
        Some("always") => NotifyWhen::Always,
        Some(o) => {
            return Err(rt_err(format!(
                "{what}: notify {o:?} is not one of \"on_failure\", \"on_refusal\", \"always\", \"never\""
            )));
        }
    };
    let quarantine_after = match opts.get("quarantine_after") {
        None => 3,
        Some(v) => match v.as_int() {
            Ok(n) if (1..=1000).contains(&n) => n as u32,
            _ => {
                return Err(rt_err(format!(
                    "{what}: quarantine_after must be a number from 1 to 1000"
                )));
            }
        },
    };
    Ok(ScheduleDef {
        target,
        every,
        full_every: dur("full_every")?,
        timeout: dur("timeout")?,
        notify,
        quarantine_after,
    })
}

fn add_schedule(def: ScheduleDef) -> Map {
    let mut m = Map::new();
    m.insert("schedule".into(), def.name().into());
    m.insert("when".into(), def.describe().into());
    with_declared(|d| {
        d.schedules.retain(|s| s.name() != def.name());
        d.schedules.push(def);
    });
    m
}

fn notify_def(opts: &Map) -> ScriptResult<Vec<NotifyDef>> {
    let what = "notify";
    check_keys(
        what,
        opts,
        &["smtp", "from", "to", "user", "password", "tls", "webhook"],
    )?;
    let mut out = Vec::new();
    if let Some(url) = text(opts, "webhook", what)? {
        let u = url::Url::parse(&url)
            .map_err(|e| rt_err(format!("notify: webhook {url:?} is not a URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(rt_err(format!(
                "notify: webhook {url:?}: only http and https URLs"
            )));
        }
        out.push(NotifyDef::Webhook { url });
    }
    if let Some(server) = text(opts, "smtp", what)? {
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| {
                    rt_err(format!("notify: smtp {server:?}: the port is not a number"))
                })?,
            ),
            None => (server.clone(), 587),
        };
        let from = text(opts, "from", what)?
            .ok_or_else(|| rt_err("notify: smtp needs from: \"idsync@corp.example\""))?;
        let to: Vec<String> = match opts.get("to") {
            Some(v) if v.is_array() => v
                .clone()
                .into_array()
                .unwrap_or_default()
                .into_iter()
                .map(|x| x.to_string())
                .collect(),
            Some(v) if v.is_string() => vec![v.to_string()],
            _ => return Err(rt_err("notify: smtp needs to: [\"iam-team@corp.example\"]")),
        };
        if to.is_empty() {
            return Err(rt_err("notify: to names no recipient"));
        }
        let password = match opts.get("password") {
            None => None,
            Some(v) if v.is::<Secret>() => Some(v.clone().cast::<Secret>()),
            Some(_) => {
                return Err(rt_err(
                    "notify: password must be a secret reference: password: secret(\"SMTP_PW\")",
                ));
            }
        };
        let tls = text(opts, "tls", what)?.unwrap_or_else(|| "starttls".into());
        if tls != "starttls" && tls != "none" {
            return Err(rt_err(format!(
                "notify: tls {tls:?} is not \"starttls\" or \"none\" (plain text, only for a server that offers nothing else)"
            )));
        }
        let user = text(opts, "user", what)?;
        if tls == "none" && password.is_some() {
            return Err(rt_err(
                "notify: refusing to send the SMTP password in plain text (tls: \"none\"); use STARTTLS",
            ));
        }
        out.push(NotifyDef::Smtp {
            host,
            port,
            from,
            to,
            user,
            password,
            tls,
        });
    }
    if out.is_empty() {
        return Err(rt_err(
            "notify: give smtp: \"host:port\" (with from and to) and/or webhook: \"https://...\"",
        ));
    }
    Ok(out)
}

/// Checks a `serve` address: loopback only (`/health` and `/metrics` are
/// served in plain HTTP; only the password endpoints take TLS).
pub fn check_listen(addr: &str) -> Result<std::net::SocketAddr, String> {
    let a: std::net::SocketAddr = addr.parse().map_err(|_| {
        format!("serve: listen {addr:?} is not an address and port such as \"127.0.0.1:9184\"")
    })?;
    if !a.ip().is_loopback() {
        return Err(format!(
            "serve: refusing to listen on {addr}: only a loopback address (127.0.0.1, ::1) is served: /health and /metrics are plain HTTP (TLS is only for the password endpoints)"
        ));
    }
    Ok(a)
}

/// Reads a JSON setting, `None` when absent or unreadable.
pub fn get_json(store: &dyn StateStore, key: &str) -> Option<Json> {
    store
        .get_setting(key)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Lifts the quarantine of a schedule; true when it was quarantined.
pub fn lift_quarantine(store: &dyn StateStore, name: &str) -> Result<bool, String> {
    store
        .remove_setting(&format!("{QUARANTINE_KEY}{}", name.trim()))
        .map_err(|e| e.to_string())
}

/// Everything `status` shows, as JSON: schedules, the lease holder, the
/// instances' heartbeats. Reads the store only.
pub fn status_json(store: &dyn StateStore) -> Result<Json, String> {
    let now = clock::now_ms();
    let settings = store.list_settings().map_err(|e| e.to_string())?;
    let parse = |v: &str| serde_json::from_str::<Json>(v).unwrap_or(Json::Null);
    let iso = |v: &Json| {
        v.as_i64()
            .map(clock::iso)
            .map(Json::from)
            .unwrap_or(Json::Null)
    };
    let mut schedules = Vec::new();
    let mut instances = Vec::new();
    for (k, v) in &settings {
        if let Some(name) = k.strip_prefix(SCHEDULE_KEY) {
            let s = parse(v);
            let q = settings
                .iter()
                .find(|(qk, _)| qk.strip_prefix(QUARANTINE_KEY) == Some(name))
                .map(|(_, qv)| parse(qv));
            schedules.push(json!({
                "name": name,
                "when": s["when"],
                "last_run": iso(&s["last_ms"]),
                "last_result": s["last_status"],
                "last_message": s["last_message"],
                "next_run": iso(&s["next_ms"]),
                "quarantined": q.is_some(),
                "quarantine_reason": q.as_ref().map(|q| q["reason"].clone()).unwrap_or(Json::Null),
                "quarantined_since": q.as_ref().map(|q| iso(&q["since_ms"])).unwrap_or(Json::Null),
            }));
        } else if let Some(id) = k.strip_prefix(INSTANCE_KEY) {
            let i = parse(v);
            let age_ms = i["heartbeat_ms"].as_i64().map(|h| (now - h).max(0));
            let period = period_of(&i);
            // Silent for longer than its lease period: dead (SIGKILL, power
            // off) or cut off; whatever it last said, it is no longer that.
            let stale = age_ms.is_none_or(|a| a > period);
            instances.push(json!({
                "instance": id,
                "role": if stale { Json::from("stale") } else { i["role"].clone() },
                "last_role": i["role"],
                "stale": stale,
                "last_heartbeat": iso(&i["heartbeat_ms"]),
                "seconds_ago": age_ms.map(|a| a / 1000),
                "lease_period_seconds": period / 1000,
                "started": iso(&i["started_ms"]),
            }));
        }
    }
    // A quarantine whose schedule state is gone still shows.
    for (k, v) in &settings {
        if let Some(name) = k.strip_prefix(QUARANTINE_KEY)
            && !schedules.iter().any(|s| s["name"] == name)
        {
            let q = parse(v);
            schedules.push(json!({
                "name": name, "quarantined": true,
                "quarantine_reason": q["reason"], "quarantined_since": iso(&q["since_ms"]),
            }));
        }
    }
    let leases = store.leases().map_err(|e| e.to_string())?;
    let lease = leases.iter().find(|l| l.name == SERVICE_LEASE).map(|l| {
        let holder = format!("{}:{}", l.host, l.pid);
        let period = settings
            .iter()
            .find(|(k, _)| k.strip_prefix(INSTANCE_KEY) == Some(holder.as_str()))
            .map(|(_, v)| period_of(&parse(v)))
            .unwrap_or(crate::sync::lease::LEASE_PERIOD_MS);
        let age_ms = (now - l.heartbeat_ms).max(0);
        json!({
            "holder": holder,
            "since": clock::iso(l.since_ms),
            "last_heartbeat": clock::iso(l.heartbeat_ms),
            "seconds_ago": age_ms / 1000,
            "lease_period_seconds": period / 1000,
            // The holder stopped heartbeating: a standby takes it over.
            "expired": age_ms > period,
        })
    });
    Ok(json!({
        "schedules": schedules,
        "lease": lease,
        "instances": instances,
    }))
}

/// The lease period an instance record names (ms; the default when absent).
fn period_of(instance: &Json) -> i64 {
    instance["lease_period_ms"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or(crate::sync::lease::LEASE_PERIOD_MS)
}

/// Service bindings.
#[rhai::export_module]
pub mod service_api {
    use super::*;

    /// Schedules a step for `idsync service`: `every: "30m"` (the first run
    /// when the service starts) or `cron: "*/30 * * * *"` (UTC; six fields
    /// with seconds also work), `full_every: "1d"` (a `full: true` run at
    /// most this often), `timeout: "2h"` (a longer run is interrupted like
    /// Ctrl-C and recorded `interrupted`), `notify: "on_failure" |
    /// "on_refusal" | "always"` (run notifications; quarantine alerts go
    /// always), `quarantine_after: 3`. A script run normally (`idsync
    /// FILE`) only records the schedule; nothing runs until `idsync service
    /// FILE` does.
    ///
    /// Example:
    /// ```rhai
    /// schedule(users, #{ every: "30m", full_every: "1d", timeout: "2h" })
    /// ```
    #[rhai_fn(name = "schedule", return_raw)]
    pub fn schedule_step(step: Step, opts: Map) -> ScriptResult<Map> {
        Ok(add_schedule(schedule_def(Target::Step(step), &opts)?))
    }

    /// Schedules a workflow for `idsync service` (options as for a step).
    ///
    /// Example:
    /// ```rhai
    /// schedule(wf, #{ cron: "0 2 * * *", notify: "on_failure" })
    /// ```
    #[rhai_fn(name = "schedule", return_raw)]
    pub fn schedule_workflow(wf: Workflow, opts: Map) -> ScriptResult<Map> {
        Ok(add_schedule(schedule_def(Target::Workflow(wf), &opts)?))
    }

    /// Where the service sends alerts (a quarantined step) and run
    /// notifications: `smtp: "host:port"` with `from`, `to: [...]`, `user`,
    /// `password: secret("SMTP_PW")` (STARTTLS is required; `tls: "none"`
    /// sends plain text, only without a password, for a local relay), and/or
    /// `webhook: "https://..."` (a JSON POST). Outside `idsync service` it
    /// only records.
    ///
    /// Example:
    /// ```rhai
    /// notify(#{ webhook: "https://hooks.example/idsync" })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn notify(opts: Map) -> ScriptResult<Map> {
        let defs = notify_def(&opts)?;
        let n = defs.len() as i64;
        with_declared(|d| d.notify.extend(defs));
        let mut m = Map::new();
        m.insert("targets".into(), Dynamic::from(n));
        Ok(m)
    }

    /// Where `idsync service` answers `GET /health` (JSON) and
    /// `GET /metrics` (Prometheus text): `listen: "127.0.0.1:9184"`. Only a
    /// loopback address is accepted (these pages are plain HTTP; only the
    /// password endpoints take TLS). Outside
    /// `idsync service` it only records.
    ///
    /// Example:
    /// ```rhai
    /// serve(#{ listen: "127.0.0.1:9184" })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn serve(opts: Map) -> ScriptResult<String> {
        check_keys("serve", &opts, &["listen"])?;
        let listen = text(&opts, "listen", "serve")?
            .ok_or_else(|| rt_err("serve: give listen: \"127.0.0.1:9184\""))?;
        let a = check_listen(&listen).map_err(rt_err)?;
        with_declared(|d| d.listen = Some(a));
        Ok(a.to_string())
    }

    /// Lifts the quarantine of a scheduled step or workflow (by name); the
    /// service runs it again at its next time. True when it was quarantined.
    ///
    /// Example:
    /// ```rhai
    /// release("hr-to-ldap/users")
    /// ```
    #[rhai_fn(name = "release", return_raw)]
    pub fn release(name: &str) -> ScriptResult<bool> {
        let store = context::store()?;
        lift_quarantine(store.as_ref(), name).map_err(rt_err)
    }

    /// Lifts the quarantine of a step.
    ///
    /// Example:
    /// ```rhai
    /// release(users)
    /// ```
    #[rhai_fn(name = "release", return_raw)]
    pub fn release_step(step: Step) -> ScriptResult<bool> {
        release(&step.0.name)
    }

    /// The service's state as the store holds it: `schedules` (last run,
    /// result, next run, quarantine and why), `lease` (the active instance
    /// and since when) and `instances` (every service instance's role and
    /// last heartbeat, standbys included).
    ///
    /// Example:
    /// ```rhai
    /// status().schedules
    /// ```
    #[rhai_fn(return_raw)]
    pub fn status() -> ScriptResult<Map> {
        let store = context::store()?;
        let j = status_json(store.as_ref()).map_err(rt_err)?;
        let d: Dynamic = rhai::serde::to_dynamic(&j).map_err(|e| rt_err(e.to_string()))?;
        Ok(d.try_cast::<Map>().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        for bad in ["", "10", "m", "10x", "0s", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn cron_patterns_and_next_time() {
        let c = parse_cron("*/30 * * * *").unwrap();
        // 2026-01-01T00:10:00Z -> 00:30:00Z
        let t = 1_767_226_200_000;
        assert_eq!(cron_next(&c, t), Some(t + 20 * 60_000));
        assert!(parse_cron("*/5 * * * * *").is_ok());
        assert!(parse_cron("not cron").is_err());
    }

    #[test]
    fn only_loopback_is_served() {
        assert!(check_listen("127.0.0.1:9184").is_ok());
        assert!(check_listen("[::1]:9184").is_ok());
        let e = check_listen("0.0.0.0:9184").unwrap_err();
        assert!(e.contains("loopback") && e.contains("TLS"), "{e}");
        assert!(check_listen("nonsense").is_err());
    }
}
