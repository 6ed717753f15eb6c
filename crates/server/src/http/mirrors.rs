//! What the HTTP side knows of mirrors (docs/api.md, "Mirrors"): a view of every mirror's
//! checkpoint, re-read from the store with the maintenance switch (about every second), so a
//! §2 answer of a mirrored operation carries `X-Voxtrail-Mirror-Checkpoint` without a query
//! of its own, and `/metrics` has the mirrors' lag, rows and errors (written from the stored
//! counters, so every replica shows the same numbers whichever one runs the mirror).
//!
//! The same view hands the mirror definitions to the runner of `voxtrail serve`
//! ([`MirrorView::mirrors`]), so the runner polls no database of its own.
//!
//! Writes into a mirrored operation are refused from the store itself, not from this view
//! (`ingest.rs`): a `mirror set` takes effect on the next write, not a second later.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::WallClock;
use crate::store::Mirror;

/// The response header naming a mirrored operation's checkpoint.
pub const CHECKPOINT_HEADER: &str = "x-voxtrail-mirror-checkpoint";

/// Checkpoints of the mirrored operations, by operation id.
#[derive(Debug, Default)]
pub struct MirrorView {
    checkpoints: RwLock<HashMap<i64, Option<WallClock>>>,
    /// The mirrors as last read; `None` until the first read.
    mirrors: RwLock<Option<Arc<Vec<Mirror>>>>,
}

impl MirrorView {
    /// `Some` for a mirrored operation: its checkpoint, `None` before the first window.
    pub fn checkpoint(&self, operation_id: i64) -> Option<Option<WallClock>> {
        self.checkpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&operation_id)
            .copied()
    }

    /// The mirrors (definitions and state) as last read, `None` before the first read.
    pub fn mirrors(&self) -> Option<Arc<Vec<Mirror>>> {
        self.mirrors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the view with the stored mirrors and updates the mirror metrics.
    pub fn refresh(
        &self,
        mirrors: &[Mirror],
        tz_of: impl Fn(i64) -> Option<crate::domain::OperationTz>,
    ) {
        let mut map = HashMap::with_capacity(mirrors.len());
        for m in mirrors {
            map.insert(m.def.operation_id, m.checkpoint);
            let op = m.operation.clone();
            metrics::counter!("voxtrail_mirror_rows_total", "operation" => op.clone(), "outcome" => "inserted")
                .absolute(m.rows_inserted);
            metrics::counter!("voxtrail_mirror_rows_total", "operation" => op.clone(), "outcome" => "updated")
                .absolute(m.rows_updated);
            metrics::counter!("voxtrail_mirror_errors_total", "operation" => op.clone())
                .absolute(m.errors);
            if let (Some(cp), Some(tz)) = (m.checkpoint, tz_of(m.def.operation_id)) {
                let lag = (chrono::Utc::now() - tz.instant_of(cp))
                    .num_seconds()
                    .max(0);
                metrics::gauge!("voxtrail_mirror_checkpoint_lag_seconds", "operation" => op)
                    .set(lag as f64);
            }
        }
        *self.checkpoints.write().unwrap_or_else(|p| p.into_inner()) = map;
        *self.mirrors.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(mirrors.to_vec()));
    }
}

/// The header value: the checkpoint as `YYYYmmddHHiiss`, or `-` before the first window.
pub fn header_value(cp: Option<WallClock>) -> String {
    cp.map(|c| format!("{:014}", c.as_i64()))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        assert_eq!(
            header_value(WallClock::from_i64(20261001080000)),
            "20261001080000"
        );
        assert_eq!(header_value(None), "-");
    }

    #[test]
    fn the_view_knows_only_mirrors() {
        let v = MirrorView::default();
        assert_eq!(v.checkpoint(1), None);
        assert!(v.mirrors().is_none());
        v.refresh(&[], |_| None);
        assert_eq!(v.mirrors().unwrap().len(), 0);
    }
}
