//! `voxtrail pull --verify`: proves a copy complete without downloading it again. The source
//! (a voxtrail server) answers the per-hour row counts and digests of each ≤ 31-day window
//! (`Client::hours`); the same digests are computed over the destination's rows — the
//! byte-wise XOR of the SHA-256 of each row's JSON object, per hour of its `date` — and every
//! hour where they differ is reported.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use chrono::NaiveDateTime;
use sha2::{Digest as _, Sha256};
use voxtrail_client::{Client, Window};

use crate::Destination;

/// One hour's rows on one side: count and digest (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourSide {
    pub records: u64,
    pub digest: String,
}

/// An hour (`YYYY-mm-dd HH`) whose rows differ; `None`: the side has no row in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourDiff {
    pub hour: String,
    pub source: Option<HourSide>,
    pub destination: Option<HourSide>,
}

/// The hours of `since..=until` where source and destination differ, oldest first.
pub async fn verify(
    client: &Client,
    dest: &dyn Destination,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> anyhow::Result<Vec<HourDiff>> {
    let Some(all) = Window::new(since, until) else {
        bail!("--since is after --until");
    };
    let mut diffs = Vec::new();
    for w in all.split(chrono::Duration::days(31)) {
        let source = match client.hours(w.ini, w.end).await {
            Ok(rows) => source_hours(&rows)?,
            Err(voxtrail_client::Error::Refused { status: 404, .. }) => bail!(
                "the source has no per-hour digests ({} answered 404): --verify needs a \
                 voxtrail server as the source",
                voxtrail_wire::hours::HOURS_PATH
            ),
            Err(e) => return Err(e).context("reading the source's per-hour digests"),
        };
        let rows = dest
            .rows_between(w.ini, w.end)
            .await
            .context("reading the destination's rows")?;
        let mine = dest_hours(&rows)?;
        let hours: std::collections::BTreeSet<&String> = source.keys().chain(mine.keys()).collect();
        for h in hours {
            let (s, d) = (source.get(h), mine.get(h));
            if s != d {
                diffs.push(HourDiff {
                    hour: h.clone(),
                    source: s.cloned(),
                    destination: d.cloned(),
                });
            }
        }
    }
    Ok(diffs)
}

fn source_hours(rows: &[voxtrail_client::Row]) -> anyhow::Result<BTreeMap<String, HourSide>> {
    let mut out = BTreeMap::new();
    for r in rows {
        let (Some(hour), Some(records), Some(digest)) =
            (r.get("hour"), r.get("records"), r.get("digest"))
        else {
            bail!("the source's per-hour digests are not in the expected shape");
        };
        let records = records
            .parse()
            .with_context(|| format!("source hour {hour}: records {records:?}"))?;
        out.insert(
            hour.to_owned(),
            HourSide {
                records,
                digest: digest.to_ascii_lowercase(),
            },
        );
    }
    Ok(out)
}

/// Per-hour counts and XOR digests of rows' JSON texts, by their `date`'s hour.
pub fn dest_hours(rows: &[String]) -> anyhow::Result<BTreeMap<String, HourSide>> {
    let mut acc: BTreeMap<String, (u64, [u8; 32])> = BTreeMap::new();
    for json in rows {
        let v: serde_json::Value = serde_json::from_str(json).context("a stored row")?;
        let date = v
            .get("date")
            .and_then(|d| d.as_str())
            .filter(|d| d.len() >= 13 && d.is_char_boundary(13))
            .context("a stored row without a date")?;
        let e = acc.entry(date[..13].to_owned()).or_insert((0, [0; 32]));
        e.0 += 1;
        for (x, b) in e.1.iter_mut().zip(Sha256::digest(json.as_bytes())) {
            *x ^= b;
        }
    }
    Ok(acc
        .into_iter()
        .map(|(h, (n, x))| {
            let digest = x.iter().map(|b| format!("{b:02x}")).collect();
            (h, HourSide { records: n, digest })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_group_by_hour_and_xor() {
        let a = r#"{"conn_id":"a","date":"2026-10-01 08:00:00"}"#.to_owned();
        let b = r#"{"conn_id":"b","date":"2026-10-01 08:59:59"}"#.to_owned();
        let c = r#"{"conn_id":"c","date":"2026-10-01 09:00:00"}"#.to_owned();
        let h = dest_hours(&[a.clone(), b, c]).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h["2026-10-01 08"].records, 2);
        let single = dest_hours(&[a]).unwrap();
        assert_eq!(single["2026-10-01 08"].digest.len(), 64);
        assert!(dest_hours(&["{}".to_owned()]).is_err());
        assert!(dest_hours(&["not json".to_owned()]).is_err());
        assert!(dest_hours(&[r#"{"date":"2026-10-01 0é"}"#.to_owned()]).is_err());
    }
}
