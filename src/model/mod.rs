//! The data model every layer shares: entries and values, GUID/SID codecs,
//! DNs and escaping, LDIF records, secrets. No I/O here.

pub mod codec;
pub mod dn;
pub mod entry;
pub mod filter;
pub mod ldif_write;
pub mod password_rights;
pub mod secret;
pub mod security_descriptor;
pub mod value;

pub use entry::{Attribute, Entry};
pub use secret::Secret;
pub use value::Value;
