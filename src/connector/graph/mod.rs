//! Microsoft Entra ID through Microsoft Graph: users, groups, service
//! principals and contacts as entries (anchor = `id`), writes, membership,
//! delta rounds. The HTTP rules Graph documents (token, paging, throttling,
//! error bodies) live in `http` and `page`; directory roles and BackSync
//! are built on top of this in `crate::azure`.
//!
//! For the sync engine and `search`, a connection's "base" names the
//! collection (`users`, the default, `groups`, `servicePrincipals`,
//! `contacts`); an LDAP filter such as `(department=Sales)` is sent as
//! `$filter` where Graph can evaluate it and always checked here as well; a
//! filter that does not start with `(` is passed to Graph as OData.

mod convert;
mod create;
mod delta;
mod error;
mod http;
mod identity;
mod options;
mod page;

pub use http::STILL_REFUSED;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value as Json, json};

pub use convert::{json_values, to_entry};
pub use delta::{DeltaObject, DeltaRound};
pub use http::{Call, Clock, SystemClock};
pub use identity::{GROUP_PROPERTIES, USER_PROPERTIES, collection, default_select, is_guid};
pub use options::GraphOptions;
pub use page::{ListQuery, PageInfo, enc};

use self::convert::{is_boolean, property_json};
use self::create::{NewObject, new_object};
use self::http::{GraphHttp, Repeat};
use self::identity::{object_path, with_select};
use self::page::each_item;
use super::{Change, ChangeRound, Connector, Error, Result, SearchQuery, Sink, TestReport};
use crate::model::filter::Filter;
use crate::model::{Entry, Secret, Value};

/// A connection to one tenant's Microsoft Graph.
pub struct GraphConnector {
    http: GraphHttp,
    /// Collection of ids seen in reads ("users", "groups", ...), so writes
    /// by id need no lookup.
    kinds: Mutex<HashMap<String, &'static str>>,
}

impl GraphConnector {
    /// Signs in (so a wrong secret is reported at once) and returns the connection.
    pub async fn connect(opts: GraphOptions) -> Result<Self> {
        Self::connect_with_clock(opts, Arc::new(SystemClock::default())).await
    }

    /// As [`GraphConnector::connect`], with the clock the client waits on
    /// (tests pass one that records waits instead of sleeping).
    pub async fn connect_with_clock(opts: GraphOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        for (name, v) in [("tenant", &opts.tenant), ("client_id", &opts.client_id)] {
            if v.trim().is_empty() {
                return Err(Error::usage(format!("'{name}' is empty")));
            }
        }
        opts.check()?;
        if !(1..=999).contains(&opts.page_size) {
            return Err(Error::usage(format!(
                "page_size must be between 1 and 999 (Graph's limit), not {}",
                opts.page_size
            )));
        }
        let c = GraphConnector {
            http: GraphHttp::new(opts, clock)?,
            kinds: Mutex::new(HashMap::new()),
        };
        // Sign in now, so a wrong secret is reported at once (reading the
        // organization would need a permission a least-privilege app lacks).
        c.http.sign_in().await?;
        Ok(c)
    }

    /// The HTTP client (for the Entra functions built on this connection).
    pub fn http(&self) -> &GraphHttp {
        &self.http
    }

    /// The connection's options.
    pub fn options(&self) -> &GraphOptions {
        self.http.options()
    }

    /// The tenant's organization object (`GET /organization`).
    pub async fn organization(&self) -> Result<Json> {
        let url = self.http.url("organization");
        let j = self
            .http
            .send(&Call::get(url, "organization"))
            .await?
            .json("organization")?;
        j.get("value")
            .and_then(|v| v.get(0))
            .cloned()
            .ok_or_else(|| Error::Other("organization: Graph returned no organization".into()))
    }

    /// Lists a collection with `q`, streaming each object into `each`.
    pub async fn list(
        &self,
        collection: &str,
        q: &ListQuery,
        each: &mut (dyn FnMut(Json) -> Result<bool> + Send),
    ) -> Result<page::PageInfo> {
        let mut q = q.clone();
        if q.top.is_none() {
            q.top = Some(self.options().page_size);
        }
        let qs = q.query_string();
        let url = if qs.is_empty() {
            self.http.url(collection)
        } else {
            format!("{}?{qs}", self.http.url(collection))
        };
        let kind = self::collection(collection);
        let mut seen: Vec<String> = Vec::new();
        let what = format!("list {collection}");
        let info = each_item(&self.http, url, q.is_advanced(), &what, &mut |o| {
            if kind.is_some()
                && let Some(id) = o.get("id").and_then(Json::as_str)
            {
                seen.push(id.to_string());
            }
            each(o)
        })
        .await?;
        if let Some(k) = kind {
            self.remember(seen.into_iter(), k);
        }
        Ok(info)
    }

    /// GETs `path` (relative to the Graph base); `None` on 404.
    pub async fn get_json(&self, path: &str, what: &str) -> Result<Option<Json>> {
        let call = Call::get(self.http.url(path), what);
        let r = self.http.exchange(&call).await?;
        if r.status.as_u16() == 404 {
            return Ok(None);
        }
        if !r.status.is_success() {
            return Err(self.http.refusal(&call, &r));
        }
        Ok(Some(r.json(what)?))
    }

    /// Runs one delta round (see `delta::round`).
    pub async fn delta(
        &self,
        collection: &str,
        select: &[String],
        link: Option<&str>,
        latest: bool,
    ) -> Result<delta::DeltaRound> {
        let r = delta::round(&self.http, collection, select, link, latest).await?;
        if let Some(k) = self::collection(collection) {
            let ids = r
                .changed
                .iter()
                .filter_map(|o| o.object.get("id")?.as_str().map(str::to_string));
            self.remember(ids.collect::<Vec<_>>().into_iter(), k);
        }
        Ok(r)
    }

    /// Adds `member` (an id) to the `$ref` list at `path`; true when added,
    /// false when it was there already. Graph answers a duplicate with 400
    /// Request_BadRequest; membership is then read to tell a duplicate from
    /// another refusal, rather than trusting the message text.
    pub async fn add_ref(
        &self,
        path: &str,
        member_id: &str,
        what: &str,
        is_member: impl AsyncFnOnce() -> Result<bool>,
    ) -> Result<bool> {
        let body = json!({ "@odata.id": self.http.url(&format!("directoryObjects/{member_id}")) });
        let mut call = Call::with_body(Method::POST, self.http.url(path), what, body);
        call.repeat = Repeat::Safe;
        let r = self.http.exchange(&call).await?;
        if r.status.is_success() {
            return Ok(true);
        }
        if r.status.as_u16() == 400
            && error::error_code(&r.body).as_deref() == Some("Request_BadRequest")
            && is_member().await?
        {
            return Ok(false);
        }
        Err(self.http.refusal(&call, &r))
    }

    /// Ids of a group's direct members.
    async fn member_ids(&self, group_id: &str, what: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}?$select=id&$top={}",
            self.http.url(&format!("groups/{}/members", enc(group_id))),
            self.options().page_size
        );
        let mut out = Vec::new();
        each_item(&self.http, url, false, what, &mut |o| {
            if let Some(id) = o.get("id").and_then(Json::as_str) {
                out.push(id.to_string());
            }
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    async fn patch(&self, kind: &str, id: &str, body: Json, what: &str) -> Result<()> {
        let call = Call::with_body(
            Method::PATCH,
            self.http.url(&object_path(kind, id)),
            what,
            body,
        );
        self.http.send(&call).await.map(|_| ())
    }
}

/// What a search or sync scope's filter is to Graph.
enum ScopeFilter {
    /// No filter (or `(objectClass=*)`).
    All,
    /// An LDAP filter: evaluated here, and sent as `$filter` where it can be.
    Ldap(Filter),
    /// OData text, for Graph alone.
    OData(String),
}

fn scope_filter(text: &str) -> Result<ScopeFilter> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("(objectClass=*)") {
        Ok(ScopeFilter::All)
    } else if text.starts_with('(') {
        Filter::parse(text)
            .map(ScopeFilter::Ldap)
            .map_err(|e| Error::usage(e.to_string()))
    } else {
        Ok(ScopeFilter::OData(text.to_string()))
    }
}

/// The `$select` of a query: the attributes asked for (or the kind's
/// default list), plus those a local filter tests; empty = Graph's default.
fn scope_select(kind: &str, q: &SearchQuery, local: Option<&Filter>) -> Vec<String> {
    let mut select = match &q.attrs {
        Some(a) => a.clone(),
        None => default_select(kind),
    };
    if let Some(f) = local
        && !select.is_empty()
    {
        for a in f.attributes() {
            if !select.iter().any(|s| s.eq_ignore_ascii_case(&a))
                && !a.eq_ignore_ascii_case("objectClass")
            {
                select.push(a);
            }
        }
    }
    select
}

#[async_trait]
impl Connector for GraphConnector {
    fn kind(&self) -> &'static str {
        "graph"
    }

    fn describe(&self) -> String {
        let o = self.options();
        format!(
            "Microsoft Graph {} tenant {} as app {}",
            o.graph_url, o.tenant, o.client_id
        )
    }

    fn flavor(&self) -> String {
        "entra".into()
    }

    /// A step creating in a collection (`groups`) joins and reads there.
    fn create_parent_is_collection(&self) -> bool {
        true
    }

    /// Entra groups have no enabled state; users and the rest can be
    /// disabled (`accountEnabled`).
    fn can_disable_in(&self, base: Option<&str>) -> bool {
        !base.is_some_and(|b| b.eq_ignore_ascii_case("groups"))
    }

    /// `members`: object ids (`members@odata.bind`).
    fn member_attribute(&self) -> &'static str {
        "members"
    }

    fn members_are_anchors(&self) -> bool {
        true
    }

    /// A create names the collection, not the object.
    fn create_name_finds_object(&self) -> bool {
        false
    }

    fn profile(&self) -> Result<Json> {
        let o = self.options();
        let Some(secret_ref) = o.client_secret.reference() else {
            return Err(Error::usage(
                "the client secret was typed as text; use secret(\"ENV_NAME\") so that only its reference is saved",
            ));
        };
        Ok(json!({
            "tenant": o.tenant,
            "client_id": o.client_id,
            "client_secret": secret_ref,
            "authority_url": o.authority_url,
            "graph_url": o.graph_url,
            "scope": o.scope,
            "ca_file": o.ca_file,
            "verify": o.verify,
            "timeout": o.timeout.as_secs_f64(),
            "max_wait": o.max_wait.as_secs_f64(),
            "page_size": o.page_size,
        }))
    }

    async fn test(&self) -> Result<TestReport> {
        let org = self.organization().await?;
        let o = self.options();
        let mut details = vec![
            ("graph_url".to_string(), o.graph_url.clone()),
            ("authority_url".to_string(), o.authority_url.clone()),
        ];
        if let Some(n) = org.get("displayName").and_then(Json::as_str) {
            details.push(("organization".into(), n.to_string()));
        }
        Ok(TestReport {
            reachable: true,
            bound: true,
            bind_identity: format!("app {}", o.client_id),
            vendor: "Microsoft Graph".into(),
            flavor: "entra".into(),
            naming_contexts: org
                .get("id")
                .and_then(Json::as_str)
                .map(|s| vec![s.to_string()])
                .unwrap_or_default(),
            details,
        })
    }

    async fn search(&self, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()> {
        let base = q.base.as_deref().unwrap_or("users");
        let kind = collection(base).ok_or_else(|| {
            Error::usage(format!(
                "Graph base '{base}' is not a collection (users, groups, servicePrincipals, contacts)"
            ))
        })?;
        let (odata, local) = match scope_filter(&q.filter)? {
            ScopeFilter::All => (None, None),
            ScopeFilter::Ldap(f) => (f.to_odata(&is_boolean), Some(f)),
            ScopeFilter::OData(t) => (Some(t), None),
        };
        let mut select = scope_select(kind, q, local.as_ref());
        if !select.is_empty() && !select.iter().any(|s| s == "id") {
            select.insert(0, "id".into());
        }
        // Graph lists no members with a group: asked for, they are read per
        // group (`/groups/{id}/members`), after the list.
        let with_members = kind == "groups" && {
            let before = select.len();
            select.retain(|a| {
                !a.eq_ignore_ascii_case("members") && !a.eq_ignore_ascii_case("member")
            });
            select.len() != before
        };
        let lq = ListQuery {
            select,
            filter: odata,
            top: q.limit.map(|l| l.clamp(1, 999) as u32),
            ..ListQuery::default()
        };
        if with_members {
            let mut groups: Vec<Entry> = Vec::new();
            self.list(kind, &lq, &mut |o| {
                let e = to_entry(&o);
                if local.as_ref().is_none_or(|f| f.matches(&e)) {
                    groups.push(e);
                }
                Ok(q.limit.is_none_or(|l| groups.len() < l))
            })
            .await?;
            for mut g in groups {
                let id = g.anchor.clone().unwrap_or_default();
                let ids = self.member_ids(&id, &id).await?;
                g.set("members", ids.into_iter().map(Value::Text).collect());
                if !sink(g)? {
                    break;
                }
            }
            return Ok(());
        }
        let mut left = q.limit;
        let mut result = Ok(());
        self.list(kind, &lq, &mut |o| {
            let e = to_entry(&o);
            if let Some(f) = &local
                && !f.matches(&e)
            {
                return Ok(true);
            }
            match sink(e) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(err) => {
                    result = Err(err);
                    return Ok(false);
                }
            }
            if let Some(n) = left.as_mut() {
                *n -= 1;
                if *n == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        result
    }

    async fn changes(
        &self,
        q: &SearchQuery,
        cursor: Option<&str>,
        sink: &mut Sink<'_>,
    ) -> Result<Option<ChangeRound>> {
        let base = q.base.as_deref().unwrap_or("users");
        let Some(kind) = collection(base).filter(|k| *k == "users" || *k == "groups") else {
            return Ok(None);
        };
        // Delta takes no filter: an LDAP filter is applied here; an OData
        // one cannot be, so such a step reads in full.
        let local = match scope_filter(&q.filter)? {
            ScopeFilter::All => None,
            ScopeFilter::Ldap(f) => Some(f),
            ScopeFilter::OData(_) => return Ok(None),
        };
        let mut select = scope_select(kind, q, local.as_ref());
        select.retain(|s| s != "id" && !s.eq_ignore_ascii_case("members"));
        let r = self.delta(kind, &select, cursor, false).await?;
        let mut removed: Vec<String> = r.removed.iter().map(|(id, _)| id.clone()).collect();
        for o in &r.changed {
            let e = to_entry(&Json::Object(o.object.clone()));
            if local.as_ref().is_some_and(|f| !f.matches(&e)) {
                removed.extend(e.anchor.clone());
                continue;
            }
            if !sink(e)? {
                break;
            }
        }
        Ok(Some(ChangeRound {
            full: r.full,
            removed,
            present: None,
            cursor: r.delta_link,
            note: r.restarted,
        }))
    }

    async fn attribute_names(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = USER_PROPERTIES
            .iter()
            .chain(GROUP_PROPERTIES)
            .map(|s| s.to_string())
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    async fn get(&self, identity: &str) -> Result<Option<Entry>> {
        let Some((kind, o)) = self.find(identity).await? else {
            return Ok(None);
        };
        // `find` reads an id through directoryObjects or a default set;
        // read the object again with its kind's full list when needed.
        let id = o
            .get("id")
            .and_then(Json::as_str)
            .unwrap_or(identity)
            .to_string();
        let full = if kind == "users" || kind == "groups" {
            let path = with_select(object_path(kind, &id), kind);
            self.get_json(&path, identity).await?.unwrap_or(o)
        } else {
            o
        };
        Ok(Some(to_entry(&full)))
    }

    async fn create(&self, dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        let NewObject {
            kind,
            body,
            members,
            what,
        } = new_object(dn, attrs)?;
        let call = Call::with_body(Method::POST, self.http.url(kind), &what, Json::Object(body));
        let o = self.http.send(&call).await?.json(&what)?;
        let id = o
            .get("id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if !id.is_empty() {
            self.remember(std::iter::once(id.clone()), kind);
        }
        // Members of a new group are added one by one once it exists; a
        // failure leaves the group created (and linked) and is retried.
        let mut failed = Vec::new();
        for m in &members {
            if let Err(e) = self.add_member(&id, m).await {
                failed.push(format!("adding member {m} failed: {e}"));
            }
        }
        if !failed.is_empty() {
            return Err(Error::Partial {
                object: what,
                anchor: id,
                cause: failed.join("; "),
            });
        }
        Ok(to_entry(&o))
    }

    async fn modify(&self, identity: &str, changes: &[Change]) -> Result<()> {
        let (kind, id) = self.locate(identity).await?;
        let mut body = serde_json::Map::new();
        let mut members: Vec<(bool, String)> = Vec::new();
        let mut merge: Vec<&Change> = Vec::new();
        for c in changes {
            match c {
                Change::Add(a, v) | Change::Delete(a, v)
                    if a.eq_ignore_ascii_case("members") || a.eq_ignore_ascii_case("member") =>
                {
                    let add = matches!(c, Change::Add(..));
                    if !add && v.is_empty() {
                        return Err(Error::Object {
                            object: identity.to_string(),
                            cause: "removing every member at once is not supported; name them"
                                .into(),
                            code: None,
                        });
                    }
                    for m in v {
                        members.push((add, String::from_utf8_lossy(m.as_bytes()).into_owned()));
                    }
                }
                Change::Replace(a, v)
                    if a.eq_ignore_ascii_case("members") || a.eq_ignore_ascii_case("member") =>
                {
                    // The whole member list: add what is missing, remove the rest.
                    let want: Vec<String> = v
                        .iter()
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                        .collect();
                    let have = self.member_ids(&id, identity).await?;
                    for w in &want {
                        if !have.iter().any(|h| h.eq_ignore_ascii_case(w)) {
                            members.push((true, w.clone()));
                        }
                    }
                    for h in have {
                        if !want.iter().any(|w| w.eq_ignore_ascii_case(&h)) {
                            members.push((false, h));
                        }
                    }
                }
                Change::Replace(a, v) => {
                    if convert::is_read_only(a) {
                        return Err(Error::Object {
                            object: identity.to_string(),
                            cause: format!("'{a}' is read-only in Microsoft Graph"),
                            code: None,
                        });
                    }
                    body.insert(a.clone(), property_json(identity, a, v)?);
                }
                other => merge.push(other),
            }
        }
        if !merge.is_empty() {
            let names: Vec<String> = merge
                .iter()
                .map(|c| match c {
                    Change::Add(a, _) | Change::Delete(a, _) | Change::Replace(a, _) => a.clone(),
                })
                .collect();
            let path = format!(
                "{}?$select={}",
                object_path(kind, &id),
                enc(&names.join(","))
            );
            let cur = self
                .get_json(&path, identity)
                .await?
                .ok_or_else(|| Error::NotFound(identity.to_string()))?;
            let cur = to_entry(&cur);
            for c in merge {
                let (a, v, add) = match c {
                    Change::Add(a, v) => (a, v, true),
                    Change::Delete(a, v) => (a, v, false),
                    Change::Replace(..) => continue,
                };
                let mut vals: Vec<Value> = match body.get(a.as_str()) {
                    Some(j) => convert::json_values(j),
                    None => cur.values(a).to_vec(),
                };
                if add {
                    for x in v {
                        if !vals.contains(x) {
                            vals.push(x.clone());
                        }
                    }
                } else if v.is_empty() {
                    vals.clear();
                } else {
                    vals.retain(|x| !v.contains(x));
                }
                body.insert(a.clone(), property_json(identity, a, &vals)?);
            }
        }
        if !body.is_empty() {
            self.patch(kind, &id, Json::Object(body), identity).await?;
        }
        for (add, m) in members {
            if add {
                self.add_member(&id, &m).await?;
            } else {
                self.remove_member(&id, &m).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, identity: &str) -> Result<()> {
        let (kind, id) = self.locate(identity).await?;
        let mut call = Call::get(self.http.url(&object_path(kind, &id)), identity);
        call.method = Method::DELETE;
        self.http.send(&call).await.map(|_| ())
    }

    async fn members(&self, group: &str) -> Result<Vec<String>> {
        let id = self.group_id(group).await?;
        self.member_ids(&id, group).await
    }

    async fn add_member(&self, group: &str, member: &str) -> Result<()> {
        let gid = self.group_id(group).await?;
        let (_, mid) = self.locate(member).await?;
        let what = format!("group {group}: add member {member}");
        let path = format!("groups/{}/members/$ref", enc(&gid));
        self.add_ref(&path, &mid, &what, async || {
            Ok(self
                .member_ids(&gid, &what)
                .await?
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&mid)))
        })
        .await
        .map(|_| ())
    }

    async fn remove_member(&self, group: &str, member: &str) -> Result<()> {
        let gid = self.group_id(group).await?;
        let (_, mid) = self.locate(member).await?;
        let what = format!("group {group}: remove member {member}");
        let url = self
            .http
            .url(&format!("groups/{}/members/{}/$ref", enc(&gid), enc(&mid)));
        let mut call = Call::get(url, &what);
        call.method = Method::DELETE;
        let r = self.http.exchange(&call).await?;
        if r.status.is_success() {
            return Ok(());
        }
        // 404: not a member (the group itself was found above).
        if r.status.as_u16() == 404 {
            return Ok(());
        }
        Err(self.http.refusal(&call, &r))
    }

    async fn enable(&self, identity: &str) -> Result<()> {
        let (kind, id) = self.locate(identity).await?;
        if kind != "users" {
            return Err(Error::Object {
                object: identity.to_string(),
                cause: format!("only users can be enabled in Entra ID (this is in {kind})"),
                code: None,
            });
        }
        self.patch(kind, &id, json!({ "accountEnabled": true }), identity)
            .await
    }

    async fn disable(&self, identity: &str) -> Result<()> {
        let (kind, id) = self.locate(identity).await?;
        if kind != "users" {
            return Err(Error::Object {
                object: identity.to_string(),
                cause: format!(
                    "only users can be disabled in Entra ID (this is in {kind}); deprovision it with \"delete\" or \"none\""
                ),
                code: None,
            });
        }
        self.patch(kind, &id, json!({ "accountEnabled": false }), identity)
            .await
    }

    async fn set_password(&self, identity: &str, password: &Secret) -> Result<()> {
        let (kind, id) = self.locate(identity).await?;
        let body = json!({ "passwordProfile": {
            "password": password.expose(),
            "forceChangePasswordNextSignIn": false,
        }});
        match self.patch(kind, &id, body, identity).await {
            Err(Error::Object {
                object,
                cause,
                code: Some(403),
            }) => Err(Error::Object {
                object,
                cause: format!(
                    "{cause}; setting passwords needs the application permission User-PasswordProfile.ReadWrite.All and an Entra role such as User Administrator for the app"
                ),
                code: Some(403),
            }),
            other => other,
        }
    }
}
