//! What identifies a row: a field (`conn_id` for chat_12) or the SHA-256 of the row's JSON.

use anyhow::anyhow;
use sha2::{Digest as _, Sha256};
use voxtrail_client::Row;

/// How a row's key is computed; a destination stores each key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRule {
    /// The value of this field; a row without it (or with it empty) is an error.
    Field(String),
    /// The hex SHA-256 of the row's JSON text.
    Hash,
}

impl KeyRule {
    /// The rule when none is given: `conn_id` for chat_12, a hash of the row for the others.
    pub fn default_for(report: &str) -> Self {
        if report == voxtrail_wire::CHAT_12 {
            KeyRule::Field("conn_id".into())
        } else {
            KeyRule::Hash
        }
    }

    /// The key of `row`.
    pub fn key(&self, row: &Row) -> anyhow::Result<String> {
        match self {
            KeyRule::Field(f) => row
                .get(f)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("a row has no {f:?} field: {}", row.to_json())),
            KeyRule::Hash => {
                let h = Sha256::digest(row.to_json().as_bytes());
                Ok(h.iter().map(|b| format!("{b:02x}")).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_field_or_by_hash() {
        let a = Row::from_pairs([("id", "1"), ("x", "a")]);
        let b = Row::from_pairs([("id", "1"), ("x", "b")]);
        let field = KeyRule::Field("id".into());
        assert_eq!(field.key(&a).unwrap(), "1");
        assert!(field.key(&Row::from_pairs([("x", "a")])).is_err());
        assert!(field.key(&Row::from_pairs([("id", "")])).is_err());
        let h = KeyRule::Hash;
        assert_eq!(h.key(&a).unwrap(), h.key(&a.clone()).unwrap());
        assert_ne!(h.key(&a).unwrap(), h.key(&b).unwrap());
        assert_eq!(h.key(&a).unwrap().len(), 64);
        assert_eq!(
            KeyRule::default_for("chat_12"),
            KeyRule::Field("conn_id".into())
        );
        assert_eq!(KeyRule::default_for("other"), KeyRule::Hash);
    }
}
