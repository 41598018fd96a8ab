//! The `definitions` table: every deployed version of every process, with its
//! source.

use crate::sql::{Sql, SqlExt};
use crate::{Result, params};
use serde::{Deserialize, Serialize};

/// The `definitions` table: deployed process versions.
pub trait ReadDefinitions {
    /// A version's source.
    fn definition(&self, process: &str, version: u32) -> Result<Option<String>>;
    /// The latest version and its source.
    fn latest_definition(&self, process: &str) -> Result<Option<(u32, String)>>;
    /// Every deployed version of every process (of `process` only when given), by
    /// process then version.
    fn list_definitions(&self, process: Option<&str>) -> Result<Vec<DefinitionRow>>;
}

/// A deployed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DefinitionRow {
    /// The process id.
    pub process_id: String,
    /// The version.
    pub version: u32,
    /// When it was deployed (RFC 3339).
    pub deployed_at: String,
}

/// Writes to `definitions`.
pub trait WriteDefinitions: ReadDefinitions {
    /// Stores a new version.
    fn insert_definition(&self, process: &str, version: u32, source: &str, at: &str) -> Result<()>;
}

impl<S: Sql + ?Sized> ReadDefinitions for S {
    fn definition(&self, process: &str, version: u32) -> Result<Option<String>> {
        self.query_opt(
            "SELECT source FROM definitions WHERE process_id = ?1 AND version = ?2",
            params![process, version],
            |r| r.get(0),
        )
    }
    fn latest_definition(&self, process: &str) -> Result<Option<(u32, String)>> {
        self.query_opt(
            "SELECT version, source FROM definitions WHERE process_id = ?1 ORDER BY version DESC LIMIT 1",
            params![process],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
    fn list_definitions(&self, process: Option<&str>) -> Result<Vec<DefinitionRow>> {
        self.query_map(
            "SELECT process_id, version, deployed_at FROM definitions
             WHERE process_id = ?1 OR ?1 IS NULL ORDER BY process_id, version",
            params![process],
            |r| {
                Ok(DefinitionRow {
                    process_id: r.get(0)?,
                    version: r.get(1)?,
                    deployed_at: r.get(2)?,
                })
            },
        )
    }
}
impl<S: Sql + ?Sized> WriteDefinitions for S {
    fn insert_definition(&self, process: &str, version: u32, source: &str, at: &str) -> Result<()> {
        self.execute(
            "INSERT INTO definitions (process_id, version, source, deployed_at) VALUES (?1, ?2, ?3, ?4)",
            params![process, version, source, at],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dbs;

    #[test]
    fn definitions_keep_every_version() -> Result<()> {
        for conn in dbs() {
            conn.insert_definition("p", 1, "v1", "t")?;
            conn.insert_definition("p", 2, "v2", "t")?;
            assert_eq!(conn.latest_definition("p")?, Some((2, "v2".into())));
            assert_eq!(conn.definition("p", 1)?, Some("v1".into()));
            assert_eq!(conn.definition("p", 3)?, None);
            assert_eq!(conn.latest_definition("q")?, None);
            // A failing statement ends its transaction on PostgreSQL: the engine
            // runs each command in a savepoint, and so does this test.
            let again = conn.savepoint("again", || conn.insert_definition("p", 2, "again", "t"));
            assert!(
                again.as_ref().is_err_and(crate::Error::is_constraint),
                "a version is written once: {again:?}"
            );
            assert_eq!(conn.definition("p", 2)?, Some("v2".into()));
        }
        Ok(())
    }

    #[test]
    fn the_latest_version_is_the_highest_not_the_last_deployed() -> Result<()> {
        for conn in dbs() {
            conn.insert_definition("p", 10, "v10", "t")?;
            conn.insert_definition("p", 9, "v9", "t")?;
            assert_eq!(conn.latest_definition("p")?, Some((10, "v10".into())));
        }
        Ok(())
    }

    #[test]
    fn lists_go_by_process_then_version_and_filter_by_process() -> Result<()> {
        for conn in dbs() {
            conn.insert_definition("q", 1, "q1", "2024-01-03T00:00:00+00:00")?;
            conn.insert_definition("p", 2, "p2", "2024-01-02T00:00:00+00:00")?;
            conn.insert_definition("p", 1, "p1", "2024-01-01T00:00:00+00:00")?;
            let row = |p: &str, v, at: &str| DefinitionRow {
                process_id: p.into(),
                version: v,
                deployed_at: at.into(),
            };
            assert_eq!(
                conn.list_definitions(None)?,
                [
                    row("p", 1, "2024-01-01T00:00:00+00:00"),
                    row("p", 2, "2024-01-02T00:00:00+00:00"),
                    row("q", 1, "2024-01-03T00:00:00+00:00"),
                ]
            );
            assert_eq!(
                conn.list_definitions(Some("q"))?,
                [row("q", 1, "2024-01-03T00:00:00+00:00")]
            );
            assert_eq!(conn.list_definitions(Some("none"))?, []);
        }
        Ok(())
    }
}
