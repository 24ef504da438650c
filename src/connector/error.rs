//! Connector errors: each names the object and the cause in words an
//! administrator understands, with the server's code kept alongside.

/// Result of a connector operation.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong talking to a connected system.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The caller's input is wrong (bad filter, bad DN, bad option).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or the connection dropped.
    #[error("{0}")]
    Connection(String),
    /// Authentication failed.
    #[error("{0}")]
    Auth(String),
    /// The operation on one object failed.
    #[error("{object}: {cause}")]
    Object {
        /// DN or identity of the object.
        object: String,
        /// Why, in words.
        cause: String,
        /// The server's result code, if any.
        code: Option<u32>,
    },
    /// No object matches the identity.
    #[error("{0}: no such object")]
    NotFound(String),
    /// The identity matches several objects.
    #[error("{identity}: ambiguous identity, {count} objects match ({sample})")]
    Ambiguous {
        /// The identity given.
        identity: String,
        /// How many matched.
        count: usize,
        /// Some of the DNs that matched.
        sample: String,
    },
    /// This kind of system cannot do the operation.
    #[error("{op} is not supported on {kind} connections")]
    Unsupported {
        /// The operation.
        op: String,
        /// The connection kind.
        kind: String,
    },
    /// The object was created but a follow-up write failed (a new Entra
    /// group whose members could not all be added): link it, retry the rest.
    #[error("{object}: created as {anchor}, but {cause}")]
    Partial {
        /// The object.
        object: String,
        /// The anchor it was created with.
        anchor: String,
        /// What failed afterwards.
        cause: String,
    },
    /// Anything else, already worded.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// An error on one object.
    pub fn object(object: impl Into<String>, cause: impl Into<String>, code: Option<u32>) -> Error {
        Error::Object {
            object: object.into(),
            cause: cause.into(),
            code,
        }
    }

    /// The server result code, when the error carries one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Object { code, .. } => *code,
            _ => None,
        }
    }
}
