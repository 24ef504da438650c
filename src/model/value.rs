//! Attribute values and the list that decides which attributes are binary.
//!
//! Binary-ness is decided by attribute name, never by whether the bytes
//! happen to be valid UTF-8 (ldap3 sorts values by that luck).

use super::codec;

/// One attribute value as it came from (or goes to) a connected system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A text value.
    Text(String),
    /// Raw bytes of an attribute on the binary list.
    Binary(Vec<u8>),
}

/// How a binary attribute reads in scripts and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// 16-byte GUID, shown in .NET order.
    Guid,
    /// Security identifier, shown as `S-1-...`.
    Sid,
    /// Opaque bytes (photos, certificates, password hashes).
    Opaque,
}

const GUID_ATTRS: &[&str] = &[
    "objectguid",
    "ms-ds-consistencyguid",
    "msds-consistencyguid",
    "invocationid",
    "schemaidguid",
    "attributesecurityguid",
    "msexchmailboxguid",
    "msexcharchiveguid",
    "msds-generationid",
    "objectguid;binary",
];

const SID_ATTRS: &[&str] = &[
    "objectsid",
    "sidhistory",
    "tokengroups",
    "tokengroupsglobalanduniversal",
    "tokengroupsnogcacceptable",
    "securityidentifier",
    "msds-allowedtoactonbehalfofotheridentity-sid",
    "msexchmasteraccountsid",
    "objectsid;binary",
];

const OPAQUE_ATTRS: &[&str] = &[
    "jpegphoto",
    "thumbnailphoto",
    "thumbnaillogo",
    "photo",
    "audio",
    "usercertificate",
    "usercertificate;binary",
    "cacertificate",
    "cacertificate;binary",
    "authorityrevocationlist",
    "certificaterevocationlist",
    "crosscertificatepair",
    "usersmimecertificate",
    "userpkcs12",
    "ntsecuritydescriptor",
    "msds-allowedtoactonbehalfofotheridentity",
    "logonhours",
    "unicodepwd",
    "dbcspwd",
    "ntpwdhistory",
    "lmpwdhistory",
    "supplementalcredentials",
    "msds-managedpasswordid",
    "msds-managedpassword",
    "replpropertymetadata",
    "replupdatetodatevector",
    "repsfrom",
    "repsto",
    "dsasignature",
    "msds-replattributemetadata",
    "terminalserver",
    "pekList",
    "currentvalue",
    "priorvalue",
    "initialauthincoming",
    "initialauthoutgoing",
    "trustauthincoming",
    "trustauthoutgoing",
    "msexchsafesendershash",
    "msexchblockedsendershash",
    "msexchsaferecipientshash",
];

/// The binary kind of an attribute, or `None` when it is text.
pub fn binary_kind(attr: &str) -> Option<BinaryKind> {
    // Called for every attribute of every entry read: no allocation.
    let is = |list: &[&str]| list.iter().any(|a| a.eq_ignore_ascii_case(attr));
    if is(GUID_ATTRS) {
        Some(BinaryKind::Guid)
    } else if is(SID_ATTRS) {
        Some(BinaryKind::Sid)
    } else if is(OPAQUE_ATTRS) {
        Some(BinaryKind::Opaque)
    } else {
        None
    }
}

/// True when the attribute is on the binary list.
pub fn is_binary(attr: &str) -> bool {
    binary_kind(attr).is_some()
}

impl Value {
    /// The value as an administrator reads it: text as is, GUIDs and SIDs in
    /// their canonical forms, other binary as `None`.
    pub fn display(&self, attr: &str) -> Option<String> {
        match self {
            Value::Text(s) => Some(s.clone()),
            Value::Binary(b) => match binary_kind(attr) {
                Some(BinaryKind::Guid) => codec::guid_to_string(b),
                Some(BinaryKind::Sid) => codec::sid_to_string(b),
                _ => None,
            },
        }
    }

    /// The raw bytes of the value (text as UTF-8), without a copy.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Value::Text(s) => s.into_bytes(),
            Value::Binary(b) => b,
        }
    }

    /// The raw bytes of the value (text as UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Text(s) => s.as_bytes(),
            Value::Binary(b) => b,
        }
    }

    /// Builds the value for `attr` from script text: for a GUID or SID
    /// attribute a canonical string is turned back into its bytes.
    pub fn from_text(attr: &str, text: &str) -> Value {
        match binary_kind(attr) {
            Some(BinaryKind::Guid) => match codec::guid_from_string(text) {
                Some(b) => Value::Binary(b.to_vec()),
                None => Value::Text(text.to_string()),
            },
            Some(BinaryKind::Sid) => match codec::sid_from_string(text) {
                Some(b) => Value::Binary(b),
                None => Value::Text(text.to_string()),
            },
            _ => Value::Text(text.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_list_is_case_insensitive() {
        assert_eq!(binary_kind("objectGUID"), Some(BinaryKind::Guid));
        assert_eq!(binary_kind("OBJECTSID"), Some(BinaryKind::Sid));
        assert_eq!(binary_kind("jpegPhoto"), Some(BinaryKind::Opaque));
        assert_eq!(binary_kind("mail"), None);
    }

    #[test]
    fn guid_value_displays_canonically_even_if_valid_utf8() {
        // 16 ASCII bytes: valid UTF-8, still a GUID.
        let v = Value::Binary(b"ABCDEFGHIJKLMNOP".to_vec());
        assert_eq!(
            v.display("objectGUID").unwrap(),
            "44434241-4645-4847-494a-4b4c4d4e4f50"
        );
        assert_eq!(v.display("jpegPhoto"), None);
    }
}
