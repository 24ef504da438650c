//! The password-rights bindings (API §10): `ad.check_password_rights` and
//! `ad.grant_password_rights` on an Active Directory connection — whether
//! an account (the write-back service account) holds Reset Password and
//! Change Password on the users of every OU, which OUs block inheritance,
//! and adding the inheritable ACEs that grant them. The work is in
//! [`crate::connector::ldap::sd`]; this file turns options and results into
//! script values (arrays of maps, which print as tables).

use rhai::{Array, Dynamic, Map};

use super::convert::*;
use super::objects::Connection;
use super::runtime::block_on;
use crate::connector::downcast;
use crate::connector::ldap::LdapConnector;
use crate::connector::ldap::sd::{self, GrantRow, RightsReport};

/// The LDAP connector behind `c`, or an error naming `op`.
fn ldap<'a>(c: &'a Connection, op: &str) -> ScriptResult<&'a LdapConnector> {
    downcast::<LdapConnector>(c.0.as_ref()).ok_or_else(|| {
        rt_err(format!(
            "{op}: needs an Active Directory connection (connect_ldap), not a {} connection",
            c.0.kind()
        ))
    })
}

/// The base to look at: `base` from the options, else the shell's current
/// base on this connection, else the connection's base.
fn base(c: &Connection, l: &LdapConnector, opts: &Map) -> ScriptResult<String> {
    if let Some(b) = opt_str(opts, "base")? {
        return crate::script::cwd::resolve(&c.0, &b);
    }
    Ok(crate::script::cwd::base_for(&c.0).unwrap_or_else(|| l.base().to_string()))
}

fn check_rows(r: &RightsReport) -> Array {
    r.ous
        .iter()
        .map(|o| {
            let holds = o.reset.held() && o.change.held();
            let mut m = Map::new();
            m.insert("object".into(), o.dn.clone().into());
            m.insert("reset_password".into(), o.reset.to_string().into());
            m.insert("change_password".into(), o.change.to_string().into());
            m.insert("holds".into(), holds.into());
            m.insert("blocks_inheritance".into(), o.blocks_inheritance.into());
            let note = match (holds, o.blocks_inheritance) {
                (false, true) => {
                    "blocks inheritance and lacks the rights: grant them here too \
                     (grant_password_rights does)"
                }
                (false, false) => "lacks the rights",
                _ => "",
            };
            m.insert("note".into(), note.into());
            Dynamic::from_map(m)
        })
        .collect()
}

fn grant_rows(rows: &[GrantRow], committed: bool) -> Array {
    rows.iter()
        .map(|g| {
            let mut m = Map::new();
            let action = match (g.needed, committed) {
                (false, _) => "present",
                (true, true) => "added",
                (true, false) => "would add",
            };
            m.insert("op".into(), action.into());
            m.insert("object".into(), g.dn.clone().into());
            m.insert("right".into(), g.right.into());
            m.insert("ace".into(), g.ace.clone().into());
            m.insert("why".into(), g.why.clone().into());
            Dynamic::from_map(m)
        })
        .collect()
}

fn run_check(c: &Connection, account: &str, opts: &Map) -> ScriptResult<Array> {
    const OP: &str = "check_password_rights";
    check_keys(OP, opts, &["base"])?;
    let l = ldap(c, OP)?;
    let base = base(c, l, opts)?;
    let r = block_on(sd::check_password_rights(l, account, &base)).map_err(|e| conn_err(OP, e))?;
    Ok(check_rows(&r))
}

fn run_grant(c: &Connection, account: &str, opts: &Map) -> ScriptResult<Array> {
    const OP: &str = "grant_password_rights";
    check_keys(OP, opts, &["base", "ous", "commit"])?;
    let l = ldap(c, OP)?;
    let base = base(c, l, opts)?;
    let ous = opt_list(opts, "ous")?.unwrap_or_default();
    let mut commit = opt_bool(opts, "commit")?.unwrap_or(true);
    if commit && crate::script::run_mode::refuse_write(OP, &base) {
        commit = false;
    }
    let rows = block_on(sd::grant_password_rights(l, account, &base, &ous, commit))
        .map_err(|e| conn_err(OP, e))?;
    Ok(grant_rows(&rows, commit))
}

/// Password-rights bindings.
#[rhai::export_module]
pub mod ad_rights_api {
    use super::{Connection, run_check, run_grant};
    use crate::script::convert::ScriptResult;
    use rhai::{Array, Map};

    /// Whether `account` (sAMAccountName, UPN or DN) holds the Reset
    /// Password and Change Password extended rights on user objects in the
    /// connection's base and in every OU below it — what password write-back
    /// needs. Reads each nTSecurityDescriptor with the SD-flags control
    /// (DACL only) and the account's tokenGroups; an ACE counts when it is
    /// inheritable to users (InheritedObjectType empty or user), set on the
    /// OU or inherited from above; a deny wins. One row per OU: `object` (its DN),
    /// `reset_password` / `change_password` (explicit, inherited, missing,
    /// denied), `holds`, `blocks_inheritance` (the DACL is protected, so a
    /// grant above does not reach it) and a `note`.
    ///
    /// Example:
    /// ```rhai
    /// ad.check_password_rights("ann.lee").filter(|r| !r.holds)
    /// ```
    #[rhai_fn(name = "check_password_rights", return_raw, pure)]
    pub fn check(c: &mut Connection, account: &str) -> ScriptResult<Array> {
        run_check(c, account, &Map::new())
    }

    /// `check_password_rights` with options: `base` (the container to
    /// start from; default the current base or the connection's).
    ///
    /// Example:
    /// ```rhai
    /// ad.check_password_rights("ann.lee", #{ base: "DC=example,DC=test" })
    /// ```
    #[rhai_fn(name = "check_password_rights", return_raw, pure)]
    pub fn check_with(c: &mut Connection, account: &str, opts: Map) -> ScriptResult<Array> {
        run_check(c, account, &opts)
    }

    /// Grants `account` Reset Password and Change Password on every user
    /// object below `base`: adds the inheritable object ACEs
    /// `(OA;CIIO;CR;<right>;<user class>;<SID>)` to the base, to every OU
    /// below it that blocks inheritance and lacks them, and to the `ous`
    /// listed, writing each DACL with the SD-flags control. Options: `base`
    /// (default the current base or the connection's), `ous` (more
    /// containers, as DNs), `commit` (default true; `commit: false`
    /// previews: the rows say `would add` and nothing is written;
    /// `idsync --dry-run` does the same). Idempotent: an ACE already there
    /// is `present`, not added again. Returns one row per ACE: `op`
    /// (added, would add, present), `object` (the OU), `right`, `ace` (SDDL), `why`.
    ///
    /// Example:
    /// ```rhai
    /// ad.grant_password_rights("ann.lee", #{ base: "DC=example,DC=test", commit: false })
    /// ```
    #[rhai_fn(name = "grant_password_rights", return_raw, pure)]
    pub fn grant_with(c: &mut Connection, account: &str, opts: Map) -> ScriptResult<Array> {
        run_grant(c, account, &opts)
    }
}
