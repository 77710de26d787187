//! One blob from the store to one repository: `HEAD` first (skip when present), a
//! cross-repository mount when another repository of the registry has it, else an upload —
//! monolithic (`POST`, then `PUT ?digest=` with the whole body) for blobs up to
//! [`UploadOptions::chunked_above`], chunked (`PATCH` with `Content-Range`, then an empty
//! `PUT ?digest=`) for bigger ones.
//!
//! The store's copy is verified while it is read: its size is checked before anything is
//! sent, and its digest before the last bytes go out. A blob whose content does not hash to
//! its digest is refused: the request is cut short, so the registry never completes it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use tokio::io::AsyncReadExt;

use super::client::{Attempt, ClientOptions, with_retry};
use super::error::RegistryError;
use super::manifest::Descriptor;
use super::session::Session;
use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// Bytes read from the store at a time for a streamed body.
const READ_BUFFER: usize = 1024 * 1024;

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    /// Blobs larger than this go up in chunks; smaller ones in one request.
    pub chunked_above: u64,
    /// The size of each chunk.
    pub chunk_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunked_above: 64 * 1024 * 1024,
            chunk_size: 32 * 1024 * 1024,
        }
    }
}

/// What became of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository had it already.
    Exists,
    /// The registry linked it from this repository.
    Mounted(String),
    /// It was uploaded.
    Pushed,
}

/// Uploads blobs of one store to one repository.
pub struct Uploader<'a> {
    /// The session (push scope) for the target repository.
    pub session: &'a Session,
    /// Retries and timeouts.
    pub client: &'a ClientOptions,
    /// Where the blobs are read.
    pub store: &'a Store,
    /// Monolithic or chunked.
    pub options: UploadOptions,
}

/// The error for a store blob that is not what its descriptor says.
fn corrupt(digest: &Digest, problem: String) -> RegistryError {
    RegistryError::CorruptStoreBlob {
        digest: digest.clone(),
        problem,
    }
}

/// Whether `actual` hashes to `expected`; the refusal otherwise.
fn check_digest(expected: &Digest, actual: Digest) -> Result<(), RegistryError> {
    if actual == *expected {
        return Ok(());
    }
    Err(corrupt(expected, format!("its content hashes to {actual}")))
}

impl Uploader<'_> {
    /// Makes sure the repository has `desc`'s blob: skipped when present, mounted from
    /// `mount_from` when given and the registry agrees, else uploaded (verified on the way).
    pub async fn push_blob(
        &self,
        desc: &Descriptor,
        mount_from: Option<&str>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<BlobOutcome, RegistryError> {
        let path = self.store.blob_path(&desc.digest);
        let len = std::fs::metadata(&path)
            .map_err(|_| {
                corrupt(
                    &desc.digest,
                    "it is missing from the store (pull the image again)".into(),
                )
            })?
            .len();
        if len != desc.size {
            return Err(corrupt(
                &desc.digest,
                format!("it has {len} bytes, its manifest says {}", desc.size),
            ));
        }
        with_retry(self.client, || self.try_push(desc, mount_from, on_bytes)).await
    }

    async fn try_push(
        &self,
        desc: &Descriptor,
        mount_from: Option<&str>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<BlobOutcome, Attempt> {
        if self.exists(&desc.digest).await? {
            return Ok(BlobOutcome::Exists);
        }
        let location = match mount_from {
            Some(from) => match self.mount(&desc.digest, from).await? {
                None => return Ok(BlobOutcome::Mounted(from.to_string())),
                Some(location) => location,
            },
            None => self.start_upload(&desc.digest).await?,
        };
        if desc.size > self.options.chunked_above {
            self.chunked(desc, location, on_bytes).await?;
        } else {
            self.monolithic(desc, location, on_bytes).await?;
        }
        Ok(BlobOutcome::Pushed)
    }

    fn blob_name(digest: &Digest) -> String {
        format!("blob {digest}")
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: 200 present, 404 absent.
    async fn exists(&self, digest: &Digest) -> Result<bool, Attempt> {
        let url = self.session.url("blobs", &digest.to_string());
        let resp = self.session.send_with(|c| c.head(&url)).await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .session
                .error_of(resp, "", Some(&Self::blob_name(digest)))
                .await),
        }
    }

    fn uploads_url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/uploads/",
            self.session.base(),
            self.session.repository()
        )
    }

    /// `POST …/uploads/?mount=&from=`: `None` when mounted (201), else the upload location
    /// the registry opened instead (202).
    async fn mount(&self, digest: &Digest, from: &str) -> Result<Option<String>, Attempt> {
        let url = self.uploads_url();
        let d = digest.to_string();
        let resp = self
            .session
            .send_with(|c| {
                c.post(&url)
                    .query(&[("mount", d.as_str()), ("from", from)])
                    .header(CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => self.location(&resp).map(Some),
            _ => Err(self
                .session
                .error_of(resp, "", Some(&Self::blob_name(digest)))
                .await),
        }
    }

    /// `POST …/uploads/`: the upload location.
    async fn start_upload(&self, digest: &Digest) -> Result<String, Attempt> {
        let url = self.uploads_url();
        let resp = self
            .session
            .send_with(|c| c.post(&url).header(CONTENT_LENGTH, 0))
            .await?;
        if resp.status() == StatusCode::ACCEPTED {
            return self.location(&resp);
        }
        Err(self
            .session
            .error_of(resp, "", Some(&Self::blob_name(digest)))
            .await)
    }

    /// The absolute URL of an answer's `Location` (registries may send a path).
    fn location(&self, resp: &reqwest::Response) -> Result<String, Attempt> {
        let bad = |m: &str| {
            Attempt::Fatal(RegistryError::Protocol {
                registry: self.session.cx("").registry.to_string(),
                message: m.to_string(),
            })
        };
        let raw = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad("an upload answer has no Location"))?;
        let base = reqwest::Url::parse(self.session.base())
            .map_err(|_| bad("the registry's address is not a URL"))?;
        base.join(raw)
            .map(|u| u.to_string())
            .map_err(|_| bad("an upload answer's Location is not a URL"))
    }

    /// `location` with `digest=` added to its query.
    fn with_digest(&self, location: &str, digest: &Digest) -> Result<reqwest::Url, Attempt> {
        let mut url = reqwest::Url::parse(location).map_err(|_| {
            Attempt::Fatal(RegistryError::Protocol {
                registry: self.session.cx("").registry.to_string(),
                message: "an upload location is not a URL".into(),
            })
        })?;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        Ok(url)
    }

    /// The final `PUT`'s answer: 201, else the registry's error.
    async fn expect_created(
        &self,
        resp: reqwest::Response,
        digest: &Digest,
    ) -> Result<(), Attempt> {
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        Err(self
            .session
            .error_of(resp, "", Some(&Self::blob_name(digest)))
            .await)
    }

    /// The whole blob in one `PUT`, streamed from the store and verified on the way.
    async fn monolithic(
        &self,
        desc: &Descriptor,
        location: String,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Attempt> {
        let url = self.with_digest(&location, &desc.digest)?;
        let refused: Arc<Mutex<Option<RegistryError>>> = Arc::new(Mutex::new(None));
        // Each try (a second one follows a 401) reads the blob afresh.
        let sent = self
            .session
            .send_with(|c| {
                let req = c
                    .put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, desc.size);
                match self.store.open_blob(&desc.digest) {
                    Ok(f) => req.body(reqwest::Body::wrap_stream(verified_stream(
                        f,
                        desc.clone(),
                        refused.clone(),
                    ))),
                    Err(e) => {
                        *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                        req.body(Vec::new())
                    }
                }
            })
            .await;
        if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Attempt::Fatal(e));
        }
        let resp = sent?;
        on_bytes(desc.size);
        self.expect_created(resp, &desc.digest).await
    }

    /// The blob in `PATCH`es of [`UploadOptions::chunk_size`], then an empty `PUT`; the
    /// digest is checked before the last chunk goes out.
    async fn chunked(
        &self,
        desc: &Descriptor,
        mut location: String,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Attempt> {
        let file = self
            .store
            .open_blob(&desc.digest)
            .map_err(|e| Attempt::Fatal(e.into()))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Hasher::new();
        let mut offset: u64 = 0;
        let io = |e: std::io::Error| {
            Attempt::Fatal(RegistryError::Io {
                context: format!("reading blob {} from the store", desc.digest),
                source: e,
            })
        };
        while offset < desc.size {
            let n = self.options.chunk_size.max(1).min(desc.size - offset);
            let mut chunk = vec![0u8; n as usize];
            file.read_exact(&mut chunk).await.map_err(io)?;
            hasher.update(&chunk);
            if offset + n == desc.size {
                check_digest(&desc.digest, std::mem::take(&mut hasher).finish())?;
            }
            let chunk = Bytes::from(chunk);
            let range = format!("{offset}-{}", offset + n - 1);
            let resp = self
                .session
                .send_with(|c| {
                    c.patch(&location)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, n)
                        .header("Content-Range", &range)
                        .body(chunk.clone())
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self
                    .session
                    .error_of(resp, "", Some(&Self::blob_name(&desc.digest)))
                    .await);
            }
            location = self.location(&resp)?;
            offset += n;
            on_bytes(offset);
        }
        if desc.size == 0 {
            check_digest(&desc.digest, hasher.finish())?;
        }
        let url = self.with_digest(&location, &desc.digest)?;
        let resp = self
            .session
            .send_with(|c| c.put(url.clone()).header(CONTENT_LENGTH, 0))
            .await?;
        self.expect_created(resp, &desc.digest).await
    }
}

/// The store blob as a body stream that checks size and digest as it reads, and fails
/// (setting `refused`) instead of yielding the last bytes when they do not match.
fn verified_stream(
    file: std::fs::File,
    desc: Descriptor,
    refused: Arc<Mutex<Option<RegistryError>>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    struct State {
        file: tokio::fs::File,
        hasher: Hasher,
        read: u64,
        done: bool,
    }
    let state = State {
        file: tokio::fs::File::from_std(file),
        hasher: Hasher::new(),
        read: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut s| {
        let desc = desc.clone();
        let refused = refused.clone();
        async move {
            if s.done {
                return None;
            }
            let fail = |s: State, e: RegistryError| {
                let msg = e.to_string();
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Some((Err(std::io::Error::other(msg)), State { done: true, ..s }))
            };
            let mut buf = vec![0u8; READ_BUFFER];
            let n = match s.file.read(&mut buf).await {
                Ok(n) => n as u64,
                Err(e) => return Some((Err(e), State { done: true, ..s })),
            };
            let total = s.read + n;
            if total > desc.size || (n == 0 && total < desc.size) {
                let e = corrupt(
                    &desc.digest,
                    format!(
                        "it changed while being read ({total} bytes, expected {})",
                        desc.size
                    ),
                );
                return fail(s, e);
            }
            buf.truncate(n as usize);
            s.hasher.update(&buf);
            s.read = total;
            if total == desc.size {
                if let Err(e) = check_digest(&desc.digest, std::mem::take(&mut s.hasher).finish()) {
                    return fail(s, e);
                }
                s.done = true;
                if n == 0 {
                    return None;
                }
            }
            Some((Ok(Bytes::from(buf)), s))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn drain(bytes: &[u8], desc: &Descriptor) -> (u64, bool, Option<RegistryError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, bytes).unwrap();
        let refused = Arc::new(Mutex::new(None));
        let mut s = Box::pin(verified_stream(
            std::fs::File::open(&path).unwrap(),
            desc.clone(),
            refused.clone(),
        ));
        let (mut sent, mut failed) = (0, false);
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => sent += b.len() as u64,
                Err(_) => failed = true,
            }
        }
        let e = refused.lock().unwrap().take();
        (sent, failed, e)
    }

    fn desc_of(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_good_blob_streams_whole() {
        let data: Vec<u8> = (0..(READ_BUFFER * 2 + 17)).map(|i| i as u8).collect();
        let (sent, failed, e) = drain(&data, &desc_of(&data)).await;
        assert_eq!(sent, data.len() as u64);
        assert!(!failed && e.is_none());
        let (sent, failed, _) = drain(b"", &desc_of(b"")).await;
        assert_eq!((sent, failed), (0, false));
    }

    #[tokio::test]
    async fn a_corrupt_blob_never_sends_its_last_bytes() {
        let data: Vec<u8> = (0..(READ_BUFFER * 2 + 17)).map(|i| i as u8).collect();
        let desc = desc_of(&data);
        let mut bad = data.clone();
        bad[10] ^= 1;
        let (sent, failed, e) = drain(&bad, &desc).await;
        assert!(failed);
        assert!(sent < desc.size, "sent {sent} of {}", desc.size);
        assert!(matches!(e, Some(RegistryError::CorruptStoreBlob { .. })));
        // Longer than its descriptor: cut off as soon as it passes the size.
        let mut long = data.clone();
        long.extend_from_slice(b"more");
        let (sent, failed, _) = drain(&long, &desc).await;
        assert!(failed && sent < desc.size);
    }
}
