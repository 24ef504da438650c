//! Delta queries (§1.4, §2.3 points 7–12): `GET /v1.0/users/delta` and `/v1.0/groups/delta`
//! read the tenant change log. A deltatoken seals (collection, log sequence, `$select`,
//! `$filter` ids, issue time, reset generation); a round computed from it is stored as a
//! paged cursor whose last page carries the next deltaLink.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::filter;
use super::http::{Incoming, Reply, build_query, opt, prefer, prefer_max_page_size};
use super::paging::{Cursor, End, cut_pages, open, seal};
use super::schema::{Kind, OUTSIDE_DIRECTORY};
use super::state::{State, Status, What, epoch_ms, project_present};

/// Directory-object delta tokens live this long (fake clock).
pub(super) const DELTA_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Query options delta does not support.
const UNSUPPORTED: &[&str] = &["$top", "$expand", "$orderby", "$count", "$search", "$skip"];

/// What a round is computed from.
struct Spec {
    kind: Kind,
    /// `$select` as given (None = default set)
    select: Option<Vec<String>>,
    /// `$filter=id eq …` ids
    ids: Option<Vec<String>>,
}

impl Spec {
    fn resolved_select(&self) -> Vec<String> {
        match &self.select {
            Some(s) => s.clone(),
            None => self.kind.default_select(),
        }
    }

    fn members_selected(&self) -> bool {
        self.kind == Kind::Group && self.resolved_select().iter().any(|s| s == "members")
    }

    fn wants(&self, id: &str) -> bool {
        match &self.ids {
            Some(ids) => ids.iter().any(|i| i.eq_ignore_ascii_case(id)),
            None => true,
        }
    }
}

/// 410 Gone + `Location` (after `tenant_reset`).
pub(super) fn gone(location: String) -> Reply {
    Reply::error(
        410,
        "resyncRequired",
        "Resync required: the sync state was reset. Restart with the initial delta request in the Location header.",
    )
    .with_header("location", location)
}

/// Handles `GET /v1.0/{users|groups}/delta`.
pub(super) fn handle(st: &mut State, inc: &Incoming, kind: Kind) -> Reply {
    let path = format!("/v1.0/{}/delta", kind.collection());
    let pairs = inc.query_pairs();
    if let Err(r) = super::http::reject_duplicate_options(&pairs) {
        return r;
    }
    if let Some(tok) = opt(&pairs, "$skiptoken") {
        let tok = tok.to_owned();
        return st.serve_skiptoken(inc, &path, &tok);
    }
    let minimal = prefer(inc).iter().any(|p| p == "return=minimal");
    let size = st.page_size(prefer_max_page_size(inc));
    match opt(&pairs, "$deltatoken") {
        Some(t) if !t.is_empty() && !t.eq_ignore_ascii_case("latest") => {
            let t = t.to_owned();
            from_token(st, inc, kind, &t, minimal, size)
        }
        latest => {
            let latest = latest.is_some_and(|t| t.eq_ignore_ascii_case("latest"));
            let spec = match parse_options(&pairs, kind) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let since = latest.then(|| st.seq());
            let round = build_round(st, &spec, since, latest, false, size);
            st.page_reply(round, 0)
        }
    }
}

/// Validates the options of an initial delta request.
fn parse_options(pairs: &[(String, String)], kind: Kind) -> Result<Spec, Reply> {
    let mut spec = Spec {
        kind,
        select: None,
        ids: None,
    };
    for (k, v) in pairs {
        let lk = k.to_ascii_lowercase();
        if UNSUPPORTED.contains(&lk.as_str()) {
            return Err(Reply::error(
                400,
                "Request_UnsupportedQuery",
                format!("The query option '{k}' is not supported on delta queries."),
            ));
        }
        match lk.as_str() {
            "$select" => spec.select = Some(parse_select(v, kind)?),
            "$filter" => spec.ids = Some(parse_id_filter(v)?),
            "$deltatoken" => {}
            o if o.starts_with('$') => {
                return Err(Reply::bad_request(format!(
                    "The query parameter '{k}' is not supported."
                )));
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn parse_select(v: &str, kind: Kind) -> Result<Vec<String>, Reply> {
    let mut out = Vec::new();
    for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if kind == Kind::User
            && OUTSIDE_DIRECTORY
                .iter()
                .any(|o| o.eq_ignore_ascii_case(name))
        {
            return Err(Reply::error(
                501,
                "NotImplemented",
                format!(
                    "Property '{name}' is stored outside the directory and is not supported on delta queries."
                ),
            ));
        }
        match kind.canonical(name) {
            Some(c) if !out.iter().any(|o| o == c) => out.push(c.to_owned()),
            Some(_) => {}
            None => {
                return Err(Reply::bad_request(format!(
                    "Could not find a property named '{name}' on type '{}'.",
                    kind.qualified()
                )));
            }
        }
    }
    Ok(out)
}

fn parse_id_filter(v: &str) -> Result<Vec<String>, Reply> {
    let unsupported = || {
        Reply::error(
            400,
            "Request_UnsupportedQuery",
            "Delta queries support $filter only as id eq '…' [or id eq '…'] with at most 50 ids.",
        )
    };
    let e = filter::parse(v).map_err(|_| unsupported())?;
    match filter::id_list(&e) {
        Some(ids) if ids.len() <= 50 => Ok(ids),
        _ => Err(unsupported()),
    }
}

/// A deltaLink GET: checks the token, then computes the changes since its sequence.
fn from_token(
    st: &mut State,
    inc: &Incoming,
    kind: Kind,
    tok: &str,
    minimal: bool,
    size: usize,
) -> Reply {
    let invalid =
        || Reply::bad_request("The delta token is invalid or was not issued for this resource.");
    let Some(v) = open(tok) else {
        return invalid();
    };
    if v.get("k").and_then(Value::as_str) != Some("delta")
        || v.get("c").and_then(Value::as_str) != Some(kind.collection())
    {
        return invalid();
    }
    let list = |k: &str| -> Option<Vec<String>> {
        v.get(k)?.as_array().map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
    };
    let spec = Spec {
        kind,
        select: list("sel"),
        ids: list("ids"),
    };
    let seq = v.get("s").and_then(Value::as_u64).unwrap_or(u64::MAX);
    let iat = v.get("iat").and_then(Value::as_u64).unwrap_or(0);
    let generation = v.get("g").and_then(Value::as_u64).unwrap_or(0);
    if seq > st.seq() {
        return invalid();
    }
    if generation < st.reset_gen {
        return gone(initial_url(st, &spec));
    }
    if epoch_ms(st.now()).saturating_sub(iat) > DELTA_TOKEN_LIFETIME.as_millis() as u64 {
        return Reply::error(
            400,
            "syncStateNotFound",
            "The sync state generation is not found. The delta token has expired; restart with a full sync.",
        );
    }
    let issued = vec![("$deltatoken".to_owned(), tok.to_owned())];
    if inc.query_pairs() != issued {
        st.violation(format!(
            "deltaLink not followed verbatim (query options are ignored with a token): {}",
            inc.path_and_query()
        ));
    }
    let round = build_round(st, &spec, Some(seq), false, minimal, size);
    st.page_reply(round, 0)
}

/// The initial delta URL of `spec` (what a 410 points to).
fn initial_url(st: &State, spec: &Spec) -> String {
    let mut q = Vec::new();
    if let Some(sel) = &spec.select {
        q.push(("$select".to_owned(), sel.join(",")));
    }
    if let Some(ids) = &spec.ids {
        let f: Vec<String> = ids.iter().map(|i| format!("id eq '{i}'")).collect();
        q.push(("$filter".to_owned(), f.join(" or ")));
    }
    let base = format!("{}/v1.0/{}/delta", st.origin, spec.kind.collection());
    if q.is_empty() {
        base
    } else {
        format!("{base}?{}", build_query(&q))
    }
}

/// Computes a round and stores it; returns the round id. `since` None = initial round;
/// `latest` = no items at all.
fn build_round(
    st: &mut State,
    spec: &Spec,
    since: Option<u64>,
    latest: bool,
    minimal: bool,
    size: usize,
) -> usize {
    let upto = st.seq();
    let items = match (latest, since) {
        (true, _) => Vec::new(),
        (false, None) => initial_items(st, spec),
        (false, Some(s)) => change_items(st, spec, s, minimal),
    };
    let items = split_members(items, st.settings.delta_members_per_page);
    let pages = cut_pages(
        items,
        size,
        st.settings.empty_page_every,
        st.settings.delta_replay,
    );
    let token = seal(&json!({
        "k": "delta",
        "c": spec.kind.collection(),
        "s": upto,
        "sel": spec.select,
        "ids": spec.ids,
        "iat": epoch_ms(st.now()),
        "g": st.reset_gen,
    }));
    let link = format!(
        "{}/v1.0/{}/delta?$deltatoken={token}",
        st.origin,
        spec.kind.collection()
    );
    let context = format!(
        "{}/v1.0/$metadata#{}({})",
        st.origin,
        spec.kind.collection(),
        spec.resolved_select().join(",")
    );
    let restart = initial_url(st, spec);
    let cursor = Cursor {
        path: format!("/v1.0/{}/delta", spec.kind.collection()),
        base_query: Vec::new(),
        pages,
        context,
        count: None,
        needs_consistency: None,
        end: End::Delta { link, restart },
        reset_gen: st.reset_gen,
        minimal,
    };
    st.store_cursor(cursor)
}

fn member_entry(st: &State, id: &str, removed: bool) -> Value {
    let ty = st.any(id).map_or(Kind::User, |o| o.kind).odata_type();
    if removed {
        json!({"@odata.type": ty, "id": id, "@removed": {"reason": "deleted"}})
    } else {
        json!({"@odata.type": ty, "id": id})
    }
}

fn full_item(st: &State, spec: &Spec, id: &str) -> Map<String, Value> {
    let Some(obj) = st.any(id) else {
        return Map::new();
    };
    let select: Vec<String> = spec
        .resolved_select()
        .into_iter()
        .filter(|s| s != "members" && s != "manager")
        .collect();
    let mut m = project_present(obj, &select);
    if spec.members_selected() {
        let members: Vec<Value> = st
            .visible_members(obj)
            .iter()
            .map(|mid| member_entry(st, mid, false))
            .collect();
        if !members.is_empty() {
            m.insert("members@delta".into(), Value::Array(members));
        }
    }
    m
}

/// The initial round: every live object of the kind, in creation order.
fn initial_items(st: &State, spec: &Spec) -> Vec<Value> {
    st.live_of(spec.kind)
        .filter(|o| spec.wants(&o.id))
        .map(|o| o.id.clone())
        .collect::<Vec<_>>()
        .iter()
        .map(|id| Value::Object(full_item(st, spec, id)))
        .collect()
}

/// Changes to one object inside a round's window.
#[derive(Default)]
struct Agg {
    full: bool,
    props: Vec<String>,
    /// member id → last event was an addition
    members: Vec<(String, bool)>,
}

/// A later round: what changed after `since`, one entry per object (before splitting).
fn change_items(st: &State, spec: &Spec, since: u64, minimal: bool) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut aggs: HashMap<String, Agg> = HashMap::new();
    for ch in st.log.iter().filter(|c| c.seq > since) {
        let Some(obj) = st.any(&ch.id) else { continue };
        if obj.kind != spec.kind || !spec.wants(&obj.id) {
            continue;
        }
        let agg = aggs.entry(obj.id.clone()).or_insert_with(|| {
            order.push(obj.id.clone());
            Agg::default()
        });
        match &ch.what {
            What::Created | What::Restored => agg.full = true,
            What::Updated(ps) => {
                for p in ps {
                    if !agg.props.contains(p) {
                        agg.props.push(p.clone());
                    }
                }
            }
            What::MemberAdded(m) | What::MemberRemoved(m) => {
                let added = matches!(ch.what, What::MemberAdded(_));
                agg.members.retain(|(x, _)| x != m);
                agg.members.push((m.clone(), added));
            }
            What::SoftDeleted | What::HardDeleted => {}
        }
    }
    let select = spec.resolved_select();
    let mut out = Vec::new();
    for id in order {
        let agg = &aggs[&id];
        let Some(obj) = st.any(&id) else { continue };
        match obj.status {
            Status::Gone => out.push(json!({"id": id, "@removed": {"reason": "deleted"}})),
            Status::SoftDeleted => out.push(json!({"id": id, "@removed": {"reason": "changed"}})),
            Status::Live if agg.full => out.push(Value::Object(full_item(st, spec, &id))),
            Status::Live => {
                let changed: Vec<String> = agg
                    .props
                    .iter()
                    .filter(|p| select.contains(p))
                    .cloned()
                    .collect();
                let members: Vec<Value> = if spec.members_selected() {
                    agg.members
                        .iter()
                        .filter(|(m, added)| !added || st.live(m).is_some())
                        .map(|(m, added)| member_entry(st, m, !added))
                        .collect()
                } else {
                    Vec::new()
                };
                if changed.is_empty() && members.is_empty() {
                    continue;
                }
                let mut m = if minimal {
                    let mut m = Map::new();
                    m.insert("id".into(), Value::String(id.clone()));
                    for p in &changed {
                        let v = obj.props.get(p).cloned().unwrap_or(Value::Null);
                        m.insert(p.clone(), v);
                    }
                    m
                } else {
                    let mut m = full_item(st, spec, &id);
                    m.remove("members@delta");
                    m
                };
                if !members.is_empty() {
                    m.insert("members@delta".into(), Value::Array(members));
                }
                out.push(Value::Object(m));
            }
        }
    }
    out
}

/// Splits items whose `members@delta` is longer than `per_page` into several items with the
/// same object (repeated) and consecutive chunks of the members.
fn split_members(items: Vec<Value>, per_page: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let n = item
            .get("members@delta")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if per_page == 0 || n <= per_page {
            out.push(item);
            continue;
        }
        let Value::Object(mut m) = item else { continue };
        let Some(Value::Array(members)) = m.remove("members@delta") else {
            continue;
        };
        for chunk in members.chunks(per_page) {
            let mut part = m.clone();
            part.insert("members@delta".into(), Value::Array(chunk.to_vec()));
            out.push(Value::Object(part));
        }
    }
    out
}
