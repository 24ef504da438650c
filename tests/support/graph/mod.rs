//! A stateful stand-in for Microsoft Graph and the Entra ID v2.0 token endpoint: a fake
//! Entra tenant ("Contoso") for the integration tests of idsync's Graph client.
//!
//! It follows `/work/shared/reference/graph-and-sql.md` §2.3 ("Behaviours the fake must
//! reproduce") point by point, and the Graph semantics of §1 behind them:
//!
//! * token endpoint `POST {url}/{tenant}/oauth2/v2.0/token` (client credentials, form only,
//!   `https://graph.microsoft.com/.default`), AAD-shaped errors; tokens expire by the fake
//!   clock and can be revoked (points 1–3);
//! * `/v1.0/users`, `/groups`, `/servicePrincipals`: `$select`, `$filter`, `$top`, `$count`,
//!   absolute nextLinks with opaque `$skiptoken`s, empty pages, advanced-query rules (4–6);
//! * `/v1.0/users/delta`, `/groups/delta` over a change log with sequence numbers: removals,
//!   `members@delta` split across pages, replays, `$deltatoken=latest`, `Prefer:
//!   return=minimal`, 7-day token expiry, tenant reset → 410 (7–12);
//! * writes (POST/PATCH/DELETE users and groups, member `$ref`s) and directory roles
//!   (13–17), plus the recycle bin (`/v1.0/directory/deletedItems`, 30 days by the fake
//!   clock); Graph error bodies and request ids (18); throttling and injected failures (19);
//!   a deterministic clock and id generator (20).
//!
//! The server runs on its own thread with its own tokio runtime on `127.0.0.1:<free port>`,
//! so it serves sync tests, `#[tokio::test]`s and child `idsync` processes alike; it stops
//! when the [`GraphFake`] is dropped. All state sits in one `Mutex` shared by the handlers
//! and the [`GraphFake`] methods, which seed and inspect it like an administrator would.
//!
//! What the fake notices about the client (an early retry, a rebuilt nextLink, a
//! non-`.default` scope, a missing `ConsistencyLevel` on a later page, a blind replay of a
//! create after a 503) is listed by [`GraphFake::violations`]; tests should assert it is
//! empty.

mod collections;
mod delta;
mod filter;
mod http;
mod paging;
mod roles;
mod router;
mod schema;
mod state;
mod throttle;
mod token;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use router::{Shared, lock};
use schema::Kind;
use state::{CLIENT_ID, CLIENT_SECRET, State, Status, TENANT_DOMAIN, TENANT_ID};

/// Template id of Global Administrator.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
/// Template id of Directory Writers.
pub const DIRECTORY_WRITERS: &str = "9360feb5-f418-4baa-8175-e2a00bac4301";
/// Template id of Directory Readers.
pub const DIRECTORY_READERS: &str = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b";
/// Template id of Directory Synchronization Accounts.
pub const DIRECTORY_SYNCHRONIZATION_ACCOUNTS: &str = "d29b2b05-8046-44ba-8758-1e26182fcf32";
/// Template id of User Administrator.
pub const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
/// Template id of the implicit User role (cannot be activated).
pub const USER_ROLE: &str = "a0b1b346-4d3e-4e8b-98f8-753987be4970";
/// Template id of the implicit Guest User role (cannot be activated).
pub const GUEST_USER_ROLE: &str = "10dae51f-b6af-4016-8d66-8c2a99b929b3";
/// Template id of the implicit Restricted Guest User role (cannot be activated).
pub const RESTRICTED_GUEST_USER_ROLE: &str = "2af84b1e-32c8-42b7-82bc-daa82404023b";
/// The only scope the token endpoint accepts for Graph (also
/// `00000003-0000-0000-c000-000000000000/.default`).
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// arrival time on the fake clock
    pub at: SystemTime,
    /// `GET`, `POST`, …
    pub method: String,
    /// path and query exactly as received
    pub path_and_query: String,
    /// the status the fake answered
    pub status: u16,
    /// request headers, lower-case names; `Authorization` redacted to `Bearer <n>` (n = the
    /// token's issue number, `<unknown>` for a token the fake never issued) or
    /// `Basic <redacted>`
    pub headers: Vec<(String, String)>,
    /// request body (lossy UTF-8); a form field `client_secret` is logged as `<redacted>`
    pub body: String,
}

impl Request {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which requests a [`Throttle`] or [`Fail`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// GET requests
    Read,
    /// POST, PATCH, DELETE
    Write,
    /// both
    Any,
}

/// A throttling rule (point 19). The token endpoint is never throttled.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// requests the rule counts
    pub scope: Scope,
    /// let this many matching requests pass first
    pub after: usize,
    /// then reject this many
    pub count: usize,
    /// 429 (`TooManyRequests` + `x-ms-throttle-*` headers) or 503 (`serviceNotAvailable`)
    pub status: u16,
    /// `Retry-After` seconds; `None` sends no header (and opens no window)
    pub retry_after: Option<u64>,
}

/// A one-shot raw failure for the next matching request: sent after the bearer-token check
/// but before throttling and any processing (the request changes nothing). The token
/// endpoint only matches when `path_contains` is non-empty and occurs in its path (e.g.
/// `"/oauth2/"`).
#[derive(Debug, Clone)]
pub struct Fail {
    /// methods it applies to
    pub scope: Scope,
    /// a substring of the path and query ("" matches every Graph request)
    pub path_contains: String,
    /// status to answer
    pub status: u16,
    /// `Content-Type` to answer with, e.g. `application/json` or `text/html`
    pub content_type: String,
    /// body to answer with, e.g. `{not json`
    pub body: String,
}

/// A running fake tenant. Stopped on drop.
pub struct GraphFake {
    shared: Shared,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GraphFake {
    /// Starts the fake on `127.0.0.1:<free port>` on its own thread with its own tokio
    /// runtime, so it works from sync tests, `#[tokio::test]`s and child processes.
    pub fn start() -> GraphFake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("graph fake: bind");
        listener
            .set_nonblocking(true)
            .expect("graph fake: nonblocking");
        let addr = listener.local_addr().expect("graph fake: local addr");
        let shared: Shared =
            std::sync::Arc::new(std::sync::Mutex::new(State::new(format!("http://{addr}"))));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app_state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("graph-fake-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("graph fake: runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("graph fake: listener");
                    let app = axum::Router::new()
                        .fallback(router::serve)
                        .with_state(app_state);
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r {
                                eprintln!("graph fake: server error: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // open keep-alive connections die with the runtime
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("graph fake: spawn thread");
        GraphFake {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash). Graph is under `{url}/v1.0/…`, the token
    /// endpoint is `{url}/{tenant}/oauth2/v2.0/token`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{url}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.url())
    }

    /// `{url}/{tenant_id}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url(), TENANT_ID)
    }

    /// The tenant's GUID (fixed).
    pub fn tenant_id(&self) -> String {
        TENANT_ID.to_owned()
    }

    /// `contoso.onmicrosoft.com`; the token endpoint accepts it or the GUID, anything else
    /// gives 400 AADSTS90002.
    pub fn tenant_domain(&self) -> String {
        TENANT_DOMAIN.to_owned()
    }

    /// App (client) id of the registered app (fixed).
    pub fn client_id(&self) -> String {
        CLIENT_ID.to_owned()
    }

    /// The app's client secret (fixed).
    pub fn client_secret(&self) -> String {
        CLIENT_SECRET.to_owned()
    }

    /// Id of the app's own service principal (appId = [`GraphFake::client_id`]).
    pub fn app_service_principal_id(&self) -> String {
        self.st().app_sp.clone()
    }

    /// Adds a domain to the verified ones (`contoso.onmicrosoft.com`, `contoso.com`): a
    /// userPrincipalName in Graph POST/PATCH must use a verified domain.
    pub fn add_verified_domain(&self, domain: &str) {
        self.st().verified_domains.push(domain.to_owned());
    }

    fn seed(&self, kind: Kind, props: Value) -> String {
        let Value::Object(map) = props else {
            panic!("graph fake: seed props must be a JSON object, got {props}");
        };
        let mut st = self.st();
        if kind == Kind::User
            && let Some(upn) = map.get("userPrincipalName").and_then(Value::as_str)
        {
            assert!(
                st.upn_holder(upn, None).is_none(),
                "graph fake: add_user: userPrincipalName {upn} already exists"
            );
        }
        st.create(kind, map)
    }

    /// Adds a user (no validation beyond a unique userPrincipalName; any property may be set,
    /// including read-only ones like `onPremisesSecurityIdentifier`). Defaults:
    /// `accountEnabled: true`, `userType: "Member"`, `businessPhones: []`, `mailNickname`
    /// from the UPN, `createdDateTime`. Returns the new id.
    pub fn add_user(&self, props: Value) -> String {
        self.seed(Kind::User, props)
    }

    /// Adds a group. `groupTypes` containing `"Unified"` makes a Microsoft 365 group
    /// (soft-deleted; gets a `mail`), anything else a security group (hard-deleted).
    /// Defaults: `securityEnabled: true`, `mailEnabled: false`, `groupTypes: []`,
    /// `mailNickname` from the displayName. Returns the new id.
    pub fn add_group(&self, props: Value) -> String {
        self.seed(Kind::Group, props)
    }

    /// Adds a service principal (`appId`, `displayName`). Returns the new id.
    pub fn add_service_principal(&self, props: Value) -> String {
        self.seed(Kind::ServicePrincipal, props)
    }

    /// An administrator's edit: sets the properties (`null` clears one) and logs a change
    /// with the names whose value changed. Panics if `id` is unknown.
    pub fn update(&self, id: &str, patch: Value) {
        let Value::Object(map) = patch else {
            panic!("graph fake: update patch must be a JSON object");
        };
        let mut st = self.st();
        assert!(st.any(id).is_some(), "graph fake: update: no object {id}");
        st.update(id, &map);
    }

    /// Adds `member` to `group` (no-op if it already is one). Panics on unknown ids.
    pub fn add_member(&self, group: &str, member: &str) {
        let mut st = self.st();
        assert!(
            st.any(group).is_some_and(|g| g.kind == Kind::Group),
            "graph fake: add_member: no group {group}"
        );
        assert!(
            st.any(member).is_some(),
            "graph fake: add_member: no object {member}"
        );
        st.add_member(group, member);
    }

    /// Removes `member` from `group` (no-op if it is not one).
    pub fn remove_member(&self, group: &str, member: &str) {
        self.st().remove_member(group, member);
    }

    /// Moves an object to the recycle bin: delta shows `@removed: {"reason": "changed"}`;
    /// its memberships are hidden (groups log a member removal) until [`GraphFake::restore`].
    pub fn soft_delete(&self, id: &str) {
        assert!(
            self.st().soft_delete(id),
            "graph fake: soft_delete: no live object {id}"
        );
    }

    /// Deletes an object permanently: delta shows `@removed: {"reason": "deleted"}`.
    pub fn hard_delete(&self, id: &str) {
        assert!(
            self.st().hard_delete(id),
            "graph fake: hard_delete: no object {id}"
        );
    }

    /// Restores a soft-deleted object with its memberships; delta shows it as a plain object.
    pub fn restore(&self, id: &str) {
        assert!(
            self.st().restore(id),
            "graph fake: restore: {id} is not soft-deleted"
        );
    }

    /// The full stored object (every property ever set, including `passwordProfile` with its
    /// password); `None` once permanently deleted. A soft-deleted object is returned with a
    /// non-null `deletedDateTime`.
    pub fn object(&self, id: &str) -> Option<Value> {
        let st = self.st();
        let o = st.any(id).filter(|o| o.status != Status::Gone)?;
        Some(Value::Object(o.props.clone()))
    }

    /// Ids of all live objects of the users collection, in creation order.
    pub fn user_ids(&self) -> Vec<String> {
        self.st()
            .live_of(Kind::User)
            .map(|o| o.id.clone())
            .collect()
    }

    /// Ids of all live groups, in creation order.
    pub fn group_ids(&self) -> Vec<String> {
        self.st()
            .live_of(Kind::Group)
            .map(|o| o.id.clone())
            .collect()
    }

    /// Ids of the live members of `group`.
    pub fn members_of(&self, group: &str) -> Vec<String> {
        let st = self.st();
        match st.any(group) {
            Some(g) => st.visible_members(g),
            None => Vec::new(),
        }
    }

    /// The activated directory roles, as Graph returns them.
    pub fn active_roles(&self) -> Vec<Value> {
        self.st().roles.iter().map(|r| r.to_json()).collect()
    }

    /// Live member ids of the role with template `template_id` (empty if not activated).
    pub fn role_member_ids(&self, template_id: &str) -> Vec<String> {
        let st = self.st();
        match st.role(template_id) {
            Some(r) => st.role_members(r),
            None => Vec::new(),
        }
    }

    /// Seeds a role assignment: activates the role of `template_id` if needed and adds
    /// `member` (a user or service principal).
    pub fn assign_role(&self, template_id: &str, member: &str) {
        let mut st = self.st();
        assert!(
            state::template(template_id).is_some(),
            "graph fake: assign_role: unknown template {template_id}"
        );
        let member = st
            .live(member)
            .map(|o| o.id.clone())
            .unwrap_or_else(|| panic!("graph fake: assign_role: no object {member}"));
        let i = st.activate_role(template_id);
        if !st.roles[i].members.contains(&member) {
            st.roles[i].members.push(member);
        }
    }

    /// The fake clock: 2026-01-01T00:00:00Z + [`GraphFake::advance`]s + real elapsed time.
    pub fn now(&self) -> SystemTime {
        self.st().now()
    }

    /// Moves the fake clock forward (token expiry, delta token age, Retry-After windows,
    /// recycle bin: objects soft-deleted 30 days ago are then deleted permanently).
    pub fn advance(&self, d: Duration) {
        let mut st = self.st();
        st.clock.advance(d);
        st.purge_recycle_bin();
    }

    /// Lifetime of tokens issued from now on (default 3599 s); reported as `expires_in`.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.st().settings.token_lifetime = secs;
    }

    /// Revokes every token issued so far: they get 401 InvalidAuthenticationToken.
    pub fn revoke_tokens(&self) {
        let mut st = self.st();
        st.revoked_upto = st.tokens_issued;
    }

    /// Number of access tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.st().tokens_issued
    }

    /// Queues a throttling rule (evaluated in queue order; see [`Throttle`]).
    pub fn throttle(&self, t: Throttle) {
        self.st().throttles.push(throttle::Rule::new(t));
    }

    /// Queues a throttling rule whose rejections say `Retry-After` in decimal seconds
    /// (`wait` = 1.5 s sends `Retry-After: 1.5`, as Microsoft documents `2.128`); its
    /// window lasts exactly `wait`, and `t.retry_after` is ignored.
    pub fn throttle_fractional(&self, t: Throttle, wait: Duration) {
        self.st()
            .throttles
            .push(throttle::Rule::fractional(t, wait));
    }

    /// Queues a one-shot raw failure (see [`Fail`]).
    pub fn fail_next(&self, f: Fail) {
        self.st().fails.push(f);
    }

    /// Caps every server page (lists, members, delta) at `n` items, whatever `$top` says.
    pub fn set_page_size_cap(&self, n: usize) {
        self.st().settings.page_size_cap = Some(n.max(1));
    }

    /// Every `k`-th page of a list or delta round is empty but has a nextLink (0 = never;
    /// default 3).
    pub fn set_empty_page_every(&self, k: usize) {
        self.st().settings.empty_page_every = k;
    }

    /// Splits a group's `members@delta` into chunks of `n`, each on its own page with the
    /// group object repeated (default 20; 0 = never split).
    pub fn set_delta_members_per_page(&self, n: usize) {
        self.st().settings.delta_members_per_page = n;
    }

    /// When on, every delta page after the first non-empty one repeats the first item of the
    /// previous non-empty page (idempotency).
    pub fn set_delta_replay(&self, on: bool) {
        self.st().settings.delta_replay = on;
    }

    /// "Tenant reset": every delta token and delta skiptoken issued before now gets
    /// 410 Gone + `Location: <initial delta URL>` (code `resyncRequired`).
    pub fn tenant_reset(&self) {
        self.st().reset_gen += 1;
    }

    /// The `User-PasswordProfile.ReadWrite.All` permission (default false). PATCHing
    /// `passwordProfile` gives 403 Authorization_RequestDenied unless this is on AND the
    /// app's service principal holds User Administrator, Privileged Authentication
    /// Administrator or Global Administrator (see [`GraphFake::assign_role`] and
    /// [`GraphFake::app_service_principal_id`]), as §1.7 describes.
    pub fn set_password_permission(&self, on: bool) {
        self.st().settings.password_permission = on;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.st().requests.clone()
    }

    /// Client misbehaviour the fake noticed, in words (empty for a well-behaved client).
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }

    /// The current change-log sequence number (0 before any change).
    pub fn change_seq(&self) -> u64 {
        self.st().seq()
    }
}

impl Drop for GraphFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A reqwest client for talking to the fake: installs the ring crypto provider (reqwest is
/// built with `rustls-no-provider`) and ignores proxy variables.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}
