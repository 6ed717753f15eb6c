//! Test support shared by the conformance suite and the end-to-end replica tests: a throwaway
//! PostgreSQL database per test, created on the server named by `VOXTRAIL_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.
//!
//! When that server is unreachable, [`TestDatabase::create`] says so plainly on stderr (once
//! per test binary, past the test harness's capture) and returns `None`, so the PostgreSQL part
//! is skipped — unless `CI=true`, where a missing PostgreSQL is a failure.

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server tests use when `VOXTRAIL_TEST_POSTGRES` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A uniquely named database, dropped (with any sessions left on it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database, for `Store::open` or `--database`.
    pub url: String,
}

fn admin_url() -> String {
    std::env::var("VOXTRAIL_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Runs `f` on a plain thread: the sync driver must not run inside an async runtime.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("admin thread")
}

fn admin(url: &str) -> Result<postgres::Client, postgres::Error> {
    let mut cfg = postgres::Config::from_str(url)?;
    cfg.connect_timeout(std::time::Duration::from_secs(5));
    cfg.connect(postgres::NoTls)
}

impl TestDatabase {
    /// Creates a fresh database, or `None` (after saying so) when PostgreSQL is unreachable
    /// outside CI. Panics when `CI=true` and PostgreSQL is unreachable.
    pub fn create(label: &str) -> Option<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let admin_url = admin_url();
        let slug: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "vt_{slug}_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let (url_a, name_a) = (admin_url.clone(), name.clone());
        let created = off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = admin(&url_a)?;
            c.batch_execute(&format!("CREATE DATABASE \"{name_a}\""))
        });
        if let Err(e) = created {
            let e = match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            };
            if in_ci() {
                panic!("CI=true but PostgreSQL at {admin_url} is unusable: {e}");
            }
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr: the harness captures only print macros.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nNOTE: PostgreSQL at {admin_url} is unreachable ({e}): the PostgreSQL part \
                     of this suite was SKIPPED; only SQLite was tested. Set VOXTRAIL_TEST_POSTGRES \
                     or start PostgreSQL to run it.\n"
                );
            });
            return None;
        }
        let url = rebuild_url(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl TestDatabase {
    /// Refuses (`false`) or accepts again (`true`) new connections to this database; refusing
    /// also ends every session on it — what a server that went away looks like to a client.
    pub fn set_accepting(&self, on: bool) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = admin(&url)?;
            c.batch_execute(&format!(
                "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {on}"
            ))?;
            if !on {
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )?;
            }
            Ok(())
        })
        .expect("changing whether the test database accepts connections");
    }

    /// Makes the database read-only (`true`) or writable again (`false`) for new sessions, and
    /// with `true` ends every session on it — what a failover onto a read-only server looks
    /// like to a client.
    pub fn set_read_only(&self, on: bool) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = admin(&url)?;
            let setting = if on {
                "SET default_transaction_read_only = on"
            } else {
                "RESET default_transaction_read_only"
            };
            c.batch_execute(&format!("ALTER DATABASE \"{name}\" {setting}"))?;
            if on {
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )?;
            }
            Ok(())
        })
        .expect("changing whether the test database is read-only");
    }

    /// Advisory locks held on this database right now (by every session): the concurrency
    /// slots in use across replicas.
    pub fn advisory_locks(&self) -> i64 {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        off_runtime(move || -> Result<i64, postgres::Error> {
            let mut c = admin(&url)?;
            let row = c.query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                  WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
                &[&name],
            )?;
            row.try_get(0)
        })
        .expect("counting advisory locks on the test database")
    }

    /// Ends the sessions on this database whose `application_name` is `app`; how many.
    pub fn terminate_sessions_of(&self, app: &str) -> i64 {
        let (url, name, app) = (self.admin_url.clone(), self.name.clone(), app.to_owned());
        off_runtime(move || -> Result<i64, postgres::Error> {
            let mut c = admin(&url)?;
            let row = c.query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE datname = $1 AND application_name = $2",
                &[&name, &app],
            )?;
            row.try_get(0)
        })
        .expect("ending sessions on the test database")
    }
}

/// The admin URL with its database name replaced.
fn rebuild_url(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut url = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = admin(&url)?;
            c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        });
        if let Err(e) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}: {e}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            super::rebuild_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::rebuild_url("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(super::rebuild_url("postgres://h", "x"), "postgres://h/x");
    }
}
