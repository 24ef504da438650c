//! The service's HTTP endpoints: `GET /health` (JSON) and `GET /metrics`
//! (Prometheus text), on a loopback address only (TLS is not supported
//! here, so nothing else is served), through the service's small HTTP
//! server ([`super::web`]): one request per connection, GET only; the pages
//! are rendered by the scheduler ([`Pages`]) and served as they are.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::web::{Handler, Limits, Request, Response};

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
    let handler: Handler = Arc::new(move |req: Request| {
        let resp = answer(&req, &pages);
        Box::pin(async move { resp })
    });
    super::web::serve(addr, None, Limits::default(), handler).map_err(|e| format!("serve: {e}"))
}

fn answer(req: &Request, pages: &Arc<Mutex<Pages>>) -> Response {
    let p = pages.lock().unwrap_or_else(|e| e.into_inner());
    let (status, ctype, body) = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => (200, "application/json", p.health.clone()),
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            p.metrics.clone(),
        ),
        ("GET", _) => (
            404,
            "text/plain",
            "not found: GET /health or /metrics\n".into(),
        ),
        _ => (
            405,
            "text/plain",
            "only GET /health and GET /metrics\n".into(),
        ),
    };
    Response {
        status,
        content_type: ctype,
        body,
        headers: Vec::new(),
    }
}
