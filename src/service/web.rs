//! The service's small HTTP/1.1 server, plain or over TLS: the transport
//! under `/health` + `/metrics` ([`super::http`]) and the password endpoints
//! ([`super::password`]). One request per connection (`Connection: close`),
//! on the shared tokio runtime.
//!
//! Why not hyper: the endpoints take one small JSON body and answer one
//! small body; hyper's server needs features the tree does not build yet and
//! an adapter crate. The request head is parsed by `httparse` (the parser
//! hyper itself uses, already in the tree); what is ours is the framing
//! around it, kept strict: the head must arrive within [`Limits::head_bytes`]
//! and the whole request within [`Limits::read_timeout`]; a body needs
//! `Content-Length` (no chunked encoding: 411) and is capped at
//! [`Limits::body_bytes`] (413); the handler's answer is written and the
//! connection closed. TLS is rustls with the `ring` provider, like every
//! other TLS connection of idsync; the certificate chain and key are PEM
//! files read once at start.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// One request as the handler sees it.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
    /// The caller's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One answer.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Further headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: format!("{body}\n"),
            headers: Vec::new(),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// What answers requests.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Told of every request the server itself refused (400, 408, 411, 413,
/// 431) before any handler saw it: the caller, the status, the path when
/// the head was read (else empty) and the answer's text. Never the body.
pub type Rejected = Arc<dyn Fn(SocketAddr, u16, &str, &str) + Send + Sync>;

/// Bounds on what a caller may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The request head (request line and headers) at most this long.
    pub head_bytes: usize,
    /// The body at most this long.
    pub body_bytes: usize,
    /// The TLS handshake and the whole request must arrive within this.
    pub read_timeout: Duration,
    /// The handler must answer within this (else 503).
    pub answer_timeout: Duration,
}

impl Default for Limits {
    /// 8 KiB head, 16 KiB body, 10 s to send the request, 60 s to answer.
    fn default() -> Self {
        Limits {
            head_bytes: 8192,
            body_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(60),
        }
    }
}

/// Reads the certificate chain and private key (PEM files) into a TLS
/// acceptor (rustls, `ring` provider, HTTP/1.1 by ALPN).
pub fn tls_acceptor(what: &str, cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what}: tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what}: tls_cert {}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{what}: tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{what}: TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            format!(
                "{what}: tls_cert {} with tls_key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Starts serving on `addr` (plain HTTP when `tls` is `None`); the listener
/// lives until the process ends. Returns the bound address (port 0 picks a
/// free one).
pub fn serve(
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    handler: Handler,
) -> Result<SocketAddr, String> {
    serve_with(addr, tls, limits, handler, None)
}

/// [`serve`], telling `rejected` of every request refused before the
/// handler (the password endpoints audit them).
pub fn serve_with(
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    handler: Handler,
    rejected: Option<Rejected>,
) -> Result<SocketAddr, String> {
    if tls.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without TLS (loopback only in plain HTTP)"
        ));
    }
    let rt = crate::script::runtime::runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handler = handler.clone();
            let tls = tls.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move {
                match tls {
                    None => connection(sock, peer, limits, handler, rejected).await,
                    Some(acc) => {
                        let Ok(Ok(s)) =
                            tokio::time::timeout(limits.read_timeout, acc.accept(sock)).await
                        else {
                            return;
                        };
                        connection(s, peer, limits, handler, rejected).await
                    }
                }
            });
        }
    });
    Ok(bound)
}

/// Why a request could not be read: the answer to send, if any.
enum ReadError {
    /// Send this and close (the path, when the head was read).
    Answer(Response, String),
    /// The caller went away or was too slow: close without an answer.
    Gone,
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    peer: SocketAddr,
    limits: Limits,
    handler: Handler,
    rejected: Option<Rejected>,
) {
    let req = match tokio::time::timeout(limits.read_timeout, read_request(&mut sock, peer, limits))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(ReadError::Answer(resp, path))) => {
            if let Some(f) = &rejected {
                f(peer, resp.status, &path, resp.body.trim_end());
            }
            let _ = write_response(&mut sock, &resp).await;
            return;
        }
        Ok(Err(ReadError::Gone)) => return,
        Err(_) => {
            let resp = Response::text(408, "request not received in time\n");
            if let Some(f) = &rejected {
                f(peer, resp.status, "", resp.body.trim_end());
            }
            let _ = write_response(&mut sock, &resp).await;
            return;
        }
    };
    let resp = match tokio::time::timeout(limits.answer_timeout, handler(req)).await {
        Ok(r) => r,
        Err(_) => Response::text(503, "the answer took too long\n"),
    };
    let _ = write_response(&mut sock, &resp).await;
}

async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    peer: SocketAddr,
    limits: Limits,
) -> Result<Request, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let (method, path, headers, head_len) = loop {
        let n = sock.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut hs);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len > limits.head_bytes => {
                return Err(ReadError::Answer(
                    Response::text(431, "request head too large\n"),
                    String::new(),
                ));
            }
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let path = r.path.unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/").to_string();
                break (r.method.unwrap_or("").to_string(), path, headers, len);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > limits.head_bytes {
                    return Err(ReadError::Answer(
                        Response::text(431, "request head too large\n"),
                        String::new(),
                    ));
                }
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Answer(
                    Response::text(431, "too many request headers\n"),
                    String::new(),
                ));
            }
            Err(e) => {
                return Err(ReadError::Answer(
                    Response::text(400, format!("malformed request: {e}\n")),
                    String::new(),
                ));
            }
        }
    };
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if find("transfer-encoding").is_some() {
        return Err(ReadError::Answer(
            Response::text(
                411,
                "send the body with Content-Length (chunked transfer encoding is not accepted)\n",
            ),
            path,
        ));
    }
    let length = match find("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ReadError::Answer(
                Response::text(400, "Content-Length is not a number\n"),
                path.clone(),
            )
        })?,
    };
    if length > limits.body_bytes {
        return Err(ReadError::Answer(
            Response::text(
                413,
                format!("body too large (at most {} bytes)\n", limits.body_bytes),
            ),
            path,
        ));
    }
    let mut body = buf.split_off(head_len);
    if body.is_empty()
        && length > 0
        && find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Gone)?;
    }
    while body.len() < length {
        let n = sock.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        headers,
        body,
        peer,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn write_response<S: AsyncWrite + Unpin>(sock: &mut S, r: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(r.body.as_bytes()).await?;
    sock.flush().await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &[u8], limits: Limits) -> Result<Request, u16> {
        let rt = crate::script::runtime::runtime();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            client.write_all(raw).await.unwrap();
            drop(client);
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            read_request(&mut server, peer, limits)
                .await
                .map_err(|e| match e {
                    ReadError::Answer(r, _) => r.status,
                    ReadError::Gone => 0,
                })
        })
    }

    #[test]
    fn bodies_are_framed_by_content_length_and_capped() {
        let l = Limits::default();
        let r = request(
            b"POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            l,
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/x"));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("HOST"), Some("h"));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            l.body_bytes + 1
        );
        assert_eq!(request(big.as_bytes(), l).err(), Some(413));
        assert_eq!(
            request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", l).err(),
            Some(411)
        );
        assert_eq!(request(b"GARBAGE\x01\r\n\r\n", l).err(), Some(400));
        // a body shorter than announced: the caller went away
        assert_eq!(
            request(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", l).err(),
            Some(0)
        );
        let huge_head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(request(huge_head.as_bytes(), l).err(), Some(431));
    }
}
