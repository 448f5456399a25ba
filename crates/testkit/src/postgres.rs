//! A database of its own on the machine's PostgreSQL, dropped when the test ends.
//!
//! The server is the one at `HOOKMESH_TEST_POSTGRES` (a `postgres://` URL of a role that may
//! create databases), by default `postgres://postgres@127.0.0.1:5432/postgres`: `make deps`
//! installs and starts one when the machine has none. Databases are created and dropped with
//! `psql`, so the test support needs no database client of its own.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use.
pub fn server_url() -> String {
    std::env::var("HOOKMESH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct PostgresDb {
    pub name: String,
    url: String,
}

impl PostgresDb {
    /// Creates a fresh, empty database; panics with a clear message when the server is not
    /// there.
    pub fn create() -> PostgresDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hookmesh_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            crate::free_port()
        );
        psql(&format!("CREATE DATABASE {name}"));
        let server = server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        PostgresDb { url: format!("{base}/{name}"), name }
    }

    /// A connection URL for this database.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(sql: &str) {
    let bin = crate::find_binary("psql").expect("psql is not installed: make deps installs PostgreSQL");
    let out = Command::new(bin)
        .arg(server_url())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "PostgreSQL at {} refused `{sql}`: {} (set HOOKMESH_TEST_POSTGRES, or run make deps)",
        server_url(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
