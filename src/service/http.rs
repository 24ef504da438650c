//! The service's HTTP endpoints: `GET /health` (JSON) and `GET /metrics`
//! (Prometheus text), on a loopback address only (TLS is not supported
//! yet, so nothing else is served). A minimal HTTP/1.1 responder on the
//! shared tokio runtime: one request per connection, GET only; the pages
//! are rendered by the scheduler ([`Pages`]) and served as they are.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The current pages, replaced by the scheduler on every tick.
#[derive(Default)]
pub struct Pages {
    /// The /health body (JSON).
    pub health: String,
    /// The /metrics body (Prometheus text format 0.0.4).
    pub metrics: String,
}

/// Starts serving on `addr` (loopback only); the listener lives until the
/// process ends.
pub fn serve(addr: SocketAddr, pages: Arc<Mutex<Pages>>) -> Result<SocketAddr, String> {
    crate::script::service::check_listen(&addr.to_string())?;
    let rt = crate::script::runtime::runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("serve: cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let pages = pages.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(10), answer(sock, pages))
                        .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(mut sock: tokio::net::TcpStream, pages: Arc<Mutex<Pages>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // Read the request head (at most 8 KiB).
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = {
        let p = pages.lock().unwrap_or_else(|e| e.into_inner());
        match (method, path) {
            ("GET", "/health") => ("200 OK", "application/json", p.health.clone()),
            ("GET", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                p.metrics.clone(),
            ),
            ("GET", _) => (
                "404 Not Found",
                "text/plain",
                "not found: GET /health or /metrics\n".into(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "only GET /health and GET /metrics\n".into(),
            ),
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}
