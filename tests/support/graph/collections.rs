//! Users, groups, service principals and group members (§1.2, §1.3, §1.7, §1.9; §2.3 points
//! 4–6, 13 and 17): list with `$select`/`$filter`/`$top`/`$count` and paging, get, create,
//! update, delete, and member references.

use serde_json::{Map, Value, json};

use super::filter::{self, Expr};
use super::http::{
    Incoming, Reply, json_object_body, opt, prefer_max_page_size, reject_duplicate_options,
};
use super::paging::{Cursor, End, cut_pages, has_eventual};
use super::schema::{Access, Kind, PASSWORD_ROLES, PType};
use super::state::{State, TENANT_DOMAIN, TENANT_ID, iso_z, project};

/// Options a list accepts; anything else starting with `$` is rejected.
const LIST_OPTIONS: &[&str] = &["$select", "$filter", "$top", "$count", "$skiptoken"];

/// "Could not find a property named …" (400 Request_BadRequest).
pub(super) fn unknown_property(kind: Kind, name: &str) -> Reply {
    Reply::bad_request(format!(
        "Could not find a property named '{name}' on type '{}'.",
        kind.qualified()
    ))
}

/// Parses `$select` against `kind`: canonical names, or 400 for an unknown one.
pub(super) fn parse_select(kind: Kind, v: &str) -> Result<Vec<String>, Reply> {
    let mut out: Vec<String> = Vec::new();
    for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match kind.prop(name) {
            Some(p) if p.ty != PType::Nav => {
                if !out.iter().any(|o| o == p.name) {
                    out.push(p.name.to_owned());
                }
            }
            _ => return Err(unknown_property(kind, name)),
        }
    }
    Ok(out)
}

/// The `$select` of a request (default set when absent).
fn select_of(kind: Kind, pairs: &[(String, String)]) -> Result<Vec<String>, Reply> {
    match opt(pairs, "$select") {
        Some(v) => parse_select(kind, v),
        None => Ok(kind.default_select()),
    }
}

/// Parses and checks a `$filter` for `kind`: the expression and its first advanced clause.
fn parse_filter(kind: Kind, v: &str) -> Result<(Expr, Option<String>), Reply> {
    let mut e = filter::parse(v)
        .map_err(|why| Reply::bad_request(format!("Invalid filter clause: {why}")))?;
    let lookup = |p: &str| kind.prop(p).map(|p| p.ty);
    if let Err((p, misuse)) = filter::check_props(&e, &lookup) {
        return Err(if misuse {
            unsupported_filter(kind, &p)
        } else {
            unknown_property(kind, &p)
        });
    }
    e.canonicalize(&|p| kind.canonical(p));
    let adv = e.advanced();
    Ok((e, adv))
}

/// 400 Request_UnsupportedQuery for a filter clause on `prop`.
fn unsupported_filter(kind: Kind, prop: &str) -> Reply {
    Reply::error(
        400,
        "Request_UnsupportedQuery",
        format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{}'.",
            kind.resource()
        ),
    )
}

/// `GET /v1.0/{users|groups|servicePrincipals}`.
pub(super) fn list(st: &mut State, inc: &Incoming, kind: Kind) -> Reply {
    let path = format!("/v1.0/{}", kind.collection());
    let pairs = inc.query_pairs();
    if let Err(r) = reject_duplicate_options(&pairs) {
        return r;
    }
    if let Some(tok) = opt(&pairs, "$skiptoken") {
        let tok = tok.to_owned();
        return st.serve_skiptoken(inc, &path, &tok);
    }
    for (k, _) in &pairs {
        if k.starts_with('$') && !LIST_OPTIONS.iter().any(|o| o.eq_ignore_ascii_case(k)) {
            return Reply::bad_request(format!(
                "The query option '{k}' is not supported by this fake (supported: {}).",
                LIST_OPTIONS.join(", ")
            ));
        }
    }
    let top = match parse_top(opt(&pairs, "$top")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let count = match opt(&pairs, "$count")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Reply::bad_request(format!("Invalid value '{other}' for $count.")),
    };
    let eventual = has_eventual(inc);
    if count && !eventual {
        return Reply::bad_request("$count is not currently supported.");
    }
    let select = match select_of(kind, &pairs) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (filter, advanced) = match opt(&pairs, "$filter") {
        Some(v) => match parse_filter(kind, v) {
            Ok((e, adv)) => (Some(e), adv),
            Err(r) => return r,
        },
        None => (None, None),
    };
    if let Some(p) = &advanced
        && !(eventual && count)
    {
        return unsupported_filter(kind, p);
    }
    let items: Vec<Value> = st
        .live_of(kind)
        .filter(|o| filter.as_ref().is_none_or(|f| f.eval(&o.props)))
        .map(|o| Value::Object(project(o, &select)))
        .collect();
    let needs_consistency = match (&advanced, count) {
        (Some(p), _) => {
            let r = unsupported_filter(kind, p);
            error_parts(&r)
        }
        (None, true) => Some((
            "Request_BadRequest".to_owned(),
            "$count is not currently supported.".to_owned(),
        )),
        _ => None,
    };
    let total = items.len();
    let size = st.page_size(top.or(prefer_max_page_size(inc)));
    let pages = cut_pages(items, size, st.settings.empty_page_every, false);
    let context = match opt(&pairs, "$select") {
        Some(_) => format!(
            "{}/v1.0/$metadata#{}({})",
            st.origin,
            kind.collection(),
            select.join(",")
        ),
        None => format!("{}/v1.0/$metadata#{}", st.origin, kind.collection()),
    };
    let round = st.store_cursor(Cursor {
        path,
        base_query: pairs.clone(),
        pages,
        context,
        count: count.then_some(total),
        needs_consistency,
        end: End::List,
        reset_gen: st.reset_gen,
        minimal: false,
    });
    st.page_reply(round, 0)
}

fn error_parts(r: &Reply) -> Option<(String, String)> {
    match &r.body {
        super::http::Body::GraphError { code, message } => Some((code.clone(), message.clone())),
        _ => None,
    }
}

/// `$top`: 1..=999.
fn parse_top(v: Option<&str>) -> Result<Option<usize>, Reply> {
    let Some(v) = v else { return Ok(None) };
    match v.trim().parse::<i64>() {
        Ok(n) if (1..=999).contains(&n) => Ok(Some(n as usize)),
        _ => Err(Reply::bad_request(format!(
            "Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."
        ))),
    }
}

/// `GET /v1.0/{collection}/{key}` (users also by userPrincipalName).
pub(super) fn get(st: &mut State, inc: &Incoming, kind: Kind, key: &str) -> Reply {
    let Some(obj) = st.find(kind, key) else {
        return Reply::not_found(key);
    };
    let pairs = inc.query_pairs();
    let select = match select_of(kind, &pairs) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut m = project(obj, &select);
    m.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#{}/$entity",
            st.origin,
            kind.collection()
        )),
    );
    Reply::json(200, Value::Object(m))
}

/// `GET /v1.0/directoryObjects/{id}`: the object with its `@odata.type`.
pub(super) fn get_directory_object(st: &mut State, inc: &Incoming, id: &str) -> Reply {
    let Some(obj) = st.live(id) else {
        return Reply::not_found(id);
    };
    let kind = obj.kind;
    let select = match select_of(kind, &inc.query_pairs()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut m = project(obj, &select);
    m.insert("@odata.type".into(), json!(kind.odata_type()));
    m.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#directoryObjects/$entity",
            st.origin
        )),
    );
    Reply::json(200, Value::Object(m))
}

/// `GET /v1.0/organization`.
pub(super) fn organization(st: &State) -> Reply {
    let created = iso_z(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000));
    let domains: Vec<Value> = st
        .verified_domains
        .iter()
        .map(|d| {
            json!({
                "capabilities": "Email, OfficeCommunicationsOnlineGroups",
                "isDefault": d == TENANT_DOMAIN,
                "isInitial": d == TENANT_DOMAIN,
                "name": d,
                "type": "Managed",
            })
        })
        .collect();
    Reply::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#organization", st.origin),
            "value": [{
                "id": TENANT_ID,
                "displayName": "Contoso",
                "tenantType": "AAD",
                "countryLetterCode": "US",
                "createdDateTime": created,
                "onPremisesSyncEnabled": null,
                "onPremisesLastSyncDateTime": null,
                "verifiedDomains": domains,
            }],
        }),
    )
}

/// Checks a POST/PATCH body's properties against `kind`: unknown → 400, read-only → 400,
/// wrong JSON type → 400, `$`/`_` in onPremisesImmutableId → 400.
fn check_writable(kind: Kind, body: &Map<String, Value>) -> Result<Map<String, Value>, Reply> {
    let mut out = Map::new();
    for (k, v) in body {
        if k.starts_with("@odata.") {
            continue; // annotations such as @odata.type are accepted and ignored
        }
        let Some(p) = kind.prop(k).filter(|p| p.ty != PType::Nav) else {
            return Err(Reply::bad_request(format!(
                "Property '{k}' does not exist as a declared property or extension property."
            )));
        };
        if p.access == Access::ReadOnly {
            return Err(Reply::bad_request(format!(
                "Property '{}' is read-only and cannot be set.",
                p.name
            )));
        }
        let type_ok = match p.ty {
            PType::Str => v.is_string() || v.is_null(),
            PType::Bool => v.is_boolean(),
            PType::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            PType::Object => v.is_object() || v.is_null(),
            PType::Nav => false,
        };
        if !type_ok {
            return Err(invalid_value(kind, p.name));
        }
        if p.name == "onPremisesImmutableId"
            && v.as_str()
                .is_some_and(|s| s.contains('$') || s.contains('_'))
        {
            return Err(invalid_value(kind, p.name));
        }
        out.insert(p.name.to_owned(), v.clone());
    }
    Ok(out)
}

fn invalid_value(kind: Kind, prop: &str) -> Reply {
    Reply::bad_request(format!(
        "Invalid value specified for property '{prop}' of resource '{}'.",
        kind.resource()
    ))
}

/// A userPrincipalName's domain must be verified; it must be unique (soft-deleted users
/// still hold theirs).
fn check_upn(st: &State, upn: &str, except: Option<&str>) -> Result<(), Reply> {
    let domain = upn.rsplit_once('@').map(|x| x.1).unwrap_or("");
    if upn.matches('@').count() != 1
        || !st
            .verified_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    {
        return Err(Reply::bad_request(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    if st.upn_holder(upn, except).is_some() {
        return Err(Reply::bad_request(
            "Another object with the same value for property userPrincipalName already exists.",
        ));
    }
    Ok(())
}

/// `POST /v1.0/users` and `POST /v1.0/groups` → 201 + the object.
pub(super) fn create(st: &mut State, inc: &Incoming, kind: Kind) -> Reply {
    let body = match json_object_body(inc) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let props = match check_writable(kind, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let required: &[&str] = match kind {
        Kind::User => &[
            "accountEnabled",
            "displayName",
            "mailNickname",
            "userPrincipalName",
            "passwordProfile",
        ],
        Kind::Group => &[
            "displayName",
            "mailEnabled",
            "mailNickname",
            "securityEnabled",
        ],
        Kind::ServicePrincipal => &[],
    };
    for r in required {
        if props.get(*r).is_none_or(Value::is_null) {
            return invalid_value(kind, r);
        }
    }
    if kind == Kind::User {
        let pw = props
            .get("passwordProfile")
            .and_then(|p| p.get("password"))
            .and_then(Value::as_str);
        if pw.is_none_or(str::is_empty) {
            return invalid_value(kind, "passwordProfile");
        }
        let upn = props["userPrincipalName"].as_str().unwrap_or("").to_owned();
        if let Err(r) = check_upn(st, &upn, None) {
            return r;
        }
    }
    let id = st.create(kind, props);
    let obj = st.live(&id).expect("just created");
    let mut m = project(obj, &kind.default_select());
    m.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#{}/$entity",
            st.origin,
            kind.collection()
        )),
    );
    Reply::json(201, Value::Object(m))
}

/// True if the app's service principal may set passwords: the permission switch plus a
/// role that allows it (User Administrator, Privileged Authentication Administrator or
/// Global Administrator).
fn may_set_passwords(st: &State) -> bool {
    st.settings.password_permission
        && st.roles.iter().any(|r| {
            PASSWORD_ROLES.contains(&r.template_id.as_str())
                && st.role_members(r).contains(&st.app_sp)
        })
}

/// `PATCH /v1.0/{users|groups}/{key}` → 204.
pub(super) fn patch(st: &mut State, inc: &Incoming, kind: Kind, key: &str) -> Reply {
    let Some(id) = st.find(kind, key).map(|o| o.id.clone()) else {
        return Reply::not_found(key);
    };
    let mut body = match json_object_body(inc) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bind = match body.remove("members@odata.bind") {
        Some(v) if kind == Kind::Group => match members_to_bind(st, &id, &v) {
            Ok(ids) => ids,
            Err(r) => return r,
        },
        Some(_) => {
            return Reply::bad_request(
                "Property 'members@odata.bind' does not exist as a declared property or extension property.",
            );
        }
        None => Vec::new(),
    };
    let props = match check_writable(kind, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if props.contains_key("passwordProfile") && !may_set_passwords(st) {
        return Reply::error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    if let Some(upn) = props.get("userPrincipalName") {
        let upn = upn.as_str().unwrap_or("").to_owned();
        if let Err(r) = check_upn(st, &upn, Some(&id)) {
            return r;
        }
    }
    st.update(&id, &props);
    for m in bind {
        st.add_member(&id, &m);
    }
    Reply::empty(204)
}

/// Checks a `members@odata.bind` batch (§1.9): at most 20 reference URLs to live objects,
/// none already a member (one existing member fails the whole batch with 400).
fn members_to_bind(st: &State, group: &str, v: &Value) -> Result<Vec<String>, Reply> {
    let bad = || Reply::bad_request("Invalid URL format specified in @odata.bind field.");
    let links = v.as_array().ok_or_else(bad)?;
    if links.len() > 20 {
        return Err(Reply::bad_request(
            "The maximum number of references in members@odata.bind is 20.",
        ));
    }
    let g = st.live(group).expect("patched group is live");
    let current = st.visible_members(g);
    let mut out: Vec<String> = Vec::new();
    for link in links {
        let id = link.as_str().and_then(ref_url_id).ok_or_else(bad)?;
        let m = st.live(&id).ok_or_else(|| Reply::not_found(&id))?;
        if current.contains(&m.id) || out.contains(&m.id) {
            return Err(duplicate_ref());
        }
        out.push(m.id.clone());
    }
    Ok(out)
}

/// `DELETE /v1.0/{users|groups}/{key}` → 204: users and Microsoft 365 groups go to the
/// recycle bin, security groups are deleted permanently.
pub(super) fn delete(st: &mut State, kind: Kind, key: &str) -> Reply {
    let Some(obj) = st.find(kind, key) else {
        return Reply::not_found(key);
    };
    let id = obj.id.clone();
    if kind == Kind::User || obj.is_unified() {
        st.soft_delete(&id);
    } else {
        st.hard_delete(&id);
    }
    Reply::empty(204)
}

/// Reads a `{"@odata.id": ".../directoryObjects/{id}"}` reference body: the referenced id, or
/// a 400 reply. (The object's existence is checked by the caller.)
pub(super) fn ref_target(inc: &Incoming) -> Result<String, Reply> {
    let bad = || Reply::bad_request("Invalid URL format specified in @odata.id field.");
    let body = json_object_body(inc)?;
    if body.len() != 1 {
        return Err(bad());
    }
    let link = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    ref_url_id(link).ok_or_else(bad)
}

/// The object id in a reference URL `<graph>/v1.0/directoryObjects/{id}` (or `/users/{id}`,
/// `/groups/{id}`, `/servicePrincipals/{id}`) on graph.microsoft.com or the fake.
fn ref_url_id(link: &str) -> Option<String> {
    let u = url::Url::parse(link).ok()?;
    let segs: Vec<&str> = u.path_segments().map(|s| s.collect()).unwrap_or_default();
    match segs.as_slice() {
        [
            "v1.0" | "beta",
            "directoryObjects" | "users" | "groups" | "servicePrincipals",
            id,
        ] if uuid::Uuid::parse_str(id).is_ok() => Some((*id).to_owned()),
        _ => None,
    }
}

/// `GET /v1.0/groups/{id}/members`: paged, items with `@odata.type`.
pub(super) fn list_members(st: &mut State, inc: &Incoming, group: &str) -> Reply {
    let Some(g) = st.find(Kind::Group, group) else {
        return Reply::not_found(group);
    };
    let path = format!("/v1.0/groups/{}/members", g.id);
    let pairs = inc.query_pairs();
    if let Err(r) = reject_duplicate_options(&pairs) {
        return r;
    }
    if let Some(tok) = opt(&pairs, "$skiptoken") {
        let tok = tok.to_owned();
        return st.serve_skiptoken(inc, &path, &tok);
    }
    for (k, _) in &pairs {
        if k.starts_with('$')
            && !["$top", "$select"]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(k))
        {
            return Reply::bad_request(format!(
                "The query option '{k}' is not supported by this fake on members."
            ));
        }
    }
    let top = match parse_top(opt(&pairs, "$top")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let sel = opt(&pairs, "$select").map(str::to_owned);
    let mut items = Vec::new();
    for mid in st.visible_members(g) {
        let Some(m) = st.live(&mid) else { continue };
        let select = match &sel {
            // on directoryObjects, names unknown to the member's type are simply skipped
            Some(s) => s
                .split(',')
                .filter_map(|n| m.kind.canonical(n.trim()))
                .map(str::to_owned)
                .collect(),
            None => m.kind.default_select(),
        };
        let mut p = project(m, &select);
        p.insert("@odata.type".into(), json!(m.kind.odata_type()));
        items.push(Value::Object(p));
    }
    let size = st.page_size(top);
    let pages = cut_pages(items, size, st.settings.empty_page_every, false);
    let round = st.store_cursor(Cursor {
        path,
        base_query: pairs.clone(),
        pages,
        context: format!("{}/v1.0/$metadata#directoryObjects", st.origin),
        count: None,
        needs_consistency: None,
        end: End::List,
        reset_gen: st.reset_gen,
        minimal: false,
    });
    st.page_reply(round, 0)
}

/// The duplicate-reference error (§1.6).
pub(super) fn duplicate_ref() -> Reply {
    Reply::bad_request(
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
}

/// `POST /v1.0/groups/{id}/members/$ref` → 204.
pub(super) fn add_member_ref(st: &mut State, inc: &Incoming, group: &str) -> Reply {
    let Some(gid) = st.find(Kind::Group, group).map(|g| g.id.clone()) else {
        return Reply::not_found(group);
    };
    let target = match ref_target(inc) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(mid) = st.live(&target).map(|m| m.id.clone()) else {
        return Reply::not_found(&target);
    };
    if mid == gid {
        return Reply::bad_request("A group cannot be a member of itself.");
    }
    if st
        .visible_members(st.live(&gid).expect("live group"))
        .contains(&mid)
    {
        return duplicate_ref();
    }
    st.add_member(&gid, &mid);
    Reply::empty(204)
}

/// `DELETE /v1.0/groups/{id}/members/{mid}/$ref` → 204; 404 if not a member.
pub(super) fn remove_member_ref(st: &mut State, group: &str, member: &str) -> Reply {
    let Some(g) = st.find(Kind::Group, group) else {
        return Reply::not_found(group);
    };
    let gid = g.id.clone();
    let visible = st.visible_members(g);
    if !visible.iter().any(|m| m.eq_ignore_ascii_case(member)) {
        return Reply::not_found(member);
    }
    st.remove_member(&gid, member);
    Reply::empty(204)
}

/// A soft-deleted object as `directory/deletedItems` shows it: default properties,
/// `deletedDateTime` and `@odata.type`.
fn deleted_item_json(obj: &super::state::Obj) -> Map<String, Value> {
    let mut select = obj.kind.default_select();
    select.push("deletedDateTime".into());
    let mut m = project(obj, &select);
    m.insert("@odata.type".into(), json!(obj.kind.odata_type()));
    m
}

/// The soft-deleted object `id`, if it is in the recycle bin.
fn in_recycle_bin<'a>(st: &'a State, id: &str) -> Option<&'a super::state::Obj> {
    st.any(id)
        .filter(|o| o.status == super::state::Status::SoftDeleted)
}

/// `GET /v1.0/directory/deletedItems/microsoft.graph.{user|group}` (one page).
pub(super) fn list_deleted(st: &State, cast: &str) -> Reply {
    let kind = match cast.to_ascii_lowercase().as_str() {
        "microsoft.graph.user" => Kind::User,
        "microsoft.graph.group" => Kind::Group,
        _ => return get_deleted(st, cast),
    };
    let value: Vec<Value> = st
        .objects
        .iter()
        .filter(|o| o.kind == kind && o.status == super::state::Status::SoftDeleted)
        .map(|o| Value::Object(deleted_item_json(o)))
        .collect();
    Reply::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#{}", st.origin, kind.collection()),
            "value": value,
        }),
    )
}

/// `GET /v1.0/directory/deletedItems/{id}`.
pub(super) fn get_deleted(st: &State, id: &str) -> Reply {
    match in_recycle_bin(st, id) {
        Some(o) => Reply::json(200, Value::Object(deleted_item_json(o))),
        None => Reply::not_found(id),
    }
}

/// `POST /v1.0/directory/deletedItems/{id}/restore` → 200 + the restored object.
pub(super) fn restore_deleted(st: &mut State, id: &str) -> Reply {
    let Some(id) = in_recycle_bin(st, id).map(|o| o.id.clone()) else {
        return Reply::not_found(id);
    };
    st.restore(&id);
    let obj = st.live(&id).expect("just restored");
    let mut m = project(obj, &obj.kind.default_select());
    m.insert("@odata.type".into(), json!(obj.kind.odata_type()));
    Reply::json(200, Value::Object(m))
}

/// `DELETE /v1.0/directory/deletedItems/{id}` → 204 (permanent deletion).
pub(super) fn purge_deleted(st: &mut State, id: &str) -> Reply {
    let Some(id) = in_recycle_bin(st, id).map(|o| o.id.clone()) else {
        return Reply::not_found(id);
    };
    st.hard_delete(&id);
    Reply::empty(204)
}
