//! What a new Entra object is sent with: the collection it goes to (from
//! the name the sync engine gives, or its attributes), the properties
//! Graph requires filled with sensible defaults (mailNickname, a random
//! initial password to change at first sign-in), and group members set
//! aside to be added once the group exists.

use serde_json::{Map, Value as Json, json};

use super::convert::body_json;
use super::identity::collection;
use crate::connector::{Error, Result};
use crate::model::Value;

/// A POST ready to send.
pub struct NewObject {
    /// "users" or "groups".
    pub kind: &'static str,
    /// The JSON body.
    pub body: Map<String, Json>,
    /// Members to add after a group is created (ids or UPNs).
    pub members: Vec<String>,
    /// How errors name it (UPN or display name).
    pub what: String,
}

/// Builds the POST for creating `attrs` under the name `dn`.
pub fn new_object(dn: &str, attrs: &[(String, Vec<Value>)]) -> Result<NewObject> {
    let is_members =
        |a: &str| a.eq_ignore_ascii_case("members") || a.eq_ignore_ascii_case("member");
    let members: Vec<String> = attrs
        .iter()
        .filter(|(a, _)| is_members(a))
        .flat_map(|(_, v)| {
            v.iter()
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        })
        .collect();
    let attrs: Vec<(String, Vec<Value>)> = attrs
        .iter()
        .filter(|(a, _)| !is_members(a))
        .cloned()
        .collect();
    let attrs = attrs.as_slice();
    let has = |n: &str| attrs.iter().any(|(a, _)| a.eq_ignore_ascii_case(n));
    let first = dn.split(['/', ',']).next().unwrap_or("");
    let kind = match collection(first) {
        Some(k) => k,
        None if has("userPrincipalName") => "users",
        None if has("securityEnabled") || has("mailEnabled") || has("groupTypes") => "groups",
        None => {
            return Err(Error::Object {
                object: dn.to_string(),
                cause: "say which collection to create in: give 'users' or 'groups' as the name (create rdn/parent), or a userPrincipalName".into(),
                code: None,
            });
        }
    };
    let mut body = body_json(dn, attrs)?;
    fn text(body: &serde_json::Map<String, Json>, k: &str) -> Option<String> {
        body.get(k).and_then(Json::as_str).map(str::to_string)
    }
    match kind {
        "users" => {
            let upn = text(&body, "userPrincipalName").ok_or_else(|| Error::Object {
                object: dn.to_string(),
                cause: "a new Entra user needs a userPrincipalName".into(),
                code: None,
            })?;
            if !body.contains_key("mailNickname") {
                let nick: String = upn
                    .split('@')
                    .next()
                    .unwrap_or(&upn)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect();
                // A name of letters Graph does not take gets a made-up one.
                let nick = if nick.trim_matches('.').is_empty() {
                    format!("user{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
                } else {
                    nick
                };
                body.insert("mailNickname".into(), Json::String(nick));
            }
            if !body.contains_key("displayName") {
                body.insert("displayName".into(), Json::String(upn.clone()));
            }
            body.entry("accountEnabled").or_insert(Json::Bool(true));
            body.entry("passwordProfile").or_insert_with(
                || json!({ "password": initial_password(), "forceChangePasswordNextSignIn": true }),
            );
        }
        "groups" => {
            let name = text(&body, "displayName").ok_or_else(|| Error::Object {
                object: dn.to_string(),
                cause: "a new Entra group needs a displayName".into(),
                code: None,
            })?;
            if !body.contains_key("mailNickname") {
                let nick: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                let nick = if nick.is_empty() {
                    "group".to_string()
                } else {
                    nick
                };
                body.insert("mailNickname".into(), Json::String(nick));
            }
            body.entry("mailEnabled").or_insert(Json::Bool(false));
            body.entry("securityEnabled").or_insert(Json::Bool(true));
        }
        _ => {}
    }
    let what = text(&body, "userPrincipalName")
        .or_else(|| text(&body, "displayName"))
        .unwrap_or_else(|| dn.to_string());
    Ok(NewObject {
        kind,
        body,
        members,
        what,
    })
}

/// A random initial password for users created without one (Entra requires
/// one); the user must change it at first sign-in.
pub fn initial_password() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    format!("Id{}!{}", &a[..12], &a[12..20].to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_passwords_are_strong_and_random() {
        let p = initial_password();
        assert!(p.len() >= 20);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_ne!(p, initial_password());
    }

    #[test]
    fn new_users_get_what_graph_requires() {
        let t = |s: &str| vec![Value::Text(s.into())];
        let o = new_object(
            "users",
            &[("userPrincipalName".into(), t("张伟@contoso.com"))],
        )
        .unwrap();
        assert_eq!(o.kind, "users");
        let nick = o.body["mailNickname"].as_str().unwrap();
        assert!(nick.starts_with("user") && nick.len() > 4, "{nick}");
        assert_eq!(o.body["accountEnabled"], true);
        assert_eq!(
            o.body["passwordProfile"]["forceChangePasswordNextSignIn"],
            true
        );
        let g = new_object(
            "groups",
            &[
                ("displayName".into(), t("Sales")),
                ("members".into(), t("a")),
            ],
        )
        .unwrap();
        assert_eq!(
            (g.kind, g.members.clone()),
            ("groups", vec!["a".to_string()])
        );
        assert_eq!(g.body["securityEnabled"], true);
        assert!(!g.body.contains_key("members"));
        assert!(new_object("cn=x", &[("sn".into(), t("x"))]).is_err());
    }
}
