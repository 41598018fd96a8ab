//! The CRM's tables, in the engine's SQLite file, with migrations of their own.
//!
//! The engine numbers its migrations with `PRAGMA user_version`; the CRM keeps its
//! count in `crm_meta` so the two never step on each other. Every table is
//! prefixed `crm_`. Money is stored in cents (integers), times as RFC 3339 text
//! in UTC, flags as 0/1.

use ordo_engine::store::{self, Sql, SqlExt, params};

/// The migrations, in order; never edit one that has shipped, add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the records of `docs/crm.md` and the audit trail.
    "CREATE TABLE crm_customers (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        company TEXT,
        title TEXT,
        phone TEXT,
        email TEXT,
        address TEXT,
        type TEXT NOT NULL DEFAULT 'prospect',
        industry TEXT,
        source TEXT,
        grade TEXT NOT NULL DEFAULT 'ordinary',
        owner TEXT,
        region TEXT,
        last_contact_at TEXT,
        next_contact_at TEXT,
        locked INTEGER NOT NULL DEFAULT 0,
        in_pool INTEGER NOT NULL DEFAULT 0,
        pool_since TEXT,
        previous_owner TEXT,
        phone_key TEXT,
        email_key TEXT,
        company_key TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_customers_owner ON crm_customers (owner);
    CREATE INDEX crm_customers_phone ON crm_customers (phone_key);
    CREATE INDEX crm_customers_email ON crm_customers (email_key);
    CREATE INDEX crm_customers_company ON crm_customers (company_key);
    CREATE TABLE crm_contacts (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        name TEXT NOT NULL,
        title TEXT,
        phone TEXT,
        email TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_contacts_customer ON crm_contacts (customer_id);
    CREATE TABLE crm_leads (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        company TEXT,
        title TEXT,
        phone TEXT,
        email TEXT,
        region TEXT,
        industry TEXT,
        source TEXT,
        grade TEXT NOT NULL DEFAULT 'ordinary',
        status TEXT NOT NULL DEFAULT 'new',
        lost_reason TEXT,
        owner TEXT,
        customer_id INTEGER REFERENCES crm_customers (id),
        phone_key TEXT,
        email_key TEXT,
        company_key TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_leads_owner ON crm_leads (owner);
    CREATE INDEX crm_leads_email ON crm_leads (email_key);
    CREATE TABLE crm_opportunities (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        lead_id INTEGER REFERENCES crm_leads (id),
        name TEXT NOT NULL,
        stage TEXT NOT NULL DEFAULT 'qualification',
        probability INTEGER NOT NULL DEFAULT 10,
        amount_cents INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'open',
        lost_reason TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_opportunities_customer ON crm_opportunities (customer_id);
    CREATE INDEX crm_opportunities_owner ON crm_opportunities (owner);
    CREATE TABLE crm_quotes (
        id INTEGER PRIMARY KEY,
        opportunity_id INTEGER NOT NULL REFERENCES crm_opportunities (id),
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        amount_cents INTEGER NOT NULL,
        discount REAL NOT NULL DEFAULT 0,
        valid_until TEXT,
        approval_status TEXT NOT NULL DEFAULT 'none',
        locked INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_orders (
        id INTEGER PRIMARY KEY,
        quote_id INTEGER REFERENCES crm_quotes (id),
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        kind TEXT NOT NULL DEFAULT 'stock',
        amount_cents INTEGER NOT NULL,
        review_status TEXT NOT NULL DEFAULT 'none',
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_contracts (
        id INTEGER PRIMARY KEY,
        order_id INTEGER REFERENCES crm_orders (id),
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        status TEXT NOT NULL DEFAULT 'draft',
        amount_cents INTEGER NOT NULL,
        signed_at TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_receivable_plans (
        id INTEGER PRIMARY KEY,
        contract_id INTEGER REFERENCES crm_contracts (id),
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        total_cents INTEGER NOT NULL,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_instalments (
        id INTEGER PRIMARY KEY,
        plan_id INTEGER NOT NULL REFERENCES crm_receivable_plans (id),
        due_date TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_payments (
        id INTEGER PRIMARY KEY,
        plan_id INTEGER NOT NULL REFERENCES crm_receivable_plans (id),
        amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
        method TEXT NOT NULL,
        paid_at TEXT NOT NULL,
        handler TEXT NOT NULL,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_payments_plan ON crm_payments (plan_id);
    CREATE TABLE crm_followups (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        subject TEXT NOT NULL,
        content TEXT,
        at TEXT NOT NULL,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX crm_followups_customer ON crm_followups (customer_id, at);
    CREATE TABLE crm_work_plans (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER REFERENCES crm_customers (id),
        subject TEXT NOT NULL,
        content TEXT,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'not_done',
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_complaints (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        subject TEXT NOT NULL,
        content TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        resolution TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_return_visits (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES crm_customers (id),
        complaint_id INTEGER REFERENCES crm_complaints (id),
        satisfaction INTEGER,
        content TEXT,
        at TEXT NOT NULL,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE crm_audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT,
        record TEXT NOT NULL,
        record_id INTEGER NOT NULL,
        change TEXT NOT NULL,
        before TEXT,
        after TEXT,
        why TEXT NOT NULL
    );
    CREATE INDEX crm_audit_record ON crm_audit (record, record_id, seq);",
    // 2: what the shipped processes need (order status and review comment,
    // customer approval, leads in the pool), the sales staff, assignment,
    // notifications and the public pool.
    "ALTER TABLE crm_orders ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE crm_orders ADD COLUMN review_comment TEXT;
    ALTER TABLE crm_customers ADD COLUMN approval_status TEXT NOT NULL DEFAULT 'none';
    ALTER TABLE crm_leads ADD COLUMN in_pool INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE crm_leads ADD COLUMN pool_since TEXT;
    ALTER TABLE crm_leads ADD COLUMN previous_owner TEXT;
    ALTER TABLE crm_receivable_plans ADD COLUMN instalments INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX crm_customers_pool ON crm_customers (in_pool, grade);
    CREATE INDEX crm_leads_owner_status ON crm_leads (owner, status);
    CREATE INDEX crm_opportunities_owner_status ON crm_opportunities (owner, status);
    CREATE TABLE crm_staff (
        person TEXT PRIMARY KEY,
        active INTEGER NOT NULL DEFAULT 1,
        email TEXT,
        weight INTEGER NOT NULL DEFAULT 1,
        daily_capacity INTEGER,
        left_at TEXT
    ) WITHOUT ROWID;
    CREATE TABLE crm_assignment_rules (
        position INTEGER PRIMARY KEY,
        region TEXT,
        industry TEXT,
        grade TEXT,
        person TEXT,
        grp TEXT,
        CHECK ((person IS NULL) <> (grp IS NULL))
    );
    CREATE TABLE crm_round_robin (
        grp TEXT PRIMARY KEY,
        last_person TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE crm_assignments (
        id INTEGER PRIMARY KEY,
        record TEXT NOT NULL,
        record_id INTEGER NOT NULL,
        person TEXT NOT NULL,
        strategy TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        instance INTEGER
    );
    CREATE INDEX crm_assignments_person ON crm_assignments (person, at);
    CREATE TABLE crm_outbox (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        recipient TEXT NOT NULL,
        channel TEXT NOT NULL,
        address TEXT NOT NULL,
        template TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        UNIQUE (event, recipient, channel)
    );
    CREATE INDEX crm_outbox_due ON crm_outbox (status, next_at);
    CREATE TABLE crm_inbox (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        person TEXT NOT NULL,
        template TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        record TEXT,
        record_id INTEGER,
        created_at TEXT NOT NULL,
        read_at TEXT,
        UNIQUE (event, person)
    );
    CREATE INDEX crm_inbox_person ON crm_inbox (person, read_at, id);
    CREATE TABLE crm_webhooks (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        templates TEXT NOT NULL DEFAULT '*',
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE crm_settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE crm_pool_claims (
        id INTEGER PRIMARY KEY,
        person TEXT NOT NULL,
        record TEXT NOT NULL,
        record_id INTEGER NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX crm_pool_claims_person ON crm_pool_claims (person, at);",
    // 3: CSV imports run as background jobs with their progress.
    "CREATE TABLE crm_imports (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        submitted_by TEXT NOT NULL,
        may_set_owner INTEGER NOT NULL,
        status TEXT NOT NULL,
        total INTEGER NOT NULL,
        processed INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        headers TEXT NOT NULL,
        body TEXT,
        next_byte INTEGER NOT NULL,
        next_line INTEGER NOT NULL,
        error TEXT,
        submitted_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX crm_imports_pending ON crm_imports (status, id);
    CREATE TABLE crm_import_skipped (
        id INTEGER PRIMARY KEY,
        import_id INTEGER NOT NULL REFERENCES crm_imports (id),
        line INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX crm_import_skipped_import ON crm_import_skipped (import_id, line);",
    // A payment's id in the system that reported it (bank reference, ERP id).
    "ALTER TABLE crm_payments ADD COLUMN reference TEXT;",
];

/// Creates or upgrades the CRM tables. Safe to call at every start; a database
/// from a newer Ordo is refused rather than misread.
/// Runs inside the engine's open, on its writer, in one transaction with the
/// other plugins' migrations, after the engine's own: all of them commit or
/// none does.
pub fn migrate(tx: &dyn Sql) -> Result<(), String> {
    migrate_tables(tx).map_err(|e| e.to_string())
}

fn migrate_tables(tx: &dyn Sql) -> Result<(), MigrateError> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS crm_meta (version INTEGER NOT NULL)")?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM crm_meta",
        params![],
        |r| r.get(0),
    )?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(MigrateError::TooNew { current, known });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO crm_meta (version) VALUES (?1)", params![i + 1])?;
    }
    Ok(())
}

/// Why the CRM tables could not be prepared.
#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error(
        "the CRM tables are at version {current}, newer than this Ordo knows ({known}); run a newer Ordo"
    )]
    TooNew { current: i64, known: i64 },
    #[error(transparent)]
    Store(#[from] store::Error),
}
