//! Which object a name means in Graph: the collections (and what is read
//! from each by default), ids, userPrincipalNames and unique display names
//! resolved to (collection, id), with the collection of every id seen
//! remembered so writes by id need no lookup.

use serde_json::Value as Json;

use super::GraphConnector;
use super::page::{ListQuery, enc};
use crate::connector::{Error, Result};

/// User properties read by `get` and by the sync engine when no list is
/// given (Graph returns a small default set otherwise).
pub const USER_PROPERTIES: &[&str] = &[
    "id",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "mailNickname",
    "jobTitle",
    "department",
    "companyName",
    "employeeId",
    "officeLocation",
    "city",
    "country",
    "usageLocation",
    "mobilePhone",
    "businessPhones",
    "accountEnabled",
    "userType",
    "onPremisesImmutableId",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
];

/// Group properties read by `get` and by the sync engine by default.
pub const GROUP_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "description",
    "mail",
    "mailNickname",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
];

/// The collections a base may name, with the `@odata.type` of their items.
const COLLECTIONS: &[(&str, &str)] = &[
    ("users", "#microsoft.graph.user"),
    ("groups", "#microsoft.graph.group"),
    ("servicePrincipals", "#microsoft.graph.servicePrincipal"),
    ("contacts", "#microsoft.graph.orgContact"),
];

/// The collection a base names (any case), e.g. "Groups" → "groups".
pub fn collection(base: &str) -> Option<&'static str> {
    let b = base.trim().trim_matches('/');
    COLLECTIONS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(b))
        .map(|(c, _)| *c)
}

fn collection_of_type(t: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(_, ty)| ty.eq_ignore_ascii_case(t))
        .map(|(c, _)| *c)
}

/// True for a GUID in its usual text form (Graph ids).
pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

impl GraphConnector {
    pub(super) fn remember(&self, ids: impl Iterator<Item = String>, kind: &'static str) {
        if let Ok(mut m) = self.kinds.lock() {
            for id in ids {
                m.insert(id.to_ascii_lowercase(), kind);
            }
        }
    }

    pub(super) fn known_kind(&self, id: &str) -> Option<&'static str> {
        self.kinds
            .lock()
            .ok()?
            .get(&id.to_ascii_lowercase())
            .copied()
    }

    /// Finds the object an identity names: an id (any object kind), a
    /// userPrincipalName, or a display name (users and groups; two matches
    /// are an error). Returns its collection and JSON with the default
    /// property list of its kind.
    pub async fn find(&self, identity: &str) -> Result<Option<(&'static str, Json)>> {
        let ident = identity.trim();
        if ident.is_empty() {
            return Err(Error::usage("an empty identity names no object"));
        }
        if is_guid(ident) {
            let order: Vec<&'static str> = match self.known_kind(ident) {
                Some(k) => vec![k],
                None => {
                    let path = format!("directoryObjects/{}", enc(ident));
                    match self.get_json(&path, ident).await? {
                        None => return Ok(None),
                        Some(o) => {
                            match o
                                .get("@odata.type")
                                .and_then(Json::as_str)
                                .and_then(collection_of_type)
                            {
                                Some(k) => vec![k],
                                None => return Ok(Some(("directoryObjects", o))),
                            }
                        }
                    }
                }
            };
            for k in order {
                if let Some(o) = self.get_json(&object_path(k, ident), ident).await? {
                    self.remember(std::iter::once(ident.to_string()), k);
                    return Ok(Some((k, o)));
                }
            }
            return Ok(None);
        }
        if ident.contains('@') {
            let o = self.get_json(&object_path("users", ident), ident).await?;
            if let Some(id) = o.as_ref().and_then(|o| o.get("id")).and_then(Json::as_str) {
                self.remember(std::iter::once(id.to_string()), "users");
            }
            return Ok(o.map(|o| ("users", o)));
        }
        let filter = format!("displayName eq '{}'", ident.replace('\'', "''"));
        let mut found: Vec<(&'static str, Json)> = Vec::new();
        for k in ["users", "groups"] {
            let q = ListQuery {
                select: default_select(k),
                filter: Some(filter.clone()),
                ..ListQuery::default()
            };
            self.list(k, &q, &mut |o| {
                found.push((k, o));
                Ok(found.len() < 3)
            })
            .await?;
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(Error::Ambiguous {
                identity: ident.to_string(),
                count: n,
                sample: found
                    .iter()
                    .filter_map(|(k, o)| Some(format!("{k}/{}", o.get("id")?.as_str()?)))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The collection and id of an identity (no extra read for ids seen
    /// before); an error when nothing matches.
    pub async fn locate(&self, identity: &str) -> Result<(&'static str, String)> {
        if is_guid(identity)
            && let Some(k) = self.known_kind(identity)
        {
            return Ok((k, identity.to_string()));
        }
        match self.find(identity).await? {
            Some((k, o)) => {
                let id = o
                    .get("id")
                    .and_then(Json::as_str)
                    .unwrap_or(identity)
                    .to_string();
                Ok((k, id))
            }
            None => Err(Error::NotFound(identity.to_string())),
        }
    }

    pub(super) async fn group_id(&self, group: &str) -> Result<String> {
        let (k, id) = self.locate(group).await?;
        if k != "groups" {
            return Err(Error::Object {
                object: group.to_string(),
                cause: format!("is not a group (it is in {k})"),
                code: None,
            });
        }
        Ok(id)
    }
}

/// `{collection}/{id}` with the id encoded (UPNs may hold `#`, `'`).
pub(super) fn object_path(kind: &str, id: &str) -> String {
    format!("{kind}/{}", enc(id))
}

/// The `$select` used when the caller names no attributes.
pub fn default_select(kind: &str) -> Vec<String> {
    let list: &[&str] = match kind {
        "users" => USER_PROPERTIES,
        "groups" => GROUP_PROPERTIES,
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}

pub(super) fn with_select(path: String, kind: &str) -> String {
    let sel = default_select(kind);
    if sel.is_empty() {
        path
    } else {
        format!("{path}?$select={}", enc(&sel.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_name_collections_in_any_case() {
        assert_eq!(collection("Users"), Some("users"));
        assert_eq!(collection("/groups/"), Some("groups"));
        assert_eq!(collection("servicePrincipals"), Some("servicePrincipals"));
        assert_eq!(collection("ou=x"), None);
        assert_eq!(collection_of_type("#microsoft.graph.group"), Some("groups"));
    }

    #[test]
    fn guids_are_recognised() {
        assert!(is_guid("62e90394-69f5-4237-9190-012177145e10"));
        assert!(!is_guid("ann@contoso.com"));
        assert!(!is_guid("62e9039469f542379190012177145e10"));
    }
}
