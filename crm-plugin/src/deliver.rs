//! Delivery of the outbox after commit: e-mail over SMTP (lettre) and webhooks
//! (HTTP POST of JSON, ureq).
//!
//! A pass takes the rows that are due, oldest first. Each row is claimed
//! (`sending`, attempts + 1) in its own short transaction before it is sent, and
//! marked `sent` after; a failed send is retried with exponential backoff (1, 2,
//! 4, 8 minutes) and after [`MAX_ATTEMPTS`] stays `failed`, with the last error,
//! for an admin to see. A row found `sending` whose claim is older than
//! [`LEASE`] (the process died mid-send) is retried: the message carries a
//! stable id (`Message-ID`, the webhook's `event` and `X-Ordo-Delivery`) so a
//! receiver can drop the rare duplicate.

use chrono::{DateTime, Duration, Utc};
use ordo_engine::store::{self, Sql, SqlExt, params};

/// Sends after this many failures are given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// A claim older than this is considered abandoned.
pub const LEASE: Duration = Duration::minutes(5);

/// Where e-mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    /// The relay's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The sender (`Ordo CRM <crm@example.com>`).
    pub from: String,
}

impl Smtp {
    /// Parses `host:port`.
    pub fn parse(addr: &str, from: &str) -> Result<Self, String> {
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
            format!("the SMTP relay `{addr}` needs a port: host:port (localhost:25)")
        })?;
        let port = port
            .parse()
            .map_err(|_| format!("the SMTP relay's port `{port}` is not a port number"))?;
        from.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("the sender `{from}` is not an e-mail address: {e}"))?;
        Ok(Smtp {
            host: host.to_owned(),
            port,
            from: from.to_owned(),
        })
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Report {
    /// Delivered.
    pub sent: usize,
    /// Failed this time, to be retried.
    pub retrying: usize,
    /// Failed for good.
    pub failed: usize,
}

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    event: String,
    channel: String,
    address: String,
    subject: String,
    body: String,
    attempts: i64,
}

/// Delivers what is due at `now`; at most `limit` rows, on one connection:
/// [`claim_due`], [`send`] (outside any transaction), [`record`]. The server
/// runs the two database steps as units of work on the engine's writer.
pub fn deliver_due(
    conn: &dyn Sql,
    smtp: Option<&Smtp>,
    now: DateTime<Utc>,
    limit: u32,
) -> store::Result<Report> {
    let claimed = claim_due(conn, smtp.is_some(), now, limit)?;
    let sent = send(smtp, claimed);
    record(conn, &sent, now)
}

/// A row claimed for sending: only its claimer sends it.
#[derive(Debug, Clone)]
pub struct Claimed(Row);

/// A claimed row and what sending it gave.
#[derive(Debug, Clone)]
pub struct Sent {
    id: i64,
    attempts: i64,
    result: Result<(), String>,
}

/// Claims the rows due at `now` (at most `limit`): each is marked `sending` with
/// its attempt counted, so a deliverer that dies leaves it to be retried after
/// [`LEASE`]. Without a relay (`email_ok` false) e-mails wait, spending no
/// attempt.
pub fn claim_due(
    conn: &dyn Sql,
    email_ok: bool,
    now: DateTime<Utc>,
    limit: u32,
) -> store::Result<Vec<Claimed>> {
    let stale = (now - LEASE).to_rfc3339();
    let rows: Vec<Row> = {
        conn.query_map(
            "SELECT id, event, channel, address, subject, body, attempts FROM crm_outbox
             WHERE ((status = 'pending' AND next_at <= ?1) OR (status = 'sending' AND next_at <= ?2))
             AND (channel <> 'email' OR ?4)
             ORDER BY id LIMIT ?3",
            params![now.to_rfc3339(), stale, limit, email_ok],
            |r| {
                Ok(Row {
                    id: r.get(0)?,
                    event: r.get(1)?,
                    channel: r.get(2)?,
                    address: r.get(3)?,
                    subject: r.get(4)?,
                    body: r.get(5)?,
                    attempts: r.get(6)?,
                })
            },
        )?
    };
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let n = conn.execute(
            "UPDATE crm_outbox SET status = 'sending', attempts = attempts + 1, next_at = ?2
             WHERE id = ?1 AND attempts = ?3",
            params![row.id, now.to_rfc3339(), row.attempts],
        )?;
        if n > 0 {
            claimed.push(Claimed(row));
        }
    }
    Ok(claimed)
}

/// Sends each claimed row (SMTP, webhook): no database, no transaction held.
pub fn send(smtp: Option<&Smtp>, claimed: Vec<Claimed>) -> Vec<Sent> {
    claimed
        .into_iter()
        .map(|Claimed(row)| {
            let result = match row.channel.as_str() {
                "email" => send_email(smtp, &row),
                "webhook" => send_webhook(&row),
                other => Err(format!("unknown channel `{other}`")),
            };
            Sent {
                id: row.id,
                attempts: row.attempts + 1,
                result,
            }
        })
        .collect()
}

/// Records what sending gave: sent; failed for good after [`MAX_ATTEMPTS`];
/// else pending again after a backoff of 1, 2, 4, 8 minutes.
pub fn record(conn: &dyn Sql, sent: &[Sent], now: DateTime<Utc>) -> store::Result<Report> {
    let mut report = Report::default();
    for s in sent {
        match &s.result {
            Ok(()) => {
                conn.execute(
                    "UPDATE crm_outbox SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
                    params![s.id, now.to_rfc3339()],
                )?;
                report.sent += 1;
            }
            Err(e) if s.attempts >= MAX_ATTEMPTS => {
                conn.execute(
                    "UPDATE crm_outbox SET status = 'failed', last_error = ?2 WHERE id = ?1",
                    params![s.id, e],
                )?;
                report.failed += 1;
            }
            Err(e) => {
                let wait = Duration::minutes(1 << (s.attempts - 1).clamp(0, 10));
                conn.execute(
                    "UPDATE crm_outbox SET status = 'pending', last_error = ?2, next_at = ?3 WHERE id = ?1",
                    params![s.id, e, (now + wait).to_rfc3339()],
                )?;
                report.retrying += 1;
            }
        }
    }
    Ok(report)
}

fn send_email(smtp: Option<&Smtp>, row: &Row) -> Result<(), String> {
    use lettre::Transport;
    let smtp = smtp.ok_or("no SMTP relay is configured (ordo serve --smtp host:port)")?;
    let from = smtp.from.parse().map_err(|e| format!("sender: {e}"))?;
    let to = row
        .address
        .parse()
        .map_err(|e| format!("`{}` is not an e-mail address: {e}", row.address))?;
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(&row.subject)
        .message_id(Some(format!(
            "<outbox-{}.{}@ordo>",
            row.id,
            row.event.replace([':', ' '], "-")
        )))
        .header(lettre::message::header::ContentType::TEXT_HTML)
        .body(row.body.clone())
        .map_err(|e| e.to_string())?;
    lettre::SmtpTransport::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(std::time::Duration::from_secs(10)))
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
}

fn send_webhook(row: &Row) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(&row.address)
        .header("Content-Type", "application/json")
        .header("X-Ordo-Delivery", &row.id.to_string())
        .send(row.body.as_bytes())
        .map_err(|e| format!("POST {}: {e}", row.address))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {} answered {status}", row.address))
    }
}

/// An outbox row, for the admin's view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct OutboxRow {
    /// Its id.
    pub id: i64,
    /// The event.
    pub event: String,
    /// Person or webhook.
    pub recipient: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Address or URL.
    pub address: String,
    /// Template.
    pub template: String,
    /// `pending`, `sending`, `sent`, `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<String>,
}

/// The outbox, newest first; `status` filters.
pub fn outbox(conn: &dyn Sql, status: Option<&str>, limit: u32) -> store::Result<Vec<OutboxRow>> {
    conn.query_map("SELECT id, event, recipient, channel, address, template, status, attempts, last_error, sent_at
         FROM crm_outbox WHERE status = ?1 OR ?1 IS NULL ORDER BY id DESC LIMIT ?2", params![status, limit], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            event: r.get(1)?,
            recipient: r.get(2)?,
            channel: r.get(3)?,
            address: r.get(4)?,
            template: r.get(5)?,
            status: r.get(6)?,
            attempts: r.get(7)?,
            last_error: r.get(8)?,
            sent_at: r.get(9)?,
        })
    })
}

/// When the next row is due, if any.
pub fn next_due(conn: &dyn Sql) -> store::Result<Option<String>> {
    conn.query_opt(
        "SELECT MIN(next_at) FROM crm_outbox WHERE status IN ('pending', 'sending')",
        params![],
        |r| r.get(0),
    )
    .map(Option::flatten)
}
