//! A fresh PostgreSQL database per bench run. `psql` does the administration, so the benches
//! need no database driver of their own; the server brings its own.

use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// A database `assistd_bench_<uuid>` created for one run; drop it with
/// [`PostgresDatabase::drop_database`].
#[derive(Debug)]
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// The admin URL with its database replaced by this one.
    url: String,
}

impl PostgresDatabase {
    /// Creates a fresh database on the server of `admin_url`, a role allowed to create and
    /// drop databases.
    ///
    /// # Errors
    /// The URL is malformed, `psql` is missing, or the database cannot be created.
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("assistd_bench_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        eprintln!("PostgreSQL: created database {name}");
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// The URL the server connects with.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database.
    ///
    /// # Errors
    /// `psql` failed.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        // FORCE ends connections a killed server may have left behind.
        psql(
            &self.admin_url,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        eprintln!("PostgreSQL: dropped database {}", self.name);
        Ok(())
    }
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        // -X: ignore ~/.psqlrc, which could change output or behaviour.
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `url` with its database path replaced by `database`, keeping any `?query`.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base
        .find("://")
        .map(|i| i + 3)
        .with_context(|| "--postgres-admin-url must look like postgres://USER@HOST:PORT/DB")?;
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    Ok(match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "b").unwrap(),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h", "b").unwrap(),
            "postgres://u@h/b"
        );
        assert!(with_database("u@h/db", "b").is_err());
    }
}
