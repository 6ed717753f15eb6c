//! voxtrail's server library: everything the `voxtrail` binary serves and administers.
//!
//! Layers, from the edge inward: `http` (wire, status codes) → `auth`, `ingest` (rules) →
//! `store` (SQL, and each backend's per-token limits) → `domain` (types parsed at the edge).
//! `config` is read once at start-up; `seed` makes synthetic data. See ARCHITECTURE.md.

pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod mail;
pub mod seed;
pub mod store;

pub use config::Config;
pub use http::Application;
pub use store::Store;
