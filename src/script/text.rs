//! Small helpers: escaping for scripts that build their own filters and
//! DNs, `show` (print like the shell), `idsync_home`.

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
}
