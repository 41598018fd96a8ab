//! People, their roles and groups, and API tokens.
//!
//! The directory lives in the same SQLite file as the engine, in tables of its own
//! (`people`, `memberships`, `tokens`), on a connection of its own: it is written
//! rarely (adding a person, creating a token) and read once per request. A token is
//! shown once when created; only its SHA-256 is stored.
//!
//! The pages sign people in with a name and a password (stored as an Argon2id
//! hash) and keep them signed in with a session: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, stored hashed like a token, ending after
//! [`SESSION_HOURS`] or at sign-out.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use ordo_engine::store::{Conn, Sql, SqlExt, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;

/// Directory errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed.
    #[error("the directory's storage failed: {0}")]
    Store(#[from] ordo_engine::store::Error),
    /// No such person.
    #[error("there is no person named `{0}`; add them with `ordo user add {0} --role ...`")]
    UnknownPerson(String),
    /// A supervisor who is not in the directory, or who would make a loop.
    #[error("`{supervisor}` cannot be {person}'s supervisor: {why}")]
    BadSupervisor {
        /// The person being added.
        person: String,
        /// The supervisor named.
        supervisor: String,
        /// Why not.
        why: String,
    },
    /// A person's name that could not be signed in with or told apart.
    #[error(
        "{0:?} is not a usable name: give 1 to 64 characters, without spaces at either end or control characters"
    )]
    BadName(String),
    /// A role name that does not exist.
    #[error(
        "`{0}` is not a role; roles are salesperson, supervisor, admin, maintenance, designer, integrator"
    )]
    UnknownRole(String),
    /// The operating system gave no randomness.
    #[error("no randomness for a token: {0}")]
    Random(String),
    /// The lock was poisoned by a panic elsewhere.
    #[error("the directory is unavailable")]
    Poisoned,
    /// A password that is too short to be one.
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// The engine's writer did not take the change (shut down, or its commit
    /// failed); nothing was stored.
    #[error("the change was not stored: {0}")]
    Writer(String),
    /// Hashing a password failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// How long a page session lasts.
pub const SESSION_HOURS: i64 = 12;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// What a person may do. The first four come from the CRM's source documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works leads, opportunities and orders; completes their own tasks.
    Salesperson,
    /// Leads a team: sees and reassigns the team's work.
    Supervisor,
    /// Runs the system: instances, incidents, people.
    Admin,
    /// Keeps the system alive: may only take backups.
    Maintenance,
    /// Writes and deploys process definitions.
    Designer,
    /// Another system: starts processes, sends messages and signals, and reads
    /// and adds runs to the instances of the processes it may start.
    Integrator,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Salesperson,
        Role::Supervisor,
        Role::Admin,
        Role::Maintenance,
        Role::Designer,
        Role::Integrator,
    ];

    /// Every role's name: what a process's `starters.roles` may name.
    pub fn names() -> std::collections::HashSet<String> {
        Role::ALL.iter().map(|r| r.name().to_owned()).collect()
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Salesperson => "salesperson",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Maintenance => "maintenance",
            Role::Designer => "designer",
            Role::Integrator => "integrator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| Error::UnknownRole(s.to_owned()))
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The person's name (also their user id in tasks).
    pub user: String,
    /// Their roles.
    pub roles: Vec<Role>,
    /// Their groups (for group tasks).
    pub groups: Vec<String>,
    /// Their supervisor.
    pub supervisor: Option<String>,
}

impl Identity {
    /// Whether they have any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

/// A person to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Their name.
    pub name: String,
    /// Their roles.
    pub roles: Vec<Role>,
    /// Their groups.
    pub groups: Vec<String>,
    /// Their supervisor's name.
    pub supervisor: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS people (
    name TEXT PRIMARY KEY,
    roles TEXT NOT NULL,
    supervisor TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    person TEXT NOT NULL,
    grp TEXT NOT NULL,
    PRIMARY KEY (person, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS passwords (
    person TEXT PRIMARY KEY,
    hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The people directory.
///
/// Standing alone (the `ordo user`/`token` commands), it writes on its own
/// connection in `IMMEDIATE` transactions that wait for SQLite's lock (a busy
/// timeout), so a command never fails because a server is running on the same
/// file. Attached to a server's engine ([`Directory::attach`]), its own
/// connection becomes read-only and every write (people, passwords, tokens,
/// sessions) is a unit of work on the engine's one writer.
#[derive(Debug)]
pub struct Directory {
    conn: Mutex<Conn>,
    path: std::path::PathBuf,
    writer: std::sync::OnceLock<std::sync::Arc<ordo_engine::engine::Engine>>,
}

impl Directory {
    /// Opens the directory in the SQLite file at `path`, creating its tables.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Conn::open_shared(path)?;
        conn.transaction(|tx| tx.execute_batch(SCHEMA))?;
        Ok(Directory {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            writer: std::sync::OnceLock::new(),
        })
    }

    /// Hands every write to `engine`'s writer from now on, and reads through a
    /// read-only connection: in a server, nothing but the engine writes.
    pub fn attach(&self, engine: std::sync::Arc<ordo_engine::engine::Engine>) -> Result<()> {
        *self.conn()? = Conn::open_reader(&self.path)?;
        let _ = self.writer.set(engine);
        Ok(())
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Conn>> {
        self.conn.lock().map_err(|_| Error::Poisoned)
    }

    /// Runs `f` as one unit of work: on the engine's writer when attached (so
    /// call it from a blocking thread), else in an `IMMEDIATE` transaction of
    /// the directory's own connection.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Sql) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Some(engine) = self.writer.get() {
            return engine
                .write_blocking(f)
                .map_err(|e| Error::Writer(e.to_string()))?;
        }
        self.conn()?.transaction(|tx| f(tx))
    }

    /// Adds a person, or replaces their roles, groups and supervisor.
    pub fn add(&self, p: &Person) -> Result<()> {
        let name = &p.name;
        if name.is_empty()
            || name.chars().count() > 64
            || name.trim() != name
            || name.chars().any(char::is_control)
        {
            return Err(Error::BadName(name.clone()));
        }
        let p = p.clone();
        self.write(move |tx| add_person(tx, &p))
    }

    /// Whether nobody is in the directory yet (so nobody can sign in).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self
            .conn()?
            .query_opt("SELECT 1 FROM people LIMIT 1", &[], |_| Ok(()))?
            .is_none())
    }

    /// A person by name.
    pub fn person(&self, name: &str) -> Result<Option<Identity>> {
        let conn = self.conn()?;
        person(&*conn, name)
    }

    /// The people `supervisor` leads, directly or through the people they lead.
    pub fn team(&self, supervisor: &str) -> Result<Vec<String>> {
        Ok(self.conn()?.query_map(
            "WITH RECURSIVE team(name, depth) AS (
                 SELECT name, 1 FROM people WHERE supervisor = ?1
                 UNION
                 SELECT p.name, t.depth + 1 FROM people p JOIN team t ON p.supervisor = t.name
                 WHERE t.depth < 32
             )
             SELECT DISTINCT name FROM team ORDER BY name",
            params![supervisor],
            |r| r.get(0),
        )?)
    }

    /// Creates an API token for `person` and returns it; it cannot be read again.
    pub fn create_token(&self, person_name: &str) -> Result<String> {
        let token = format!("ordo_{}", random_hex()?);
        let (name, hash) = (person_name.to_owned(), digest(&token));
        self.write(move |tx| {
            if person(tx, &name)?.is_none() {
                return Err(Error::UnknownPerson(name));
            }
            tx.execute(
                "INSERT INTO tokens (hash, person, created_at) VALUES (?1, ?2, ?3)",
                params![hash, name, chrono::Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The person a token belongs to.
    pub fn identify(&self, token: &str) -> Result<Option<Identity>> {
        let conn = self.conn()?;
        let name: Option<String> = conn.query_opt(
            "SELECT person FROM tokens WHERE hash = ?1",
            params![digest(token)],
            |r| r.get(0),
        )?;
        match name {
            Some(n) => person(&*conn, &n),
            None => Ok(None),
        }
    }
}

impl Directory {
    /// Sets `person`'s password for the pages (Argon2id, random salt).
    pub fn set_password(&self, person_name: &str, password: &str) -> Result<()> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::WeakPassword);
        }
        if self.person(person_name)?.is_none() {
            return Err(Error::UnknownPerson(person_name.to_owned()));
        }
        // Hashing takes tens of milliseconds by design; the lock is not held.
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| Error::Hash(e.to_string()))?
            .to_string();
        let name = person_name.to_owned();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO passwords (person, hash) VALUES (?1, ?2)
                 ON CONFLICT (person) DO UPDATE SET hash = ?2",
                params![name, hash],
            )?;
            Ok(())
        })
    }

    /// Checks a name and password; on success opens a session and returns its id
    /// (for the cookie) with the person. A wrong name and a wrong password are
    /// told apart to no one.
    pub fn sign_in(&self, name: &str, password: &str) -> Result<Option<(String, Identity)>> {
        let stored: Option<String> = self.conn()?.query_opt(
            "SELECT hash FROM passwords WHERE person = ?1",
            params![name],
            |r| r.get(0),
        )?;
        // A name without a password is checked against a dummy hash, so that
        // both answers take one Argon2 verification and timing tells nothing.
        let verified = match &stored {
            Some(hash) => verify(password, hash),
            None => {
                verify(password, dummy_hash());
                false
            }
        };
        if !verified {
            return Ok(None);
        }
        let Some(who) = self.person(name)? else {
            return Ok(None);
        };
        let id = random_hex()?;
        let now = chrono::Utc::now().timestamp_millis();
        let (hash, name) = (digest(&id), name.to_owned());
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now])?;
            tx.execute(
                "INSERT INTO sessions (hash, person, expires_ms) VALUES (?1, ?2, ?3)",
                params![hash, name, now + SESSION_HOURS * 3_600_000],
            )?;
            Ok(())
        })?;
        Ok(Some((id, who)))
    }

    /// The person a live session belongs to.
    pub fn session(&self, id: &str) -> Result<Option<Identity>> {
        let conn = self.conn()?;
        let name: Option<String> = conn.query_opt(
            "SELECT person FROM sessions WHERE hash = ?1 AND expires_ms > ?2",
            params![digest(id), chrono::Utc::now().timestamp_millis()],
            |r| r.get(0),
        )?;
        match name {
            Some(n) => person(&*conn, &n),
            None => Ok(None),
        }
    }

    /// Ends a session.
    pub fn sign_out(&self, id: &str) -> Result<()> {
        let hash = digest(id);
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE hash = ?1", params![hash])?;
            Ok(())
        })
    }
}

/// Whether `password` matches the stored Argon2 `hash` (a malformed hash
/// matches nothing).
fn verify(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// An Argon2id hash of a random password with the default parameters, made once:
/// what a sign-in with an unknown name is verified against.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret = random_hex().unwrap_or_else(|_| "ordo-dummy-password".to_owned());
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Adds or replaces a person, refusing a supervisor who does not exist or who
/// would make the reporting line loop.
fn add_person(tx: &dyn Sql, p: &Person) -> Result<()> {
    if let Some(sup) = &p.supervisor {
        let bad = |why: &str| Error::BadSupervisor {
            person: p.name.clone(),
            supervisor: sup.clone(),
            why: why.to_owned(),
        };
        if person(tx, sup)?.is_none() {
            return Err(bad(&format!(
                "there is no person named `{sup}`; add them first with `ordo user add {sup} --role supervisor`"
            )));
        }
        // Walking up from the supervisor must not reach the person.
        let above: bool = tx.query_row(
            "WITH RECURSIVE up(name, depth) AS (
                     SELECT ?1, 0
                     UNION
                     SELECT p.supervisor, u.depth + 1 FROM people p JOIN up u ON p.name = u.name
                     WHERE p.supervisor IS NOT NULL AND u.depth < 64
                 )
                 SELECT EXISTS (SELECT 1 FROM up WHERE name = ?2)",
            params![sup, p.name],
            |r| r.get(0),
        )?;
        if above {
            return Err(bad("that would make a loop in the reporting line"));
        }
    }
    let roles: Vec<&str> = p.roles.iter().map(|r| r.name()).collect();
    tx.execute(
        "INSERT INTO people (name, roles, supervisor) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET roles = ?2, supervisor = ?3",
        params![p.name, roles.join(","), p.supervisor],
    )?;
    tx.execute("DELETE FROM memberships WHERE person = ?1", params![p.name])?;
    for g in &p.groups {
        tx.execute(
            "INSERT INTO memberships (person, grp) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![p.name, g],
        )?;
    }
    Ok(())
}

/// 192 random bits, in hex.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

fn person(conn: &dyn Sql, name: &str) -> Result<Option<Identity>> {
    let row: Option<(String, Option<String>)> = conn.query_opt(
        "SELECT roles, supervisor FROM people WHERE name = ?1",
        params![name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((roles, supervisor)) = row else {
        return Ok(None);
    };
    let groups = conn.query_map(
        "SELECT grp FROM memberships WHERE person = ?1 ORDER BY grp",
        params![name],
        |r| r.get(0),
    )?;
    Ok(Some(Identity {
        user: name.to_owned(),
        roles: roles.split(',').filter_map(|r| r.parse().ok()).collect(),
        groups,
        supervisor,
    }))
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_that_could_not_sign_in_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(&dir.path().join("d.db")).unwrap();
        for bad in ["", " bea", "bea ", "be\u{7}a", &"x".repeat(65)] {
            let r = d.add(&Person {
                name: bad.into(),
                roles: vec![Role::Salesperson],
                ..Person::default()
            });
            assert!(matches!(r, Err(Error::BadName(_))), "{bad:?}: {r:?}");
        }
        assert!(d.person("bea").unwrap().is_none());
    }

    #[test]
    fn an_unknown_name_costs_the_same_argon2_verification_as_a_known_one() {
        // Same algorithm, version and cost parameters as a real password's hash,
        // so a sign-in with a name that has no password takes as long.
        let real = Argon2::default()
            .hash_password(b"a real password")
            .unwrap()
            .to_string();
        let head = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
        assert!(dummy_hash().starts_with("$argon2id$"), "{}", dummy_hash());
        assert_eq!(head(dummy_hash()), head(&real));
        assert!(!verify("", dummy_hash()) && !verify("ordo-dummy-password", dummy_hash()));
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(&dir.path().join("d.db")).unwrap();
        assert!(d.sign_in("nobody", "whatever!").unwrap().is_none());
    }

    #[test]
    fn a_token_identifies_its_person_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let d = Directory::open(&path).unwrap();
        d.add(&Person {
            name: "sam".into(),
            roles: vec![Role::Supervisor],
            ..Person::default()
        })
        .unwrap();
        d.add(&Person {
            name: "ann".into(),
            roles: vec![Role::Salesperson],
            groups: vec!["sales".into(), "east".into()],
            supervisor: Some("sam".into()),
        })
        .unwrap();
        let token = d.create_token("ann").unwrap();
        let who = d.identify(&token).unwrap().unwrap();
        assert_eq!(who.user, "ann");
        assert_eq!(who.roles, [Role::Salesperson]);
        assert_eq!(who.groups, ["east", "sales"]);
        assert_eq!(d.identify("ordo_wrong").unwrap(), None);
        let stored: String = d
            .conn()
            .unwrap()
            .query_row("SELECT hash FROM tokens", params![], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token);
        assert!(matches!(
            d.create_token("bob"),
            Err(Error::UnknownPerson(_))
        ));
        assert!(matches!("boss".parse::<Role>(), Err(Error::UnknownRole(_))));
    }

    #[test]
    fn a_password_opens_a_session_until_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(&dir.path().join("d.db")).unwrap();
        d.add(&Person {
            name: "ann".into(),
            roles: vec![Role::Salesperson],
            ..Person::default()
        })
        .unwrap();
        assert!(matches!(
            d.set_password("ann", "short"),
            Err(Error::WeakPassword)
        ));
        assert!(matches!(
            d.set_password("bob", "long enough"),
            Err(Error::UnknownPerson(_))
        ));
        d.set_password("ann", "correct horse").unwrap();
        assert_eq!(d.sign_in("ann", "wrong horse").unwrap(), None);
        assert_eq!(d.sign_in("bob", "correct horse").unwrap(), None);
        let (id, who) = d.sign_in("ann", "correct horse").unwrap().unwrap();
        assert_eq!(who.user, "ann");
        assert_eq!(d.session(&id).unwrap().unwrap().user, "ann");
        // A session id is not an API token, nor the other way round.
        assert_eq!(d.identify(&id).unwrap(), None);
        let stored: String = d
            .conn()
            .unwrap()
            .query_row("SELECT hash FROM passwords", params![], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        d.sign_out(&id).unwrap();
        assert_eq!(d.session(&id).unwrap(), None);
    }
}
