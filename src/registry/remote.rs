//! One repository on one registry, reached with one credential set: manifest and blob
//! fetches with retries, every byte bounded and verified while it streams in.
//!
//! - Manifests are read into memory up to [`MAX_MANIFEST_BYTES`]: a larger
//!   `Content-Length` is refused before the body is read, a body that grows past it is
//!   dropped as soon as it does. Their digest is checked against the one asked for and the
//!   registry's `Docker-Content-Digest`.
//! - Blobs are streamed to a writer, hashed on the way; the stream is dropped as soon as it
//!   passes the descriptor's size (or announces more), and the digest is checked at the end.
//!   Configs are blobs kept in memory: their descriptor's size must be at most
//!   [`MAX_CONFIG_BYTES`].

use std::io::Write;

use reqwest::header::HeaderMap;

use super::auth::Credentials;
use super::client::{Attempt, ClientOptions, transport_error, with_retry};
use super::error::RegistryError;
use super::limits::{CappedError, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, human, read_capped};
use super::manifest::{ACCEPTED, Descriptor};
use super::session::Session;
use crate::digest::{Digest, Hasher};
use crate::reference::ImageRef;

/// A repository on a registry, with a session of its own.
pub struct Remote {
    session: Session,
    opts: ClientOptions,
    endpoint: String,
    image: ImageRef,
}

impl Remote {
    /// A client for `image`'s registry (or its mirror) with `creds` (anonymous without).
    pub fn new(
        image: &ImageRef,
        opts: &ClientOptions,
        creds: Option<&Credentials>,
    ) -> Result<Remote, RegistryError> {
        let endpoint = opts.endpoint(image);
        Ok(Remote {
            session: Session::new(opts, &endpoint, &image.repository, creds)?,
            opts: opts.clone(),
            endpoint,
            image: image.clone(),
        })
    }

    /// The registry contacted (`host:port`; the mirror when one is configured).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The image this remote was made for.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    fn too_large(&self, what: &'static str, limit: u64) -> RegistryError {
        RegistryError::TooLarge {
            registry: self.endpoint.clone(),
            what,
            limit: human(limit),
        }
    }

    /// Fetches a manifest: the reference's own (`None`) or one by digest. Returns the exact
    /// bytes and their digest, verified against the digest asked for (and the registry's
    /// `Docker-Content-Digest`). At most [`MAX_MANIFEST_BYTES`] are read.
    pub async fn manifest(&self, by: Option<&Digest>) -> Result<(Vec<u8>, Digest), RegistryError> {
        let reference = match (by.or(self.image.digest.as_ref()), &self.image.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        let shown = match by {
            Some(d) => format!("{}@{d}", self.image.name()),
            None => self.image.to_string(),
        };
        let url = self.session.url("manifests", &reference);
        let accept = ACCEPTED.join(", ");
        let (body, header) = with_retry(&self.opts, || async {
            let resp = self.session.get(&url, &accept, &shown, None).await?;
            let header = announced_digest(resp.headers());
            let body = read_capped(resp, MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| match e {
                    CappedError::TooLarge => {
                        Attempt::Fatal(self.too_large("manifest", MAX_MANIFEST_BYTES))
                    }
                    CappedError::Read(e) => transport_error(e, &self.endpoint),
                })?;
            Ok((body, header))
        })
        .await?;
        let actual = Digest::of(&body);
        if let Some(expected) = by.or(self.image.digest.as_ref()).or(header.as_ref())
            && *expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                registry: self.endpoint.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok((body, actual))
    }

    /// Downloads a blob into a writer made by `make` (a fresh one per try), checking size and
    /// digest while streaming. Returns the writer, complete and verified but not committed.
    pub async fn blob<W: Write>(
        &self,
        desc: &Descriptor,
        what: &'static str,
        mut make: impl FnMut() -> Result<W, RegistryError>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<W, RegistryError> {
        let shown = format!("{}@{}", self.image.name(), desc.digest);
        let named = format!("{what} {} of {}", desc.digest, self.image);
        let url = self.session.url("blobs", &desc.digest.to_string());
        with_retry(&self.opts, || {
            let out = make();
            async {
                let out = out?;
                let resp = self.session.get(&url, "", &shown, Some(&named)).await?;
                self.stream(resp, desc, what, out, on_bytes).await
            }
        })
        .await
    }

    async fn stream<W: Write>(
        &self,
        mut resp: reqwest::Response,
        desc: &Descriptor,
        what: &'static str,
        mut out: W,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<W, Attempt> {
        let size_err = |actual| {
            Attempt::Fatal(RegistryError::SizeMismatch {
                what,
                registry: self.endpoint.clone(),
                digest: desc.digest.clone(),
                expected: desc.size,
                actual,
            })
        };
        if let Some(len) = resp.content_length()
            && len != desc.size
        {
            return Err(size_err(len));
        }
        let mut hasher = Hasher::new();
        let mut received: u64 = 0;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let broke = transport_error(e, &self.endpoint);
                    let transient = matches!(broke, Attempt::Transient(_));
                    let err = RegistryError::Protocol {
                        registry: self.endpoint.clone(),
                        message: format!(
                            "download of {what} {} broke off after {received} of {} bytes: {}",
                            desc.digest,
                            desc.size,
                            broke.into_error()
                        ),
                    };
                    return Err(if transient {
                        Attempt::Transient(err)
                    } else {
                        Attempt::Fatal(err)
                    });
                }
            };
            received += chunk.len() as u64;
            if received > desc.size {
                return Err(size_err(received));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(|e| {
                Attempt::Fatal(RegistryError::Io {
                    context: format!("writing {what} {}", desc.digest),
                    source: e,
                })
            })?;
            on_bytes(received);
        }
        if received != desc.size {
            return Err(size_err(received));
        }
        let actual = hasher.finish();
        if actual != desc.digest {
            return Err(Attempt::Fatal(RegistryError::DigestMismatch {
                what,
                registry: self.endpoint.clone(),
                expected: desc.digest.clone(),
                actual,
            }));
        }
        Ok(out)
    }

    /// Downloads a small blob (an image config) into memory, verified: its descriptor's size
    /// must be at most [`MAX_CONFIG_BYTES`], and no more bytes than that size are read.
    pub async fn blob_bytes(
        &self,
        desc: &Descriptor,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        if desc.size > MAX_CONFIG_BYTES {
            return Err(RegistryError::Invalid {
                reference: self.image.to_string(),
                what,
                message: format!(
                    "its descriptor says {} bytes, more than the {} limit",
                    desc.size,
                    human(MAX_CONFIG_BYTES)
                ),
            });
        }
        self.blob(desc, what, || Ok(Vec::new()), &|_| {}).await
    }
}

/// The registry's `Docker-Content-Digest`, when it is a sha256 digest.
fn announced_digest(h: &HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
