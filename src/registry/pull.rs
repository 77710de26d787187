//! The pull: resolve the reference, select the platform(s), fetch every blob verified into
//! the store, and only then record (and unpack) the image(s).

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt};

use super::auth::{Credentials, resolve_credentials};
use super::client::ClientOptions;
use super::error::RegistryError;
use super::manifest::{self, Descriptor, ImageConfig, ImageManifest, ManifestKind};
use super::progress::Progress;
use super::remote::Remote;
use crate::digest::Digest;
use crate::platform::{Matcher, Platform, default_platform};
use crate::reference::ImageRef;
use crate::store::{BlobWriter, ImageRecord, LayerRef, Store};

/// Layers downloaded at once.
pub const CONCURRENT_LAYERS: usize = 3;

/// What to pull and how.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform wanted (`None`: [`default_platform`]).
    pub platform: Option<Platform>,
    /// Every platform of an index, each recorded.
    pub all_platforms: bool,
    /// How to reach registries.
    pub client: ClientOptions,
    /// Credentials to use instead of the Docker config file's.
    pub credentials: Option<Credentials>,
    /// Unpack the layers at the end (what `xrun pull` does; `run` then starts fast).
    pub unpack: bool,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The reference pulled.
    pub reference: ImageRef,
    /// The digest the reference resolved to (index or manifest).
    pub digest: Digest,
    /// The images recorded (one per platform).
    pub images: Vec<ImageRecord>,
    /// Whether any blob was new to the store.
    pub new: bool,
    /// Bytes downloaded for layers.
    pub downloaded: u64,
}

/// When `xrun run`/`create` pull, as Docker's `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store.
    #[default]
    Missing,
    /// Always pull (the store keeps what is unchanged).
    Always,
    /// Never pull: the image must be in the store.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "invalid pull policy {s:?} (missing, always, never)"
            )),
        }
    }
}

/// One image manifest chosen for the pull.
struct Target {
    platform_from_index: Option<Platform>,
    digest: Digest,
    body: Vec<u8>,
    manifest: ImageManifest,
    config_body: Vec<u8>,
    config: ImageConfig,
}

/// Pulls `image` into `store`. Nothing is recorded unless every blob arrived verified; on any
/// error the store holds no new blob, record or temp file.
pub async fn pull(
    store: &Store,
    image: &ImageRef,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullOutcome, RegistryError> {
    let wanted = match &opts.platform {
        Some(p) => p.clone(),
        None => default_platform().map_err(|e| RegistryError::Invalid {
            reference: image.to_string(),
            what: "default platform",
            message: e.to_string(),
        })?,
    };
    let creds = resolve_credentials(&image.registry, opts.credentials.as_ref())?;
    let remote = Remote::new(image, &opts.client, creds.as_ref())?;
    let shown = image.to_string();

    let (top_body, top_digest) = remote.manifest(None).await?;
    progress.start(&image.tag_or_digest(), &image.repository);
    let mut index_body = None;
    let mut targets = Vec::new();
    match manifest::detect(&shown, &top_body)? {
        ManifestKind::Index => {
            let index = manifest::parse_index(&shown, &top_body)?;
            let chosen: Vec<&Descriptor> = if opts.all_platforms {
                let all: Vec<&Descriptor> =
                    index.manifests.iter().filter(|d| d.is_runnable()).collect();
                if all.is_empty() {
                    return Err(RegistryError::Invalid {
                        reference: shown,
                        what: "index",
                        message: "it lists no runnable platform".into(),
                    });
                }
                all
            } else {
                vec![manifest::select(&shown, &index, &wanted)?]
            };
            for entry in chosen {
                let (body, digest) = remote.manifest(Some(&entry.digest)).await?;
                if body.len() as u64 != entry.size {
                    return Err(RegistryError::SizeMismatch {
                        what: "manifest",
                        registry: remote.endpoint().to_string(),
                        digest,
                        expected: entry.size,
                        actual: body.len() as u64,
                    });
                }
                let where_ = format!("{}@{}", image.name(), digest);
                if manifest::detect(&where_, &body)? != ManifestKind::Image {
                    return Err(RegistryError::Invalid {
                        reference: where_,
                        what: "index",
                        message: "nested indexes are not supported".into(),
                    });
                }
                targets.push(
                    fetch_target(&remote, &where_, entry.platform.clone(), digest, body).await?,
                );
            }
            index_body = Some(top_body);
        }
        ManifestKind::Image => {
            let t = fetch_target(&remote, &shown, None, top_digest.clone(), top_body).await?;
            // A single-platform image is taken as is unless a platform was asked for.
            if let Some(asked) = &opts.platform {
                let have = t.config.platform();
                if Matcher::new(asked)
                    .best(std::slice::from_ref(&have))
                    .is_none()
                {
                    return Err(RegistryError::NoMatchingPlatform {
                        wanted: Box::new(asked.clone()),
                        reference: shown,
                        offered: vec![have],
                    });
                }
            }
            targets.push(t);
        }
    }

    // Layers: each distinct digest once, skipping what the store has.
    let mut seen = HashSet::new();
    let mut todo: Vec<Descriptor> = Vec::new();
    for t in &targets {
        for l in &t.manifest.layers {
            if !seen.insert(l.digest.clone()) {
                continue;
            }
            if store.has_blob(&l.digest) {
                progress.layer_exists(&l.digest);
            } else {
                progress.layer_queued(&l.digest, l.size);
                todo.push(l.clone());
            }
        }
    }
    let downloaded: u64 = todo.iter().map(|l| l.size).sum();
    // Garbage collection must not take blobs this pull relies on before the records exist.
    let _gc_lease = store.lease()?;
    let writers: Vec<BlobWriter> = futures_util::stream::iter(todo.iter())
        .map(|l| {
            let remote = &remote;
            async move {
                let w = remote
                    .blob(
                        l,
                        "layer",
                        || Ok(store.begin_blob(&l.digest, Some(l.size))?),
                        &|done| progress.layer_bytes(&l.digest, done),
                    )
                    .await?;
                progress.layer_done(&l.digest);
                Ok::<_, RegistryError>(w)
            }
        })
        .buffer_unordered(CONCURRENT_LAYERS)
        .try_collect()
        .await?;

    crate::fault::point("pull.after-download");
    // Everything arrived verified: now it may enter the store.
    let mut new = !writers.is_empty();
    for w in writers {
        w.commit()?;
    }
    let mut put = |digest: &Digest, bytes: &[u8]| -> Result<(), RegistryError> {
        if !store.has_blob(digest) {
            store.put_blob(digest, bytes)?;
            new = true;
        }
        Ok(())
    };
    for t in &targets {
        put(&t.manifest.config.digest, &t.config_body)?;
        put(&t.digest, &t.body)?;
    }
    let index_digest = index_body.as_ref().map(|_| top_digest.clone());
    if let (Some(b), Some(d)) = (&index_body, &index_digest) {
        put(d, b)?;
    }
    crate::fault::point("pull.after-verify");

    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let records: Vec<ImageRecord> = targets
        .iter()
        .map(|t| record_for(image, index_digest.clone(), t, &created))
        .collect();
    if opts.unpack {
        for r in &records {
            store.unpack(r)?;
        }
    }
    crate::fault::point("pull.before-record");
    for r in &records {
        store.record_image(r)?;
    }
    // Remembered so a push to another repository of this registry can mount them.
    let blobs: Vec<Digest> = targets
        .iter()
        .flat_map(|t| {
            std::iter::once(t.manifest.config.digest.clone())
                .chain(t.manifest.layers.iter().map(|l| l.digest.clone()))
        })
        .collect();
    // A hint only: the pull stands without it.
    if let Err(e) = store.add_blob_sources(&blobs, remote.endpoint(), &image.repository) {
        tracing::debug!("cannot remember where the blobs came from: {e}");
    }
    progress.finish(&shown, &top_digest, new);
    Ok(PullOutcome {
        reference: image.clone(),
        digest: top_digest,
        images: records,
        new,
        downloaded,
    })
}

async fn fetch_target(
    remote: &Remote,
    shown: &str,
    platform_from_index: Option<Platform>,
    digest: Digest,
    body: Vec<u8>,
) -> Result<Target, RegistryError> {
    let m = manifest::parse_image(shown, &body)?;
    let config_body = remote.blob_bytes(&m.config, "config").await?;
    let config = manifest::parse_config(shown, &config_body, &m)?;
    Ok(Target {
        platform_from_index,
        digest,
        body,
        manifest: m,
        config_body,
        config,
    })
}

fn record_for(
    image: &ImageRef,
    index_digest: Option<Digest>,
    t: &Target,
    created: &str,
) -> ImageRecord {
    let layers: Vec<LayerRef> = t
        .manifest
        .layers
        .iter()
        .zip(&t.config.rootfs.diff_ids)
        .map(|(l, diff_id)| LayerRef {
            digest: l.digest.clone(),
            diff_id: diff_id.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
        })
        .collect();
    let size = t.body.len() as u64
        + t.config_body.len() as u64
        + layers.iter().map(|l| l.size).sum::<u64>();
    ImageRecord {
        name: image.name(),
        tag: image.tag.clone(),
        index_digest,
        manifest_digest: t.digest.clone(),
        config_digest: t.manifest.config.digest.clone(),
        platform: t
            .platform_from_index
            .clone()
            .unwrap_or_else(|| t.config.platform()),
        layers,
        size,
        created: created.to_string(),
    }
}

/// [`pull`] from synchronous code (builds a runtime of its own; do not call it from inside
/// a tokio runtime — use [`pull`] there).
pub fn pull_blocking(
    store: &Store,
    image: &ImageRef,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullOutcome, RegistryError> {
    runtime()?.block_on(pull(store, image, opts, progress))
}

/// A small runtime for the registry's blocking entry points.
pub fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RegistryError::Io {
            context: "starting the I/O runtime".into(),
            source: e,
        })
}

/// The image `xrun run`/`create` should use, pulling it per `policy`: with `Missing` the
/// store's record is used when present; with `Always` the registry is asked every time;
/// with `Never` a missing image is an error. `opts.platform` also selects among stored
/// platforms.
pub fn ensure_image(
    store: &Store,
    image: &ImageRef,
    policy: PullPolicy,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord, RegistryError> {
    let stored = || {
        store.find_image(
            &image.name(),
            &image.tag_or_digest(),
            opts.platform.as_ref(),
        )
    };
    if policy != PullPolicy::Always {
        if let Some(r) = stored()? {
            return Ok(r);
        }
        if policy == PullPolicy::Never {
            return Err(RegistryError::NotPresent {
                reference: image.to_string(),
            });
        }
    }
    let outcome = pull_blocking(
        store,
        image,
        &PullOptions {
            all_platforms: false,
            ..opts.clone()
        },
        progress,
    )?;
    outcome
        .images
        .into_iter()
        .next()
        .ok_or_else(|| RegistryError::NotPresent {
            reference: image.to_string(),
        })
}

/// A summary of which platforms an index offers, for `xrun manifest inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// Exact bytes of the manifest the reference names.
    pub raw: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
    /// Index or image.
    pub kind: ManifestKind,
    /// The index entries (for an index), or the single manifest with its config's platform.
    pub entries: Vec<RemoteEntry>,
}

/// One manifest of a remote index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Its platform (`None` for attestation or platform-less entries).
    pub platform: Option<Platform>,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Whether it is an image to run (not an attestation).
    pub runnable: bool,
}

/// Fetches what a reference names without pulling layers (a single manifest's config is
/// fetched to learn its platform).
pub async fn inspect_remote(
    image: &ImageRef,
    client: &ClientOptions,
    credentials: Option<&Credentials>,
) -> Result<RemoteManifest, RegistryError> {
    let creds = resolve_credentials(&image.registry, credentials)?;
    let remote = Remote::new(image, client, creds.as_ref())?;
    let shown = image.to_string();
    let (raw, digest) = remote.manifest(None).await?;
    let kind = manifest::detect(&shown, &raw)?;
    let entries = match kind {
        ManifestKind::Index => manifest::parse_index(&shown, &raw)?
            .manifests
            .into_iter()
            .map(|d| RemoteEntry {
                runnable: d.is_runnable(),
                platform: d.platform,
                digest: d.digest,
                size: d.size,
                media_type: d.media_type,
            })
            .collect(),
        ManifestKind::Image => {
            let m = manifest::parse_image(&shown, &raw)?;
            let cfg = remote.blob_bytes(&m.config, "config").await?;
            let c = manifest::parse_config(&shown, &cfg, &m)?;
            let media_type = m
                .media_type
                .clone()
                .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
            vec![RemoteEntry {
                platform: Some(c.platform()),
                digest: digest.clone(),
                size: raw.len() as u64,
                media_type,
                runnable: true,
            }]
        }
    };
    Ok(RemoteManifest {
        raw,
        digest,
        kind,
        entries,
    })
}
