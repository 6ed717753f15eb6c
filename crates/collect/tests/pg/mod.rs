//! Throwaway PostgreSQL databases for the collector's tests, on the server named by
//! `VOXTRAIL_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`). When it
//! is unreachable the PostgreSQL tests say so on stderr and are skipped, unless `CI=true`,
//! where that is a failure. (The server crate has the same helper; this crate must not
//! depend on the server.)
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

pub struct TestDb {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

fn admin_url() -> String {
    std::env::var("VOXTRAIL_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl TestDb {
    /// A fresh database, or `None` (said on stderr) when PostgreSQL is unreachable outside CI.
    pub async fn create(label: &str) -> Option<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let admin_url = admin_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "vt_collect_{label}_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let admin = match connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    !in_ci(),
                    "PostgreSQL unreachable at {admin_url} under CI: {e}"
                );
                eprintln!("PostgreSQL unreachable at {admin_url} ({e}); skipping");
                return None;
            }
        };
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        let url = match admin_url.rfind('/') {
            Some(i) if !admin_url[..i].ends_with('/') => format!("{}/{name}", &admin_url[..i]),
            _ => format!("{admin_url}/{name}"),
        };
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Drops the database (and any sessions left on it).
    pub async fn drop_db(self) {
        if let Ok(admin) = connect(&self.admin_url).await {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}
