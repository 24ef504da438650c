//! The fake tenant's state: directory objects, the change log delta reads, the clock, the id
//! generator, issued tokens and cursors, switches, and the request/violation logs. One
//! `State` lives behind the `Mutex` shared by the HTTP handlers and the `GraphFake` methods.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::paging::Cursor;
use super::schema::{GLOBAL_ADMIN, Kind, PType, ROLE_TEMPLATES};
use super::throttle::Rule;
use super::{Fail, Request};

/// The tenant's GUID.
pub(super) const TENANT_ID: &str = "4f1e2d3c-0000-4000-8000-00000000c0de";
/// The tenant's initial domain.
pub(super) const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
/// App (client) id of the registered app.
pub(super) const CLIENT_ID: &str = "0d5e8a4f-1a2b-4c3d-8e9f-00000000a991";
/// Its client secret.
pub(super) const CLIENT_SECRET: &str = "fake~Secret.0123456789abcdefghijklmnop";
/// The fake clock starts at 2026-01-01T00:00:00Z.
pub(super) const START_EPOCH_SECS: u64 = 1_767_225_600;
/// Soft-deleted objects stay restorable this long.
pub(super) const RECYCLE_BIN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Namespace of the deterministic (v5) GUIDs.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1c_0e2f_5b7d_4e59_9c3a_0000_0000_f0e5);

/// Fake time: a fixed start instant + a virtual offset ([`Clock::advance`]) + real elapsed time.
#[derive(Debug)]
pub(super) struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// The current fake time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(START_EPOCH_SECS) + self.offset + self.base.elapsed()
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, d: Duration) {
        self.offset += d;
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `YYYY-MM-DDTHH:MM:SS` (no time zone), as in Graph's `innerError.date`.
pub(super) fn graph_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as in Graph's DateTimeOffset properties.
pub(super) fn iso_z(t: SystemTime) -> String {
    format!("{}Z", graph_date(t))
}

/// `YYYY-MM-DD HH:MM:SSZ`, as in the token endpoint's `timestamp`.
pub(super) fn aad_timestamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// Lifecycle of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Live,
    /// in the recycle bin (users, Microsoft 365 groups)
    SoftDeleted,
    /// permanently deleted; kept only so delta can report it
    Gone,
}

/// A directory object.
#[derive(Debug, Clone)]
pub(super) struct Obj {
    pub id: String,
    pub kind: Kind,
    /// every property ever set (a key with `null` was cleared; a missing key was never set)
    pub props: Map<String, Value>,
    pub status: Status,
    /// member ids, in the order added (groups only); see [`State::visible_members`]
    pub members: Vec<String>,
    /// the same ids, for fast membership tests
    pub member_set: HashSet<String>,
    /// when it went to the recycle bin (fake clock)
    pub deleted_at: Option<SystemTime>,
}

impl Obj {
    /// True for a group whose `groupTypes` contains `Unified` (a Microsoft 365 group).
    pub fn is_unified(&self) -> bool {
        self.props
            .get("groupTypes")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|t| t.as_str() == Some("Unified")))
    }

    /// String property `name`, if set.
    pub fn str_prop(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Value::as_str)
    }
}

/// What happened to an object, as recorded in the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum What {
    Created,
    /// names of the properties whose value changed
    Updated(Vec<String>),
    MemberAdded(String),
    MemberRemoved(String),
    SoftDeleted,
    HardDeleted,
    Restored,
}

/// One change-log entry; its sequence number is its index + 1.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub seq: u64,
    pub id: String,
    pub what: What,
}

/// An activated directory role.
#[derive(Debug, Clone)]
pub(super) struct Role {
    pub id: String,
    pub template_id: String,
    pub members: Vec<String>,
}

impl Role {
    /// The role as Graph returns it.
    pub fn to_json(&self) -> Value {
        let (_, name, desc) = template(&self.template_id).expect("known template");
        json!({
            "id": self.id,
            "deletedDateTime": null,
            "description": desc,
            "displayName": name,
            "roleTemplateId": self.template_id,
        })
    }
}

/// (id, displayName, description) of a role template.
pub(super) fn template(id: &str) -> Option<(&'static str, &'static str, &'static str)> {
    ROLE_TEMPLATES
        .iter()
        .find(|t| t.0.eq_ignore_ascii_case(id))
        .copied()
}

/// Test switches.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub token_lifetime: u64,
    pub page_size_cap: Option<usize>,
    pub empty_page_every: usize,
    pub delta_members_per_page: usize,
    pub delta_replay: bool,
    pub password_permission: bool,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub n: u64,
    pub expires: SystemTime,
}

/// The whole fake tenant.
#[derive(Debug)]
pub(super) struct State {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub clock: Clock,
    next_object: u64,
    next_request: u64,
    pub objects: Vec<Obj>,
    index: HashMap<String, usize>,
    /// lower-case userPrincipalName → index of the (live or soft-deleted) user holding it
    upn_index: HashMap<String, usize>,
    pub log: Vec<Change>,
    /// access token string → issue record
    pub tokens: HashMap<String, Issued>,
    pub tokens_issued: u64,
    /// tokens numbered up to this are revoked
    pub revoked_upto: u64,
    pub roles: Vec<Role>,
    pub throttles: Vec<Rule>,
    pub fails: Vec<Fail>,
    /// list/delta rounds; a round id is the index
    pub cursors: Vec<Cursor>,
    pub settings: Settings,
    /// bumped by `tenant_reset`; delta and skip tokens carry the value they were issued under
    pub reset_gen: u64,
    pub verified_domains: Vec<String>,
    pub requests: Vec<Request>,
    pub violations: Vec<String>,
    /// (path, body) of creates that were applied but answered 503
    pub lost_creates: Vec<(String, String)>,
    /// id of the fake app's own service principal
    pub app_sp: String,
}

impl State {
    /// A fresh tenant: the app's service principal and an activated Global Administrator role.
    pub fn new(origin: String) -> State {
        let mut st = State {
            origin,
            clock: Clock::new(),
            next_object: 0,
            next_request: 0,
            objects: Vec::new(),
            index: HashMap::new(),
            upn_index: HashMap::new(),
            log: Vec::new(),
            tokens: HashMap::new(),
            tokens_issued: 0,
            revoked_upto: 0,
            roles: Vec::new(),
            throttles: Vec::new(),
            fails: Vec::new(),
            cursors: Vec::new(),
            settings: Settings {
                token_lifetime: 3599,
                page_size_cap: None,
                empty_page_every: 3,
                delta_members_per_page: 20,
                delta_replay: false,
                password_permission: false,
            },
            reset_gen: 0,
            verified_domains: vec![TENANT_DOMAIN.to_owned(), "contoso.com".to_owned()],
            requests: Vec::new(),
            violations: Vec::new(),
            lost_creates: Vec::new(),
            app_sp: String::new(),
        };
        st.app_sp = st.create(
            Kind::ServicePrincipal,
            json!({"appId": CLIENT_ID, "displayName": "idsync-test", "appDisplayName": "idsync-test"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let ga = st.new_guid();
        st.roles.push(Role {
            id: ga,
            template_id: GLOBAL_ADMIN.to_owned(),
            members: Vec::new(),
        });
        st
    }

    /// Current fake time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The next deterministic object GUID.
    pub fn new_guid(&mut self) -> String {
        self.next_object += 1;
        uuid::Uuid::new_v5(
            &ID_NAMESPACE,
            format!("object-{}", self.next_object).as_bytes(),
        )
        .to_string()
    }

    /// The next deterministic request id.
    pub fn new_request_id(&mut self) -> String {
        self.next_request += 1;
        uuid::Uuid::new_v5(
            &ID_NAMESPACE,
            format!("request-{}", self.next_request).as_bytes(),
        )
        .to_string()
    }

    /// A deterministic opaque string derived from `what` (tokens, trace ids).
    pub fn derived_guid(what: &str) -> String {
        uuid::Uuid::new_v5(&ID_NAMESPACE, what.as_bytes()).to_string()
    }

    /// Latest change-log sequence number (0 = empty log).
    pub fn seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn record(&mut self, id: &str, what: What) {
        let seq = self.seq() + 1;
        self.log.push(Change {
            seq,
            id: id.to_owned(),
            what,
        });
    }

    /// Any stored object, including soft-deleted and gone ones (id case-insensitive).
    pub fn any(&self, id: &str) -> Option<&Obj> {
        self.index
            .get(&id.to_ascii_lowercase())
            .map(|&i| &self.objects[i])
    }

    fn any_mut(&mut self, id: &str) -> Option<&mut Obj> {
        match self.index.get(&id.to_ascii_lowercase()) {
            Some(&i) => Some(&mut self.objects[i]),
            None => None,
        }
    }

    /// A live object by id.
    pub fn live(&self, id: &str) -> Option<&Obj> {
        self.any(id).filter(|o| o.status == Status::Live)
    }

    /// A live object of `kind` by id, or (users only) by userPrincipalName.
    pub fn find(&self, kind: Kind, key: &str) -> Option<&Obj> {
        if let Some(o) = self.live(key).filter(|o| o.kind == kind) {
            return Some(o);
        }
        if kind == Kind::User {
            return self
                .upn_index
                .get(&key.to_lowercase())
                .map(|&i| &self.objects[i])
                .filter(|o| o.status == Status::Live);
        }
        None
    }

    /// Live objects of `kind`, in creation order.
    pub fn live_of(&self, kind: Kind) -> impl Iterator<Item = &Obj> {
        self.objects
            .iter()
            .filter(move |o| o.kind == kind && o.status == Status::Live)
    }

    /// A user (live or soft-deleted) holding userPrincipalName `upn`, other than `except`.
    pub fn upn_holder(&self, upn: &str, except: Option<&str>) -> Option<&Obj> {
        self.upn_index
            .get(&upn.to_lowercase())
            .map(|&i| &self.objects[i])
            .filter(|o| o.status != Status::Gone && Some(o.id.as_str()) != except)
    }

    /// Creates an object with `props` plus defaults; logs `Created`. Returns the id.
    pub fn create(&mut self, kind: Kind, mut props: Map<String, Value>) -> String {
        let id = self.new_guid();
        let now = iso_z(self.now());
        props.insert("id".into(), Value::String(id.clone()));
        let mut default = |k: &str, v: Value| {
            if !props.contains_key(k) {
                props.insert(k.into(), v);
            }
        };
        match kind {
            Kind::User => {
                default("createdDateTime", Value::String(now));
                default("businessPhones", json!([]));
                default("accountEnabled", json!(true));
                default("userType", json!("Member"));
                let nick = props
                    .get("userPrincipalName")
                    .and_then(Value::as_str)
                    .and_then(|u| u.split('@').next())
                    .map(str::to_owned);
                if let Some(n) = nick {
                    default_if_absent(&mut props, "mailNickname", Value::String(n));
                }
            }
            Kind::Group => {
                default("createdDateTime", Value::String(now));
                default("groupTypes", json!([]));
                default("securityEnabled", json!(true));
                default("mailEnabled", json!(false));
                let nick = props
                    .get("displayName")
                    .and_then(Value::as_str)
                    .map(|d| d.chars().filter(|c| c.is_ascii_alphanumeric()).collect());
                if let Some(n) = nick {
                    default_if_absent(&mut props, "mailNickname", Value::String(n));
                }
                let unified = props
                    .get("groupTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|t| t == "Unified"));
                if unified && !props.contains_key("mail") {
                    let nick = props.get("mailNickname").and_then(Value::as_str);
                    if let Some(n) = nick {
                        let mail = format!("{n}@{TENANT_DOMAIN}");
                        props.insert("mail".into(), Value::String(mail));
                    }
                }
            }
            Kind::ServicePrincipal => {
                default("accountEnabled", json!(true));
                default("servicePrincipalType", json!("Application"));
                default("appOwnerOrganizationId", json!(TENANT_ID));
                default("servicePrincipalNames", json!([]));
                default("tags", json!([]));
                let app = props
                    .get("appId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match app {
                    Some(a) => {
                        let names = json!([a]);
                        props.insert("servicePrincipalNames".into(), names);
                    }
                    None => {
                        let app = State::derived_guid(&format!("app-of-{id}"));
                        props.insert("appId".into(), Value::String(app));
                    }
                }
            }
        }
        let at = self.objects.len();
        self.index.insert(id.to_ascii_lowercase(), at);
        if kind == Kind::User
            && let Some(upn) = props.get("userPrincipalName").and_then(Value::as_str)
        {
            self.upn_index.insert(upn.to_lowercase(), at);
        }
        self.objects.push(Obj {
            id: id.clone(),
            kind,
            props,
            status: Status::Live,
            members: Vec::new(),
            member_set: HashSet::new(),
            deleted_at: None,
        });
        self.record(&id, What::Created);
        id
    }

    /// Applies `patch` (a `null` value clears); logs `Updated` with the names whose value
    /// changed (nothing when none did). Returns those names.
    pub fn update(&mut self, id: &str, patch: &Map<String, Value>) -> Vec<String> {
        let Some(&at) = self.index.get(&id.to_ascii_lowercase()) else {
            return Vec::new();
        };
        let obj = &mut self.objects[at];
        let old_upn = obj.str_prop("userPrincipalName").map(str::to_lowercase);
        let mut changed = Vec::new();
        for (k, v) in patch {
            if k == "id" {
                continue;
            }
            let name = obj.kind.canonical(k).unwrap_or(k).to_owned();
            if obj.props.get(&name) != Some(v) {
                obj.props.insert(name.clone(), v.clone());
                changed.push(name);
            }
        }
        let new_upn = obj.str_prop("userPrincipalName").map(str::to_lowercase);
        let (is_user, id) = (obj.kind == Kind::User, obj.id.clone());
        if is_user && old_upn != new_upn {
            if let Some(old) = old_upn
                && self.upn_index.get(&old) == Some(&at)
            {
                self.upn_index.remove(&old);
            }
            if let Some(new) = new_upn {
                self.upn_index.insert(new, at);
            }
        }
        if !changed.is_empty() {
            self.record(&id, What::Updated(changed.clone()));
        }
        changed
    }

    /// Adds `member` to `group`; false if it already was a member.
    pub fn add_member(&mut self, group: &str, member: &str) -> bool {
        let member = match self.any(member) {
            Some(m) => m.id.clone(),
            None => return false,
        };
        let Some(g) = self.any_mut(group) else {
            return false;
        };
        if !g.member_set.insert(member.clone()) {
            return false;
        }
        g.members.push(member.clone());
        let gid = g.id.clone();
        self.record(&gid, What::MemberAdded(member));
        true
    }

    /// Removes `member` from `group`; false if it was not a member.
    pub fn remove_member(&mut self, group: &str, member: &str) -> bool {
        let member = match self.any(member) {
            Some(m) => m.id.clone(),
            None => member.to_ascii_lowercase(),
        };
        let Some(g) = self.any_mut(group) else {
            return false;
        };
        if !g.member_set.remove(&member) {
            return false;
        }
        let pos = g.members.iter().position(|m| *m == member);
        let m = g.members.remove(pos.expect("member_set and members agree"));
        let gid = g.id.clone();
        self.record(&gid, What::MemberRemoved(m));
        true
    }

    /// Member ids of `group` whose objects are live.
    pub fn visible_members(&self, group: &Obj) -> Vec<String> {
        group
            .members
            .iter()
            .filter(|m| self.live(m).is_some())
            .cloned()
            .collect()
    }

    /// Live groups that list `id` as a member.
    fn groups_containing(&self, id: &str) -> Vec<String> {
        self.objects
            .iter()
            .filter(|g| g.status == Status::Live && g.member_set.contains(id))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Soft-deletes (recycle bin). Memberships stay stored but are hidden, and each group
    /// containing the object logs a member removal.
    pub fn soft_delete(&mut self, id: &str) -> bool {
        let at = self.now();
        let now = iso_z(at);
        let Some(o) = self.any_mut(id).filter(|o| o.status == Status::Live) else {
            return false;
        };
        o.status = Status::SoftDeleted;
        o.deleted_at = Some(at);
        o.props.insert("deletedDateTime".into(), Value::String(now));
        let id = o.id.clone();
        self.record(&id, What::SoftDeleted);
        for g in self.groups_containing(&id) {
            self.record(&g, What::MemberRemoved(id.clone()));
        }
        true
    }

    /// Deletes permanently (live or soft-deleted object): drops its memberships.
    pub fn hard_delete(&mut self, id: &str) -> bool {
        let Some(o) = self.any_mut(id).filter(|o| o.status != Status::Gone) else {
            return false;
        };
        let was_live = o.status == Status::Live;
        o.status = Status::Gone;
        o.members.clear();
        o.member_set.clear();
        let upn = o.str_prop("userPrincipalName").map(str::to_lowercase);
        let id = o.id.clone();
        self.record(&id, What::HardDeleted);
        let groups = if was_live {
            self.groups_containing(&id)
        } else {
            Vec::new()
        };
        for g in &groups {
            self.record(g, What::MemberRemoved(id.clone()));
        }
        for g in self.objects.iter_mut() {
            if g.member_set.remove(&id) {
                g.members.retain(|m| *m != id);
            }
        }
        if let Some(upn) = upn
            && self.index.get(&id) == self.upn_index.get(&upn)
        {
            self.upn_index.remove(&upn);
        }
        for r in self.roles.iter_mut() {
            r.members.retain(|m| *m != id);
        }
        true
    }

    /// Restores a soft-deleted object with its memberships.
    pub fn restore(&mut self, id: &str) -> bool {
        let Some(o) = self.any_mut(id).filter(|o| o.status == Status::SoftDeleted) else {
            return false;
        };
        o.status = Status::Live;
        o.deleted_at = None;
        o.props.insert("deletedDateTime".into(), Value::Null);
        let id = o.id.clone();
        self.record(&id, What::Restored);
        for g in self.groups_containing(&id) {
            self.record(&g, What::MemberAdded(id.clone()));
        }
        true
    }

    /// Permanently deletes what has been in the recycle bin for [`RECYCLE_BIN_LIFETIME`]
    /// (fake clock), as Entra does after 30 days.
    pub fn purge_recycle_bin(&mut self) {
        let now = self.now();
        let expired: Vec<String> = self
            .objects
            .iter()
            .filter(|o| o.status == Status::SoftDeleted)
            .filter(|o| {
                o.deleted_at
                    .is_some_and(|t| t + RECYCLE_BIN_LIFETIME <= now)
            })
            .map(|o| o.id.clone())
            .collect();
        for id in expired {
            self.hard_delete(&id);
        }
    }

    /// The activated role with role id or template id `key`.
    pub fn role(&self, key: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(key) || r.template_id.eq_ignore_ascii_case(key))
    }

    /// Activates the role of template `tid` (no checks); returns its index.
    pub fn activate_role(&mut self, tid: &str) -> usize {
        if let Some(i) = self
            .roles
            .iter()
            .position(|r| r.template_id.eq_ignore_ascii_case(tid))
        {
            return i;
        }
        let id = self.new_guid();
        let template_id = template(tid).map(|t| t.0).unwrap_or(tid).to_owned();
        self.roles.push(Role {
            id,
            template_id,
            members: Vec::new(),
        });
        self.roles.len() - 1
    }

    /// Live member ids of a role.
    pub fn role_members(&self, role: &Role) -> Vec<String> {
        role.members
            .iter()
            .filter(|m| self.live(m).is_some())
            .cloned()
            .collect()
    }

    /// Records client misbehaviour.
    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Page size for a list or delta round: `wanted` (or 100), capped by the switch.
    pub fn page_size(&self, wanted: Option<usize>) -> usize {
        let n = wanted.unwrap_or(100);
        match self.settings.page_size_cap {
            Some(cap) => n.min(cap).max(1),
            None => n.max(1),
        }
    }
}

fn default_if_absent(props: &mut Map<String, Value>, k: &str, v: Value) {
    if !props.contains_key(k) {
        props.insert(k.into(), v);
    }
}

/// Projects `obj` for a GET/list answer: `id` plus each selected (or default) property,
/// `null` where unset; `passwordProfile.password` is never returned.
pub(super) fn project(obj: &Obj, select: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(obj.id.clone()));
    for name in select {
        let Some(p) = obj.kind.prop(name) else {
            continue;
        };
        if p.ty == PType::Nav {
            continue;
        }
        let v = obj.props.get(p.name).cloned().unwrap_or(Value::Null);
        out.insert(p.name.to_owned(), hide_password(p.name, v));
    }
    out
}

/// Projects for delta: only properties ever set (a never-set property is omitted).
pub(super) fn project_present(obj: &Obj, select: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(obj.id.clone()));
    for name in select {
        if let Some(v) = obj.props.get(name) {
            out.insert(name.clone(), hide_password(name, v.clone()));
        }
    }
    out
}

fn hide_password(name: &str, mut v: Value) -> Value {
    if name == "passwordProfile"
        && let Some(m) = v.as_object_mut()
    {
        m.insert("password".into(), Value::Null);
    }
    v
}
