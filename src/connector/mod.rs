//! Connectors: one trait that every connected system implements (LDAP,
//! CSV, LDIF, Microsoft Graph; SQL later), so the sync engine and the shell can
//! treat them alike. Reads stream entries into a sink, so a whole directory
//! is never held in memory.

pub mod csv;
mod error;
mod file;
pub mod graph;
pub mod ldap;
pub mod ldif;
mod room;
pub mod sql;
mod tls;

use async_trait::async_trait;

pub use error::{Error, Result};
pub use room::Room;

use crate::model::{Entry, Secret, Value};

/// The connector behind `c` as the concrete type `T` (for example
/// [`graph::GraphConnector`] for the Entra-only functions), or `None` when
/// it is another kind.
pub fn downcast<T: Connector>(c: &dyn Connector) -> Option<&T> {
    let any: &dyn std::any::Any = c;
    any.downcast_ref::<T>()
}

/// How deep a search goes below its base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scope {
    /// The base object only.
    Base,
    /// Direct children of the base.
    One,
    /// The base and everything below it.
    #[default]
    Sub,
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scope> {
        match s.to_ascii_lowercase().as_str() {
            "base" => Ok(Scope::Base),
            "one" | "onelevel" | "one_level" => Ok(Scope::One),
            "sub" | "subtree" => Ok(Scope::Sub),
            _ => Err(Error::usage(format!(
                "unknown scope '{s}' (expected \"base\", \"one\" or \"sub\")"
            ))),
        }
    }
}

/// A search request.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Where to start; `None` = the connection's base.
    pub base: Option<String>,
    /// How deep to go.
    pub scope: Scope,
    /// Filter in the system's syntax (LDAP: RFC 4515).
    pub filter: String,
    /// Attributes to return; `None` = all user attributes.
    pub attrs: Option<Vec<String>>,
    /// Stop after this many entries.
    pub limit: Option<usize>,
}

/// One attribute change of a modify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Replace all values (an empty list removes the attribute).
    Replace(String, Vec<Value>),
    /// Add values.
    Add(String, Vec<Value>),
    /// Delete these values (an empty list deletes the attribute).
    Delete(String, Vec<Value>),
}

/// What `test()` found out about a connection.
#[derive(Clone, Debug, Default)]
pub struct TestReport {
    /// Whether the server answered.
    pub reachable: bool,
    /// Whether the bind (authentication) worked.
    pub bound: bool,
    /// The bound identity or "anonymous".
    pub bind_identity: String,
    /// Vendor as the server announces it.
    pub vendor: String,
    /// Flavour: "ad", "openldap", "generic", ...
    pub flavor: String,
    /// Naming contexts the server holds.
    pub naming_contexts: Vec<String>,
    /// Free-form details (version, TLS, default naming context).
    pub details: Vec<(String, String)>,
}

/// The receiver of streamed search results; return `Ok(false)` to stop.
pub type Sink<'a> = dyn FnMut(Entry) -> Result<bool> + Send + 'a;

/// What a change-tracking read ([`Connector::changes`]) found besides the
/// objects it streamed.
#[derive(Clone, Debug, Default)]
pub struct ChangeRound {
    /// True when every object in scope was streamed (no cursor, or the
    /// system could not continue from it): absent objects have left.
    pub full: bool,
    /// Anchors of objects deleted, or changed so that they left the scope.
    pub removed: Vec<String>,
    /// Every anchor still in scope, when the system lists them instead of
    /// naming what was removed (linked objects not in it have left).
    pub present: Option<Vec<String>>,
    /// Where the next read continues (stored after a successful run).
    pub cursor: String,
    /// Why a full round was done instead, when a cursor was given.
    pub note: Option<String>,
}

/// A connected system. Every method names the object in its errors.
/// Operations a system cannot do return [`Error::Unsupported`]; what
/// differs between systems in how the sync engine treats them is asked
/// through the capability methods (`create_parent_is_collection`,
/// `can_disable_in`, ...), never by comparing [`Connector::kind`].
///
/// Functions that exist for one system only (Entra's roles, delta rounds
/// and BackSync) reach its connector with [`downcast`].
#[async_trait]
pub trait Connector: std::any::Any + Send + Sync {
    /// Kind of system: "ldap", "csv", "ldif", "graph", "sql".
    fn kind(&self) -> &'static str;

    /// One line saying where this connection points (never a secret).
    fn describe(&self) -> String;

    /// The flavour of the system ("ad", "openldap", "generic", ...).
    fn flavor(&self) -> String {
        self.kind().to_string()
    }

    /// The options to store in a named profile: secrets as references only.
    fn profile(&self) -> Result<serde_json::Value>;

    /// Reachability, authentication, vendor and naming contexts.
    async fn test(&self) -> Result<TestReport>;

    /// Streams the entries matching `q` into `sink`.
    async fn search(&self, q: &SearchQuery, sink: &mut Sink<'_>) -> Result<()>;

    /// [`Connector::search`], asking the system for more only while `room`
    /// has room (what `sink` queues, its consumer takes). Systems that read
    /// everything at once ignore `room`.
    async fn search_paced(&self, q: &SearchQuery, sink: &mut Sink<'_>, room: &Room) -> Result<()> {
        let _ = room;
        self.search(q, sink).await
    }

    /// [`Connector::changes`], paced by `room` as [`Connector::search_paced`].
    async fn changes_paced(
        &self,
        q: &SearchQuery,
        cursor: Option<&str>,
        sink: &mut Sink<'_>,
        room: &Room,
    ) -> Result<Option<ChangeRound>> {
        let _ = room;
        self.changes(q, cursor, sink).await
    }

    /// Streams the objects matching `q` that changed since `cursor` (every
    /// one when `cursor` is `None`); `Ok(None)` when the system cannot tell
    /// what changed (the caller then uses [`Connector::search`]).
    async fn changes(
        &self,
        _q: &SearchQuery,
        _cursor: Option<&str>,
        _sink: &mut Sink<'_>,
    ) -> Result<Option<ChangeRound>> {
        Ok(None)
    }

    /// Attribute names the system knows (for completion); may be empty.
    async fn attribute_names(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// One entry by identity (DN, GUID, SID, account name, key), or `None`.
    async fn get(&self, identity: &str) -> Result<Option<Entry>>;

    /// The target's schema (LDAP: the subschema, read at each call; a sync
    /// run reads it once), to check writes before they are sent; `None`
    /// where the system has none to publish.
    async fn schema(&self) -> Result<Option<std::sync::Arc<ldap::schema::Schema>>> {
        Ok(None)
    }

    /// One entry by identity, looked for below `base` instead of the
    /// connection's base (a directory with several naming contexts); a DN
    /// identity is read where it says. Systems without bases ignore `base`.
    async fn get_under(&self, identity: &str, _base: &str) -> Result<Option<Entry>> {
        self.get(identity).await
    }

    /// Creates an entry and returns it as stored.
    async fn create(&self, _dn: &str, _attrs: &[(String, Vec<Value>)]) -> Result<Entry> {
        Err(self.unsupported("create"))
    }

    /// Creates an entry and returns only its anchor (cheaper than
    /// [`Connector::create`] where the server can say it in the reply).
    async fn create_anchor(
        &self,
        dn: &str,
        attrs: &[(String, Vec<Value>)],
    ) -> Result<Option<String>> {
        Ok(self.create(dn, attrs).await?.anchor)
    }

    /// The system's change mark now, for the part of it holding `dn`
    /// (OpenLDAP: the naming context's `contextCSN`; AD: the rootDSE's
    /// `highestCommittedUSN`): every object written after this call is
    /// listed by [`Connector::anchors_since`] with it. A sync run then
    /// creates with [`Connector::add`] and reads the new anchors back once
    /// per batch instead of once per create. `None` where the system has no
    /// such mark (creates then use [`Connector::create_anchor`]).
    async fn write_mark(&self, _dn: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Creates an entry without reading anything back: its anchor is found
    /// afterwards with [`Connector::anchors_since`]. Takes the attributes
    /// (a run hands each create's values over instead of copying them).
    async fn add(&self, dn: &str, attrs: Vec<(String, Vec<Value>)>) -> Result<()> {
        self.create_anchor(dn, &attrs).await.map(|_| ())
    }

    /// Calls `found(dn, anchor)` for each object below `base` (the base
    /// itself included) written after `mark` (a value of
    /// [`Connector::write_mark`]).
    async fn anchors_since(
        &self,
        _base: &str,
        _mark: &str,
        _found: &mut (dyn FnMut(String, String) + Send),
    ) -> Result<()> {
        Err(self.unsupported("anchors_since"))
    }

    /// How many writes a sync run keeps in flight against this system.
    fn writes_in_flight(&self) -> usize {
        8
    }

    /// Applies attribute changes to the entry named by `identity`.
    async fn modify(&self, _identity: &str, _changes: &[Change]) -> Result<()> {
        Err(self.unsupported("modify"))
    }

    /// Changes the RDN; returns the new DN.
    async fn rename(&self, _identity: &str, _new_rdn: &str) -> Result<String> {
        Err(self.unsupported("rename"))
    }

    /// Moves under a new parent; returns the new DN.
    async fn move_to(&self, _identity: &str, _new_parent: &str) -> Result<String> {
        Err(self.unsupported("move"))
    }

    /// Deletes the entry.
    async fn delete(&self, _identity: &str) -> Result<()> {
        Err(self.unsupported("delete"))
    }

    /// DNs (or ids) of the group's direct members.
    async fn members(&self, _group: &str) -> Result<Vec<String>> {
        Err(self.unsupported("members"))
    }

    /// Adds a member; adding an existing member is not an error.
    async fn add_member(&self, _group: &str, _member: &str) -> Result<()> {
        Err(self.unsupported("add_member"))
    }

    /// Removes a member; removing a non-member is not an error.
    async fn remove_member(&self, _group: &str, _member: &str) -> Result<()> {
        Err(self.unsupported("remove_member"))
    }

    /// Enables an account.
    async fn enable(&self, _identity: &str) -> Result<()> {
        Err(self.unsupported("enable"))
    }

    /// Disables an account.
    async fn disable(&self, _identity: &str) -> Result<()> {
        Err(self.unsupported("disable"))
    }

    /// Sets a password as an administrator.
    async fn set_password(&self, _identity: &str, _password: &Secret) -> Result<()> {
        Err(self.unsupported("set_password"))
    }

    /// True when the system accepts `password` for `identity`.
    async fn authenticate(&self, _identity: &str, _password: &Secret) -> Result<bool> {
        Err(self.unsupported("authenticate"))
    }

    /// Tells the connection it is a sync step's target. File connectors
    /// then read a file that does not exist yet as empty (the step's first
    /// write creates it) instead of refusing it as a missing source.
    fn mark_as_target(&self) {}

    /// Starts a batch: file connectors keep writes in memory until
    /// [`Connector::flush`]; servers write at once and ignore this.
    fn begin_batch(&self) {}

    /// Makes the writes of a batch durable (file connectors: write a temp
    /// file and rename it over the old one, so a crash never leaves half a
    /// file) and ends the batch.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    // ------------------------------------------------------------ capabilities
    //
    // What differs between systems, as properties the sync engine and the
    // script layer ask about, so no caller checks `kind()` for one system.

    /// True when a sync step that names no `target_base` works in the
    /// parent its creates go to: the parent names a collection to search
    /// (Entra: a step creating in `groups` joins and reads in `groups`, not
    /// in the default `users`). Directories search their base instead.
    fn create_parent_is_collection(&self) -> bool {
        false
    }

    /// True when objects in `base` (the step's target base; `None` = the
    /// connection's) can be disabled. A step that gives no `deprovision`
    /// leaves leavers it could not disable alone (Entra groups).
    fn can_disable_in(&self, _base: Option<&str>) -> bool {
        true
    }

    /// The attribute a group's members are written to by default: `member`
    /// (values are DNs) in directories and files; Graph's `members` holds
    /// object ids.
    fn member_attribute(&self) -> &'static str {
        "member"
    }

    /// True when a group's members are named by their anchors (Graph's
    /// object ids) rather than by DNs.
    fn members_are_anchors(&self) -> bool {
        false
    }

    /// True when an object can be read back by the DN it was created with,
    /// so a create refused as "already exists" (a crash between the write
    /// and the link) adopts the object found there. False where the "DN" of
    /// a create names a collection, not the object (Entra).
    fn create_name_finds_object(&self) -> bool {
        true
    }

    /// True when an object is best addressed by the DN where it was found
    /// rather than by its anchor: an anchor is looked for only below the
    /// connection's base, a DN reaches every naming context (LDAP).
    /// Elsewhere the anchor is the identity that always works.
    fn locates_by_dn(&self) -> bool {
        false
    }

    /// True when a new or moved object's parent must already exist (LDAP);
    /// files and Graph take any parent.
    fn parents_must_exist(&self) -> bool {
        false
    }

    /// The error for an operation this system cannot do.
    fn unsupported(&self, op: &str) -> Error {
        Error::Unsupported {
            op: op.to_string(),
            kind: self.kind().to_string(),
        }
    }
}
