//! Graph JSON objects to entries and back: `id` is the anchor (and the DN,
//! since Graph has none); scalars read as text, arrays as several values,
//! nested objects as JSON text; `null` is an absent attribute. Writing goes
//! the other way with what Graph's schema says about booleans and
//! collections.

use serde_json::{Map, Value as Json};

use crate::connector::{Error, Result};
use crate::model::{Entry, Value};

/// Properties Graph types as booleans.
const BOOLEANS: &[&str] = &[
    "accountEnabled",
    "securityEnabled",
    "mailEnabled",
    "onPremisesSyncEnabled",
    "isAssignableToRole",
    "showInAddressList",
    "forceChangePasswordNextSignIn",
    "forceChangePasswordNextSignInWithMfa",
];

/// Properties Graph types as collections (always sent as arrays).
const COLLECTIONS: &[&str] = &[
    "businessPhones",
    "groupTypes",
    "proxyAddresses",
    "otherMails",
    "imAddresses",
    "identities",
    "interests",
    "skills",
    "schools",
    "responsibilities",
    "pastProjects",
];

/// Properties Graph computes or owns; never written.
const READ_ONLY: &[&str] = &[
    "id",
    "createdDateTime",
    "deletedDateTime",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesLastSyncDateTime",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesSamAccountName",
    "securityIdentifier",
];

fn is(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// True when Graph types `name` as a boolean.
pub fn is_boolean(name: &str) -> bool {
    is(BOOLEANS, name)
}

/// True when Graph will not take a write of `name`.
pub fn is_read_only(name: &str) -> bool {
    is(READ_ONLY, name)
}

/// A Graph object as an entry (annotations other than `@odata.type` left out).
pub fn to_entry(obj: &Json) -> Entry {
    let id = obj.get("id").and_then(Json::as_str).unwrap_or_default();
    let mut e = Entry::new(id);
    if !id.is_empty() {
        e.anchor = Some(id.to_string());
    }
    let Some(map) = obj.as_object() else {
        return e;
    };
    for (k, v) in map {
        if k.contains('@') && k != "@odata.type" {
            continue;
        }
        let vals = json_values(v);
        if !vals.is_empty() {
            e.push(k, vals);
        }
    }
    e
}

/// The values of one property: arrays give several, `null` none.
pub fn json_values(v: &Json) -> Vec<Value> {
    match v {
        Json::Null => Vec::new(),
        Json::Array(a) => a.iter().filter_map(scalar_text).map(Value::Text).collect(),
        other => scalar_text(other).map(Value::Text).into_iter().collect(),
    }
}

fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The JSON for writing `vals` into property `name` of `object`; no value
/// is `null` (clears the property).
pub fn property_json(object: &str, name: &str, vals: &[Value]) -> Result<Json> {
    let texts: Vec<String> = vals
        .iter()
        .map(|v| match v {
            Value::Text(s) => Ok(s.clone()),
            Value::Binary(_) => Err(Error::Object {
                object: object.to_string(),
                cause: format!("'{name}': Graph takes no binary values"),
                code: None,
            }),
        })
        .collect::<Result<_>>()?;
    if is(COLLECTIONS, name) {
        return Ok(Json::Array(
            texts.iter().map(|t| text_json(name, t)).collect(),
        ));
    }
    match texts.as_slice() {
        [] => Ok(Json::Null),
        [one] => {
            if is_boolean(name) {
                return match one.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Ok(Json::Bool(true)),
                    "false" | "0" | "no" => Ok(Json::Bool(false)),
                    _ => Err(Error::Object {
                        object: object.to_string(),
                        cause: format!("'{name}' takes true or false, not '{one}'"),
                        code: None,
                    }),
                };
            }
            Ok(text_json(name, one))
        }
        many => Err(Error::Object {
            object: object.to_string(),
            cause: format!(
                "'{name}' holds one value in Graph, {} were given",
                many.len()
            ),
            code: None,
        }),
    }
}

/// A text value: JSON objects (passwordProfile, extension attributes) are
/// sent as objects, everything else as a string.
fn text_json(_name: &str, t: &str) -> Json {
    if t.starts_with('{')
        && let Ok(j @ Json::Object(_)) = serde_json::from_str::<Json>(t)
    {
        return j;
    }
    Json::String(t.to_string())
}

/// A create or PATCH body from attributes (object classes and read-only
/// properties are refused by name, not sent).
pub fn body_json(object: &str, attrs: &[(String, Vec<Value>)]) -> Result<Map<String, Json>> {
    let mut m = Map::new();
    for (name, vals) in attrs {
        if name.eq_ignore_ascii_case("objectClass") {
            continue;
        }
        if is_read_only(name) {
            return Err(Error::Object {
                object: object.to_string(),
                cause: format!("'{name}' is read-only in Microsoft Graph"),
                code: None,
            });
        }
        m.insert(name.clone(), property_json(object, name, vals)?);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_entries_with_id_as_anchor() {
        let e = to_entry(&json!({
            "id": "1", "displayName": "Ann", "businessPhones": ["1", "2"],
            "accountEnabled": false, "mail": null, "@odata.type": "#microsoft.graph.user",
            "members@delta": [], "passwordProfile": {"forceChangePasswordNextSignIn": true}
        }));
        assert_eq!(e.anchor.as_deref(), Some("1"));
        assert_eq!(e.dn, "1");
        assert_eq!(e.values("businessPhones").len(), 2);
        assert_eq!(e.first("accountEnabled").as_deref(), Some("false"));
        assert!(!e.has("mail"));
        assert!(!e.has("members@delta"));
        assert_eq!(
            e.first("@odata.type").as_deref(),
            Some("#microsoft.graph.user")
        );
        assert!(e.first("passwordProfile").unwrap().starts_with('{'));
    }

    #[test]
    fn writes_follow_graph_types() {
        let t = |s: &str| vec![Value::Text(s.into())];
        assert_eq!(
            property_json("u", "accountEnabled", &t("TRUE")).unwrap(),
            json!(true)
        );
        assert!(property_json("u", "accountEnabled", &t("maybe")).is_err());
        assert_eq!(
            property_json("u", "businessPhones", &t("1")).unwrap(),
            json!(["1"])
        );
        assert_eq!(property_json("u", "mail", &[]).unwrap(), Json::Null);
        assert_eq!(
            property_json("u", "passwordProfile", &t(r#"{"password":"x"}"#)).unwrap(),
            json!({"password": "x"})
        );
        let two = vec![Value::Text("a".into()), Value::Text("b".into())];
        assert!(
            property_json("u", "mail", &two)
                .unwrap_err()
                .to_string()
                .contains("one value")
        );
        let e = body_json("u", &[("id".into(), t("1"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only"), "{e}");
    }
}
