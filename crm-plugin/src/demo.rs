//! Demo data for `ordo serve --demo`: the sales team's e-mail addresses and
//! assignment rules, a few customers at different points of their life, an
//! opportunity in each stage, and one customer waiting in the pool.

use crate::records::{self, Why};
use crate::{assign, org};
use chrono::{DateTime, Duration, Utc};
use ordo_engine::store::{Sql, SqlExt, params};
use serde_json::{Value, json};

/// Seeds the demo, once: a second call finds the customers there and does nothing.
pub fn seed(conn: &dyn Sql, now: DateTime<Utc>) -> Result<(), String> {
    let existing: i64 = conn
        .query_row("SELECT COUNT(*) FROM crm_customers", params![], |r| {
            r.get(0)
        })
        .map_err(|e| e.to_string())?;
    if existing > 0 {
        return Ok(());
    }
    // Run as one unit of work (the server runs it on the engine's writer).
    let tx = conn;
    // The demo office is in China, like the stale-customer pass's Beijing time.
    crate::visibility::set_office_zone(tx, "Asia/Shanghai")?;
    for (person, weight, capacity) in [
        ("sam", 2, Some(20)),
        ("sally", 1, Some(10)),
        ("sue", 1, None),
    ] {
        org::set_staff(
            tx,
            &org::Staff {
                person: person.into(),
                email: Some(format!("{person}@sales.example")),
                weight,
                daily_capacity: capacity,
                active: true,
            },
        )
        .map_err(|e| e.to_string())?;
    }
    assign::set_rules(
        tx,
        &[
            assign::Rule {
                grade: Some("vip".into()),
                person: Some("sue".into()),
                ..assign::Rule::default()
            },
            assign::Rule {
                region: Some("north".into()),
                person: Some("sally".into()),
                ..assign::Rule::default()
            },
        ],
    )?;
    let why = Why {
        actor: Some("demo".into()),
        reason: "demo data".into(),
        at: now,
    };
    let day = |d: i64| (now + Duration::days(d)).to_rfc3339();
    let customers = [
        json!({"name": "Wang Fang", "company": "Huadong Machinery", "phone": "13900001111", "email": "wang@huadong.example", "region": "east", "industry": "manufacturing", "source": "referral", "grade": "vip", "type": "intention", "owner": "sam", "last_contact_at": day(0), "next_contact_at": day(2)}),
        json!({"name": "Zhao Min", "company": "Beifang Foods", "phone": "13900002222", "region": "north", "industry": "food", "source": "advertising", "type": "prospect", "owner": "sally", "last_contact_at": day(-3), "next_contact_at": day(0)}),
        json!({"name": "Chen Jie", "company": "Nanhai Logistics", "phone": "13900003333", "region": "south", "industry": "logistics", "source": "inbound", "type": "paused", "owner": "sam", "last_contact_at": day(-25)}),
        json!({"name": "Liu Yang", "company": "Xibei Energy", "phone": "13900004444", "region": "north_west", "industry": "energy", "source": "inbound", "type": "prospect", "in_pool": true, "pool_since": day(-10), "previous_owner": "sally"}),
    ];
    let customer = records::kind("customer").map_err(|e| e.to_string())?;
    let opportunity = records::kind("opportunity").map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    for c in &customers {
        let fields = c.as_object().cloned().unwrap_or_default();
        ids.push(records::create(tx, customer, &fields, &why).map_err(|e| e.to_string())?);
    }
    let opportunities = [
        (
            0,
            "Huadong: line automation",
            "negotiation",
            70,
            480_000.0,
            "sam",
        ),
        (
            1,
            "Beifang: cold storage",
            "needs_analysis",
            30,
            120_000.0,
            "sally",
        ),
        (2, "Nanhai: fleet tracking", "proposal", 50, 65_000.0, "sam"),
    ];
    for (i, name, stage, probability, amount, owner) in opportunities {
        let fields = json!({"customer_id": ids[i], "name": name, "stage": stage, "probability": probability, "amount": amount, "status": "open", "owner": owner});
        if let Value::Object(f) = fields {
            records::create(tx, opportunity, &f, &why).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The demo office on every backend (`store::testdb`): the CRM's SQL gives
    //! the same answers on SQLite and on PostgreSQL.
    use super::*;
    use crate::visibility::{self, Filter, Scope, Window};
    use crate::{actions, deliver, pool};
    use chrono::TimeZone;
    use ordo_engine::store::testdb;

    fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// What the office looks like through the CRM's reads and writes.
    fn report(tx: &dyn Sql) -> Vec<String> {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
            .single()
            .unwrap_or_else(|| unreachable!());
        ok(tx.execute_batch(
            "CREATE TABLE people (name TEXT PRIMARY KEY, roles TEXT NOT NULL, supervisor TEXT);
             INSERT INTO people VALUES ('max', 'director', NULL), ('sam', 'supervisor', 'max'),
                 ('sally', 'salesperson', 'sam'), ('sue', 'salesperson', 'sam');",
        ));
        ok(crate::schema::migrate(tx));
        ok(seed(tx, now));
        let customer = ok(records::kind("customer"));
        let mut out = Vec::new();
        let mut list = |name: &str, scope: &Scope, filter: Filter| {
            let page = ok(visibility::list(tx, scope, customer, &filter, now, true));
            let mut names: Vec<String> = page
                .items
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            names.sort();
            out.push(format!("{name}: {names:?}"));
        };
        list("all", &Scope::All, Filter::default());
        list(
            "sam's",
            &Scope::Owners(vec!["sam".into()]),
            Filter::default(),
        );
        list(
            "search",
            &Scope::All,
            Filter {
                q: Some("HUADONG".into()),
                ..Filter::default()
            },
        );
        list(
            "north, contacted this week",
            &Scope::All,
            Filter {
                region: Some("north".into()),
                contacted: Some(Window::Week),
                ..Filter::default()
            },
        );
        list(
            "to visit today",
            &Scope::All,
            Filter {
                to_visit: Some(Window::Today),
                ..Filter::default()
            },
        );
        out.push(format!(
            "pipeline: {:?}",
            ok(visibility::pipeline(tx, &Scope::All))
        ));
        out.push(format!(
            "customer 1: {:?}",
            ok(records::get(tx, customer, 1))
        ));
        out.push(format!(
            "its audit: {:?}",
            ok(records::history(tx, customer, 1))
        ));
        out.push(format!("sam's team: {:?}", ok(org::team_of(tx, "max"))));
        out.push(format!("sam: {:?}", ok(org::staff(tx, "sam"))));
        out.push(format!(
            "sam's open work: {}",
            ok(assign::open_work(tx, "sam"))
        ));
        out.push(format!(
            "duplicate: {:?}",
            ok(actions::find_duplicate(
                tx,
                &json!({"email": "WANG@huadong.example", "phone": "139 0000 2222"})
            ))
        ));
        let why = Why {
            actor: Some("max".into()),
            reason: "test".into(),
            at: now + Duration::days(30),
        };
        out.push(format!(
            "sally leaves: {:?}",
            ok(pool::release(tx, "sally", &why))
        ));
        out.push(format!("stale: {:?}", ok(pool::reclaim_stale(tx, &why))));
        out.push(format!("outbox: {:?}", ok(deliver::outbox(tx, None, 10))));
        out.push(format!("next send: {:?}", ok(deliver::next_due(tx))));
        out
    }

    #[test]
    fn the_demo_office_reads_the_same_on_every_backend() {
        let dbs = ok(testdb::databases());
        let reports: Vec<(String, Vec<String>)> = dbs
            .iter()
            .map(|db| (format!("{:?}", db.backend()), report(&**db)))
            .collect();
        let (first, expected) = &reports[0];
        assert!(
            expected[0].contains("Wang Fang") && expected[0].contains("Zhao Min"),
            "{expected:?}"
        );
        for (backend, got) in &reports[1..] {
            for (e, g) in expected.iter().zip(got) {
                assert_eq!(e, g, "{backend} differs from {first}");
            }
            assert_eq!(expected.len(), got.len());
        }
    }
}
