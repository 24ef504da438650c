//! Object functions on a connection: search, get, create, modify, rename,
//! move, delete, membership, enable/disable, passwords (API §4).

use std::sync::Arc;

use rhai::plugin::*;

use crate::connector::Connector;

/// A connection as scripts hold it: any connected system.
#[derive(Clone)]
pub struct Connection(pub Arc<dyn Connector>);

impl Connection {
    /// Wraps a connector and registers it for completion.
    pub fn new(c: Arc<dyn Connector>) -> Connection {
        super::context::register(&c);
        Connection(c)
    }
}

/// Connection bindings.
#[export_module]
pub mod objects {
    use super::Connection;
    use crate::connector::{Change, Scope, SearchQuery};
    use crate::script::convert::*;
    use crate::script::runtime::block_on;
    use rhai::{Array, Map};

    /// Searches with an LDAP filter under the connection's base (subtree),
    /// paging under the hood. Returns an array of entries (prints as a table).
    ///
    /// Example:
    /// ```rhai
    /// c.search("(&(objectClass=user)(sn=Lee))")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn search(c: &mut Connection, filter: &str) -> ScriptResult<Array> {
        search_with(c, filter, Map::new())
    }

    /// Searches with options: `base` (DN), `scope` ("base", "one", "sub"),
    /// `attrs` (array of names), `limit` (stop after N entries; 0 = no
    /// limit, as in LDAP).
    ///
    /// Example:
    /// ```rhai
    /// c.search("(uid=a*)", #{ base: "ou=people,dc=example,dc=com", scope: "one", attrs: ["uid", "mail"], limit: 10 })
    /// ```
    #[rhai_fn(name = "search", return_raw, pure)]
    pub fn search_with(c: &mut Connection, filter: &str, opts: Map) -> ScriptResult<Array> {
        check_keys("search", &opts, &["base", "scope", "attrs", "limit"])?;
        let scope = match opt_str(&opts, "scope")? {
            Some(s) => s.parse::<Scope>().map_err(|e| conn_err("search", e))?,
            None => Scope::Sub,
        };
        // No base given: the current base `cd` set on this connection.
        let base = match opt_str(&opts, "base")? {
            Some(b) => Some(crate::script::cwd::resolve(&c.0, &b)?),
            None => crate::script::cwd::base_for(&c.0),
        };
        let q = SearchQuery {
            base,
            scope,
            filter: filter.to_string(),
            attrs: opt_list(&opts, "attrs")?,
            limit: opt_num(&opts, "limit")?
                .map(|n| n as usize)
                .filter(|&n| n > 0),
        };
        let mut out = Array::new();
        let conn = c.0.clone();
        block_on(conn.search(&q, &mut |e| {
            out.push(Dynamic::from(e));
            Ok(true)
        }))
        .map_err(|e| conn_err("search", e))?;
        Ok(out)
    }

    /// One entry by identity, or `()` when none matches: a DN, GUID, SID,
    /// sAMAccountName, userPrincipalName, uid or cn. Several matches are an
    /// error, never a guess.
    ///
    /// Example:
    /// ```rhai
    /// let u = ad.get("ann.lee");  u.objectGUID
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn get(c: &mut Connection, identity: &str) -> ScriptResult<Dynamic> {
        let conn = c.0.clone();
        // After `cd`: an RDN is relative to the current base, and other
        // identities are looked for below it.
        let found = match crate::script::cwd::base_for(&conn) {
            Some(here) if identity.contains('=') && !identity.contains(',') => {
                block_on(conn.get(&format!("{identity},{here}")))
            }
            Some(here) if !identity.contains('=') => block_on(conn.get_under(identity, &here)),
            _ => block_on(conn.get(identity)),
        };
        match found.map_err(|e| conn_err("get", e))? {
            Some(e) => Ok(Dynamic::from(e)),
            None => Ok(Dynamic::UNIT),
        }
    }

    /// Creates an entry from a map of attribute -> value or array of values;
    /// returns the new entry as the server stored it.
    ///
    /// Example:
    /// ```rhai
    /// c.create("uid=ann,ou=people,dc=example,dc=com", #{ objectClass: ["inetOrgPerson"], cn: "Ann Lee", sn: "Lee" })
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn create(c: &mut Connection, dn: &str, attrs: Map) -> ScriptResult<Dynamic> {
        if crate::script::run_mode::refuse_write("create", dn) {
            return Ok(Dynamic::UNIT);
        }
        let attrs = map_to_attrs(dn, &attrs)?;
        let conn = c.0.clone();
        let e = block_on(conn.create(dn, &attrs)).map_err(|e| conn_err("create", e))?;
        Ok(Dynamic::from(e))
    }

    /// Modifies with LDAP semantics: `replace`, `add` and `delete` maps of
    /// attribute -> value(s). In `delete`, `()` or `[]` removes the whole
    /// attribute; in `replace`, `()` or `[]` clears it.
    ///
    /// Example:
    /// ```rhai
    /// c.modify("ann", #{ replace: #{ title: "Engineer" }, add: #{ mail: "ann@x.org" }, delete: #{ description: () } })
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn modify(c: &mut Connection, identity: &str, changes: Map) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("modify", identity) {
            return Ok(());
        }
        check_keys("modify", &changes, &["replace", "add", "delete"])?;
        let mut list = Vec::new();
        for (op, v) in &changes {
            let Some(m) = v.read_lock::<Map>() else {
                return Err(rt_err(format!(
                    "modify: '{op}' must be a map of attribute -> value(s)"
                )));
            };
            for (name, vals) in map_to_attrs(identity, &m)? {
                list.push(match op.as_str() {
                    "replace" => Change::Replace(name, vals),
                    "add" => Change::Add(name, vals),
                    _ => Change::Delete(name, vals),
                });
            }
        }
        let conn = c.0.clone();
        block_on(conn.modify(identity, &list)).map_err(|e| conn_err("modify", e))
    }

    /// Renames (changes the RDN, keeps the parent). `new_rdn` is `"CN=New Name"`
    /// or just the new value. Returns the new DN.
    ///
    /// Example:
    /// ```rhai
    /// c.rename("uid=ann,ou=people,dc=example,dc=com", "uid=ann.lee")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn rename(c: &mut Connection, identity: &str, new_rdn: &str) -> ScriptResult<String> {
        if crate::script::run_mode::refuse_write("rename", identity) {
            return Ok(identity.to_string());
        }
        let conn = c.0.clone();
        block_on(conn.rename(identity, new_rdn)).map_err(|e| conn_err("rename", e))
    }

    /// Moves the entry under a new parent, keeping its RDN. Returns the new DN.
    ///
    /// Example:
    /// ```rhai
    /// c.move("ann", "ou=leavers,dc=example,dc=com")
    /// ```
    #[rhai_fn(name = "move", return_raw, pure)]
    pub fn move_to(c: &mut Connection, identity: &str, new_parent: &str) -> ScriptResult<String> {
        if crate::script::run_mode::refuse_write("move", identity) {
            return Ok(identity.to_string());
        }
        let conn = c.0.clone();
        block_on(conn.move_to(identity, new_parent)).map_err(|e| conn_err("move", e))
    }

    /// Deletes the entry (a leaf; delete children first).
    ///
    /// Example:
    /// ```rhai
    /// c.delete("uid=ann,ou=people,dc=example,dc=com")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn delete(c: &mut Connection, identity: &str) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("delete", identity) {
            return Ok(());
        }
        let conn = c.0.clone();
        block_on(conn.delete(identity)).map_err(|e| conn_err("delete", e))
    }

    /// The direct members of a group, as an array of DNs (memberUid values
    /// for a posixGroup). Large AD groups are read in ranges.
    ///
    /// Example:
    /// ```rhai
    /// for dn in ad.members("Domain Admins") { print(dn) }
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn members(c: &mut Connection, group: &str) -> ScriptResult<Array> {
        let conn = c.0.clone();
        let list = block_on(conn.members(group)).map_err(|e| conn_err("members", e))?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Adds a member to a group; already a member is not an error.
    ///
    /// Example:
    /// ```rhai
    /// c.add_member("cn=staff,ou=groups,dc=example,dc=com", "ann")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn add_member(c: &mut Connection, group: &str, member: &str) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("add_member to", group) {
            return Ok(());
        }
        let conn = c.0.clone();
        block_on(conn.add_member(group, member)).map_err(|e| conn_err("add_member", e))
    }

    /// Removes a member from a group; not a member is not an error.
    ///
    /// Example:
    /// ```rhai
    /// c.remove_member("staff", "ann")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn remove_member(c: &mut Connection, group: &str, member: &str) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("remove_member from", group) {
            return Ok(());
        }
        let conn = c.0.clone();
        block_on(conn.remove_member(group, member)).map_err(|e| conn_err("remove_member", e))
    }

    /// Enables an account. AD: clears userAccountControl bit 2 (other bits
    /// kept). OpenLDAP: removes ppolicy's pwdAccountLockedTime.
    ///
    /// Example:
    /// ```rhai
    /// ad.enable("ann.lee")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn enable(c: &mut Connection, identity: &str) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("enable", identity) {
            return Ok(());
        }
        let conn = c.0.clone();
        block_on(conn.enable(identity)).map_err(|e| conn_err("enable", e))
    }

    /// Disables an account. AD: sets userAccountControl bit 2 (other bits
    /// kept). OpenLDAP: sets ppolicy's pwdAccountLockedTime to 000001010000Z
    /// (locked until enabled; needs the ppolicy overlay).
    ///
    /// Example:
    /// ```rhai
    /// ad.disable("ann.lee")
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn disable(c: &mut Connection, identity: &str) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("disable", identity) {
            return Ok(());
        }
        let conn = c.0.clone();
        block_on(conn.disable(identity)).map_err(|e| conn_err("disable", e))
    }

    /// Sets a password as administrator. AD: unicodePwd, only over LDAPS or
    /// StartTLS; OpenLDAP and others: the Password Modify extended operation.
    /// A policy rejection says so in words, with the server's code.
    ///
    /// Example:
    /// ```rhai
    /// ad.set_password("ann.lee", prompt_secret("new password"))
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn set_password(c: &mut Connection, identity: &str, password: Dynamic) -> ScriptResult<()> {
        if crate::script::run_mode::refuse_write("set_password of", identity) {
            return Ok(());
        }
        let pw = to_secret("set_password", &password)?;
        let conn = c.0.clone();
        block_on(conn.set_password(identity, &pw)).map_err(|e| conn_err("set_password", e))
    }

    /// True when the directory accepts this password for the identity (a
    /// simple bind as that user on a new connection); false otherwise.
    ///
    /// Example:
    /// ```rhai
    /// c.authenticate("ann", secret("ANN_PW"))
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn authenticate(
        c: &mut Connection,
        identity: &str,
        password: Dynamic,
    ) -> ScriptResult<bool> {
        let pw = to_secret("authenticate", &password)?;
        let conn = c.0.clone();
        block_on(conn.authenticate(identity, &pw)).map_err(|e| conn_err("authenticate", e))
    }

    /// Checks the connection: reachable, bind result, vendor, flavour,
    /// naming contexts. Returns a map (prints as a record).
    ///
    /// Example:
    /// ```rhai
    /// ad.test()
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn test(c: &mut Connection) -> ScriptResult<Map> {
        let conn = c.0.clone();
        let r = block_on(conn.test()).map_err(|e| conn_err("test", e))?;
        let mut m = Map::new();
        m.insert("reachable".into(), r.reachable.into());
        m.insert("bound".into(), r.bound.into());
        m.insert("bind_identity".into(), r.bind_identity.into());
        m.insert("vendor".into(), r.vendor.into());
        m.insert("flavor".into(), r.flavor.into());
        m.insert(
            "naming_contexts".into(),
            Dynamic::from_array(r.naming_contexts.into_iter().map(Dynamic::from).collect()),
        );
        for (k, v) in r.details {
            m.insert(k.as_str().into(), v.into());
        }
        Ok(m)
    }

    /// Lists the direct children of the current base (`cd`) or, without
    /// one, of the connection's base: RDN, object classes and children
    /// (a count where the server gives one cheaply, else yes/no).
    ///
    /// Example:
    /// ```rhai
    /// c.ls()
    /// ```
    #[rhai_fn(name = "ls", return_raw, pure)]
    pub fn ls_here(c: &mut Connection) -> ScriptResult<Array> {
        ls(c, "")
    }

    /// Lists the direct children of `dn` (a full DN, an RDN below the
    /// current base, or `..`): RDN, object classes and children.
    ///
    /// Example:
    /// ```rhai
    /// c.ls("ou=people,dc=example,dc=com")
    /// ```
    #[rhai_fn(name = "ls", return_raw, pure)]
    pub fn ls(c: &mut Connection, dn: &str) -> ScriptResult<Array> {
        use crate::script::cwd::{self, Children};
        let dn = cwd::resolve(&c.0, dn)?;
        let mut out = Array::new();
        for k in cwd::children(&c.0, &dn)? {
            let mut m = Map::new();
            m.insert("rdn".into(), k.rdn.into());
            m.insert("objectClass".into(), k.classes.into());
            m.insert(
                "children".into(),
                match k.children {
                    Some(Children::Count(n)) => Dynamic::from(n),
                    Some(Children::Some(b)) => Dynamic::from(if b { "yes" } else { "no" }),
                    None => Dynamic::UNIT,
                },
            );
            m.insert("dn".into(), k.dn.into());
            out.push(Dynamic::from_map(m));
        }
        Ok(out)
    }

    /// An outline of `dn` and what is below it, `depth` levels deep
    /// (child counts in brackets where the server gives them).
    ///
    /// Example:
    /// ```rhai
    /// print(c.tree("dc=example,dc=com", 2))
    /// ```
    #[rhai_fn(name = "tree", return_raw, pure)]
    pub fn tree(c: &mut Connection, dn: &str, depth: i64) -> ScriptResult<String> {
        let dn = crate::script::cwd::resolve(&c.0, dn)?;
        crate::script::cwd::tree(&c.0, &dn, depth)
    }

    /// Makes `dn` (a full DN, an RDN below the current base, `..`, or `""`
    /// for the connection's base) the current base of the shell: `c.ls()`,
    /// `c.search(...)` and `c.get(...)` of this connection look there, and
    /// the prompt shows it. Returns the DN.
    ///
    /// Example:
    /// ```rhai
    /// cd(c, "ou=people,dc=example,dc=com"); c.ls()
    /// ```
    #[rhai_fn(name = "cd", return_raw)]
    pub fn cd(c: Connection, dn: &str) -> ScriptResult<String> {
        crate::script::cwd::cd(&c.0, dn)
    }

    /// The current base set by `cd`, or `()` when none is set.
    ///
    /// Example:
    /// ```rhai
    /// pwd()
    /// ```
    #[rhai_fn(name = "pwd")]
    pub fn pwd() -> Dynamic {
        crate::script::cwd::current_dn()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// The connection's kind: "ldap", "csv", ...
    ///
    /// Example:
    /// ```rhai
    /// c.kind
    /// ```
    #[rhai_fn(get = "kind", pure)]
    pub fn kind(c: &mut Connection) -> String {
        c.0.kind().to_string()
    }

    /// The detected flavour: "ad", "openldap", "generic".
    ///
    /// Example:
    /// ```rhai
    /// if c.flavor == "ad" { print("Active Directory") }
    /// ```
    #[rhai_fn(get = "flavor", pure)]
    pub fn flavor(c: &mut Connection) -> String {
        c.0.flavor()
    }

    /// Where the connection points (URL, bind identity, base); never secrets.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(c: &mut Connection) -> String {
        format!("Connection({})", c.0.describe())
    }

    /// Same as `to_string`.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(c: &mut Connection) -> String {
        format!("Connection({})", c.0.describe())
    }
}
