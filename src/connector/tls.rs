//! TLS settings for LDAP and HTTPS (Graph) connections: verification against a CA file or the
//! system roots (on by default), or no verification when explicitly asked; and TLS failures
//! in words that say what to do ([`explain`]).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::connector::{Error, Result};

/// Builds the rustls client configuration: `ca_file` roots when given,
/// otherwise the platform's roots; `verify == false` accepts any certificate.
pub fn client_config(ca_file: Option<&str>, verify: bool) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?;
    if !verify {
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
        ));
    }
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::usage(format!("ca_file '{path}': cannot read it: {e}")))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| {
                    Error::usage(format!("ca_file '{path}': not a PEM certificate file: {e}"))
                })?;
            if certs.is_empty() {
                return Err(Error::usage(format!(
                    "ca_file '{path}': no certificate in it"
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    Error::usage(format!("ca_file '{path}': unusable certificate: {e}"))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// A failed TLS connection to `host` in words that say what to do, when
/// `err` (or one of its causes) is a TLS failure: an unknown issuer names
/// `ca_file` (and `verify: false` as the insecure way out); a server that
/// ends the handshake at once or answers without TLS is a port that
/// probably does not speak TLS. `handshake`: the error happened while
/// opening a TLS connection, so a connection closed at once means the
/// server did not take part in TLS. `None` when it is no TLS failure.
pub fn explain(
    err: &(dyn std::error::Error + 'static),
    host: &str,
    ca_file: Option<&str>,
    handshake: bool,
) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut closed = false;
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(rustls_words(r, host, ca_file));
        }
        // io::Error hides the error it wraps from source(): unwrap it (and
        // the io::Errors inside it, as hyper nests them) by hand.
        let mut inner = e;
        while let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            closed |= matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            );
            match io.get_ref() {
                Some(i) => inner = i,
                None => break,
            }
        }
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(rustls_words(r, host, ca_file));
        }
        closed |= e.to_string().to_ascii_lowercase().contains("handshake eof");
        cur = e.source();
    }
    (handshake && closed).then(|| not_tls(host))
}

fn not_tls(host: &str) -> String {
    format!(
        "the TLS handshake with {host} ended at once: that port probably does not speak TLS \
         (an ldaps:// or https:// URL pointing at a plain port? LDAPS is usually port 636; \
         for a plain LDAP port use ldap:// with tls: \"starttls\")"
    )
}

fn rustls_words(e: &rustls::Error, host: &str, ca_file: Option<&str>) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => match ca_file {
                Some(path) => format!(
                    "the TLS certificate of {host} is not signed by the CA in ca_file '{path}': \
                     give the CA that issued it as ca_file (verify: false skips the check, which \
                     is insecure)"
                ),
                None => format!(
                    "the TLS certificate of {host} is signed by a CA this machine does not trust: \
                     give that CA's certificate (PEM) as ca_file: \"/path/to/ca.pem\" (verify: \
                     false skips the check, which is insecure)"
                ),
            },
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the TLS certificate of {host} is not issued for the name '{host}': connect with a \
                 name (or address) the certificate lists ({e})"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the TLS certificate of {host} has expired ({e})")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "the TLS certificate of {host} is not valid yet (check this machine's clock) ({e})"
            ),
            C::Revoked => format!("the TLS certificate of {host} has been revoked"),
            _ => format!("the TLS certificate of {host} was refused: {e}"),
        },
        rustls::Error::InvalidMessage(_) => not_tls(host),
        rustls::Error::AlertReceived(a) => {
            format!("{host} refused the TLS handshake (alert {a:?})")
        }
        other => format!("TLS with {host} failed: {other}"),
    }
}

/// Accepts every server certificate (only with `verify: false`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
