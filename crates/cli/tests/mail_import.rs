//! `voxtrail import --format mbox|eml|maildir` end to end: the real binary reads real-world-shaped
//! messages these tests build (multipart/alternative, attachments, encoded words in ISO-8859-1
//! and UTF-8, quoted-printable and base64 bodies, folded headers, missing Date, unmapped senders,
//! missing Message-ID, HTML-only mail, maildir cur/new), and the rows are checked through the
//! HTTP report.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const AGENTS: &str = "email,agent_id,agent_name\nana@cc.co,7,Ana Pérez\nLUIS@cc.co,8,Luis Gómez\n";

/// multipart/mixed: multipart/alternative (ISO-8859-1 quoted-printable text + HTML) and a PDF
/// attachment; folded To, Cc, and a folded ISO-8859-1 encoded-word subject.
const ALTERNATIVE: &str = "\
Return-Path: <ana@cc.co>
Message-ID: <20261001081500.A1@cc.co>
Date: Thu, 1 Oct 2026 08:15:00 -0500
From: =?UTF-8?Q?Ana_P=C3=A9rez?= <ana@cc.co>
To: \"Cliente, Uno\" <cliente1@x.co>,
 cliente2@y.co
Cc: Jefe <jefe@cc.co>
Subject: =?ISO-8859-1?Q?Cotizaci=F3n_de_servicios_para_el_a=F1o?=
 =?ISO-8859-1?Q?_2027?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"==outer==\"

This is a multi-part message in MIME format.
--==outer==
Content-Type: multipart/alternative;
 boundary=\"==alt==\"

--==alt==
Content-Type: text/plain; charset=\"iso-8859-1\"
Content-Transfer-Encoding: quoted-printable

Buenos d=EDas,

Adjunto la cotizaci=F3n solicitada. El valor total es de $1.200.000 y la of=
erta es v=E1lida por 30 d=EDas.

Saludos,
Ana
--==alt==
Content-Type: text/html; charset=\"iso-8859-1\"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Buenos d=EDas,</p><p>Adjunto la cotizaci=F3n.</p></body></html>
--==alt==--

--==outer==
Content-Type: application/pdf; name=\"cotizacion.pdf\"
Content-Disposition: attachment; filename=\"cotizacion.pdf\"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKQVRUQUNITUVOVC1NVVNULU5PVC1BUFBFQVIK
--==outer==--
";

const ALTERNATIVE_BODY: &str = "Buenos días,\n\nAdjunto la cotización solicitada. El valor total es de $1.200.000 y la oferta es válida por 30 días.\n\nSaludos,\nAna";

/// No Message-ID; UTF-8 base64 encoded-word subject and a base64 UTF-8 body; another zone.
const NO_MESSAGE_ID: &str = "\
From: Luis <luis@cc.co>
To: cliente3@z.co
Subject: =?UTF-8?B?UmVjb3JkYXRvcmlvOiDCv3BhZ28gcGVuZGllbnRlPyDinIU=?=
Date: Thu, 01 Oct 2026 15:30:00 +0200
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SG9sYSwgc3UgcGFnbyBkZSAkNTAuMDAwIHZlbmNlIG1hw7FhbmEuIMKhR3JhY2lhcyE=
";

/// HTML only, obsolete date form (two-digit year, no seconds, GMT).
const HTML_ONLY: &str = "\
Message-ID: <html-only.1@cc.co>
From: ana@cc.co
To: cliente4@x.co
Subject: Confirmación de cita
Date: 1 Oct 26 14:45 GMT
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<!DOCTYPE html><html><head><style>p { color: red; }</style></head>
<body><p>Su cita qued&oacute; confirmada para el <b>5 de octubre</b>.</p><p>Gracias &amp; hasta pronto</p></body></html>
";

fn message(id: &str, from: &str, date: Option<&str>, body: &str) -> String {
    let date = date.map(|d| format!("Date: {d}\n")).unwrap_or_default();
    format!(
        "Message-ID: <{id}>\nFrom: {from}\nTo: cliente@x.co\nSubject: {id}\n{date}Content-Type: text/plain; charset=utf-8\n\n{body}"
    )
}

/// An mbox as mail tools write it: `From ` lines, `>From ` escaping, a blank line after each.
fn mbox(messages: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (envelope, msg) in messages {
        out.push_str(envelope);
        out.push('\n');
        for line in msg.lines() {
            if line.trim_start_matches('>').starts_with("From ") {
                out.push('>');
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn standard_mbox() -> String {
    let no_date = message(
        "no-date.1@cc.co",
        "ana@cc.co",
        None,
        "Sin fecha en la cabecera.\n",
    );
    let unmapped = message(
        "unmapped.1@cc.co",
        "intruso@otra.co",
        Some("Thu, 1 Oct 2026 09:00:00 -0500"),
        "No debe guardarse.\n",
    );
    let from_line = message(
        "from-line.1@cc.co",
        "ana@cc.co",
        Some("Thu, 1 Oct 2026 10:00:00 -0500 (COT)"),
        "Primera línea.\nFrom here on, an escaped line.\n>From a quoted one.\n",
    );
    mbox(&[
        ("From ana@cc.co Thu Oct  1 13:15:00 2026", ALTERNATIVE),
        ("From luis@cc.co Thu Oct  1 13:30:00 2026", NO_MESSAGE_ID),
        ("From ana@cc.co Thu Oct  1 14:00:00 2026", &no_date),
        ("From intruso@otra.co Thu Oct  1 14:00:00 2026", &unmapped),
        ("From ana@cc.co Thu Oct  1 14:45:00 2026", HTML_ONLY),
        ("From ana@cc.co Thu Oct  1 15:00:00 2026", &from_line),
    ])
}

fn setup() -> Env {
    let env = Env::new();
    env.operation("acme", "America/Bogota");
    std::fs::write(env.path("agents.csv"), AGENTS).unwrap();
    env
}

fn import(env: &Env, format: &str, paths: &[&Path], extra: &[&str]) -> (bool, String) {
    let agents = env.path("agents.csv");
    let mut args = vec!["import", "--operation", "acme", "--format", format];
    args.extend(extra);
    let owned: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(owned.iter().map(String::as_str));
    let agents_s = agents.display().to_string();
    if !extra.contains(&"--no-agents") {
        args.extend(["--agents", agents_s.as_str()]);
    } else {
        args.retain(|a| *a != "--no-agents");
    }
    let out = env.run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rows of 2026-10-01, as the report serves them.
async fn rows(env: &Env) -> Vec<Value> {
    let token = env.token("acme", "report", None);
    let server = env.serve(None);
    let resp = client()
        .get(server.report_url("20261001000000", "20261001235959"))
        .header("wolkvox-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = json(&resp.bytes().await.unwrap());
    body["data"].as_array().unwrap().clone()
}

fn by_subject<'a>(rows: &'a [Value], subject: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no row with subject {subject:?} in {rows:#?}"))
}

#[tokio::test]
async fn an_mbox_is_imported_with_skips_listed_and_rows_served() {
    let env = setup();
    let path = env.path("sent.mbox");
    std::fs::write(&path, standard_mbox()).unwrap();
    let (ok, stderr) = import(&env, "mbox", &[&path], &[]);
    assert!(ok, "{stderr}");
    let skipped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skipped: "))
        .collect();
    assert_eq!(
        skipped,
        [format!(
            "skipped: {} message 4: sender intruso@otra.co is not in the agents file",
            path.display()
        )],
        "{stderr}"
    );
    assert!(
        stderr.contains("imported into acme: 5 inserted, 0 duplicates, 1 skipped, 6 messages"),
        "{stderr}"
    );

    // Importing the same mailbox again (hash conn_id included) stores nothing new.
    let (ok, stderr) = import(&env, "mbox", &[&path], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("0 inserted, 5 duplicates, 1 skipped"),
        "{stderr}"
    );

    let rows = rows(&env).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");

    let alt = by_subject(&rows, "Cotización de servicios para el año 2027");
    assert_eq!(alt["conn_id"], "20261001081500.A1@cc.co");
    assert_eq!(alt["agent_id"], "7");
    assert_eq!(alt["agent_name"], "Ana Pérez");
    assert_eq!(alt["channel"], "email");
    assert_eq!(alt["from"], "ana@cc.co");
    assert_eq!(alt["to"], "cliente1@x.co, cliente2@y.co, jefe@cc.co");
    assert_eq!(alt["date"], "2026-10-01 08:15:00");
    assert_eq!(alt["body"], ALTERNATIVE_BODY);
    assert!(!alt["body"].as_str().unwrap().contains("JVBER"));

    let b64 = by_subject(&rows, "Recordatorio: ¿pago pendiente? ✅");
    let conn_id = b64["conn_id"].as_str().unwrap();
    assert!(
        conn_id.starts_with("sha256:") && conn_id.len() == 71,
        "{conn_id}"
    );
    assert_eq!(b64["agent_id"], "8");
    assert_eq!(b64["agent_name"], "Luis Gómez");
    assert_eq!(b64["from"], "luis@cc.co");
    assert_eq!(b64["date"], "2026-10-01 08:30:00");
    assert_eq!(
        b64["body"],
        "Hola, su pago de $50.000 vence mañana. ¡Gracias!"
    );

    // No Date header: the date of the mbox "From " line (UTC) is used.
    let no_date = by_subject(&rows, "no-date.1@cc.co");
    assert_eq!(no_date["date"], "2026-10-01 09:00:00");

    let html = by_subject(&rows, "Confirmación de cita");
    assert_eq!(html["date"], "2026-10-01 09:45:00");
    let text = html["body"].as_str().unwrap();
    assert!(
        text.contains("Su cita quedó confirmada para el 5 de octubre."),
        "{text:?}"
    );
    assert!(text.contains("Gracias & hasta pronto"), "{text:?}");
    assert!(!text.contains('<') && !text.contains("color"), "{text:?}");

    let escaped = by_subject(&rows, "from-line.1@cc.co");
    assert_eq!(escaped["date"], "2026-10-01 10:00:00");
    assert_eq!(
        escaped["body"],
        "Primera línea.\nFrom here on, an escaped line.\n>From a quoted one.\n"
    );
    assert!(rows.iter().all(|r| r["from"] != "intruso@otra.co"));
}

#[tokio::test]
async fn strict_fails_the_whole_import_on_a_skipped_message() {
    let env = setup();
    let path = env.path("sent.mbox");
    std::fs::write(&path, standard_mbox()).unwrap();
    let (ok, stderr) = import(&env, "mbox", &[&path], &["--strict"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("message 4: sender intruso@otra.co is not in the agents file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 1 messages skipped under --strict; nothing was imported"),
        "{stderr}"
    );
    assert!(rows(&env).await.is_empty());
}

#[tokio::test]
async fn eml_files_without_date_are_skipped_not_guessed() {
    let env = setup();
    let with_crlf = |s: &str| s.replace('\n', "\r\n");
    let alt = env.path("alt.eml");
    std::fs::write(&alt, with_crlf(ALTERNATIVE)).unwrap();
    let no_date = env.path("no-date.eml");
    std::fs::write(
        &no_date,
        with_crlf(&message("eml-no-date@cc.co", "ana@cc.co", None, "x\n")),
    )
    .unwrap();
    let html = env.path("html.eml");
    std::fs::write(&html, HTML_ONLY).unwrap();
    let (ok, stderr) = import(&env, "eml", &[&alt, &no_date, &html], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("skipped: {}: no Date header", no_date.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 inserted, 0 duplicates, 1 skipped"),
        "{stderr}"
    );
    let rows = rows(&env).await;
    assert_eq!(rows.len(), 2);
    // CRLF line ends of the .eml become LF, as in the mbox.
    assert_eq!(
        by_subject(&rows, "Cotización de servicios para el año 2027")["body"],
        ALTERNATIVE_BODY
    );
}

#[tokio::test]
async fn a_maildir_is_read_from_cur_and_new() {
    let env = setup();
    let dir = env.path("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let at = |h: u32| format!("Thu, 1 Oct 2026 {h:02}:00:00 -0500");
    std::fs::write(
        dir.join("cur/1790000000.M1P1.host:2,S"),
        message("md-1@cc.co", "ana@cc.co", Some(&at(11)), "uno\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("new/1790000100.M2P1.host"),
        message("md-2@cc.co", "Luis <LUIS@CC.CO>", Some(&at(12)), "dos\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tmp/1790000200.M3P1.host"),
        message("md-3@cc.co", "ana@cc.co", Some(&at(13)), "en curso\n"),
    )
    .unwrap();
    let (ok, stderr) = import(&env, "maildir", &[&dir], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("2 inserted, 0 duplicates, 0 skipped"),
        "{stderr}"
    );
    let rows = rows(&env).await;
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["conn_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["md-1@cc.co", "md-2@cc.co"]);
    assert_eq!(rows[1]["agent_id"], "8");
    assert_eq!(rows[1]["from"], "LUIS@CC.CO");
    assert_eq!(rows[1]["date"], "2026-10-01 12:00:00");
}

#[test]
fn agents_are_required_for_mail_and_refused_for_records() {
    let env = setup();
    let path = env.path("sent.mbox");
    std::fs::write(&path, standard_mbox()).unwrap();
    let (ok, stderr) = import(&env, "mbox", &[&path], &["--no-agents"]);
    assert!(!ok);
    assert!(
        stderr.contains("--agents FILE is required with --format mbox"),
        "{stderr}"
    );

    let nd = env.path("rows.ndjson");
    std::fs::write(&nd, record("c-1", "2026-10-01 08:15:00")).unwrap();
    let (ok, stderr) = import(&env, "ndjson", &[&nd], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("--agents and --strict apply only to --format mbox, eml or maildir"),
        "{stderr}"
    );

    std::fs::write(env.path("agents.csv"), "mail,id\nana@cc.co,7\n").unwrap();
    let (ok, stderr) = import(&env, "mbox", &[&path], &[]);
    assert!(!ok);
    assert!(stderr.contains("is not usable"), "{stderr}");

    std::fs::write(env.path("agents.csv"), AGENTS).unwrap();
    let (ok, stderr) = import(&env, "maildir", &[&env.path("nowhere")], &[]);
    assert!(!ok);
    assert!(stderr.contains("not a maildir"), "{stderr}");
}

#[test]
fn a_file_that_is_not_an_mbox_fails_whole() {
    let env = setup();
    let good = env.path("good.mbox");
    std::fs::write(&good, standard_mbox()).unwrap();
    let bad = env.path("bad.mbox");
    std::fs::write(&bad, "Subject: no envelope\n\nhello\n").unwrap();
    let (ok, stderr) = import(&env, "mbox", &[&good, &bad], &[]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("not an mbox file"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    // Nothing of the good file was stored.
    let (ok, stderr) = import(&env, "mbox", &[&good], &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("5 inserted, 0 duplicates"), "{stderr}");
}
