//! The HTTP side of [`crate::limits`]: bodies read from a registry, capped while they stream.

pub use crate::limits::*;

/// Reads a whole HTTP body of at most `limit` bytes, refusing a larger one as soon as its
/// `Content-Length` or the bytes received say so.
pub async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, CappedError<reqwest::Error>> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(CappedError::TooLarge);
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(CappedError::Read)? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(CappedError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads at most `limit` bytes of an HTTP body (an error body), dropping the rest unread.
pub async fn read_prefix(mut resp: reqwest::Response, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(out.len() as u64) as usize;
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= limit {
            break;
        }
    }
    out
}
