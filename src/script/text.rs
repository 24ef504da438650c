//! Small helpers: escaping for scripts that build their own filters and
//! DNs, `show` (print like the shell), `idsync_home`, `env` (settings
//! from the environment, for scripts run from cron or CI).

/// Escaping bindings.
#[rhai::export_module]
pub mod text_api {
    /// Escapes a value for an LDAP filter: `*`, `(`, `)`, `\` and NUL.
    ///
    /// Example:
    /// ```rhai
    /// c.search(`(sn=${ldap_escape(name)})`)
    /// ```
    pub fn ldap_escape(value: &str) -> String {
        crate::model::dn::ldap_escape(value)
    }

    /// Escapes a value for use in a DN's RDN (`,`, `+`, `"`, `\`, `<`, `>`,
    /// `;`, `=`, leading `#` and leading/trailing spaces).
    ///
    /// Example:
    /// ```rhai
    /// let dn = `CN=${dn_escape("Lee, Ann")},OU=Staff,DC=corp,DC=example`;
    /// ```
    pub fn dn_escape(value: &str) -> String {
        crate::model::dn::dn_escape(value)
    }

    /// Prints a value the way the shell prints results: an array of entries
    /// or maps as a table, one entry or map as a record (honours --format).
    ///
    /// Example:
    /// ```rhai
    /// show(users.preview());
    /// ```
    pub fn show(value: rhai::Dynamic) {
        crate::script::context::show(&value);
    }

    /// The idsync home directory (state store, history, logs).
    ///
    /// Example:
    /// ```rhai
    /// let dir = connect_ldif(`${idsync_home()}/directory.ldif`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn idsync_home() -> Result<String, Box<rhai::EvalAltResult>> {
        crate::config::home::idsync_home()
            .map(|p| p.display().to_string())
            .map_err(|e| crate::script::convert::rt_err(e.to_string()))
    }

    /// The value of an environment variable (a tenant id, a server URL);
    /// an error naming the variable when it is not set. Use `secret()` for
    /// passwords, so that they never print.
    ///
    /// Example:
    /// ```rhai
    /// let ol = connect_ldap(env("LDAP_URL"), #{ bind_dn: env("LDAP_BIND_DN"), password: secret("OL_PW") });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn env(name: &str) -> Result<String, Box<rhai::EvalAltResult>> {
        std::env::var(name).map_err(|_| {
            crate::script::convert::rt_err(format!(
                "env: the environment variable '{name}' is not set"
            ))
        })
    }

    /// The value of an environment variable, or `default` when it is not set.
    ///
    /// Example:
    /// ```rhai
    /// let url = env("AZ_GRAPH_URL", "https://graph.microsoft.com");
    /// ```
    #[rhai_fn(name = "env")]
    pub fn env_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    }
}
