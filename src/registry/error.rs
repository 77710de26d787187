//! The registry stage's errors: each one renders as one line saying what went wrong and what
//! to do about it.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::platform::Platform;
use crate::reference::ReferenceError;
use crate::store::StoreError;

/// Why a pull, a login or a manifest inspection failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry knows no such tag or repository.
    #[error("manifest for {reference} not found: no such tag or repository")]
    ManifestUnknown {
        /// The reference asked for.
        reference: String,
    },
    /// The registry cannot be reached (refused, unresolvable, timed out).
    #[error(
        "cannot reach registry {registry}: {reason}; check the address and that the registry is running"
    )]
    Unreachable {
        /// The registry host[:port].
        registry: String,
        /// The underlying cause, e.g. `connection refused`.
        reason: String,
    },
    /// The registry wants credentials and none were given.
    #[error("{registry}: authentication required; run `xrun login {registry}` or pass --creds")]
    AuthRequired {
        /// The registry host[:port].
        registry: String,
    },
    /// The registry refused the credentials given.
    #[error("{registry}: wrong username or password")]
    WrongCredentials {
        /// The registry host[:port].
        registry: String,
    },
    /// The credentials are valid but do not grant access.
    #[error("{registry}: access to {repository} denied")]
    Denied {
        /// The registry host[:port].
        registry: String,
        /// The repository.
        repository: String,
    },
    /// A manifest, config or layer does not hash to its digest.
    #[error(
        "{what} {expected} from {registry} does not match its digest (content hashes to {actual}): the registry's copy is corrupt"
    )]
    DigestMismatch {
        /// `manifest`, `config` or `layer`.
        what: &'static str,
        /// The registry host[:port].
        registry: String,
        /// The digest announced.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob has fewer (truncated) or more bytes than its descriptor says.
    #[error(
        "{what} {digest} from {registry} has {actual} bytes, its descriptor says {expected}: truncated or corrupt on the registry"
    )]
    SizeMismatch {
        /// `config` or `layer`.
        what: &'static str,
        /// The registry host[:port].
        registry: String,
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (or announced by Content-Length).
        actual: u64,
    },
    /// A manifest, config or auth answer larger than xrun accepts (see
    /// [`super::limits`]): refused while it streamed in.
    #[error("registry {registry} sent a {what} larger than {limit} (the limit): refusing it")]
    TooLarge {
        /// The registry host[:port].
        registry: String,
        /// `manifest`, `config`, `token answer`.
        what: &'static str,
        /// The limit, in words (`4 MiB`).
        limit: String,
    },
    /// No manifest of an index fits the wanted platform.
    #[error("no matching manifest for {wanted} in {reference} (offers {})", list_platforms(.offered))]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: Box<Platform>,
        /// The reference pulled.
        reference: String,
        /// What the index (or the single manifest) offers.
        offered: Vec<Platform>,
    },
    /// Docker's deprecated image manifest schema 1.
    #[error(
        "{reference}: Docker image manifest schema 1 is not supported; push the image again with a current tool (schema 2 or OCI)"
    )]
    Schema1 {
        /// The reference.
        reference: String,
    },
    /// A manifest media type xrun does not know.
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        /// The reference.
        reference: String,
        /// The media type found.
        media_type: String,
    },
    /// A manifest or config that is not what it claims to be.
    #[error("{reference}: invalid {what}: {message}")]
    Invalid {
        /// The reference.
        reference: String,
        /// `manifest`, `index` or `image config`.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Any other answer from the registry.
    #[error("registry {registry}: {message}")]
    Protocol {
        /// The registry host[:port].
        registry: String,
        /// What it said.
        message: String,
    },
    /// A blob in the store is not what its manifest says: refused, never pushed.
    #[error(
        "blob {digest} in the store is corrupt ({problem}): refusing to push it; remove the image and pull or load it again"
    )]
    CorruptStoreBlob {
        /// The blob.
        digest: Digest,
        /// What is wrong with it.
        problem: String,
    },
    /// The registry refused a push (no or insufficient credentials).
    #[error(
        "denied: requested access to the resource is denied ({registry}/{repository}); run `xrun login {registry}` with an account that may push there"
    )]
    PushDenied {
        /// The registry host[:port].
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The image is not in the store and pulling was not allowed.
    #[error("image {reference} is not in the store (and --pull=never)")]
    NotPresent {
        /// The reference.
        reference: String,
    },
    /// The reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Docker credentials file could not be read or written.
    #[error("{path}: {message}")]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Some local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn list_platforms(p: &[Platform]) -> String {
    if p.is_empty() {
        return "no platforms".to_string();
    }
    p.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_match_lists_offers() {
        let e = RegistryError::NoMatchingPlatform {
            wanted: Box::new("linux/arm64/v8".parse().unwrap()),
            reference: "127.0.0.1:5000/busybox:multi".into(),
            offered: vec![
                "linux/amd64".parse().unwrap(),
                "linux/arm/v7".parse().unwrap(),
            ],
        };
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/arm64/v8 in 127.0.0.1:5000/busybox:multi (offers linux/amd64, linux/arm/v7)"
        );
    }
}
