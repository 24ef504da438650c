//! Passwords in scripts (API §10): `password_writeback`, `password_sync`,
//! `password_writeback_status` and `new_writeback_key`. Like `serve`, a
//! script run normally only *records* the two endpoints' definitions;
//! `idsync service FILE` takes them ([`take_declared`]) and serves them
//! (`crate::service::password`). The service keeps what the status shows
//! in the state store under [`WRITEBACK_SETTING`], so a shell reads the
//! same record the service writes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rhai::{Array, Dynamic, FnPtr, Map};

use super::context;
use super::convert::{ScriptResult, rt_err};
use super::objects::Connection;
use super::sync_api::Step;
use crate::connector::Connector;
use crate::model::{Entry, Secret};
use crate::sync::clock;
use crate::sync::rules::StepDef;

/// The setting holding the write-back's status (JSON: enabled, endpoint,
/// step, changed_ms, last request).
pub const WRITEBACK_SETTING: &str = "password.writeback";

/// The shortest key accepted (a `new_writeback_key()` is 43 characters).
pub const MIN_KEY_LEN: usize = 16;

/// A password transformation: `|pw, e| ...` (the new password and the AD
/// source entry) to the password a target gets.
pub type Transform = Arc<dyn Fn(&str, &Entry) -> Result<String, String> + Send + Sync>;

/// Where an endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub listen: SocketAddr,
    /// PEM certificate chain and key; `None` = plain HTTP (loopback only).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Endpoint {
    /// `https://ADDR` or `http://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.listen
        )
    }
}

/// One `password_writeback(...)`.
#[derive(Clone)]
pub struct WritebackDef {
    /// The step whose links find the AD account.
    pub step_name: String,
    /// The step itself when given as a value: its source resolves
    /// identities and its scope is checked; a name alone means anchors only.
    pub step: Option<Arc<StepDef>>,
    /// The AD connection the password is set on.
    pub ad: Arc<dyn Connector>,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// The write-back key callers send as `Authorization: Bearer`.
    pub key: Secret,
    /// False: every authenticated request gets 403.
    pub enabled: bool,
}

/// One `password_sync(...)`.
#[derive(Clone)]
pub struct SyncDef {
    /// The AD connection where changes are captured.
    pub source: Arc<dyn Connector>,
    /// The steps (with `source` as their source) whose links get the password.
    pub steps: Vec<Arc<StepDef>>,
    /// Optional transformation per target.
    pub transform: Option<Transform>,
    /// The key callers send as `Authorization: Bearer`.
    pub key: Secret,
    /// The key the retry queue is encrypted with.
    pub queue_key: Secret,
    /// Its own endpoint; `None` = the write-back's.
    pub endpoint: Option<Endpoint>,
    /// A queued push older than this is dropped.
    pub max_age: Duration,
}

/// What a script declared.
#[derive(Clone, Default)]
pub struct Declared {
    /// The write-back endpoint.
    pub writeback: Option<WritebackDef>,
    /// Password sync.
    pub sync: Option<SyncDef>,
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

/// True when a script declared a password endpoint (a service script then
/// needs no schedule).
pub fn declared_any() -> bool {
    let g = DECLARED.lock().unwrap_or_else(|p| p.into_inner());
    g.as_ref()
        .is_some_and(|d| d.writeback.is_some() || d.sync.is_some())
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

fn connection(opts: &Map, key: &str, what: &str) -> ScriptResult<Arc<dyn Connector>> {
    match opts.get(key) {
        Some(v) if v.is::<Connection>() => Ok(v.clone().cast::<Connection>().0),
        Some(v) => Err(rt_err(format!(
            "{what}: {key} must be a connection (connect_ldap(...)), not {}",
            v.type_name()
        ))),
        None => Err(rt_err(format!("{what}: give {key}: the connection"))),
    }
}

/// A key option: a secret (never a plain string), long enough.
fn key_secret(opts: &Map, key: &str, what: &str) -> ScriptResult<Secret> {
    let s = match opts.get(key) {
        Some(v) if v.is::<Secret>() => v.clone().cast::<Secret>(),
        Some(_) => {
            return Err(rt_err(format!(
                "{what}: {key} must be a secret reference: {key}: secret(\"WB_KEY\") (a key written in the script would end up in files and history)"
            )));
        }
        None => {
            return Err(rt_err(format!(
                "{what}: give {key}: secret(\"...\") (new_writeback_key() makes a key)"
            )));
        }
    };
    if s.expose().chars().count() < MIN_KEY_LEN {
        return Err(rt_err(format!(
            "{what}: {key} {s} is too short (at least {MIN_KEY_LEN} characters; new_writeback_key() makes a good one)"
        )));
    }
    Ok(s)
}

/// listen + tls_cert + tls_key; `None` when `listen` is absent.
fn endpoint(opts: &Map, what: &str) -> ScriptResult<Option<Endpoint>> {
    let cert = text(opts, "tls_cert", what)?;
    let key = text(opts, "tls_key", what)?;
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        _ => {
            return Err(rt_err(format!(
                "{what}: give both tls_cert and tls_key (PEM files), or neither (loopback only)"
            )));
        }
    };
    let Some(listen) = text(opts, "listen", what)? else {
        if tls.is_some() {
            return Err(rt_err(format!(
                "{what}: tls_cert and tls_key need listen: \"0.0.0.0:8443\""
            )));
        }
        return Ok(None);
    };
    let listen = check_listen(what, &listen, tls.is_some()).map_err(rt_err)?;
    Ok(Some(Endpoint { listen, tls }))
}

/// A listen address: loopback always, anything else only with TLS (the
/// endpoints carry keys and passwords).
pub fn check_listen(what: &str, addr: &str, tls: bool) -> Result<SocketAddr, String> {
    let a: SocketAddr = addr.parse().map_err(|_| {
        format!("{what}: listen {addr:?} is not an address and port such as \"127.0.0.1:8443\"")
    })?;
    if !tls && !a.ip().is_loopback() {
        return Err(format!(
            "{what}: refusing to listen on {addr} without TLS: only a loopback address (127.0.0.1, ::1) is served in plain HTTP; give tls_cert and tls_key"
        ));
    }
    Ok(a)
}

fn transform(f: FnPtr) -> ScriptResult<Transform> {
    let (engine, ast) = context::eval_env()?;
    Ok(Arc::new(move |pw: &str, e: &Entry| {
        let v = f
            .call::<Dynamic>(
                &engine,
                &ast,
                (Dynamic::from(pw.to_string()), Dynamic::from(e.clone())),
            )
            .map_err(|err| format!("transform: {}", err.unwrap_inner()))?;
        if v.is::<Secret>() {
            return Ok(v.cast::<Secret>().expose().to_string());
        }
        v.into_string()
            .map_err(|t| format!("transform: gave a {t}, not a string"))
    }))
}

fn writeback_def(opts: &Map) -> ScriptResult<WritebackDef> {
    let what = "password_writeback";
    check_keys(
        what,
        opts,
        &[
            "step", "ad", "listen", "tls_cert", "tls_key", "key", "enabled",
        ],
    )?;
    let (step_name, step) = match opts.get("step") {
        Some(v) if v.is::<Step>() => {
            let s = v.clone().cast::<Step>().0;
            (s.name.clone(), Some(s))
        }
        Some(v) if v.is_string() => (v.to_string(), None),
        _ => {
            return Err(rt_err(format!(
                "{what}: give step: the sync step (or its name) whose links lead to the AD accounts"
            )));
        }
    };
    let ad = connection(opts, "ad", what)?;
    if ad.flavor() != "ad" {
        return Err(rt_err(format!(
            "{what}: ad {} is a {} connection, not Active Directory",
            ad.describe(),
            ad.flavor()
        )));
    }
    let endpoint = endpoint(opts, what)?
        .ok_or_else(|| rt_err(format!("{what}: give listen: \"0.0.0.0:8443\" (with tls_cert and tls_key) or a loopback address")))?;
    let enabled = match opts.get("enabled") {
        None => true,
        Some(v) => v
            .as_bool()
            .map_err(|_| rt_err(format!("{what}: enabled must be true or false")))?,
    };
    Ok(WritebackDef {
        step_name,
        step,
        ad,
        endpoint,
        key: key_secret(opts, "key", what)?,
        enabled,
    })
}

fn sync_def(opts: &Map) -> ScriptResult<SyncDef> {
    let what = "password_sync";
    check_keys(
        what,
        opts,
        &[
            "source",
            "steps",
            "transform",
            "key",
            "queue_key",
            "listen",
            "tls_cert",
            "tls_key",
            "max_age",
        ],
    )?;
    let source = connection(opts, "source", what)?;
    let list: Array = match opts.get("steps") {
        Some(v) if v.is_array() => v.clone().into_array().unwrap_or_default(),
        Some(v) if v.is::<Step>() => vec![v.clone()],
        _ => return Err(rt_err(format!("{what}: give steps: [step, ...]"))),
    };
    let mut steps = Vec::new();
    for v in list {
        let Some(s) = v.clone().try_cast::<Step>() else {
            return Err(rt_err(format!(
                "{what}: steps: {v} is not a step: give the step values (let s = sync_step(...); steps: [s]); a name alone does not say which connection to write to"
            )));
        };
        let s = s.0;
        if !same(&s.source, &source) {
            return Err(rt_err(format!(
                "{what}: step {}'s source is {}, not the source given ({})",
                s.name,
                s.source.describe(),
                source.describe()
            )));
        }
        steps.push(s);
    }
    if steps.is_empty() {
        return Err(rt_err(format!("{what}: steps names no step")));
    }
    let transform = match opts.get("transform") {
        None => None,
        Some(v) => match v.clone().try_cast::<FnPtr>() {
            Some(f) => Some(transform(f)?),
            None => {
                return Err(rt_err(format!(
                    "{what}: transform must be a closure |pw, e| ..."
                )));
            }
        },
    };
    let max_age = match text(opts, "max_age", what)? {
        None => Duration::from_secs(7 * 86_400),
        Some(t) => crate::script::service::parse_duration(&t)
            .map_err(|e| rt_err(format!("{what}: max_age: {e}")))?,
    };
    Ok(SyncDef {
        source,
        steps,
        transform,
        key: key_secret(opts, "key", what)?,
        queue_key: key_secret(opts, "queue_key", what)?,
        endpoint: endpoint(opts, what)?,
        max_age,
    })
}

/// The same connection object.
fn same(a: &Arc<dyn Connector>, b: &Arc<dyn Connector>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// A fresh random key: 32 random bytes, base64url without padding.
pub fn fresh_key() -> String {
    use chacha20poly1305::aead::Generate;
    let bytes = <[u8; 32]>::generate();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The write-back's status as the store holds it.
pub fn status_json(store: &dyn crate::store::StateStore) -> serde_json::Value {
    let v = crate::script::service::get_json(store, WRITEBACK_SETTING);
    let Some(v) = v else {
        return serde_json::json!({
            "enabled": false, "endpoint": null, "step": null, "last_changed": null,
            "last_request": null, "note": "write-back has never been started by a service on this store"
        });
    };
    let iso = |x: &serde_json::Value| x.as_i64().map(clock::iso);
    let last = &v["last_request"];
    serde_json::json!({
        "enabled": v["enabled"],
        "endpoint": v["endpoint"],
        "step": v["step"],
        "last_changed": iso(&v["changed_ms"]),
        "last_request": if last.is_null() { serde_json::Value::Null } else {
            serde_json::json!({
                "time": iso(&last["time_ms"]),
                "caller": last["caller"],
                "identity": last["identity"],
                "result": last["result"],
                "status": last["status"],
            })
        },
    })
}

/// Password bindings.
#[rhai::export_module]
pub mod password_api {
    use super::*;

    /// Declares the password write-back endpoint for `idsync service`:
    /// `POST /v1/password/reset` with `{"identity", "password"}` and
    /// `Authorization: Bearer <key>`. The identity is found through the
    /// links of `step` (a step value: by source anchor, or as the step's
    /// source knows it — a CSV key, a UPN, a DN; a step name: by source
    /// anchor only), and the password is set on the linked account with
    /// `ad.set_password` (unicodePwd, LDAPS/StartTLS only). Options: `step`,
    /// `ad`, `listen` (anything but loopback only with `tls_cert` and
    /// `tls_key`, PEM files), `key: secret("WB_KEY")`, `enabled: false` to
    /// answer 403. Answers 200, 422 (the domain's policy text), 404, 403,
    /// 401, 429 (more than 5 tries for one identity in 5 minutes). Outside
    /// `idsync service` it only records.
    ///
    /// Example:
    /// ```rhai
    /// password_writeback(#{ step: users, ad: ad, listen: "0.0.0.0:8443", tls_cert: "/etc/idsync/tls.crt", tls_key: "/etc/idsync/tls.key", key: secret("WB_KEY") })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn password_writeback(opts: Map) -> ScriptResult<Map> {
        let def = writeback_def(&opts)?;
        let mut m = Map::new();
        m.insert("endpoint".into(), def.endpoint.url().into());
        m.insert("step".into(), def.step_name.clone().into());
        m.insert("enabled".into(), def.enabled.into());
        with_declared(|d| d.writeback = Some(def));
        Ok(m)
    }

    /// Declares password sync for `idsync service`: `POST
    /// /v1/password/changed` with `{"identity", "password"}` (identity: the
    /// AD user's objectGUID, sAMAccountName or DN on `source`) and
    /// `Authorization: Bearer <key>` sets the password on every account
    /// linked to that user by `steps` (step values whose source is
    /// `source`), through each target's `set_password` (OpenLDAP: Password
    /// Modify; AD: unicodePwd; Entra: passwordProfile). `transform: |pw, e|
    /// ...` gives the password per target (`e` is the AD entry). A push that
    /// fails because the target is unreachable is queued, encrypted with
    /// `queue_key`, retried with backoff and dropped after `max_age`
    /// (default "7d"). It listens on the write-back's endpoint unless it
    /// has its own `listen` (with `tls_cert`, `tls_key`).
    ///
    /// Example:
    /// ```rhai
    /// password_sync(#{ source: ad, steps: [users], transform: |pw, e| pw, key: secret("WB_KEY"), queue_key: secret("PWQ_KEY") })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn password_sync(opts: Map) -> ScriptResult<Map> {
        let def = sync_def(&opts)?;
        let mut m = Map::new();
        m.insert(
            "steps".into(),
            def.steps
                .iter()
                .map(|s| Dynamic::from(s.name.clone()))
                .collect::<Array>()
                .into(),
        );
        m.insert(
            "endpoint".into(),
            def.endpoint
                .as_ref()
                .map(|e| Dynamic::from(e.url()))
                .unwrap_or_else(|| Dynamic::from("(the write-back's)")),
        );
        with_declared(|d| d.sync = Some(def));
        Ok(m)
    }

    /// The write-back as the service last set it (read from the state
    /// store): `enabled`, `endpoint`, `step`, `last_changed` (when one of
    /// these last changed), `last_request` (time, caller, identity, result).
    ///
    /// Example:
    /// ```rhai
    /// password_writeback_status().enabled
    /// ```
    #[rhai_fn(return_raw)]
    pub fn password_writeback_status() -> ScriptResult<Map> {
        let store = context::store()?;
        let j = status_json(store.as_ref());
        let d: Dynamic = rhai::serde::to_dynamic(&j).map_err(|e| rt_err(e.to_string()))?;
        Ok(d.try_cast::<Map>().unwrap_or_default())
    }

    /// A fresh random write-back key (32 random bytes, base64url). It is
    /// shown this once and stored nowhere: put it in the service's
    /// environment (read with `secret("WB_KEY")`) and give it to the caller.
    ///
    /// Example:
    /// ```rhai
    /// let k = new_writeback_key();
    /// ```
    pub fn new_writeback_key() -> String {
        fresh_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_listen("x", "127.0.0.1:8443", false).is_ok());
        assert!(check_listen("x", "[::1]:8443", false).is_ok());
        assert!(check_listen("x", "0.0.0.0:8443", true).is_ok());
        let e = check_listen("x", "0.0.0.0:8443", false).unwrap_err();
        assert!(e.contains("without TLS"), "{e}");
        assert!(check_listen("x", "nonsense", true).is_err());
    }

    #[test]
    fn keys_are_random_and_long() {
        let (a, b) = (fresh_key(), fresh_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
