//! One repository on one registry, reached with one credential set: verified manifest and
//! blob fetches with retries, and clear errors.

use std::io::Write;

use futures_util::StreamExt;
use oci_client::errors::{DigestError as OciDigestError, OciDistributionError};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::auth::{Credentials, registry_auth};
use super::client::{ClientOptions, Context, is_transient, is_transient_io, map_error, one_line};
use super::error::RegistryError;
use super::manifest::{ACCEPTED, Descriptor};
use crate::digest::Digest;
use crate::reference::ImageRef;

/// A repository on a registry, with a client of its own.
pub struct Remote {
    client: Client,
    opts: ClientOptions,
    endpoint: String,
    image: ImageRef,
    auth: RegistryAuth,
    had_credentials: bool,
}

/// How one try of a blob download ended badly.
enum Failure {
    /// Worth another try (network hiccup, 5xx, 429).
    Transient(RegistryError),
    /// Final.
    Fatal(RegistryError),
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
            client: opts.build(&endpoint)?,
            opts: opts.clone(),
            endpoint,
            image: image.clone(),
            auth: registry_auth(creds),
            had_credentials: creds.is_some(),
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

    fn cx(&self) -> Context<'_> {
        Context {
            registry: &self.endpoint,
            repository: &self.image.repository,
            reference: "",
            had_credentials: self.had_credentials,
        }
    }

    fn map(&self, e: OciDistributionError, reference: &str) -> RegistryError {
        if let OciDistributionError::DigestError(OciDigestError::VerificationError {
            expected,
            actual,
        }) = &e
            && let (Ok(expected), Ok(actual)) = (expected.parse(), actual.parse())
        {
            return RegistryError::DigestMismatch {
                what: "manifest",
                registry: self.endpoint.clone(),
                expected,
                actual,
            };
        }
        map_error(
            e,
            Context {
                reference,
                ..self.cx()
            },
        )
    }

    fn oci_ref(&self, digest: Option<&Digest>) -> Reference {
        let registry = self.endpoint.clone();
        let repo = self.image.repository.clone();
        match (digest.or(self.image.digest.as_ref()), &self.image.tag) {
            (Some(d), _) => Reference::with_digest(registry, repo, d.to_string()),
            (None, Some(t)) => Reference::with_tag(registry, repo, t.clone()),
            (None, None) => Reference::with_tag(registry, repo, "latest".into()),
        }
    }

    /// Fetches a manifest: the reference's own (`None`) or one by digest. Returns the exact
    /// bytes and their digest, verified against the digest asked for (and the registry's
    /// `Docker-Content-Digest`).
    pub async fn manifest(&self, by: Option<&Digest>) -> Result<(Vec<u8>, Digest), RegistryError> {
        let r = self.oci_ref(by);
        let shown = match by {
            Some(d) => format!("{}@{d}", self.image.name()),
            None => self.image.to_string(),
        };
        let (body, _) = super::client::with_retry(&self.opts, || {
            self.client.pull_manifest_raw(&r, &self.auth, ACCEPTED)
        })
        .await
        .map_err(|e| self.map(e, &shown))?;
        let actual = Digest::of(&body);
        if let Some(expected) = by.or(self.image.digest.as_ref())
            && *expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                registry: self.endpoint.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok((body.to_vec(), actual))
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
        let mut delay = self.opts.backoff;
        let mut attempt = 1;
        loop {
            let out = make()?;
            match self.blob_once(desc, what, out, on_bytes).await {
                Ok(w) => return Ok(w),
                Err(Failure::Transient(e)) if attempt < self.opts.attempts.max(1) => {
                    tracing::debug!("{what} {}: {e}; retrying in {delay:?}", desc.digest);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(Failure::Transient(e) | Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn blob_once<W: Write>(
        &self,
        desc: &Descriptor,
        what: &'static str,
        mut out: W,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<W, Failure> {
        let r = self.oci_ref(None);
        let digest = desc.digest.to_string();
        // The token (or Basic credentials) for this repository is set up by the manifest
        // fetch that always precedes blob fetches.
        self.client
            .store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
        let shown = format!("{}@{}", self.image.name(), desc.digest);
        let mut stream = match self.client.pull_blob_stream(&r, digest.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                let transient = is_transient(&e);
                let e = self.map(e, &shown);
                let e = match e {
                    RegistryError::ManifestUnknown { .. } => RegistryError::Protocol {
                        registry: self.endpoint.clone(),
                        message: format!(
                            "{what} {} of {} is missing on the registry (blob unknown)",
                            desc.digest, self.image
                        ),
                    },
                    e => e,
                };
                return Err(if transient {
                    Failure::Transient(e)
                } else {
                    Failure::Fatal(e)
                });
            }
        };
        let size_err = |actual| {
            Failure::Fatal(RegistryError::SizeMismatch {
                what,
                registry: self.endpoint.clone(),
                digest: desc.digest.clone(),
                expected: desc.size,
                actual,
            })
        };
        if let Some(len) = stream.content_length
            && len != desc.size
        {
            return Err(size_err(len));
        }
        // oci-client hashes the stream and reports a mismatch as its last item; the store
        // hashes again when the blob is committed. Here: sizes, and the verdict.
        let mut received: u64 = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > desc.size {
                        return Err(size_err(received));
                    }
                    out.write_all(&chunk).map_err(|e| {
                        Failure::Fatal(RegistryError::Io {
                            context: format!("writing {what} {}", desc.digest),
                            source: e,
                        })
                    })?;
                    on_bytes(received);
                }
                Err(e) if verification_failure(&e).is_some() => {
                    if received != desc.size {
                        return Err(size_err(received));
                    }
                    let actual = verification_failure(&e)
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| desc.digest.clone());
                    return Err(Failure::Fatal(RegistryError::DigestMismatch {
                        what,
                        registry: self.endpoint.clone(),
                        expected: desc.digest.clone(),
                        actual,
                    }));
                }
                Err(e) => {
                    let err = RegistryError::Protocol {
                        registry: self.endpoint.clone(),
                        message: format!(
                            "download of {what} {} broke off after {} of {} bytes: {}",
                            desc.digest,
                            received,
                            desc.size,
                            one_line(&e)
                        ),
                    };
                    return Err(if is_transient_io(&e) {
                        Failure::Transient(err)
                    } else {
                        Failure::Fatal(err)
                    });
                }
            }
        }
        if received != desc.size {
            return Err(size_err(received));
        }
        Ok(out)
    }

    /// Downloads a small blob (an image config) into memory, verified.
    pub async fn blob_bytes(
        &self,
        desc: &Descriptor,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        const LIMIT: u64 = 16 << 20;
        if desc.size > LIMIT {
            return Err(RegistryError::Invalid {
                reference: self.image.to_string(),
                what,
                message: format!("{} bytes is too large", desc.size),
            });
        }
        self.blob(desc, what, || Ok(Vec::new()), &|_| {}).await
    }
}

/// The digest the content really has, when `e` is oci-client's end-of-stream verdict that
/// it does not match.
fn verification_failure(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<OciDigestError>()? {
        OciDigestError::VerificationError { actual, .. } => Some(actual.clone()),
        _ => Some(String::new()),
    }
}
