//! Who may open the CRM's API routes and pages: the plugin's part of the
//! server's access table (`ordo_server::access`), the one source of truth that
//! the gate enforces, the README's tables are generated from, and the matrix
//! tests check. What a caller sees inside a route (their records, their team's)
//! is the visibility layer's (`crate::visibility`).

use ordo_server::access::{ADMIN, Rule, STAFF, Who, rule};
use ordo_server::auth::Role;

/// Those who work with records: lists, exports, imports, the pool, the pipeline.
pub const SALES: &[Role] = &[Role::Salesperson, Role::Supervisor, Role::Admin];
/// Who may claim from the pool (an admin hands records out instead).
pub const CLAIMS: &[Role] = &[Role::Salesperson, Role::Supervisor];
/// Those who set the assignment rules.
pub const MANAGERS: &[Role] = &[Role::Supervisor, Role::Admin];

use Who::Roles;

/// The CRM's routes.
pub const RULES: &[Rule] = &[
    rule(
        "GET",
        "/api/crm/records/{kind}",
        Roles(SALES),
        "`?q=&owner=&type=&grade=&region=&status=&stage=&contacted=&to_visit=&added=today|week|month&page=&per_page=`; salespeople their own records, supervisors their whole reporting line's, admins all",
    ),
    rule(
        "GET",
        "/api/crm/records/{kind}/{id}",
        Roles(SALES),
        "one record it may see, with its audit trail (404 otherwise)",
    ),
    rule(
        "GET",
        "/api/crm/export/{kind}",
        Roles(SALES),
        "`{kind}.csv` with the list's filters; formula cells neutralised",
    ),
    rule(
        "POST",
        "/api/crm/import/customers",
        Roles(SALES),
        "CSV body (400 for a wrong header row) → `202` with the job and its `Location`",
    ),
    rule(
        "GET",
        "/api/crm/imports",
        Roles(SALES),
        "imports the caller submitted (admins: all)",
    ),
    rule(
        "GET",
        "/api/crm/imports/{id}",
        Roles(SALES),
        "`?wait=true` answers when it has finished (at most 25 s)",
    ),
    rule(
        "GET",
        "/api/crm/pool/{kind}",
        Roles(SALES),
        "customers or leads in the public pool",
    ),
    rule(
        "POST",
        "/api/crm/pool/{kind}/{id}/claim",
        Roles(CLAIMS),
        "409 if taken, 422 past a limit",
    ),
    rule(
        "GET",
        "/api/crm/pipeline",
        Roles(SALES),
        "open opportunities by stage, within the caller's visibility",
    ),
    rule(
        "GET",
        "/api/crm/payments",
        Roles(SALES),
        "receivable plans with their payment state, within the caller's visibility",
    ),
    rule(
        "GET",
        "/api/crm/inbox",
        Roles(STAFF),
        "`?unread=`: the caller's own notifications",
    ),
    rule(
        "POST",
        "/api/crm/inbox/{id}/read",
        Roles(STAFF),
        "their own",
    ),
    rule("GET", "/api/crm/outbox", Roles(ADMIN), "`?status=`"),
    rule("POST", "/api/crm/outbox/deliver", Roles(ADMIN), ""),
    rule(
        "PUT",
        "/api/crm/staff/{person}",
        Roles(ADMIN),
        "`{email?, weight?, daily_capacity?, active?}`: the fields sent change, the others keep their values (`null` clears `email` or `daily_capacity`)",
    ),
    rule("GET", "/api/crm/assignment-rules", Roles(MANAGERS), ""),
    rule(
        "PUT",
        "/api/crm/assignment-rules",
        Roles(MANAGERS),
        "`[{region?, industry?, grade?, person | group}]`: each rule's person works here, its group has members, its region and grade are known values (422 otherwise)",
    ),
    rule("GET", "/api/crm/pool-rules", Roles(SALES), ""),
    rule("PUT", "/api/crm/pool-rules", Roles(ADMIN), ""),
    rule(
        "GET",
        "/api/crm/office",
        Roles(SALES),
        "the office's time zone",
    ),
    rule(
        "PUT",
        "/api/crm/office",
        Roles(ADMIN),
        "`{time_zone}`: an IANA name (the days of the daily queries)",
    ),
    rule(
        "POST",
        "/api/crm/webhooks",
        Roles(ADMIN),
        "`{url, templates?}`",
    ),
    // Pages.
    rule(
        "GET",
        "/crm",
        Roles(SALES),
        "customers they may see, with the daily queries, paging and export",
    ),
    rule("GET", "/crm/customers.csv", Roles(SALES), "the export"),
    rule(
        "GET",
        "/crm/customers/{id}",
        Roles(SALES),
        "a customer they may see, with linked records and history",
    ),
    rule(
        "GET",
        "/crm/pool",
        Roles(SALES),
        "customers and leads in the public pool",
    ),
    rule("POST", "/crm/pool/{kind}/{id}/claim", Roles(CLAIMS), ""),
    rule(
        "GET",
        "/crm/pipeline",
        Roles(SALES),
        "opportunities by stage, receivables",
    ),
    rule(
        "GET",
        "/crm/inbox",
        Roles(STAFF),
        "the viewer's CRM notifications",
    ),
    rule("POST", "/crm/inbox/{id}/read", Roles(STAFF), ""),
    rule("GET", "/crm/import", Roles(SALES), "CSV import"),
    rule("POST", "/crm/import", Roles(SALES), ""),
    rule(
        "GET",
        "/crm/import/{id}",
        Roles(SALES),
        "an import's progress, then the rows skipped",
    ),
    rule("GET", "/crm/import/{id}/version", Roles(SALES), ""),
];
