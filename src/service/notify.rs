//! Alerts and run notifications: mail by SMTP (lettre; STARTTLS and login
//! unless the script asked for plain text) and/or a JSON POST to a webhook.
//! Each message names the schedule, what happened and why, the counts and
//! the log file. Sending happens on two threads of its own, from a bounded
//! queue, so a slow mail server never delays a schedule nor piles up
//! threads; a failure to send (or a message dropped from a full queue) is
//! logged, never fatal.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value as Json, json};

use crate::script::service::NotifyDef;

/// One message to send.
#[derive(Clone, Debug)]
pub struct Message {
    /// The subject line ("idsync: hr/users quarantined").
    pub subject: String,
    /// What happened: "quarantined", "failed", "refused", "ok", ...
    pub event: String,
    /// The schedule (step or workflow) name.
    pub step: String,
    /// Why.
    pub reason: String,
    /// The run's counts.
    pub counts: Json,
    /// The run log.
    pub log: Option<String>,
    /// The instance that sends it (host:pid).
    pub instance: String,
}

impl Message {
    /// The mail body: one fact per line.
    pub fn body(&self) -> String {
        let p = &self.counts["planned"];
        let plan = if p.is_object() {
            format!(
                "Plan (refused, nothing was written): {} source objects, {} to write, {} to deprovision, {} unchanged\n",
                p["source_objects"], p["to_write"], p["to_deprovision"], p["unchanged"]
            )
        } else {
            String::new()
        };
        format!(
            "Step: {}\nEvent: {}\nReason: {}\n{plan}Counts: {}\nLog file: {}\nInstance: {}\n",
            self.step,
            self.event,
            self.reason,
            self.counts,
            self.log.as_deref().unwrap_or("(none)"),
            self.instance
        )
    }

    /// The webhook's JSON body.
    pub fn json(&self) -> Json {
        json!({
            "subject": self.subject, "event": self.event, "step": self.step,
            "reason": self.reason, "counts": self.counts, "log": self.log,
            "instance": self.instance,
        })
    }
}

/// Messages waiting to be sent at most: more are dropped, and logged (a
/// mail server that hangs must not pile up threads or memory).
const WAITING: usize = 64;

/// Threads that send, one message at a time each.
const SENDERS: usize = 2;

/// One message for one target, and where its outcome is logged.
type Job = (NotifyDef, Message, fn(&str));

/// The queue of the sending threads, started on first use; `None` when no
/// thread could be started.
fn queue(log: fn(&str)) -> Option<&'static SyncSender<Job>> {
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(WAITING);
            let rx = Arc::new(Mutex::new(rx));
            let mut started = 0;
            for _ in 0..SENDERS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name("idsync-notify".into())
                    .spawn(move || {
                        loop {
                            // The lock is held only while waiting for the next job.
                            let next = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => return,
                            };
                            let Ok((t, msg, log)) = next else { return };
                            match send_one(&t, &msg) {
                                Err(e) => {
                                    log(&format!("notification {:?} not sent: {e}", msg.subject))
                                }
                                Ok(()) => log(&format!("notification sent: {}", msg.subject)),
                            }
                        }
                    });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => log(&format!("cannot start a notification thread: {e}")),
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

/// Sends `msg` to every target, in the background (a few threads, a
/// bounded queue); `log` reports what was sent, what failed and what was
/// dropped because too many were waiting.
pub fn send(targets: &[NotifyDef], msg: Message, log: fn(&str)) {
    for t in targets {
        let dropped = match queue(log) {
            Some(q) => match q.try_send((t.clone(), msg.clone(), log)) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => Some(format!("{WAITING} are waiting to be sent")),
                Err(TrySendError::Disconnected(_)) => Some("no thread sends".to_string()),
            },
            None => Some("no thread sends".to_string()),
        };
        if let Some(why) = dropped {
            log(&format!("notification {:?} dropped: {why}", msg.subject));
        }
    }
}

/// Sends `msg` to one target, waiting for the result.
pub fn send_one(t: &NotifyDef, msg: &Message) -> Result<(), String> {
    match t {
        NotifyDef::Smtp {
            host,
            port,
            from,
            to,
            user,
            password,
            tls,
        } => smtp(host, *port, from, to, user.as_deref(), password, tls, msg)
            .map_err(|e| format!("mail via {host}:{port}: {e}")),
        NotifyDef::Webhook { url } => webhook(url, msg).map_err(|e| {
            // The URL may carry a token in its query: name the host only.
            let host = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            format!("webhook at {host}: {e}")
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn smtp(
    host: &str,
    port: u16,
    from: &str,
    to: &[String],
    user: Option<&str>,
    password: &Option<crate::model::Secret>,
    tls: &str,
    msg: &Message,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{SmtpTransport, Transport};
    let mut b = lettre::Message::builder()
        .from(
            from.parse()
                .map_err(|e| format!("from {from:?} is not an address: {e}"))?,
        )
        .subject(&msg.subject)
        .header(ContentType::TEXT_PLAIN);
    for r in to {
        b = b.to(r
            .parse()
            .map_err(|e| format!("to {r:?} is not an address: {e}"))?);
    }
    // 8bit when every line fits (quoted-printable cuts words across lines
    // for anyone reading the raw mail); a longer line (a long reason) makes
    // lettre fall back to quoted-printable, which mail clients decode.
    let text = msg.body();
    let body = lettre::message::Body::new_with_encoding(
        text.clone(),
        lettre::message::header::ContentTransferEncoding::EightBit,
    )
    .unwrap_or_else(|_| lettre::message::Body::new(text));
    let email = b.body(body).map_err(|e| e.to_string())?;
    let mut t = if tls == "none" {
        SmtpTransport::builder_dangerous(host)
    } else {
        ensure_crypto_provider();
        SmtpTransport::starttls_relay(host).map_err(|e| e.to_string())?
    }
    .port(port)
    .timeout(Some(std::time::Duration::from_secs(30)));
    if let Some(u) = user {
        let pw = password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        t = t.credentials(Credentials::new(u.to_string(), pw));
    }
    t.build().send(&email).map_err(|e| e.to_string())?;
    Ok(())
}

/// rustls needs a process-wide crypto provider; ring is the one we build with.
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn webhook(url: &str, msg: &Message) -> Result<(), String> {
    ensure_crypto_provider();
    // The system's CAs, certificates verified (as the connectors do).
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let body = msg.json();
    let r = crate::script::runtime::block_on_to_end(async move {
        client.post(url).json(&body).send().await
    })
    .map_err(|e| e.without_url().to_string())?;
    if !r.status().is_success() {
        return Err(format!("answered HTTP {}", r.status()));
    }
    Ok(())
}
