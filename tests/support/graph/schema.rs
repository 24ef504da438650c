//! What the fake knows about Graph's types: object kinds, their properties (type, whether
//! Graph lets a client write them, whether they are in the default `$select`-less set), and
//! the directory role templates.

/// The directory object types the fake stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    User,
    Group,
    ServicePrincipal,
}

impl Kind {
    /// `#microsoft.graph.user` etc.
    pub fn odata_type(self) -> &'static str {
        match self {
            Kind::User => "#microsoft.graph.user",
            Kind::Group => "#microsoft.graph.group",
            Kind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
        }
    }

    /// URL segment of the collection: `users`, `groups`, `servicePrincipals`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
            Kind::ServicePrincipal => "servicePrincipals",
        }
    }

    /// `microsoft.graph.user` (used in "Could not find a property" messages).
    pub fn qualified(self) -> &'static str {
        &self.odata_type()[1..]
    }

    /// `User`, `Group`, `ServicePrincipal` (used in "of resource '…'" messages).
    pub fn resource(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
            Kind::ServicePrincipal => "ServicePrincipal",
        }
    }

    /// The property table of this kind.
    pub fn props(self) -> &'static [Prop] {
        match self {
            Kind::User => USER_PROPS,
            Kind::Group => GROUP_PROPS,
            Kind::ServicePrincipal => SP_PROPS,
        }
    }

    /// Looks a property up (case-sensitive, as stored; see [`Kind::canonical`]).
    pub fn prop(self, name: &str) -> Option<&'static Prop> {
        self.props()
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The canonical spelling of property `name` (Graph matches names case-insensitively).
    pub fn canonical(self, name: &str) -> Option<&'static str> {
        self.prop(name).map(|p| p.name)
    }

    /// The properties returned when a request has no `$select`.
    pub fn default_select(self) -> Vec<String> {
        self.props()
            .iter()
            .filter(|p| p.default)
            .map(|p| p.name.to_owned())
            .collect()
    }
}

/// JSON shape of a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PType {
    Str,
    Bool,
    StrList,
    Object,
    /// a navigation property (only meaningful in delta `$select`: `members`, `manager`)
    Nav,
}

/// Who may write a property through Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// clients may set it on POST and PATCH
    ReadWrite,
    /// set by the service / Entra Connect only: POST/PATCH → 400
    ReadOnly,
}

/// One property of a kind.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prop {
    pub name: &'static str,
    pub ty: PType,
    pub access: Access,
    /// part of the default property set (no `$select`)
    pub default: bool,
}

const fn p(name: &'static str, ty: PType, access: Access, default: bool) -> Prop {
    Prop {
        name,
        ty,
        access,
        default,
    }
}

use Access::{ReadOnly as RO, ReadWrite as RW};
use PType::{Bool, Nav, Object, Str, StrList};

/// User properties (v1.0). The default set is the one §1.2 lists.
pub(super) const USER_PROPS: &[Prop] = &[
    p("id", Str, RO, true),
    p("businessPhones", StrList, RW, true),
    p("displayName", Str, RW, true),
    p("givenName", Str, RW, true),
    p("jobTitle", Str, RW, true),
    p("mail", Str, RW, true),
    p("mobilePhone", Str, RW, true),
    p("officeLocation", Str, RW, true),
    p("preferredLanguage", Str, RW, true),
    p("surname", Str, RW, true),
    p("userPrincipalName", Str, RW, true),
    p("accountEnabled", Bool, RW, false),
    p("city", Str, RW, false),
    p("companyName", Str, RW, false),
    p("country", Str, RW, false),
    p("createdDateTime", Str, RO, false),
    p("deletedDateTime", Str, RO, false),
    p("department", Str, RW, false),
    p("employeeId", Str, RW, false),
    p("employeeType", Str, RW, false),
    p("externalUserState", Str, RO, false),
    p("mailNickname", Str, RW, false),
    p("onPremisesDistinguishedName", Str, RO, false),
    p("onPremisesDomainName", Str, RO, false),
    p("onPremisesExtensionAttributes", Object, RW, false),
    p("onPremisesImmutableId", Str, RW, false),
    p("onPremisesLastSyncDateTime", Str, RO, false),
    p("onPremisesSamAccountName", Str, RO, false),
    p("onPremisesSecurityIdentifier", Str, RO, false),
    p("onPremisesSyncEnabled", Bool, RO, false),
    p("onPremisesUserPrincipalName", Str, RO, false),
    p("otherMails", StrList, RW, false),
    p("passwordPolicies", Str, RW, false),
    p("passwordProfile", Object, RW, false),
    p("postalCode", Str, RW, false),
    p("proxyAddresses", StrList, RO, false),
    p("state", Str, RW, false),
    p("streetAddress", Str, RW, false),
    p("usageLocation", Str, RW, false),
    p("userType", Str, RW, false),
    p("manager", Nav, RO, false),
];

/// Group properties (v1.0). The default set is the one the brief lists; `onPremises*` only
/// when selected.
pub(super) const GROUP_PROPS: &[Prop] = &[
    p("id", Str, RO, true),
    p("displayName", Str, RW, true),
    p("description", Str, RW, true),
    p("mail", Str, RO, true),
    p("mailNickname", Str, RW, true),
    p("securityEnabled", Bool, RW, true),
    p("mailEnabled", Bool, RW, true),
    p("groupTypes", StrList, RW, true),
    p("classification", Str, RW, false),
    p("createdDateTime", Str, RO, false),
    p("deletedDateTime", Str, RO, false),
    p("membershipRule", Str, RW, false),
    p("membershipRuleProcessingState", Str, RW, false),
    p("onPremisesDomainName", Str, RO, false),
    p("onPremisesLastSyncDateTime", Str, RO, false),
    p("onPremisesNetBiosName", Str, RO, false),
    p("onPremisesSamAccountName", Str, RO, false),
    p("onPremisesSecurityIdentifier", Str, RO, false),
    p("onPremisesSyncEnabled", Bool, RO, false),
    p("proxyAddresses", StrList, RO, false),
    p("securityIdentifier", Str, RO, false),
    p("visibility", Str, RW, false),
    p("members", Nav, RO, false),
];

/// Service principal properties (a small subset).
pub(super) const SP_PROPS: &[Prop] = &[
    p("id", Str, RO, true),
    p("accountEnabled", Bool, RW, true),
    p("appDisplayName", Str, RO, true),
    p("appId", Str, RO, true),
    p("appOwnerOrganizationId", Str, RO, true),
    p("displayName", Str, RW, true),
    p("servicePrincipalNames", StrList, RW, true),
    p("servicePrincipalType", Str, RO, true),
    p("tags", StrList, RW, true),
    p("deletedDateTime", Str, RO, false),
];

/// User properties stored outside the directory: selecting them on delta gives 501.
pub(super) const OUTSIDE_DIRECTORY: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mailboxSettings",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
];

/// Directory role templates: (template id, displayName, description).
pub(super) const ROLE_TEMPLATES: &[(&str, &str, &str)] = &[
    (
        GLOBAL_ADMIN,
        "Global Administrator",
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
    ),
    (
        "9360feb5-f418-4baa-8175-e2a00bac4301",
        "Directory Writers",
        "Can read and write basic directory information. For granting access to applications, not intended for users.",
    ),
    (
        "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
        "Directory Readers",
        "Can read basic directory information. Commonly used to grant directory read access to applications and guests.",
    ),
    (
        "d29b2b05-8046-44ba-8758-1e26182fcf32",
        "Directory Synchronization Accounts",
        "Only used by Microsoft Entra Connect and Microsoft Entra Cloud Sync services.",
    ),
    (
        USER_ADMIN,
        "User Administrator",
        "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
    ),
    (
        PRIV_AUTH_ADMIN,
        "Privileged Authentication Administrator",
        "Can access to view, set and reset authentication method information for any user (admin or non-admin).",
    ),
    (
        "fdd7a751-b60b-444a-984c-02652fe8fa1c",
        "Groups Administrator",
        "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports.",
    ),
    (
        "a0b1b346-4d3e-4e8b-98f8-753987be4970",
        "User",
        "Default role for member users. Includes all read permissions and some write permissions.",
    ),
    (
        "10dae51f-b6af-4016-8d66-8c2a99b929b3",
        "Guest User",
        "Default role for guest users. Can read a limited set of directory information.",
    ),
    (
        "2af84b1e-32c8-42b7-82bc-daa82404023b",
        "Restricted Guest User",
        "Restricted role for guest users. Can read a limited set of directory information.",
    ),
];

/// Global Administrator template id (activated in every fresh tenant).
pub(super) const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
/// User Administrator template id.
pub(super) const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
/// Privileged Authentication Administrator template id.
pub(super) const PRIV_AUTH_ADMIN: &str = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13";

/// The implicit user roles, which cannot be activated.
pub(super) const IMPLICIT_ROLES: &[&str] = &[
    "a0b1b346-4d3e-4e8b-98f8-753987be4970",
    "10dae51f-b6af-4016-8d66-8c2a99b929b3",
    "2af84b1e-32c8-42b7-82bc-daa82404023b",
];

/// Roles whose holders may set other users' passwords (with the password permission).
pub(super) const PASSWORD_ROLES: &[&str] = &[GLOBAL_ADMIN, USER_ADMIN, PRIV_AUTH_ADMIN];

/// Properties of a directoryRole (for `$select`/`$filter` on `/directoryRoles`).
pub(super) const ROLE_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "roleTemplateId",
];
