//! SQLite on a full disk: ingestion is answered `503 THE DISK IS FULL; RETRY LATER` with
//! `Retry-After` (never 500), reads go on, and writes succeed again once there is room, without
//! a restart (docs/api.md's error table). The database lives on a small tmpfs mounted for the
//! test; where mounting is not allowed (not root) the test says so and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("NOTE: cannot mount a tmpfs here (needs root): disk-full test skipped");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("running mount");
        assert!(st.success(), "remount failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn post(server: &Server, token: &str, body: String) -> (u16, String, Option<String>) {
    let resp = plain_client()
        .post(server.url("/api/v2/interactions"))
        .header("wolkvox-token", token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("sending request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = resp.text().await.expect("reading body");
    assert_ne!(status, 500, "a 500 answer: {body}");
    (status, body, retry)
}

/// `n` records with a long body each, named `prefix-i`.
fn batch(prefix: &str, n: usize) -> String {
    let filler = "x".repeat(2_000);
    (0..n)
        .map(|i| {
            record(&format!("{prefix}-{i}"), "2026-10-01 12:01:00")
                .replace("\"body\":\"Texto\"", &format!("\"body\":\"{filler}\""))
                + "\n"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_503_and_writes_resume_when_there_is_room() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let db: PathBuf = disk.path().join("voxtrail.db");
    let env = Env {
        dir: tempfile::tempdir().expect("temp dir"),
        db_url: format!("sqlite://{}", db.display()),
    };
    env.operation("acme", "America/Bogota");
    env.import_ndjson("acme", &record("r-1", "2026-10-01 12:00:00"));
    let reader = env.token("acme", "report", None);
    let writer = env.token("acme", "ingest", None);
    let server = env.serve(None);
    let poll = server.url(
        "/api/v2/reports_manager.php?api=chat_12&date_ini=20261001120000&date_end=20261001120500",
    );

    let full = error_json(503, "SERVICE UNAVAILABLE", "THE DISK IS FULL; RETRY LATER");
    let mut refused = None;
    for i in 0..200 {
        let (status, body, retry) = post(&server, &writer, batch(&format!("b{i}"), 50)).await;
        if status == 503 {
            refused = Some((body, retry));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (body, retry) = refused.expect("the 1 MB disk never filled up");
    assert_eq!(body, full);
    assert_eq!(retry.as_deref(), Some("30"));

    // Reads go on.
    let resp = plain_client()
        .get(&poll)
        .header("wolkvox-token", &reader)
        .send()
        .await
        .expect("polling");
    assert_eq!(resp.status().as_u16(), 200);

    // Room again: the same server stores the next batch.
    disk.resize("64m");
    assert!(
        eventually(Duration::from_secs(20), async || {
            post(&server, &writer, batch("after", 5)).await.0 == 200
        })
        .await,
        "ingestion did not recover once the disk had room"
    );
}
