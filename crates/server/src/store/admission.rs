//! The per-token limits of a request, as every backend answers them: what a request asks
//! ([`AdmitRequest`]), what an admitted one holds ([`Admitted`], with its [`SlotGuard`]) and why
//! one is refused ([`Refused`]).
//!
//! Each backend keeps its own limits: SQLite in this process (`sqlite/limits.rs`,
//! docs/adr/0002-limits-in-process.md), PostgreSQL in the database, shared by every replica
//! (`postgres/admission.rs`, docs/adr/0003-limits-in-postgres.md). Callers see only these types
//! and [`Store::admit`](super::Store::admit).

use tokio::sync::oneshot;

use super::postgres::PgSlot;
use super::sqlite::MemorySlot;
use super::{ReportRefusal, ReportStream};

/// The per-token limits one request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The token's id.
    pub token: i64,
    /// The operation-local day (`YYYYmmdd`) the use counts on.
    pub day: i64,
    /// Uses allowed on that day.
    pub daily_limit: u64,
    /// Requests of the token allowed in flight at once.
    pub max_slots: u32,
}

/// Where a report's head (or its refusal) arrives.
pub type HeadReceiver = oneshot::Receiver<Result<ReportStream, ReportRefusal>>;

/// An admitted request: its concurrency slot, today's uses (this one included) and, for a
/// report, where the answer's head arrives.
pub struct Admitted {
    pub slot: SlotGuard,
    pub used: u64,
    /// `Some` exactly when a report was asked for.
    pub head: Option<HeadReceiver>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("slot", &self.slot)
            .field("used", &self.used)
            .field("head", &self.head.is_some())
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// All concurrency slots of the token are held.
    Simultaneous,
    /// The daily limit is used up.
    DailyLimit,
}

/// One held concurrency slot; dropping it frees the slot (in this process, or in the database
/// for every replica).
#[derive(Debug)]
pub struct SlotGuard {
    held: Held,
}

/// What a guard holds; each variant frees its slot in its own `Drop`.
#[derive(Debug)]
enum Held {
    Memory(MemorySlot),
    /// A session advisory lock in PostgreSQL, released when the guard drops.
    Database(Box<PgSlot>),
}

/// Completes when a slot is lost (see [`SlotGuard::lost`]).
pub type SlotLost = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl SlotGuard {
    pub(super) fn memory(slot: MemorySlot) -> Self {
        Self {
            held: Held::Memory(slot),
        }
    }

    pub(super) fn database(slot: PgSlot) -> Self {
        Self {
            held: Held::Database(Box::new(slot)),
        }
    }

    /// Completes if the slot is lost while held: on PostgreSQL, when the lock keeper's session
    /// that holds it ends (the lock is free for every replica then). The holder must stop —
    /// cut its answer, refuse its upload. `None` where a slot cannot be lost (in memory).
    pub fn lost(&self) -> Option<SlotLost> {
        match &self.held {
            Held::Memory(_) => None,
            Held::Database(pg) => pg.lost().map(|f| Box::pin(f) as SlotLost),
        }
    }

    /// Whether the slot is lost already (see [`lost`](Self::lost)).
    pub fn is_lost(&self) -> bool {
        match &self.held {
            Held::Memory(_) => false,
            Held::Database(pg) => pg.is_lost(),
        }
    }

    /// Frees the slot now. In memory that is done on return; in the database the returned
    /// handle completes once the unlock is done, so awaiting it before the last byte of an
    /// answer goes out means a client's next request never finds its own previous slot held.
    pub fn release(self) -> Option<tokio::task::JoinHandle<()>> {
        match self.held {
            Held::Memory(m) => {
                drop(m);
                None
            }
            Held::Database(pg) => Some(pg.release()),
        }
    }
}
