//! The client against a fault-injecting fake server: every quirk of the hosted API, scripted
//! faults, row caps that refuse or truncate silently; the rows that come back are always
//! exactly the server's rows, and final refusals are never retried.

mod fake;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake::{Fake, FakeRow, Fault, Mode, spread};
use voxtrail_client::{Client, ClientBuilder, Error, parse_wall_clock};

fn client(fake: &Fake, token: &str) -> ClientBuilder {
    Client::builder(fake.url(), token)
        .timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .attempts(12)
}

/// Every row of the fake as (conn_id → fields), with missing cod_act read as "".
fn expected(rows: &[FakeRow]) -> BTreeMap<String, Vec<(String, String)>> {
    rows.iter()
        .map(|r| (r.get("conn_id").to_owned(), r.fields.clone()))
        .collect()
}

async fn pull_all(c: &Client) -> Vec<voxtrail_wire::Chat12Row> {
    c.chat_12(
        parse_wall_clock("20260101000000").unwrap(),
        parse_wall_clock("20260331235959").unwrap(),
    )
    .await
    .unwrap()
}

async fn pull_err(c: &Client) -> Error {
    c.chat_12(
        parse_wall_clock("20260101000000").unwrap(),
        parse_wall_clock("20260331235959").unwrap(),
    )
    .await
    .unwrap_err()
}

fn as_map(rows: &[voxtrail_wire::Chat12Row]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut m = BTreeMap::new();
    for r in rows {
        let v = serde_json::to_value(r).unwrap();
        let fields = voxtrail_wire::CHAT_12_FIELDS
            .iter()
            .map(|f| (f.to_string(), v[f].as_str().unwrap().to_owned()))
            .collect();
        assert!(
            m.insert(r.conn_id.clone(), fields).is_none(),
            "duplicate {}",
            r.conn_id
        );
    }
    m
}

#[tokio::test]
async fn quirks_and_faults_lose_nothing_and_duplicate_nothing() {
    // 300 rows over ~two months, so the range needs three 31-day windows.
    let rows = spread("q", 300, "2026-01-05 10:00:00", 17_000);
    let fake = Fake::start(
        rows.clone(),
        Mode {
            quirks: true,
            ..Default::default()
        },
    )
    .await;
    fake.script([
        Fault::Status500,
        Fault::Status500,
        Fault::Status500,
        Fault::BadGateway,
        Fault::Reset,
        Fault::TruncatedJson,
        Fault::CutBody,
        Fault::Slow(Duration::from_millis(300)),
        Fault::Slow(Duration::from_secs(5)), // longer than the client's timeout
        Fault::Simultaneous,
        Fault::Maintenance,
    ]);
    let c = client(&fake, "tok").build().unwrap();
    let got = pull_all(&c).await;
    assert_eq!(as_map(&got), expected(&rows));
    // Ordered by date as served.
    assert!(got.windows(2).all(|w| w[0].date <= w[1].date));
    // Every scripted fault was met: 3 windows, and 10 of the 11 faults fail a request (the
    // 300 ms slow answer succeeds).
    assert_eq!(fake.script_left(), 0);
    assert!(fake.requests.load(Ordering::SeqCst) >= 13);
}

#[tokio::test]
async fn empty_window_404_is_an_empty_result_or_an_error_if_asked() {
    let fake = Fake::start(
        Vec::new(),
        Mode {
            quirks: true,
            ..Default::default()
        },
    )
    .await;
    let c = client(&fake, "tok").build().unwrap();
    assert!(pull_all(&c).await.is_empty());
    let strict = client(&fake, "tok")
        .empty_window_404(false)
        .build()
        .unwrap();
    let e = strict
        .chat_12(
            parse_wall_clock("20260101000000").unwrap(),
            parse_wall_clock("20260101235959").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { status: 404, .. }), "{e:?}");
}

#[tokio::test]
async fn a_refusal_for_too_many_records_is_halved_until_it_fits() {
    let rows = spread("r", 500, "2026-02-01 00:00:00", 600);
    let fake = Fake::start(
        rows.clone(),
        Mode {
            cap: Some(40),
            refuse: true,
            ..Default::default()
        },
    )
    .await;
    let c = client(&fake, "tok").build().unwrap();
    assert_eq!(as_map(&pull_all(&c).await), expected(&rows));
}

#[tokio::test]
async fn a_server_that_truncates_silently_at_the_threshold_loses_nothing() {
    // Many rows share a second, so halving must go down to small windows.
    let mut rows = spread("t", 400, "2026-03-01 00:00:00", 7);
    rows.extend(spread("same", 30, "2026-03-01 00:20:00", 0));
    let fake = Fake::start(
        rows.clone(),
        Mode {
            cap: Some(50),
            refuse: false,
            quirks: true,
        },
    )
    .await;
    let c = client(&fake, "tok")
        .truncation_threshold(50)
        .build()
        .unwrap();
    assert_eq!(c.truncation_threshold(), 50);
    assert_eq!(as_map(&pull_all(&c).await), expected(&rows));
}

#[tokio::test]
async fn one_second_holding_more_than_the_cap_is_a_clear_error() {
    let rows = spread("s", 5, "2026-03-01 00:00:00", 0);
    let fake = Fake::start(
        rows,
        Mode {
            cap: Some(3),
            ..Default::default()
        },
    )
    .await;
    let c = client(&fake, "tok")
        .truncation_threshold(3)
        .build()
        .unwrap();
    let e = c
        .chat_12(
            parse_wall_clock("20260101000000").unwrap(),
            parse_wall_clock("20260331235959").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsplittable { .. }), "{e:?}");
    assert!(e.to_string().contains("20260301000000"), "{e}");
}

#[tokio::test]
async fn final_refusals_are_not_retried() {
    for (fault, check) in [
        (
            Fault::Unauthorized,
            (|e: &Error| matches!(e, Error::Unauthorized { .. })) as fn(&Error) -> bool,
        ),
        (Fault::InvalidToken, |e| matches!(e, Error::InvalidToken)),
        (Fault::TokenLimit, |e| {
            matches!(e, Error::TokenLimitExceeded { .. })
                && e.to_string().contains("America/Bogota")
                && e.to_string().contains("midnight")
        }),
    ] {
        let fake = Fake::start(spread("f", 3, "2026-01-02 00:00:00", 60), Mode::default()).await;
        fake.always(Some(fault.clone()));
        let c = client(&fake, "tok")
            .timezone(chrono_tz::America::Bogota)
            .build()
            .unwrap();
        let e = c
            .call(
                "chat_12",
                &[
                    ("date_ini", "20260101000000"),
                    ("date_end", "20260102000000"),
                ],
            )
            .await
            .unwrap_err();
        assert!(check(&e), "{fault:?}: {e:?}");
        assert!(e.is_final());
        // The daily limit is followed by one token_info call (refused here too); nothing is
        // retried.
        let calls = if matches!(fault, Fault::TokenLimit) {
            2
        } else {
            1
        };
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            calls,
            "{fault:?} retried"
        );
    }
}

/// The hosted API may still answer token_info once the limit is used: the error then carries
/// the limit and today's use next to when the day resets.
#[tokio::test]
async fn token_limit_error_says_limit_use_and_reset_from_token_info() {
    let fake = Fake::start(spread("u", 3, "2026-01-02 00:00:00", 60), Mode::default()).await;
    fake.always(Some(Fault::TokenLimitOnReports));
    fake.token_info(500, 501, 730);
    let c = client(&fake, "tok")
        .timezone(chrono_tz::America::Bogota)
        .build()
        .unwrap();
    let e = pull_err(&c).await;
    let Error::TokenLimitExceeded { usage, resets } = &e else {
        panic!("{e:?}");
    };
    let usage = usage.as_ref().expect("token_info answered");
    assert_eq!(
        (
            usage.token_limit.as_str(),
            usage.token_use_today.as_str(),
            usage.all_token_today.as_str()
        ),
        ("500", "501", "730")
    );
    assert!(resets.contains("midnight America/Bogota"), "{resets}");
    let text = e.to_string();
    for needle in [
        "TOKEN LIMIT EXCEEDED",
        "limit 500",
        "used today 501",
        "all tokens of the operation today: 730",
        "resets at midnight America/Bogota",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // The refused report and one token_info, nothing retried.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
}

/// voxtrail refuses token_info too once the limit is used: the error falls back to the time
/// zone's midnight, and token_info is asked once only.
#[tokio::test]
async fn token_limit_error_without_token_info_says_when_the_day_resets() {
    let fake = Fake::start(spread("u", 3, "2026-01-02 00:00:00", 60), Mode::default()).await;
    fake.always(Some(Fault::TokenLimit));
    let c = client(&fake, "tok")
        .timezone(chrono_tz::America::Bogota)
        .build()
        .unwrap();
    let e = pull_err(&c).await;
    assert!(
        matches!(&e, Error::TokenLimitExceeded { usage: None, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("resets at midnight America/Bogota"), "{text}");
    assert!(!text.contains("used today"), "{text}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    // token_info refused for the limit is not followed by another token_info.
    let e = c.token_info().await.unwrap_err();
    assert!(
        matches!(e, Error::TokenLimitExceeded { usage: None, .. }),
        "{e:?}"
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let fake = Fake::start(Vec::new(), Mode::default()).await;
    fake.always(Some(Fault::Status500));
    let c = client(&fake, "tok").attempts(4).build().unwrap();
    let e = c.token_info().await.unwrap_err();
    assert!(matches!(e, Error::GaveUp { attempts: 4, .. }), "{e:?}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn one_token_never_has_two_requests_in_flight_from_one_process() {
    let rows = spread("c", 100, "2026-01-10 00:00:00", 3600);
    let fake = Fake::start(rows, Mode::default()).await;
    fake.script((0..20).map(|_| Fault::Slow(Duration::from_millis(20))));
    // Two separately built clients with the same token, many concurrent calls.
    let a = client(&fake, "same-token").build().unwrap();
    let b = client(&fake, "same-token").build().unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { pull_all(&c).await.len() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 100);
    }
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_lock_file_serialises_clients_of_different_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("pull.lock");
    let fake = Fake::start(spread("l", 20, "2026-01-10 00:00:00", 60), Mode::default()).await;
    fake.script((0..12).map(|_| Fault::Slow(Duration::from_millis(20))));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let c = client(&fake, &format!("token-{i}"))
            .lock_file(&lock)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move { pull_all(&c).await.len() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 20);
    }
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_info_and_generic_calls() {
    let fake = Fake::start(spread("g", 4, "2026-01-02 00:00:00", 60), Mode::default()).await;
    let c = client(&fake, "tok").build().unwrap();
    let info = c.token_info().await.unwrap();
    assert_eq!(info.token_limit, "10000");
    assert_eq!(info.available_consumption_options, "9999");
    let rows = c
        .call(
            "chat_12",
            &[
                ("date_ini", "20260101000000"),
                ("date_end", "20260103000000"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].get("conn_id"), Some("g0"));
    assert_eq!(
        rows[0].fields().map(|(k, _)| k).collect::<Vec<_>>(),
        voxtrail_wire::CHAT_12_FIELDS
    );
}
