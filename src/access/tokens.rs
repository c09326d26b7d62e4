//! API tokens: `granary_` and 64 hex digits, shown once when created; the metadata
//! store keeps only their SHA-256 (a token is high-entropy, so a fast hash suffices),
//! so every replica accepts the same tokens and a database dump reveals none.

use sha2::{Digest as _, Sha256};

/// What every token starts with (so a bare cargo token is recognizable).
pub const TOKEN_PREFIX: &str = "granary_";

/// A new random token.
#[must_use]
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// What the store keeps of a token.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
