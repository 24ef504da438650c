//! Entra directory roles through the legacy `directoryRoles` API: list the
//! templates and the activated roles, activate a role from its template
//! (the Rhai equivalent of `Enable-AzureADDirectoryRole`, which Active
//! Roles' setup asks for with "Directory Writers"), list and add members.
//! Activation is read-then-write: Graph answers 400 to activating a role
//! that is already active, so an active role is left alone.

use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::connector::graph::{Call, GraphConnector, enc, is_guid};
use crate::connector::{Error, Result};

/// Templates Graph will not instantiate (implicit user roles).
const IMPLICIT: &[&str] = &[
    "a0b1b346-4d3e-4e8b-98f8-753987be4970",
    "10dae51f-b6af-4016-8d66-8c2a99b929b3",
    "2af84b1e-32c8-42b7-82bc-daa82404023b",
];

fn items(j: Json, what: &str) -> Result<Vec<Json>> {
    match j {
        Json::Object(mut m) => match m.remove("value") {
            Some(Json::Array(a)) => Ok(a),
            _ => Err(Error::Other(format!(
                "{what}: the answer has no 'value' list"
            ))),
        },
        _ => Err(Error::Other(format!(
            "{what}: the answer is not a collection"
        ))),
    }
}

fn text<'a>(j: &'a Json, k: &str) -> &'a str {
    j.get(k).and_then(Json::as_str).unwrap_or("")
}

/// Every directory role template (`GET /directoryRoleTemplates`; Graph
/// takes no query options there and does not page it).
pub async fn templates(g: &GraphConnector) -> Result<Vec<Json>> {
    let what = "directoryRoleTemplates";
    let r = g.http().send(&Call::get(g.http().url(what), what)).await?;
    items(r.json(what)?, what)
}

/// The activated directory roles (`GET /directoryRoles`).
pub async fn roles(g: &GraphConnector) -> Result<Vec<Json>> {
    let what = "directoryRoles";
    let r = g.http().send(&Call::get(g.http().url(what), what)).await?;
    items(r.json(what)?, what)
}

/// The template a role name (display name, any case) or template id names.
pub async fn template(g: &GraphConnector, role: &str) -> Result<Json> {
    let role = role.trim();
    let all = templates(g).await?;
    let found = all.into_iter().find(|t| {
        text(t, "id").eq_ignore_ascii_case(role)
            || text(t, "displayName").eq_ignore_ascii_case(role)
    });
    found.ok_or_else(|| {
        Error::NotFound(format!(
            "directory role '{role}' (no role template has this name or id; az.role_templates() lists them)"
        ))
    })
}

/// The result of [`enable_role`].
#[derive(Debug, Clone)]
pub struct Enabled {
    /// The active role object (`id`, `displayName`, `roleTemplateId`, ...).
    pub role: Json,
    /// True when this call activated it; false when it was already active.
    pub activated: bool,
}

/// Activates the role named by `role` (display name or template id) if it
/// is not active yet.
pub async fn enable_role(g: &GraphConnector, role: &str) -> Result<Enabled> {
    let t = template(g, role).await?;
    let tid = text(&t, "id").to_string();
    let name = text(&t, "displayName").to_string();
    if let Some(r) = active(g, &tid).await? {
        return Ok(Enabled {
            role: r,
            activated: false,
        });
    }
    if IMPLICIT.iter().any(|i| i.eq_ignore_ascii_case(&tid)) {
        return Err(Error::Object {
            object: format!("directory role '{name}'"),
            cause: "is an implicit user role, which Entra does not activate".into(),
            code: None,
        });
    }
    let what = format!("activate directory role '{name}'");
    let call = Call::with_body(
        Method::POST,
        g.http().url("directoryRoles"),
        &what,
        json!({ "roleTemplateId": tid }),
    );
    let r = g.http().exchange(&call).await?;
    if r.status.is_success() {
        return Ok(Enabled {
            role: r.json(&what)?,
            activated: true,
        });
    }
    // Activated meanwhile by someone else: Graph says 400; that is done.
    if r.status.as_u16() == 400
        && let Some(role) = active(g, &tid).await?
    {
        return Ok(Enabled {
            role,
            activated: false,
        });
    }
    Err(g.http().refusal(&call, &r))
}

async fn active(g: &GraphConnector, template_id: &str) -> Result<Option<Json>> {
    Ok(roles(g)
        .await?
        .into_iter()
        .find(|r| text(r, "roleTemplateId").eq_ignore_ascii_case(template_id)))
}

/// The members path of the role named `role` (by template id).
async fn members_path(g: &GraphConnector, role: &str) -> Result<(String, String)> {
    let t = template(g, role).await?;
    let tid = text(&t, "id").to_string();
    let name = text(&t, "displayName").to_string();
    Ok((
        format!("directoryRoles/roleTemplateId={}/members", enc(&tid)),
        name,
    ))
}

fn inactive(name: &str) -> Error {
    Error::Object {
        object: format!("directory role '{name}'"),
        cause: format!("is not active in this tenant; az.enable_role(\"{name}\") activates it"),
        code: Some(404),
    }
}

/// The members of an active role (users, groups, service principals, each
/// with its `@odata.type`). Graph does not page role members.
pub async fn role_members(g: &GraphConnector, role: &str) -> Result<Vec<Json>> {
    let (path, name) = members_path(g, role).await?;
    let what = format!("members of directory role '{name}'");
    match g.get_json(&path, &what).await? {
        Some(j) => items(j, &what),
        None => Err(inactive(&name)),
    }
}

/// The directory object a principal names: an object id, an app id (of a
/// service principal), a userPrincipalName, or a service principal's
/// display name.
pub async fn principal(g: &GraphConnector, who: &str) -> Result<Json> {
    let who = who.trim();
    if is_guid(who) {
        if let Some(o) = g
            .get_json(&format!("directoryObjects/{}", enc(who)), who)
            .await?
        {
            return Ok(o);
        }
        if let Some(sp) = service_principal(g, &format!("appId eq '{who}'"), who).await? {
            return Ok(sp);
        }
        return Err(Error::NotFound(format!(
            "{who} (no object or app with this id)"
        )));
    }
    if who.contains('@') {
        return g
            .get_json(&format!("users/{}", enc(who)), who)
            .await?
            .ok_or_else(|| Error::NotFound(who.to_string()));
    }
    let f = format!("displayName eq '{}'", who.replace('\'', "''"));
    service_principal(g, &f, who).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "{who} (no user principal name, id or app of this name)"
        ))
    })
}

async fn service_principal(g: &GraphConnector, filter: &str, who: &str) -> Result<Option<Json>> {
    let url = format!(
        "{}?$filter={}&$select=id,appId,displayName",
        g.http().url("servicePrincipals"),
        enc(filter)
    );
    let j = g.http().send(&Call::get(url, who)).await?.json(who)?;
    let mut found = items(j, who)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(Error::Ambiguous {
            identity: who.to_string(),
            count: n,
            sample: found
                .iter()
                .map(|s| text(s, "id").to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Adds a user, group or app to an active role; true when added, false
/// when it was a member already.
pub async fn add_role_member(g: &GraphConnector, role: &str, who: &str) -> Result<bool> {
    let (path, name) = members_path(g, role).await?;
    let p = principal(g, who).await?;
    let pid = text(&p, "id").to_string();
    let what = format!("directory role '{name}': add member {who}");
    g.add_ref(&format!("{path}/$ref"), &pid, &what, async || {
        Ok(role_members(g, &name)
            .await?
            .iter()
            .any(|m| text(m, "id").eq_ignore_ascii_case(&pid)))
    })
    .await
    .map_err(|e| match e {
        Error::Object {
            code: Some(404), ..
        } => inactive(&name),
        e => e,
    })
}
