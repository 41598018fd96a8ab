//! Notifications: `crm.notify` renders a template for each recipient and writes,
//! in the step's transaction,
//! - the in-app inbox entry (a table in the same database: written with the step,
//!   so exactly once), and
//! - an outbox row per e-mail and per webhook, delivered after commit by
//!   [`crate::deliver`].
//!
//! Rows are unique per (event, recipient, channel): the same event never reaches
//! the same person twice, whoever asks for it twice (`to: [owner, supervisor]`
//! when they are the same person, a step retried after a failure).

use crate::records;
use crate::{org, records::Why};
use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use ordo_engine::store::{self, Sql, SqlExt, params};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Notification errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No template by this name.
    #[error("there is no notification template `{0}`; templates are {known}", known = names().join(", "))]
    UnknownTemplate(String),
    /// The template could not be rendered (strict mode: a missing value).
    #[error("notification template `{template}` cannot be rendered: {reason}")]
    Render {
        /// The template.
        template: String,
        /// Why.
        reason: String,
    },
    /// Nobody to tell.
    #[error("notification `{0}` has no recipient: give `to`, `to_group` or `supervisor_of`")]
    NoRecipient(String),
    /// A record error.
    #[error(transparent)]
    Record(#[from] records::Error),
    /// Storage failed.
    #[error("notification storage failed: {0}")]
    Sqlite(#[from] store::Error),
}

#[derive(Debug, serde::Deserialize)]
struct Template {
    subject: String,
    body: String,
}

const SOURCE: &str = include_str!("../templates/notifications.yaml");

struct Registry {
    hb: Handlebars<'static>,
    names: Vec<String>,
}

fn registry() -> Result<&'static Registry, String> {
    static REG: OnceLock<Result<Registry, String>> = OnceLock::new();
    REG.get_or_init(|| {
        let templates: BTreeMap<String, Template> =
            serde_yaml::from_str(SOURCE).map_err(|e| format!("notifications.yaml: {e}"))?;
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // Bodies are HTML: `{{value}}` is escaped (the default escape function).
        for (name, t) in &templates {
            hb.register_template_string(&format!("{name}.body"), &t.body)
                .map_err(|e| format!("notifications.yaml, {name}.body: {e}"))?;
            hb.register_template_string(&format!("{name}.subject"), &t.subject)
                .map_err(|e| format!("notifications.yaml, {name}.subject: {e}"))?;
        }
        Ok(Registry {
            hb,
            names: templates.into_keys().collect(),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The templates' names.
pub fn names() -> Vec<String> {
    registry().map(|r| r.names.clone()).unwrap_or_default()
}

/// Checks that the shipped templates parse (called at install).
pub fn check_templates() -> Result<usize, String> {
    registry().map(|r| r.names.len())
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Plain text.
    pub subject: String,
    /// HTML, values escaped.
    pub body: String,
}

/// Renders a template against `data`.
pub fn render(template: &str, data: &Value) -> Result<Rendered, Error> {
    let reg = registry().map_err(|reason| Error::Render {
        template: template.to_owned(),
        reason,
    })?;
    if !reg.names.iter().any(|n| n == template) {
        return Err(Error::UnknownTemplate(template.to_owned()));
    }
    let fail = |e: handlebars::RenderError| Error::Render {
        template: template.to_owned(),
        reason: e.to_string(),
    };
    let body = reg
        .hb
        .render(&format!("{template}.body"), data)
        .map_err(fail)?;
    // The subject is plain text: render it escaped, then undo the escaping, so
    // a value cannot inject markup into clients that show subjects as HTML yet
    // the text reads as typed everywhere else.
    let subject = reg
        .hb
        .render(&format!("{template}.subject"), data)
        .map_err(fail)?;
    Ok(Rendered {
        subject: unescape(&subject).replace(['\r', '\n'], " "),
        body,
    })
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x3D;", "=")
        .replace("&#x60;", "`")
        .replace("&amp;", "&")
}

/// What to send and to whom.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// The template.
    pub template: &'a str,
    /// Identifies the event: a person gets one notification per event.
    pub event: String,
    /// People, by name.
    pub to: Vec<String>,
    /// The record it is about (`quote`, 12).
    pub about: Option<(&'static records::Kind, i64)>,
    /// Everything else the template may use.
    pub data: Map<String, Value>,
}

/// What `notify` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// People told in the app.
    pub inbox: Vec<String>,
    /// E-mails queued.
    pub emails: usize,
    /// Webhook calls queued.
    pub webhooks: usize,
}

/// Renders and files a notice for each recipient, in `tx`.
pub fn notify(tx: &dyn Sql, notice: &Notice<'_>, why: &Why) -> Result<Sent, Error> {
    if notice.to.is_empty() {
        return Err(Error::NoRecipient(notice.template.to_owned()));
    }
    let mut data = notice.data.clone();
    if let Some((kind, id)) = notice.about {
        let record = records::get(tx, kind, id)?.ok_or(records::Error::NotFound {
            record: kind.name,
            id,
        })?;
        data.insert("record".into(), Value::Object(record));
        data.insert("kind".into(), json!(kind.name));
        data.insert("id".into(), json!(id));
    }
    let now = why.at.to_rfc3339();
    let mut sent = Sent::default();
    let mut people: Vec<&String> = notice.to.iter().collect();
    people.sort();
    people.dedup();
    for person in people {
        data.insert("recipient".into(), json!(person));
        let r = render(notice.template, &Value::Object(data.clone()))?;
        let (record, record_id) = notice
            .about
            .map_or((None, None), |(k, id)| (Some(k.name), Some(id)));
        let fresh = tx.execute(
            "INSERT INTO crm_inbox
                 (event, person, template, subject, body, record, record_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT DO NOTHING",
            params![
                notice.event,
                person,
                notice.template,
                r.subject,
                r.body,
                record,
                record_id,
                now
            ],
        )?;
        if fresh == 0 {
            continue;
        }
        sent.inbox.push(person.clone());
        if let Some(address) = org::email_of(tx, person)? {
            sent.emails += queue(
                tx,
                &notice.event,
                person,
                "email",
                &address,
                notice.template,
                &r,
                &now,
            )?;
        }
    }
    let hooks: Vec<(i64, String)> = {
        tx.query_map(
            "SELECT id, url FROM crm_webhooks WHERE active = 1
             AND (templates = '*' OR ',' || templates || ',' LIKE '%,' || ?1 || ',%')",
            params![notice.template],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    };
    for (hook, url) in hooks {
        let payload = json!({
            "event": notice.event,
            "template": notice.template,
            "recipients": sent.inbox,
            "record": notice.about.map(|(k, id)| json!({"kind": k.name, "id": id})),
            "data": notice.data,
            "at": now,
        });
        let r = Rendered {
            subject: notice.template.to_owned(),
            body: payload.to_string(),
        };
        sent.webhooks += queue(
            tx,
            &notice.event,
            &format!("webhook:{hook}"),
            "webhook",
            &url,
            notice.template,
            &r,
            &now,
        )?;
    }
    Ok(sent)
}

#[allow(clippy::too_many_arguments)]
fn queue(
    tx: &dyn Sql,
    event: &str,
    recipient: &str,
    channel: &str,
    address: &str,
    template: &str,
    r: &Rendered,
    now: &str,
) -> Result<usize, Error> {
    Ok(tx.execute(
        "INSERT INTO crm_outbox
             (event, recipient, channel, address, template, subject, body, next_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT DO NOTHING",
        params![
            event, recipient, channel, address, template, r.subject, r.body, now
        ],
    )?)
}

/// One entry of a person's in-app inbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct InboxEntry {
    /// Its id.
    pub id: i64,
    /// The template it came from.
    pub template: String,
    /// Plain text.
    pub subject: String,
    /// HTML (values escaped).
    pub body: String,
    /// The record it is about.
    pub record: Option<String>,
    /// Its id.
    pub record_id: Option<i64>,
    /// When.
    pub created_at: String,
    /// When it was read.
    pub read_at: Option<String>,
}

/// A person's inbox, newest first.
pub fn inbox(
    tx: &dyn Sql,
    person: &str,
    unread_only: bool,
    limit: u32,
) -> store::Result<Vec<InboxEntry>> {
    tx.query_map(
        "SELECT id, template, subject, body, record, record_id, created_at, read_at
         FROM crm_inbox WHERE person = ?1 AND (?2 = 0 OR read_at IS NULL)
         ORDER BY id DESC LIMIT ?3",
        params![person, unread_only, limit],
        |r| {
            Ok(InboxEntry {
                id: r.get(0)?,
                template: r.get(1)?,
                subject: r.get(2)?,
                body: r.get(3)?,
                record: r.get(4)?,
                record_id: r.get(5)?,
                created_at: r.get(6)?,
                read_at: r.get(7)?,
            })
        },
    )
}

/// Marks an inbox entry read; false when it is not this person's.
pub fn mark_read(tx: &dyn Sql, person: &str, id: i64, at: DateTime<Utc>) -> store::Result<bool> {
    Ok(tx.execute(
        "UPDATE crm_inbox SET read_at = COALESCE(read_at, ?3) WHERE id = ?1 AND person = ?2",
        params![id, person, at.to_rfc3339()],
    )? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        assert!(
            check_templates().is_ok_and(|n| n >= 10),
            "{:?}",
            check_templates()
        );
    }

    #[test]
    fn values_are_escaped_in_the_body_and_read_as_typed_in_the_subject() {
        let data = json!({
            "recipient": "sam", "kind": "lead", "id": 1, "reason": "round robin",
            "record": {"name": "<script>Tom & Co</script>"},
        });
        let r = render("assigned", &data).map_err(|e| e.to_string());
        let r = r.unwrap_or_else(|e| Rendered {
            subject: e.clone(),
            body: e,
        });
        assert!(
            r.body.contains("&lt;script&gt;Tom &amp; Co&lt;/script&gt;"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("<script>"));
        assert_eq!(r.subject, "New lead for you: <script>Tom & Co</script>");
    }

    #[test]
    fn a_missing_value_is_an_error_that_names_the_template() {
        let e = render("assigned", &json!({"recipient": "sam"}));
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`assigned` cannot be rendered"), "{msg}");
    }

    #[test]
    fn an_unknown_template_lists_the_known_ones() {
        let msg = render("nope", &json!({}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("order_paid"), "{msg}");
    }
}
