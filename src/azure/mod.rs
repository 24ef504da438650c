//! Entra ID functions built on the Graph connector: directory roles
//! ([`roles`]) and Azure BackSync ([`backsync`]), which writes each cloud
//! object's id back into its on-premises AD object.

pub mod backsync;
pub mod roles;
