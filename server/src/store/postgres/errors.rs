//! What a PostgreSQL error means to the store: a unique constraint that refuses one request (a
//! taken name) versus a failure of the database or the link to it.

use tokio_postgres::error::SqlState;

use super::StoreError;

/// Any error of the database or the link, as a [`StoreError::Db`] naming its cause.
pub(super) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Db(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Db(e.to_string()),
    }
}

/// The constraint a unique violation names, if `e` is one.
pub(super) fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or(""))
}
