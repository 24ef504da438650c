//! Named connection profiles in the state store: `save_connection`,
//! `connection`, `connections`, `remove_connection` (API §3). Passwords are
//! stored as references (`env:NAME`, `prompt:label`), never in clear.

/// Profile bindings.
#[rhai::export_module]
pub mod profiles_api {
    use crate::script::connect::{ldap_options, open_ldap};
    use crate::script::context::store;
    use crate::script::convert::{ScriptResult, conn_err, rt_err};
    use crate::script::objects::Connection;
    use crate::script::secrets;
    use rhai::{Array, Dynamic, Map};

    /// Saves the connection's settings under a name. The password is kept as
    /// its reference (`env:NAME` from `secret()`); a password typed as plain
    /// text is refused rather than stored.
    ///
    /// Example:
    /// ```rhai
    /// save_connection("corp-ad", ad)
    /// ```
    #[rhai_fn(return_raw)]
    pub fn save_connection(name: &str, conn: Connection) -> ScriptResult<()> {
        let data = conn
            .0
            .profile()
            .map_err(|e| conn_err("save_connection", e))?;
        store()?
            .put_profile(name, conn.0.kind(), &data)
            .map_err(|e| rt_err(format!("save_connection: {e}")))
    }

    /// Opens a saved connection by name (the password is read again from
    /// its reference).
    ///
    /// Example:
    /// ```rhai
    /// let ad = connection("corp-ad");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connection(name: &str) -> ScriptResult<Connection> {
        let Some(p) = store()?
            .get_profile(name)
            .map_err(|e| rt_err(format!("connection: {e}")))?
        else {
            return Err(rt_err(format!(
                "connection: no saved connection named '{name}' (see connections())"
            )));
        };
        match p.kind.as_str() {
            // SQL profiles hold the same shape: url, options, a password reference.
            kind @ ("ldap" | "sql") => {
                let mut m = Map::new();
                let url = p
                    .data
                    .get("url")
                    .and_then(|u| u.as_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(obj) = p.data.as_object() {
                    for (k, v) in obj {
                        if v.is_null() || k == "url" {
                            continue;
                        }
                        if k == "password" {
                            let r = v.as_str().unwrap_or_default();
                            let s = secrets::resolve(r)
                                .map_err(|e| rt_err(format!("connection '{name}': {e}")))?;
                            m.insert("password".into(), Dynamic::from(s));
                        } else {
                            let d: Dynamic = rhai::serde::to_dynamic(v)
                                .map_err(|e| rt_err(format!("connection '{name}': {e}")))?;
                            m.insert(k.as_str().into(), d);
                        }
                    }
                }
                if kind == "sql" {
                    crate::script::sql::open_sql(crate::script::sql::sql_options(&url, &m)?)
                } else {
                    open_ldap(ldap_options(&url, &m)?)
                }
            }
            "csv" => {
                let text = |k: &str| p.data.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let mut m = Map::new();
                for k in ["key", "multi_value_separator", "delimiter", "encoding"] {
                    if let Some(v) = text(k) {
                        m.insert(k.into(), Dynamic::from(v));
                    }
                }
                crate::script::connect::open_csv(&text("path").unwrap_or_default(), &m)
            }
            "ldif" => {
                let path = p
                    .data
                    .get("path")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                crate::script::connect::open_ldif(path)
            }
            "graph" => {
                let mut m = Map::new();
                if let Some(obj) = p.data.as_object() {
                    for (k, v) in obj {
                        if v.is_null() {
                            continue;
                        }
                        if k == "client_secret" {
                            let r = v.as_str().unwrap_or_default();
                            let s = secrets::resolve(r)
                                .map_err(|e| rt_err(format!("connection '{name}': {e}")))?;
                            m.insert(k.as_str().into(), Dynamic::from(s));
                        } else {
                            let d: Dynamic = rhai::serde::to_dynamic(v)
                                .map_err(|e| rt_err(format!("connection '{name}': {e}")))?;
                            m.insert(k.as_str().into(), d);
                        }
                    }
                }
                crate::script::azure::open_graph(crate::script::azure::graph_options(&m)?)
            }
            other => Err(rt_err(format!(
                "connection '{name}': unknown kind '{other}'"
            ))),
        }
    }

    /// The saved connections: name, kind, url, bind_dn, password reference.
    ///
    /// Example:
    /// ```rhai
    /// connections()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connections() -> ScriptResult<Array> {
        let list = store()?
            .list_profiles()
            .map_err(|e| rt_err(format!("connections: {e}")))?;
        Ok(list
            .into_iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("name".into(), p.name.into());
                m.insert("kind".into(), p.kind.into());
                for k in [
                    "url",
                    "bind_dn",
                    "base",
                    "password",
                    "tenant",
                    "client_id",
                    "client_secret",
                ] {
                    let v = p
                        .data
                        .get(k)
                        .and_then(|v| v.as_str())
                        .map(|s| Dynamic::from(s.to_string()))
                        .unwrap_or(Dynamic::UNIT);
                    m.insert(k.into(), v);
                }
                Dynamic::from_map(m)
            })
            .collect())
    }

    /// Forgets a saved connection; true when it existed.
    ///
    /// Example:
    /// ```rhai
    /// remove_connection("corp-ad")
    /// ```
    #[rhai_fn(return_raw)]
    pub fn remove_connection(name: &str) -> ScriptResult<bool> {
        store()?
            .remove_profile(name)
            .map_err(|e| rt_err(format!("remove_connection: {e}")))
    }
}
