//! The password endpoints of `idsync service` (API §10): write-back into
//! AD ([`writeback`], `POST /v1/password/reset`) and password sync from AD
//! to linked accounts ([`sync`], `POST /v1/password/changed`, with the
//! encrypted retry [`queue`]), served over HTTPS by [`crate::service::web`].
//! Every request passes [`guard`] (key, body, rate limit) and leaves one
//! [`audit`] line. The write-back's status is kept in the store setting
//! `password.writeback` for `password_writeback_status()`.

pub mod audit;
pub mod guard;
pub mod queue;
pub mod sync;
pub mod writeback;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::web::{self, Handler, Limits, Request, Response};
use crate::script::password::{self as decl, Endpoint, SyncDef, WRITEBACK_SETTING, WritebackDef};
use crate::store::StateStore;
use crate::sync::clock;

/// The words every policy rejection carries (the connector's
/// `set_password` says them; 422 is answered on them).
pub const POLICY_WORDS: &str = "password does not meet the password policy";

/// True when an error text is a password-policy rejection.
pub fn policy_rejection(text: &str) -> bool {
    text.contains(POLICY_WORDS)
}

/// What a handler decided: the answer and the audit line's result.
pub struct Outcome {
    status: u16,
    body: Json,
    result: String,
}

impl Outcome {
    fn new(status: u16, body: Json, result: &str) -> Outcome {
        Outcome {
            status,
            body,
            result: result.to_string(),
        }
    }

    fn error(status: u16, text: String) -> Outcome {
        Outcome {
            status,
            result: format!("error: {text}"),
            body: json!({ "error": text }),
        }
    }
}

/// What the endpoints share while the service runs.
pub struct State {
    store: Arc<dyn StateStore>,
    writeback: RwLock<Option<WritebackDef>>,
    sync: RwLock<Option<SyncDef>>,
    limiter: guard::Limiter,
    audit: audit::Audit,
    queue: Option<Arc<queue::Queue>>,
    endpoints: Vec<Endpoint>,
}

impl State {
    fn writeback_def(&self) -> Option<WritebackDef> {
        self.writeback
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sync_def(&self) -> Option<SyncDef> {
        self.sync.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

static CURRENT: Mutex<Option<Arc<State>>> = Mutex::new(None);

/// Starts what the service script declared (nothing when it declared
/// nothing): binds the endpoints, opens the queue, starts the retries.
/// A staging instance writes nothing, so it serves none of them.
pub fn start(store: Arc<dyn StateStore>, staging: bool) -> Result<(), String> {
    let d = decl::take_declared();
    if d.writeback.is_none() && d.sync.is_none() {
        return Ok(());
    }
    if staging {
        super::daemon::log(
            "staging: the password endpoints are not served (they would write passwords)",
        );
        return Ok(());
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    if let Some(w) = &d.writeback {
        endpoints.push(w.endpoint.clone());
    }
    if let Some(s) = &d.sync {
        match (&s.endpoint, &d.writeback) {
            (Some(e), _) => {
                if let Some(same) = endpoints.iter().find(|x| x.listen == e.listen) {
                    if same != e {
                        return Err(format!(
                            "password_sync and password_writeback both listen on {} with different TLS files",
                            e.listen
                        ));
                    }
                } else {
                    endpoints.push(e.clone());
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err(
                    "password_sync: give listen (with tls_cert and tls_key): there is no password_writeback endpoint to share".into(),
                );
            }
        }
    }
    let queue = match &d.sync {
        Some(s) => {
            let home = crate::config::home::idsync_home().map_err(|e| e.to_string())?;
            Some(Arc::new(queue::Queue::open(
                &home.join(queue::FILE),
                s.queue_key.clone(),
            )?))
        }
        None => None,
    };
    let state = Arc::new(State {
        store,
        writeback: RwLock::new(d.writeback),
        sync: RwLock::new(d.sync),
        limiter: guard::Limiter::default(),
        audit: audit::Audit::open()?,
        queue,
        endpoints: endpoints.clone(),
    });
    record_config(&state);
    for e in &endpoints {
        let tls = match &e.tls {
            Some((c, k)) => Some(web::tls_acceptor("password endpoint", c, k)?),
            None => None,
        };
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: Request| {
            let st = st.clone();
            Box::pin(async move { answer(&st, req).await })
        });
        let st = state.clone();
        let rejected: web::Rejected = Arc::new(
            move |peer: std::net::SocketAddr, status: u16, path: &str, why: &str| {
                let result = if path.is_empty() {
                    format!("refused by the HTTP layer: {why}")
                } else {
                    format!("refused by the HTTP layer: {path}: {why}")
                };
                st.audit.line(peer, "-", "", status, &result);
            },
        );
        let bound = web::serve_with(e.listen, tls, Limits::default(), handler, Some(rejected))
            .map_err(|err| format!("password endpoint: {err}"))?;
        super::daemon::log(&format!(
            "password endpoints on {}://{bound}: {}",
            if e.tls.is_some() { "https" } else { "http" },
            routes(&state)
        ));
    }
    if let Some(q) = &state.queue {
        if !q.is_empty() {
            super::daemon::log(&format!(
                "password sync: {} queued change(s) waiting from before",
                q.len()
            ));
        }
        let st = state.clone();
        crate::script::runtime::runtime().spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                sync::retry(&st).await;
            }
        });
    }
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    Ok(())
}

/// After SIGHUP re-read the script: the new definitions replace the old
/// when they listen where the old ones do (else the log says a restart is
/// needed, and the old ones stay).
pub fn reload() {
    let d = decl::take_declared();
    let cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(state) = cur else {
        if d.writeback.is_some() || d.sync.is_some() {
            super::daemon::log(
                "SIGHUP: password endpoints were added to the script; restart the service to serve them",
            );
        }
        return;
    };
    let mut wanted: Vec<&Endpoint> = Vec::new();
    wanted.extend(d.writeback.as_ref().map(|w| &w.endpoint));
    wanted.extend(d.sync.as_ref().and_then(|s| s.endpoint.as_ref()));
    if wanted.iter().any(|e| !state.endpoints.contains(e))
        || (d.sync.is_some() != state.queue.is_some())
    {
        super::daemon::log(
            "SIGHUP: the password endpoints' addresses, TLS files or password_sync changed; restart the service to apply; the old definitions stay",
        );
        return;
    }
    *state.writeback.write().unwrap_or_else(|p| p.into_inner()) = d.writeback;
    *state.sync.write().unwrap_or_else(|p| p.into_inner()) = d.sync;
    record_config(&state);
    super::daemon::log(&format!("SIGHUP: password endpoints: {}", routes(&state)));
}

fn routes(state: &State) -> String {
    let mut r = Vec::new();
    if let Some(w) = state.writeback_def() {
        r.push(format!(
            "POST /v1/password/reset (step {}, {})",
            w.step_name,
            if w.enabled { "enabled" } else { "DISABLED" }
        ));
    }
    if let Some(s) = state.sync_def() {
        r.push(format!(
            "POST /v1/password/changed (steps {})",
            s.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    r.join("; ")
}

/// Writes enabled / endpoint / step into the status setting, moving
/// `changed_ms` when one of them differs from what was stored.
fn record_config(state: &State) {
    let Some(w) = state.writeback_def() else {
        return;
    };
    let old = crate::script::service::get_json(state.store.as_ref(), WRITEBACK_SETTING)
        .unwrap_or(Json::Null);
    let endpoint = format!("{}/v1/password/reset", w.endpoint.url());
    let same = old["enabled"] == json!(w.enabled)
        && old["endpoint"] == json!(endpoint)
        && old["step"] == json!(w.step_name);
    let changed_ms = if same {
        old["changed_ms"].clone()
    } else {
        json!(clock::now_ms())
    };
    let v = json!({
        "enabled": w.enabled,
        "endpoint": endpoint,
        "step": w.step_name,
        "changed_ms": changed_ms,
        "last_request": old["last_request"],
    });
    if let Err(e) = state.store.put_setting(WRITEBACK_SETTING, &v.to_string()) {
        super::daemon::log(&format!(
            "password write-back: cannot record the status: {e}"
        ));
    }
}

fn record_request(state: &State, req: &Request, identity: &str, o: &Outcome) {
    let mut v = crate::script::service::get_json(state.store.as_ref(), WRITEBACK_SETTING)
        .unwrap_or_else(|| json!({}));
    v["last_request"] = json!({
        "time_ms": clock::now_ms(),
        "caller": req.peer.to_string(),
        "identity": identity,
        "status": o.status,
        "result": o.result,
    });
    let _ = state.store.put_setting(WRITEBACK_SETTING, &v.to_string());
}

async fn answer(state: &State, req: Request) -> Response {
    let kind = match req.path.as_str() {
        "/v1/password/reset" => "reset",
        "/v1/password/changed" => "changed",
        _ => {
            state.audit.line(
                req.peer,
                "-",
                "",
                404,
                &format!("refused: unknown path {} {}", req.method, req.path),
            );
            return Response::json(
                404,
                &json!({ "error": "not found: POST /v1/password/reset or /v1/password/changed" }),
            );
        }
    };
    if req.method != "POST" {
        state.audit.line(
            req.peer,
            kind,
            "",
            405,
            &format!("refused: method {}", req.method),
        );
        return Response::json(405, &json!({ "error": format!("only POST {}", req.path) }))
            .with_header("Allow", "POST");
    }
    let (wb, sy) = (state.writeback_def(), state.sync_def());
    let key = match kind {
        "reset" => wb.as_ref().map(|w| w.key.clone()),
        _ => sy.as_ref().map(|s| s.key.clone()),
    };
    let Some(key) = key else {
        state.audit.line(
            req.peer,
            kind,
            "",
            404,
            "refused: not declared by this service",
        );
        return Response::json(
            404,
            &json!({ "error": format!("{} is not declared by this service", req.path) }),
        );
    };
    let hint = guard::identity_hint(&req);
    if !guard::authorized(&req, &key) {
        let resp = guard::unauthorized();
        state
            .audit
            .line(req.peer, kind, &hint, 401, "refused: missing or wrong key");
        return resp;
    }
    let body = match guard::body(&req) {
        Ok(b) => b,
        Err(resp) => {
            state.audit.line(
                req.peer,
                kind,
                &hint,
                resp.status,
                "refused: malformed body",
            );
            return resp;
        }
    };
    let outcome = if !state.limiter.allow(kind, &body.identity) {
        Outcome::new(429, Json::Null, "refused: too many tries")
    } else {
        match (kind, &wb, &sy) {
            ("reset", Some(w), _) => {
                writeback::reset(state, w, &body.identity, &body.password).await
            }
            (_, _, Some(s)) => sync::changed(state, s, &body.identity, &body.password).await,
            _ => Outcome::error(404, "not declared".into()),
        }
    };
    let pw = body.password.expose();
    let result = audit::redact(&outcome.result, pw);
    state
        .audit
        .line(req.peer, kind, &body.identity, outcome.status, &result);
    if kind == "reset" {
        let o = Outcome::new(outcome.status, Json::Null, &result);
        record_request(state, &req, &body.identity, &o);
    }
    if outcome.status == 429 {
        return guard::too_many();
    }
    let text = audit::redact(&outcome.body.to_string(), pw);
    let body = serde_json::from_str(&text).unwrap_or(outcome.body);
    Response::json(outcome.status, &body)
}
