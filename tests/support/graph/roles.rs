//! Directory roles, legacy API (§1.8, §2.3 points 14–16): templates, activation, and role
//! members (by role id or `roleTemplateId=…`). No paging on any of these.

use serde_json::{Value, json};

use super::collections::{duplicate_ref, ref_target};
use super::filter;
use super::http::{Incoming, Reply, json_object_body, opt};
use super::schema::{IMPLICIT_ROLES, Kind, ROLE_PROPS, ROLE_TEMPLATES};
use super::state::{State, project, template};

/// Resolves a role key: a role id, or `roleTemplateId={tid}`; `None` if not activated.
fn role_index(st: &State, key: &str) -> Option<usize> {
    match key.strip_prefix("roleTemplateId=") {
        Some(tid) => st
            .roles
            .iter()
            .position(|r| r.template_id.eq_ignore_ascii_case(tid.trim_matches('\''))),
        None => st.roles.iter().position(|r| r.id.eq_ignore_ascii_case(key)),
    }
}

fn no_options(inc: &Incoming, what: &str) -> Result<(), Reply> {
    match inc.query_pairs().iter().find(|(k, _)| k.starts_with('$')) {
        Some((k, _)) => Err(Reply::bad_request(format!(
            "The query option '{k}' is not supported on {what}."
        ))),
        None => Ok(()),
    }
}

fn template_json(t: &(&str, &str, &str)) -> Value {
    json!({"id": t.0, "deletedDateTime": null, "description": t.2, "displayName": t.1})
}

/// `GET /v1.0/directoryRoleTemplates` (no OData options: they are rejected).
pub(super) fn list_templates(st: &State, inc: &Incoming) -> Reply {
    if let Err(r) = no_options(inc, "directoryRoleTemplates") {
        return r;
    }
    let value: Vec<Value> = ROLE_TEMPLATES.iter().map(template_json).collect();
    Reply::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#directoryRoleTemplates", st.origin),
            "value": value,
        }),
    )
}

/// `GET /v1.0/directoryRoleTemplates/{id}`.
pub(super) fn get_template(st: &State, id: &str) -> Reply {
    match template(id) {
        Some(t) => {
            let mut v = template_json(&t);
            v["@odata.context"] = json!(format!(
                "{}/v1.0/$metadata#directoryRoleTemplates/$entity",
                st.origin
            ));
            Reply::json(200, v)
        }
        None => Reply::not_found(id),
    }
}

/// `GET /v1.0/directoryRoles`: the activated roles; `$filter` (eq on role properties) is
/// honoured, other options rejected.
pub(super) fn list_roles(st: &State, inc: &Incoming) -> Reply {
    let pairs = inc.query_pairs();
    let mut expr = None;
    for (k, v) in &pairs {
        match k.to_ascii_lowercase().as_str() {
            "$filter" => match filter::parse(v) {
                Ok(e) => {
                    let mut ps = Vec::new();
                    e.props(&mut ps);
                    if let Some((p, _)) = ps.iter().find(|(p, _)| !ROLE_PROPS.contains(&p.as_str()))
                    {
                        return Reply::bad_request(format!(
                            "Could not find a property named '{p}' on type 'microsoft.graph.directoryRole'."
                        ));
                    }
                    expr = Some(e);
                }
                Err(why) => return Reply::bad_request(format!("Invalid filter clause: {why}")),
            },
            o if o.starts_with('$') => {
                return Reply::bad_request(format!(
                    "The query option '{k}' is not supported on directoryRoles by this fake."
                ));
            }
            _ => {}
        }
    }
    let value: Vec<Value> = st
        .roles
        .iter()
        .map(|r| r.to_json())
        .filter(|v| {
            expr.as_ref()
                .is_none_or(|e| v.as_object().is_some_and(|m| e.eval(m)))
        })
        .collect();
    Reply::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#directoryRoles", st.origin),
            "value": value,
        }),
    )
}

/// `GET /v1.0/directoryRoles/{id | roleTemplateId=tid}`.
pub(super) fn get_role(st: &State, key: &str) -> Reply {
    match role_index(st, key) {
        Some(i) => {
            let mut v = st.roles[i].to_json();
            v["@odata.context"] = json!(format!(
                "{}/v1.0/$metadata#directoryRoles/$entity",
                st.origin
            ));
            Reply::json(200, v)
        }
        None => Reply::not_found(key),
    }
}

/// `POST /v1.0/directoryRoles {"roleTemplateId": …}` → 201 + the role.
pub(super) fn activate(st: &mut State, inc: &Incoming) -> Reply {
    let body = match json_object_body(inc) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(k) = body.keys().find(|k| *k != "roleTemplateId") {
        return Reply::bad_request(format!(
            "Property '{k}' is not allowed when activating a directory role; only roleTemplateId may be given."
        ));
    }
    let Some(tid) = body.get("roleTemplateId").and_then(Value::as_str) else {
        return Reply::bad_request(
            "Invalid value specified for property 'roleTemplateId' of resource 'DirectoryRole'.",
        );
    };
    if IMPLICIT_ROLES.iter().any(|i| i.eq_ignore_ascii_case(tid)) {
        return Reply::bad_request("Instantiating an implicit user role is not supported.");
    }
    if template(tid).is_none() {
        return Reply::bad_request(
            "Invalid value specified for property 'roleTemplateId' of resource 'DirectoryRole'.",
        );
    }
    if st.role(tid).is_some() {
        return Reply::bad_request(
            "A conflicting object with one or more of the specified property values is present in the directory.",
        );
    }
    let i = st.activate_role(tid);
    let mut v = st.roles[i].to_json();
    v["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#directoryRoles/$entity",
        st.origin
    ));
    Reply::json(201, v)
}

/// `GET /v1.0/directoryRoles/{key}/members`: directoryObjects with `@odata.type`, no paging.
pub(super) fn list_members(st: &State, inc: &Incoming, key: &str) -> Reply {
    let Some(i) = role_index(st, key) else {
        return Reply::not_found(key);
    };
    let sel = opt(&inc.query_pairs(), "$select").map(str::to_owned);
    let value: Vec<Value> = st
        .role_members(&st.roles[i])
        .iter()
        .filter_map(|id| st.live(id))
        .map(|o| {
            let select = match &sel {
                Some(s) => s
                    .split(',')
                    .filter_map(|n| o.kind.canonical(n.trim()))
                    .map(str::to_owned)
                    .collect(),
                None => o.kind.default_select(),
            };
            let mut m = project(o, &select);
            m.insert("@odata.type".into(), json!(o.kind.odata_type()));
            Value::Object(m)
        })
        .collect();
    Reply::json(
        200,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#directoryObjects", st.origin),
            "value": value,
        }),
    )
}

/// `POST /v1.0/directoryRoles/{key}/members/$ref` → 204 (users and service principals).
pub(super) fn add_member(st: &mut State, inc: &Incoming, key: &str) -> Reply {
    let Some(i) = role_index(st, key) else {
        return Reply::not_found(key);
    };
    let target = match ref_target(inc) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(obj) = st.live(&target) else {
        return Reply::not_found(&target);
    };
    if obj.kind == Kind::Group {
        return Reply::bad_request(
            "Only users and service principals can be added to this directory role.",
        );
    }
    let id = obj.id.clone();
    if st.role_members(&st.roles[i]).contains(&id) {
        return duplicate_ref();
    }
    st.roles[i].members.push(id);
    Reply::empty(204)
}

/// `DELETE /v1.0/directoryRoles/{key}/members/{id}/$ref` → 204; 404 if not a member.
pub(super) fn remove_member(st: &mut State, key: &str, member: &str) -> Reply {
    let Some(i) = role_index(st, key) else {
        return Reply::not_found(key);
    };
    let before = st.roles[i].members.len();
    st.roles[i]
        .members
        .retain(|m| !m.eq_ignore_ascii_case(member));
    if st.roles[i].members.len() == before {
        return Reply::not_found(member);
    }
    Reply::empty(204)
}
