//! Size limits on everything xrun reads from a registry, an image layout or an archive, and the
//! reader that enforces them while streaming (HTTP bodies: `registry::limits`).
//!
//! Every body read into memory goes through `registry::limits::read_capped` (HTTP) or
//! [`read_capped_sync`] (files, tar entries): a `Content-Length` above the limit is refused before any byte is
//! read, and the body is read chunk by chunk, refused as soon as the bytes received would
//! pass the limit, so memory never holds more than the limit. Blobs streamed to disk (layers)
//! are bounded by their descriptor's size instead (see `registry::remote::Remote::blob`).
//!
//! These constants are the figures `docs/security.md` cites.

use std::io::Read;

/// Largest manifest or index accepted: 4 MiB, the cap containerd and Distribution put on
/// manifests.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Largest image config accepted: 8 MiB. Besides this cap, a config must have exactly the
/// size its descriptor states. Configs carry the build history and environment; real ones are
/// a few KiB, so 8 MiB (twice the manifest cap) is a wide margin that still keeps memory
/// bounded.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Largest answer accepted from a token endpoint: 1 MiB (tokens are a few KiB).
pub const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// How much of an error body is read to explain a failure: 64 KiB; the rest is not read
/// (an error body is never refused for its size, only cut short).
pub const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;

/// Largest `oci-layout` or `index.json` of an image layout accepted by `xrun load`: the
/// manifest cap, 4 MiB.
pub const MAX_LAYOUT_JSON_BYTES: u64 = MAX_MANIFEST_BYTES;

/// Most entries read from a layout tar by `xrun load` (entries xrun skips count too): a
/// layout holds a few files per image, so 100 000 leaves room for large multi-image archives
/// while bounding the time spent on a hostile one.
pub const MAX_LAYOUT_TAR_ENTRIES: u64 = 100_000;

/// A limit in words: `4 MiB`, `64 KiB`, `100 bytes`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// How a capped read ended badly.
#[derive(Debug)]
pub enum CappedError<E> {
    /// The body is larger than the limit (by its `Content-Length` or by what arrived).
    TooLarge,
    /// Reading failed.
    Read(E),
}

/// Reads everything `r` yields, at most `limit` bytes: one byte more refuses the read.
pub fn read_capped_sync<R: Read>(r: R, limit: u64) -> Result<Vec<u8>, CappedError<std::io::Error>> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(CappedError::Read)?;
    if out.len() as u64 > limit {
        return Err(CappedError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_words() {
        assert_eq!(human(MAX_MANIFEST_BYTES), "4 MiB");
        assert_eq!(human(MAX_ERROR_BODY_BYTES), "64 KiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn sync_cap_is_exact() {
        let ok = read_capped_sync(&[7u8; 10][..], 10).unwrap();
        assert_eq!(ok.len(), 10);
        assert!(matches!(
            read_capped_sync(&[7u8; 11][..], 10),
            Err(CappedError::TooLarge)
        ));
        // An endless source is refused after limit + 1 bytes.
        assert!(matches!(
            read_capped_sync(std::io::repeat(1), 1 << 20),
            Err(CappedError::TooLarge)
        ));
    }
}
