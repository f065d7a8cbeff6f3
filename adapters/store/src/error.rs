//! [`StoreError`]: every failure names the store file and says what went wrong, so an
//! operator reading the log line alone knows which file to look at.

use std::path::PathBuf;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The path names a directory, not a database file.
    #[error("store {path}: is a directory, expected a database file")]
    IsDirectory {
        /// The configured store path.
        path: PathBuf,
    },
    /// The directory that should hold the file does not exist. We do not create it: a typo in
    /// the configuration should not silently start an empty bridge somewhere unexpected.
    #[error("store {path}: the parent directory does not exist")]
    MissingParent {
        /// The configured store path.
        path: PathBuf,
    },
    /// The file exists but is not a redb database, or is damaged (truncated, bytes changed).
    /// The file is left as it was.
    #[error(
        "store {path}: not a readable redb database (corrupt, truncated or another kind of file): {detail}"
    )]
    Corrupt {
        /// The configured store path.
        path: PathBuf,
        /// What redb or the decoder reported.
        detail: String,
    },
    /// A valid redb database that this bridge did not create (it has tables but no schema
    /// version). Refused so we never write our tables into someone else's database.
    #[error(
        "store {path}: a redb database without a gitter-bridge schema version; refusing to use it"
    )]
    NotAStore {
        /// The configured store path.
        path: PathBuf,
    },
    /// The file was written by a newer version of the bridge. It is left untouched: running an
    /// old binary on it could lose data the newer schema holds.
    #[error(
        "store {path}: schema version {found} is newer than this binary supports ({supported}); upgrade the bridge or restore a backup"
    )]
    TooNew {
        /// The configured store path.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this binary knows.
        supported: u64,
    },
    /// Another process (or another handle in this one) has the file open for writing.
    #[error("store {path}: already open by another process or handle")]
    AlreadyOpen {
        /// The configured store path.
        path: PathBuf,
    },
    /// An I/O failure outside redb (inspecting the path).
    #[error("store {path}: {during}: {source}")]
    Io {
        /// The configured store path.
        path: PathBuf,
        /// What the store was doing.
        during: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A redb failure (I/O, full disk, internal error).
    #[error("store {path}: {during}: {source}")]
    Redb {
        /// The configured store path.
        path: PathBuf,
        /// What the store was doing.
        during: &'static str,
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file's Gitter tokens are encrypted (see `seal.rs`) and no key was given. Refused
    /// before any row is read: the bridge must never start on a store it cannot read, nor
    /// write rows in clear next to sealed ones.
    #[error(
        "store {path}: its Gitter tokens are encrypted, but no key is configured: set \
         store.token_key_file (or store.token_key_env) to the key the store was written with"
    )]
    KeyMissing {
        /// The configured store path.
        path: PathBuf,
    },
    /// The file's Gitter tokens are encrypted with another key than the one given.
    #[error(
        "store {path}: the key from store.token_key_file (or store.token_key_env) is not the \
         key this store's Gitter tokens were encrypted with; configure that key"
    )]
    WrongKey {
        /// The configured store path.
        path: PathBuf,
    },
    /// A sealed row could not be opened (it was changed, or moved from another row), or a
    /// row could not be sealed (the OS random source failed).
    #[error("store {path}: table {table}: {problem} (key: store.token_key_file)")]
    Sealed {
        /// The configured store path.
        path: PathBuf,
        /// The table of the row.
        table: &'static str,
        /// What failed.
        problem: String,
    },
    /// A record could not be encoded (should not happen for the core's types) or a stored value
    /// could not be decoded (the file holds bytes this schema does not describe).
    #[error("store {path}: table {table}: {problem}: {source}")]
    Codec {
        /// The configured store path.
        path: PathBuf,
        /// The table of the record.
        table: &'static str,
        /// "encode" or "decode".
        problem: &'static str,
        /// The underlying error.
        #[source]
        source: postcard::Error,
    },
}

/// Attaches the store path and the operation to redb results.
pub(crate) trait RedbContext<T> {
    fn ctx(self, path: &std::path::Path, during: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> RedbContext<T> for Result<T, E> {
    fn ctx(self, path: &std::path::Path, during: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| redb_error(path, during, e.into()))
    }
}

/// Maps a redb error, singling out the cases an operator can act on.
pub(crate) fn redb_error(
    path: &std::path::Path,
    during: &'static str,
    e: redb::Error,
) -> StoreError {
    let path = path.to_path_buf();
    match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::AlreadyOpen { path },
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
        source => StoreError::Redb {
            path,
            during,
            source: Box::new(source),
        },
    }
}
