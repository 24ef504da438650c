//! idsync as a service (API §9), beside the shell: `idsync service FILE`
//! runs a script's schedules until stopped ([`daemon`]), with one active
//! instance per store ([`instance`]), staging previews and quarantine
//! ([`runner`], [`daemon`]), alerts ([`notify`]) and `/health` + `/metrics`
//! ([`http`]); `idsync status` prints what the store says about it. Only
//! `main.rs` uses this module.

pub mod daemon;
pub mod http;
pub mod instance;
pub mod notify;
pub mod password;
pub mod runner;
pub mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::script::service::{check_listen, parse_duration};

fn duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s)
}

fn listen(s: &str) -> Result<std::net::SocketAddr, String> {
    check_listen(s)
}

/// `idsync service`: runs the schedules of a service script until stopped.
#[derive(Parser, Debug)]
#[command(
    name = "idsync service",
    about = "Run a service script's schedules until stopped (SIGTERM ends it, SIGHUP re-reads the script)",
    after_help = "Several instances on one state store: one holds the service lease and runs the\n\
schedules, the others stand by and take over when its heartbeat is older than the lease period.\n\
A script file literally named `service` runs as a script with `idsync ./service`."
)]
struct ServiceCli {
    /// Run every schedule as a preview: record what it would write, write nothing, never take the lease.
    #[arg(long)]
    staging: bool,
    /// How often the active instance heartbeats the service lease.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    heartbeat: std::time::Duration,
    /// A holder whose heartbeat is older than this is replaced by a standby.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    lease_period: std::time::Duration,
    /// Serve /health and /metrics here (loopback only), instead of the script's serve().
    #[arg(long, value_name = "ADDR", value_parser = listen)]
    listen: Option<std::net::SocketAddr>,
    /// The service script.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// `idsync status`: the service's state as the store holds it.
#[derive(Parser, Debug)]
#[command(
    name = "idsync status",
    about = "Show the service's schedules, quarantines, lease holder and instances",
    after_help = "A script file literally named `status` runs as a script with `idsync ./status`."
)]
struct StatusCli {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse<T: Parser>(name: &str, args: &[String]) -> Result<T, ExitCode> {
    let argv = std::iter::once(name.to_string()).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        let _ = e.print();
        ExitCode::from(code)
    })
}

/// `idsync service ARGS...`.
pub fn service_main(args: &[String]) -> ExitCode {
    let cli: ServiceCli = match parse("idsync service", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !cli.file.exists() {
        eprintln!("error: {}: no such script file", cli.file.display());
        return ExitCode::from(2);
    }
    if cli.heartbeat >= cli.lease_period {
        eprintln!("error: --heartbeat must be shorter than --lease-period");
        return ExitCode::from(2);
    }
    ExitCode::from(daemon::run(daemon::Options {
        script: cli.file,
        staging: cli.staging,
        heartbeat: cli.heartbeat,
        lease_period: cli.lease_period,
        listen: cli.listen,
    }))
}

/// `idsync status ARGS...`.
pub fn status_main(args: &[String]) -> ExitCode {
    let cli: StatusCli = match parse("idsync status", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match crate::script::context::store() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let j = match crate::script::service::status_json(store.as_ref()) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.json {
        println!("{j:#}");
    } else {
        print!("{}", status_text(&j));
    }
    ExitCode::SUCCESS
}

/// The status as text for a person.
fn status_text(j: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(t) => t.clone(),
        o => o.to_string(),
    };
    let mut out = String::new();
    match j["lease"].as_object() {
        Some(l) if l["expired"] == true => out.push_str(&format!(
            "lease: EXPIRED: last held by {} since {}; last heartbeat {} ({} s ago, lease period {} s); a standby takes it over\n",
            s(&l["holder"]),
            s(&l["since"]),
            s(&l["last_heartbeat"]),
            s(&l["seconds_ago"]),
            s(&l["lease_period_seconds"])
        )),
        Some(l) => out.push_str(&format!(
            "lease: held by {} since {} (last heartbeat {} s ago)\n",
            s(&l["holder"]),
            s(&l["since"]),
            s(&l["seconds_ago"])
        )),
        None => out.push_str("lease: not held (no active instance)\n"),
    }
    for i in j["instances"].as_array().into_iter().flatten() {
        if i["stale"] == true {
            out.push_str(&format!(
                "instance {}: STALE (was {}; no heartbeat for {} s, longer than its lease period of {} s), last heartbeat {}\n",
                s(&i["instance"]),
                s(&i["last_role"]),
                s(&i["seconds_ago"]),
                s(&i["lease_period_seconds"]),
                s(&i["last_heartbeat"])
            ));
            continue;
        }
        out.push_str(&format!(
            "instance {}: {}, last heartbeat {} ({} s ago)\n",
            s(&i["instance"]),
            s(&i["role"]),
            s(&i["last_heartbeat"]),
            s(&i["seconds_ago"])
        ));
    }
    for sc in j["schedules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "schedule {} ({}): last run {} {}, next {}{}\n",
            s(&sc["name"]),
            s(&sc["when"]),
            s(&sc["last_run"]),
            s(&sc["last_result"]),
            s(&sc["next_run"]),
            if sc["quarantined"] == true {
                format!(
                    "; QUARANTINED since {}: {}",
                    s(&sc["quarantined_since"]),
                    s(&sc["quarantine_reason"])
                )
            } else {
                String::new()
            }
        ));
    }
    out
}
