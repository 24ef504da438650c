//! Escaping helpers for scripts that build their own filters and DNs.

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
}
