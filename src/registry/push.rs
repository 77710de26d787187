//! The push: what to send (one image manifest, or an index with all its manifests, read
//! from the store and verified), then every blob (see [`super::upload`]), then the
//! manifests with their exact bytes and media types, children before the index.

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use super::auth::{Credentials, resolve_credentials};
use super::client::{Attempt, ClientOptions, with_retry};
use super::error::RegistryError;
use super::manifest::{self, Descriptor, ManifestKind, OCI_INDEX, OCI_MANIFEST};
use super::push_progress::PushProgress;
use super::session::Session;
use super::upload::{BlobOutcome, UploadOptions, Uploader};
use crate::digest::Digest;
use crate::reference::ImageRef;
use crate::store::{ImageRecord, Store};

/// Blobs sent at once.
pub const CONCURRENT_BLOBS: usize = 3;

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// How to reach the registry.
    pub client: ClientOptions,
    /// Credentials to use instead of the Docker config file's.
    pub credentials: Option<Credentials>,
    /// Monolithic or chunked uploads.
    pub upload: UploadOptions,
}

/// A manifest (or index) from the store: its exact bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its exact bytes.
    pub body: Vec<u8>,
    /// Its media type (its own `mediaType`, else what its structure says).
    pub media_type: String,
    /// The blobs it names (config first, then layers); empty for an index.
    pub blobs: Vec<Descriptor>,
}

/// What a push sends: image manifests, and the index over them when the whole index goes.
#[derive(Debug, Clone)]
pub struct PushContent {
    /// The image manifests.
    pub manifests: Vec<StoredManifest>,
    /// The index, when it is pushed whole (then it goes under the tag).
    pub index: Option<StoredManifest>,
}

impl PushContent {
    /// The manifest that goes under the tag: the index, else the one image manifest.
    pub fn top(&self) -> &StoredManifest {
        self.index.as_ref().unwrap_or(&self.manifests[0])
    }
}

/// Reads and verifies a manifest or index blob from the store.
fn stored(store: &Store, digest: &Digest, shown: &str) -> Result<StoredManifest, RegistryError> {
    let body = store.read_blob(digest)?;
    let actual = Digest::of(&body);
    if actual != *digest {
        return Err(RegistryError::CorruptStoreBlob {
            digest: digest.clone(),
            problem: format!("its content hashes to {actual}"),
        });
    }
    let kind = manifest::detect(shown, &body)?;
    let declared = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string));
    let (media_type, blobs) = match kind {
        ManifestKind::Index => (declared.unwrap_or_else(|| OCI_INDEX.into()), Vec::new()),
        ManifestKind::Image => {
            let m = manifest::parse_image(shown, &body)?;
            let blobs = std::iter::once(m.config).chain(m.layers).collect();
            (declared.unwrap_or_else(|| OCI_MANIFEST.into()), blobs)
        }
    };
    Ok(StoredManifest {
        digest: digest.clone(),
        body,
        media_type,
        blobs,
    })
}

/// What pushing `records` (one name:tag, one or several platforms) sends. With one record
/// (or `one_platform`), its manifest; with several from one index whose every manifest the
/// store holds, the whole index. Each manifest is read and verified; every blob it names
/// must be in the store.
pub fn select_content(
    store: &Store,
    shown: &str,
    records: &[ImageRecord],
    one_platform: bool,
) -> Result<PushContent, RegistryError> {
    let first = records.first().ok_or_else(|| RegistryError::NotPresent {
        reference: shown.to_string(),
    })?;
    let index_digest = first
        .index_digest
        .clone()
        .filter(|d| records.iter().all(|r| r.index_digest.as_ref() == Some(d)));
    let content = match index_digest {
        Some(idx) if !one_platform && store.has_blob(&idx) => {
            let index = stored(store, &idx, shown)?;
            let entries = manifest::parse_index(shown, &index.body)?.manifests;
            let complete = entries.iter().all(|e| store.has_blob(&e.digest));
            if complete {
                let manifests = entries
                    .iter()
                    .map(|e| stored(store, &e.digest, shown))
                    .collect::<Result<Vec<_>, _>>()?;
                PushContent {
                    manifests,
                    index: Some(index),
                }
            } else if records.len() == 1 {
                single(store, first, shown)?
            } else {
                return Err(partial_index(shown));
            }
        }
        _ if records.len() == 1 || one_platform => single(store, first, shown)?,
        _ => return Err(partial_index(shown)),
    };
    for m in &content.manifests {
        for b in &m.blobs {
            if !store.has_blob(&b.digest) {
                return Err(RegistryError::CorruptStoreBlob {
                    digest: b.digest.clone(),
                    problem: format!("it is missing (manifest {} names it)", m.digest),
                });
            }
        }
    }
    Ok(content)
}

fn single(store: &Store, record: &ImageRecord, shown: &str) -> Result<PushContent, RegistryError> {
    Ok(PushContent {
        manifests: vec![stored(store, &record.manifest_digest, shown)?],
        index: None,
    })
}

fn partial_index(shown: &str) -> RegistryError {
    RegistryError::Invalid {
        reference: shown.to_string(),
        what: "image",
        message: "the store holds several platforms but not one whole index of them; \
                  pull it with --all-platforms, or push one with --platform"
            .into(),
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The digest now under the tag (index or manifest).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Blobs uploaded.
    pub pushed: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the repository had already.
    pub existing: usize,
}

/// Pushes `content` to `target` (its tag, or its digest when it names one; `latest` else).
pub async fn push(
    store: &Store,
    target: &ImageRef,
    content: &PushContent,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<PushOutcome, RegistryError> {
    let creds = resolve_credentials(&target.registry, opts.credentials.as_ref())?;
    // Mirrors serve pulls; a push goes to the registry named.
    let client = ClientOptions {
        mirrors: Default::default(),
        ..opts.client.clone()
    };
    let endpoint = client.endpoint(target);

    // Each distinct blob once, with a repository of this registry to mount it from.
    let mut seen = HashSet::new();
    let mut blobs: Vec<(Descriptor, bool, Option<String>)> = Vec::new();
    for m in &content.manifests {
        for (i, b) in m.blobs.iter().enumerate() {
            if !seen.insert(b.digest.clone()) {
                continue;
            }
            let from = store
                .blob_sources(&b.digest)?
                .into_iter()
                .find(|s| s.registry == endpoint && s.repository != target.repository)
                .map(|s| s.repository);
            blobs.push((b.clone(), i > 0, from));
        }
    }
    let sources: Vec<String> = blobs
        .iter()
        .filter_map(|(_, _, f)| f.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let session = Session::for_push(
        &client,
        &endpoint,
        &target.repository,
        creds.as_ref(),
        &sources,
    )?;
    let denied = |e: RegistryError| match e {
        RegistryError::AuthRequired { .. } | RegistryError::Denied { .. } => {
            RegistryError::PushDenied {
                registry: endpoint.clone(),
                repository: target.repository.clone(),
            }
        }
        e => e,
    };
    let uploader = Uploader {
        session: &session,
        client: &client,
        store,
        options: opts.upload,
    };

    progress.start(&target.name());
    for (b, layer, _) in &blobs {
        if *layer {
            progress.preparing(&b.digest);
        }
    }
    let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs.iter())
        .map(|(b, layer, from)| {
            let uploader = &uploader;
            async move {
                let on_bytes = |done| {
                    if *layer {
                        progress.bytes(&b.digest, done, b.size)
                    }
                };
                let outcome = uploader
                    .push_blob(b, from.as_deref(), &on_bytes)
                    .await
                    .map_err(denied)?;
                if *layer {
                    match &outcome {
                        BlobOutcome::Exists => progress.exists(&b.digest),
                        BlobOutcome::Mounted(from) => progress.mounted(&b.digest, from),
                        BlobOutcome::Pushed => progress.pushed(&b.digest),
                    }
                }
                Ok::<_, RegistryError>(outcome)
            }
        })
        .buffered(CONCURRENT_BLOBS)
        .try_collect()
        .await?;
    let digests: Vec<Digest> = blobs.iter().map(|(b, _, _)| b.digest.clone()).collect();
    // A hint for later mounts only: the push stands without it.
    if let Err(e) = store.add_blob_sources(&digests, &endpoint, &target.repository) {
        tracing::debug!("cannot remember where the blobs went: {e}");
    }

    // Children by digest first, then what goes under the tag.
    let tag_or_digest = match (&target.digest, &target.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    if content.index.is_some() {
        for m in &content.manifests {
            put_manifest(&session, &client, m, &m.digest.to_string())
                .await
                .map_err(denied)?;
        }
    }
    let top = content.top();
    put_manifest(&session, &client, top, &tag_or_digest)
        .await
        .map_err(denied)?;
    let shown_tag = target.tag.clone().unwrap_or_else(|| tag_or_digest.clone());
    progress.finish(&shown_tag, &top.digest, top.body.len() as u64);
    let count = |f: fn(&BlobOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    Ok(PushOutcome {
        digest: top.digest.clone(),
        size: top.body.len() as u64,
        pushed: count(|o| *o == BlobOutcome::Pushed),
        mounted: count(|o| matches!(o, BlobOutcome::Mounted(_))),
        existing: count(|o| *o == BlobOutcome::Exists),
    })
}

/// `PUT /v2/<name>/manifests/<reference>` with the manifest's exact bytes and media type;
/// the registry's `Docker-Content-Digest`, when sent, must be the manifest's digest.
async fn put_manifest(
    session: &Session,
    client: &ClientOptions,
    m: &StoredManifest,
    reference: &str,
) -> Result<(), RegistryError> {
    let url = session.url("manifests", reference);
    with_retry(client, || async {
        let resp = session
            .send_with(|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, &m.media_type)
                    .body(m.body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(session.error_of(resp, reference, None).await);
        }
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        if let Some(d) = announced
            && d != m.digest
        {
            return Err(Attempt::Fatal(RegistryError::Protocol {
                registry: session.cx("").registry.to_string(),
                message: format!(
                    "the registry stored manifest {} as {d}: it changed the bytes",
                    m.digest
                ),
            }));
        }
        Ok(())
    })
    .await
}

/// [`push`] from synchronous code (a runtime of its own).
pub fn push_blocking(
    store: &Store,
    target: &ImageRef,
    content: &PushContent,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<PushOutcome, RegistryError> {
    super::pull::runtime()?.block_on(push(store, target, content, opts, progress))
}
