//! Entra ID in scripts (API §3 and §6): `connect_graph`, `az.users` /
//! `az.groups`, delta rounds that remember where they stopped, directory
//! roles, and `backsync(ad, az)`.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Map};
use serde_json::Value as Json;

use super::context::store;
use super::convert::*;
use super::objects::Connection;
use super::runtime::block_on;
use crate::azure::backsync;
use crate::connector::downcast;
use crate::connector::graph::{
    DeltaObject, DeltaRound, GraphConnector, GraphOptions, ListQuery, default_select, json_values,
    to_entry,
};
use crate::model::Entry;

/// The options `connect_graph` understands.
pub const GRAPH_OPTIONS: &[&str] = &[
    "tenant",
    "client_id",
    "client_secret",
    "authority_url",
    "graph_url",
    "scope",
    "ca_file",
    "verify",
    "timeout",
    "max_wait",
    "page_size",
];

/// Builds Graph options from a script map, rejecting unknown keys.
pub fn graph_options(opts: &Map) -> ScriptResult<GraphOptions> {
    const F: &str = "connect_graph";
    check_keys(F, opts, GRAPH_OPTIONS)?;
    let need = |k: &str| -> ScriptResult<String> {
        opt_str(opts, k)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| rt_err(format!("{F}: option '{k}' is required")))
    };
    let tenant = need("tenant")?;
    let client_id = need("client_id")?;
    let secret = match opts.get("client_secret").filter(|d| !d.is_unit()) {
        Some(d) => to_secret(F, d)?,
        None => return Err(rt_err(format!("{F}: option 'client_secret' is required"))),
    };
    let mut o = GraphOptions::new(&tenant, &client_id, secret);
    if let Some(u) = opt_str(opts, "graph_url")? {
        o = o.with_graph_url(&u);
    }
    if let Some(u) = opt_str(opts, "authority_url")? {
        o.authority_url = u.trim_end_matches('/').to_string();
    }
    if let Some(s) = opt_str(opts, "scope")? {
        o.scope = s;
    }
    o.ca_file = opt_str(opts, "ca_file")?;
    if let Some(v) = opt_bool(opts, "verify")? {
        o.verify = v;
    }
    for (k, slot) in [("timeout", &mut o.timeout), ("max_wait", &mut o.max_wait)] {
        if let Some(n) = opt_num(opts, k)? {
            if n <= 0.0 || !n.is_finite() {
                return Err(rt_err(format!(
                    "{F}: option '{k}' must be more than 0 seconds"
                )));
            }
            *slot = Duration::from_secs_f64(n);
        }
    }
    if let Some(n) = opt_num(opts, "page_size")? {
        o.page_size = n as u32;
    }
    Ok(o)
}

/// Connects with `opts` and wraps the connection for scripts.
pub fn open_graph(opts: GraphOptions) -> ScriptResult<Connection> {
    let c = block_on(GraphConnector::connect(opts)).map_err(|e| conn_err("connect_graph", e))?;
    Ok(Connection::new(Arc::new(c)))
}

/// The Graph connection behind `c`, or an error naming the function.
fn graph<'a>(c: &'a Connection, f: &str) -> ScriptResult<&'a GraphConnector> {
    downcast::<GraphConnector>(c.0.as_ref()).ok_or_else(|| {
        rt_err(format!(
            "{f}: this is a {} connection; {f} needs a Microsoft Graph connection (connect_graph)",
            c.0.kind()
        ))
    })
}

fn list(c: &Connection, f: &str, collection: &str, opts: &Map) -> ScriptResult<Array> {
    check_keys(
        f,
        opts,
        &[
            "select", "filter", "top", "limit", "search", "orderby", "count",
        ],
    )?;
    let g = graph(c, f)?;
    let mut select = opt_list(opts, "select")?.unwrap_or_else(|| default_select(collection));
    if !select.is_empty() && !select.iter().any(|s| s == "id") {
        select.insert(0, "id".into());
    }
    let top = opt_num(opts, "top")?.map(|n| n as u32);
    if let Some(t) = top
        && !(1..=999).contains(&t)
    {
        return Err(rt_err(format!(
            "{f}: top must be between 1 and 999 (Graph's limit)"
        )));
    }
    let q = ListQuery {
        select,
        filter: opt_str(opts, "filter")?,
        search: opt_str(opts, "search")?,
        orderby: opt_str(opts, "orderby")?,
        top,
        count: opt_bool(opts, "count")?.unwrap_or(false),
    };
    let limit = opt_num(opts, "limit")?
        .map(|n| n as usize)
        .filter(|&n| n > 0);
    let mut out = Array::new();
    block_on(g.list(collection, &q, &mut |o| {
        out.push(Dynamic::from(to_entry(&o)));
        Ok(limit.is_none_or(|l| out.len() < l))
    }))
    .map_err(|e| conn_err(f, e))?;
    Ok(out)
}

/// The store key of a delta cursor.
fn cursor_key(g: &GraphConnector, collection: &str, name: &str) -> String {
    let o = g.options();
    format!(
        "graph-delta/{}/{}/{collection}/{name}",
        o.tenant, o.client_id
    )
}

fn delta(c: &Connection, f: &str, collection: &str, opts: &Map) -> ScriptResult<Map> {
    check_keys(f, opts, &["select", "name", "reset", "latest", "save"])?;
    let g = graph(c, f)?;
    let mut select = opt_list(opts, "select")?.unwrap_or_else(|| {
        let mut v = default_select(collection);
        if collection == "groups" {
            v.push("members".into());
        }
        v
    });
    select.retain(|s| s != "id");
    let name = opt_str(opts, "name")?.unwrap_or_else(|| {
        let mut s = select.clone();
        s.sort_by_key(|x| x.to_ascii_lowercase());
        s.join(",")
    });
    let key = cursor_key(g, collection, &name);
    let st = store()?;
    let link = if opt_bool(opts, "reset")?.unwrap_or(false) {
        None
    } else {
        st.get_setting(&key)
            .map_err(|e| rt_err(format!("{f}: {e}")))?
    };
    let latest = opt_bool(opts, "latest")?.unwrap_or(false);
    let r = block_on(g.delta(
        collection,
        &select,
        link.as_deref(),
        latest && link.is_none(),
    ))
    .map_err(|e| conn_err(f, e))?;
    if opt_bool(opts, "save")?.unwrap_or(true) {
        st.put_setting(&key, &r.delta_link)
            .map_err(|e| rt_err(format!("{f}: saving the delta link: {e}")))?;
    }
    let mut m = round_map(&r);
    m.insert("cursor".into(), key.into());
    m.insert("delta_link".into(), r.delta_link.clone().into());
    Ok(m)
}

/// Stores the delta link of a round read with `save: false`.
fn save_delta(c: &Connection, round: &Map) -> ScriptResult<()> {
    const F: &str = "save_delta";
    graph(c, F)?;
    let (Some(key), Some(link)) = (opt_str(round, "cursor")?, opt_str(round, "delta_link")?) else {
        return Err(rt_err(format!(
            "{F}: give it the map users_delta / groups_delta returned (it needs 'cursor' and 'delta_link')"
        )));
    };
    if !key.starts_with("graph-delta/") {
        return Err(rt_err(format!("{F}: '{key}' is not a delta cursor")));
    }
    store()?
        .put_setting(&key, &link)
        .map_err(|e| rt_err(format!("{F}: {e}")))
}

fn delta_entry(o: &DeltaObject, full: bool) -> Entry {
    let mut e = to_entry(&Json::Object(o.object.clone()));
    let ids =
        |v: &[String]| json_values(&Json::Array(v.iter().cloned().map(Json::String).collect()));
    if full {
        e.set("members", ids(&o.members_added));
    }
    e.set("members_added", ids(&o.members_added));
    e.set("members_removed", ids(&o.members_removed));
    e
}

fn round_map(r: &DeltaRound) -> Map {
    let mut m = Map::new();
    m.insert("full".into(), r.full.into());
    m.insert(
        "changed".into(),
        r.changed
            .iter()
            .map(|o| Dynamic::from(delta_entry(o, r.full)))
            .collect::<Array>()
            .into(),
    );
    m.insert(
        "removed".into(),
        r.removed
            .iter()
            .map(|(id, reason)| {
                let mut x = Map::new();
                x.insert("id".into(), id.clone().into());
                x.insert("reason".into(), reason.clone().into());
                Dynamic::from_map(x)
            })
            .collect::<Array>()
            .into(),
    );
    m.insert(
        "restarted".into(),
        r.restarted
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("pages".into(), (r.pages as i64).into());
    m
}

fn json_entry(j: &Json) -> Dynamic {
    Dynamic::from(to_entry(j))
}

fn backsync_options(opts: &Map) -> ScriptResult<backsync::Options> {
    check_keys(
        "backsync",
        opts,
        &[
            "attribute",
            "tenant_attribute",
            "users",
            "groups",
            "contacts",
            "commit",
            "base",
        ],
    )?;
    if opt_bool(opts, "contacts")? == Some(true) {
        return Err(rt_err(
            "backsync: contacts cannot be matched: Graph gives an orgContact no on-premises anchor (immutable id or SID), and BackSync never matches by name or mail",
        ));
    }
    let mut o = backsync::Options::default();
    if let Some(a) = opt_str(opts, "attribute")? {
        o.attribute = a;
    }
    o.tenant_attribute = opt_str(opts, "tenant_attribute")?;
    for (k, slot) in [
        ("users", &mut o.users),
        ("groups", &mut o.groups),
        ("commit", &mut o.commit),
    ] {
        if let Some(b) = opt_bool(opts, k)? {
            *slot = b;
        }
    }
    o.base = opt_str(opts, "base")?;
    Ok(o)
}

fn report_map(r: &backsync::Report) -> Map {
    let mut m = Map::new();
    m.insert("committed".into(), r.committed.into());
    for (k, v) in [
        ("matched", r.matched),
        ("written", r.written),
        ("unchanged", r.unchanged),
        ("unmatched", r.unmatched),
        ("ambiguous", r.ambiguous),
        ("failed", r.failed),
    ] {
        m.insert(k.into(), (v as i64).into());
    }
    let opt = |s: &Option<String>| s.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let rows: Array = r
        .rows
        .iter()
        .map(|row| {
            let mut x = Map::new();
            x.insert("op".into(), row.outcome.as_str(r.committed).into());
            x.insert("kind".into(), row.kind.into());
            x.insert("name".into(), row.name.clone().into());
            x.insert("cloud_id".into(), row.cloud_id.clone().into());
            x.insert("dn".into(), opt(&row.dn));
            x.insert(
                "matched_by".into(),
                row.matched_by.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            );
            x.insert("old".into(), opt(&row.old));
            x.insert("reason".into(), row.reason.clone().into());
            Dynamic::from_map(x)
        })
        .collect();
    m.insert("rows".into(), rows.into());
    m
}

fn run_backsync(ad: &Connection, az: &Connection, opts: &Map) -> ScriptResult<Map> {
    let o = backsync_options(opts)?;
    let g = graph(az, "backsync")?;
    if downcast::<GraphConnector>(ad.0.as_ref()).is_some() {
        return Err(rt_err(
            "backsync: the first argument is the AD connection, the second the Graph one",
        ));
    }
    let r = block_on(backsync::run(ad.0.as_ref(), g, &o)).map_err(|e| conn_err("backsync", e))?;
    Ok(report_map(&r))
}

/// Entra ID bindings.
#[rhai::export_module]
pub mod azure_api {
    use super::*;
    use crate::azure::roles;

    /// Connects to Microsoft Graph as an app (OAuth2 client credentials).
    /// Options: `tenant` (GUID or domain), `client_id`, `client_secret`
    /// (`secret("ENV")`), `authority_url` and `graph_url` (national clouds,
    /// tests), `scope`, `ca_file`, `verify` (default true), `timeout`
    /// (seconds per request, default 60), `max_wait` (longest throttling
    /// wait accepted, default 300 s), `page_size` (1..999, default 999).
    /// The token is fetched at once (a wrong secret fails here), cached and
    /// renewed before it expires.
    ///
    /// Example:
    /// ```rhai
    /// let az = connect_graph(#{ tenant: "contoso.onmicrosoft.com", client_id: "...", client_secret: secret("AZ_SECRET") });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_graph(opts: Map) -> ScriptResult<Connection> {
        open_graph(graph_options(&opts)?)
    }

    /// Users of the tenant, every page read. Options: `select` (array of
    /// properties; default a useful set including accountEnabled and the
    /// onPremises* properties), `filter` (OData `$filter`), `top` (page
    /// size 1..999), `limit` (stop after N), `search`, `orderby`, `count`.
    /// Advanced queries (`ne`, `not`, `endswith`, `search`, `count`) get
    /// `ConsistencyLevel: eventual` and `$count=true` by themselves.
    ///
    /// Example:
    /// ```rhai
    /// az.users(#{ select: ["id", "userPrincipalName", "onPremisesImmutableId"], filter: "startswith(displayName,'Ann')" })
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn users(c: &mut Connection, opts: Map) -> ScriptResult<Array> {
        list(c, "users", "users", &opts)
    }

    /// All users of the tenant (default properties).
    ///
    /// Example:
    /// ```rhai
    /// az.users()
    /// ```
    #[rhai_fn(name = "users", return_raw, pure)]
    pub fn users_all(c: &mut Connection) -> ScriptResult<Array> {
        list(c, "users", "users", &Map::new())
    }

    /// Groups of the tenant; options as for `users`.
    ///
    /// Example:
    /// ```rhai
    /// az.groups(#{ filter: "securityEnabled eq true" })
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn groups(c: &mut Connection, opts: Map) -> ScriptResult<Array> {
        list(c, "groups", "groups", &opts)
    }

    /// All groups of the tenant (default properties).
    ///
    /// Example:
    /// ```rhai
    /// az.groups()
    /// ```
    #[rhai_fn(name = "groups", return_raw, pure)]
    pub fn groups_all(c: &mut Connection) -> ScriptResult<Array> {
        list(c, "groups", "groups", &Map::new())
    }

    /// Changes to users since the last call (Graph delta query): a map with
    /// `changed` (entries), `removed` (`#{ id, reason }`; reason "changed" =
    /// soft-deleted, restorable; "deleted" = gone), `full` (true when this
    /// was a full read: the first call, or after the stored state expired or
    /// was reset — `restarted` then says why) and `pages`. The delta link is
    /// saved in the state store when the call returns (with `save: false`,
    /// only when `az.save_delta(d)` is called). Options: `select`, `name`
    /// (separate cursors for separate jobs), `reset: true` (start over),
    /// `latest: true` (first call: no data, only changes from now on).
    ///
    /// Example:
    /// ```rhai
    /// let d = az.users_delta(#{ select: ["displayName", "accountEnabled"] });  d.changed
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn users_delta(c: &mut Connection, opts: Map) -> ScriptResult<Map> {
        delta(c, "users_delta", "users", &opts)
    }

    /// Saves the delta link of a round read with `save: false`, once the
    /// script has applied its changes: a script that fails half-way then
    /// sees the same changes again next time.
    ///
    /// Example:
    /// ```rhai
    /// let d = az.users_delta(#{ save: false });  for u in d.changed { /* ... */ }  az.save_delta(d);
    /// ```
    #[rhai_fn(name = "save_delta", return_raw, pure)]
    pub fn save_delta_fn(c: &mut Connection, round: Map) -> ScriptResult<()> {
        save_delta(c, &round)
    }

    /// Changes to users since the last call, default properties.
    ///
    /// Example:
    /// ```rhai
    /// az.users_delta().changed
    /// ```
    #[rhai_fn(name = "users_delta", return_raw, pure)]
    pub fn users_delta_default(c: &mut Connection) -> ScriptResult<Map> {
        delta(c, "users_delta", "users", &Map::new())
    }

    /// Changes to groups since the last call, with membership changes:
    /// each changed group has `members_added` and `members_removed` (ids;
    /// in a full read also `members`). Options as for `users_delta`; the
    /// default selection includes `members`.
    ///
    /// Example:
    /// ```rhai
    /// for g in az.groups_delta().changed { print(`${g.displayName}: +${g.values("members_added").len()}`) }
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn groups_delta(c: &mut Connection, opts: Map) -> ScriptResult<Map> {
        delta(c, "groups_delta", "groups", &opts)
    }

    /// Changes to groups since the last call, default properties and members.
    ///
    /// Example:
    /// ```rhai
    /// az.groups_delta()
    /// ```
    #[rhai_fn(name = "groups_delta", return_raw, pure)]
    pub fn groups_delta_default(c: &mut Connection) -> ScriptResult<Map> {
        delta(c, "groups_delta", "groups", &Map::new())
    }

    /// Activates a directory role from its template (by display name, such
    /// as "Directory Writers", or template id) unless it is active already;
    /// returns `#{ id, displayName, roleTemplateId, activated }`, where
    /// `activated` is false when there was nothing to do. The equivalent of
    /// `Enable-AzureADDirectoryRole` in the Active Roles setup guide.
    ///
    /// Example:
    /// ```rhai
    /// az.enable_role("Directory Writers")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn enable_role(c: &mut Connection, role: &str) -> ScriptResult<Map> {
        let g = graph(c, "enable_role")?;
        let r = block_on(roles::enable_role(g, role)).map_err(|e| conn_err("enable_role", e))?;
        let mut m = Map::new();
        for k in ["id", "displayName", "roleTemplateId"] {
            let v = r.role.get(k).and_then(Json::as_str).unwrap_or("");
            m.insert(k.into(), v.to_string().into());
        }
        m.insert("activated".into(), r.activated.into());
        Ok(m)
    }

    /// The activated directory roles.
    ///
    /// Example:
    /// ```rhai
    /// az.roles()
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn roles(c: &mut Connection) -> ScriptResult<Array> {
        let g = graph(c, "roles")?;
        let v = block_on(roles::roles(g)).map_err(|e| conn_err("roles", e))?;
        Ok(v.iter().map(json_entry).collect())
    }

    /// Every directory role template (what `enable_role` can activate).
    ///
    /// Example:
    /// ```rhai
    /// az.role_templates()
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn role_templates(c: &mut Connection) -> ScriptResult<Array> {
        let g = graph(c, "role_templates")?;
        let v = block_on(roles::templates(g)).map_err(|e| conn_err("role_templates", e))?;
        Ok(v.iter().map(json_entry).collect())
    }

    /// The members of an active directory role (users, groups, apps; see
    /// their `@odata.type`).
    ///
    /// Example:
    /// ```rhai
    /// az.role_members("Directory Writers")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn role_members(c: &mut Connection, role: &str) -> ScriptResult<Array> {
        let g = graph(c, "role_members")?;
        let v = block_on(roles::role_members(g, role)).map_err(|e| conn_err("role_members", e))?;
        Ok(v.iter().map(json_entry).collect())
    }

    /// Adds a user (userPrincipalName or id) or an app (app id, service
    /// principal id or display name) to an active directory role; true when
    /// added, false when it was a member already.
    ///
    /// Example:
    /// ```rhai
    /// az.add_role_member("Directory Writers", "svc-sync@corp.example")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn add_role_member(c: &mut Connection, role: &str, who: &str) -> ScriptResult<bool> {
        let g = graph(c, "add_role_member")?;
        block_on(roles::add_role_member(g, role, who)).map_err(|e| conn_err("add_role_member", e))
    }

    /// Azure BackSync: writes each Entra user's and group's object id into
    /// its on-premises AD object (attribute `edsvaAzureObjectID`). Matching
    /// is by `onPremisesImmutableId` = base64 of objectGUID (or of
    /// ms-DS-ConsistencyGuid), else `onPremisesSecurityIdentifier` =
    /// objectSid; never by name. Returns counts (matched, written,
    /// unchanged, unmatched, ambiguous, failed) and `rows`, one per cloud
    /// object.
    ///
    /// Example:
    /// ```rhai
    /// let r = backsync(ad, az);  r.rows
    /// ```
    #[rhai_fn(name = "backsync", return_raw)]
    pub fn backsync_default(ad: Connection, az: Connection) -> ScriptResult<Map> {
        run_backsync(&ad, &az, &Map::new())
    }

    /// BackSync with options: `attribute` (default "edsvaAzureObjectID"),
    /// `tenant_attribute` (also write the tenant id), `users`, `groups`
    /// (default true), `base` (AD search base),
    /// `commit: false` (report what would be written, write nothing).
    ///
    /// Example:
    /// ```rhai
    /// backsync(ad, az, #{ attribute: "edsvaAzureObjectID", groups: true, commit: false })
    /// ```
    #[rhai_fn(name = "backsync", return_raw)]
    pub fn backsync_with(ad: Connection, az: Connection, opts: Map) -> ScriptResult<Map> {
        run_backsync(&ad, &az, &opts)
    }
}
