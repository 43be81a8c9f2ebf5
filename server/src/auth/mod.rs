//! Authentication primitives: password hashing ([`password`]) and the threads that run it
//! ([`hash_pool`]), session tokens ([`token`]) and the validation rules for user-chosen names
//! ([`names`]).
//!
//! Nothing here touches the store or the network; the HTTP and realtime layers combine these
//! with [`crate::store`]. Password hashing is deliberately slow: it runs only in the pool.

pub mod hash_pool;
pub mod names;
pub mod password;
pub mod token;

pub use hash_pool::{HashPool, HashPoolError};
pub use names::{fold, normalize_room_name, room_name_key, validate_password, validate_username};
pub use token::{TokenHash, hash_token, new_token};

/// Errors of the auth primitives.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password hasher refused its input or parameters.
    #[error("password hashing failed: {0}")]
    Hash(String),
}
