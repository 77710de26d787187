//! [`Engine::build`]: a Dockerfile and a context into an image in the store (one platform,
//! or several under one OCI index). The build stage ([`crate::build`]) runs the steps; the
//! engine gives it base images (found in the store or pulled, as `run` does) and runs each
//! `RUN` as a container through the runtime — natively, or emulated for a foreign platform,
//! with no network (`--network none` semantics) — and records the result.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use crate::build::image::{WrittenImage, write_image};
use crate::build::{BuildError, BuildHost, BuildOptions, Context, ImageState, RunStep};
use crate::digest::Digest;
use crate::kernelcheck::ImageRequirements;
use crate::platform::{Matcher, Platform};
use crate::reference::ImageRef;
use crate::registry::{ClientOptions, PullOptions, PullPolicy};
use crate::runtime::options::{ExecRoute, Network};
use crate::runtime::{BundleExtras, Containers, ImageInput, RunOptions, lifecycle};
use crate::store::{ImageRecord, OCI_INDEX, OCI_MANIFEST, Store};

use super::vm::VmMachines;
use super::{Engine, EngineError, Observer};

/// A build request (`xrun build`).
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default: `CONTEXT/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `-t`: the names to record the image under.
    pub tags: Vec<String>,
    /// `--platform` (default: this machine's).
    pub platforms: Vec<Platform>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: pull base images even when the store has them.
    pub pull: bool,
    /// `--output type=oci,dest=PATH`: also write an OCI layout tar there.
    pub output: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<u64>,
    /// `--check-host-profile`: hosts the image must run on natively.
    pub host_profiles: Vec<PathBuf>,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// Each platform's image manifest.
    pub images: Vec<(Platform, Digest)>,
    /// The image's digest: the manifest's, or the index's for several platforms.
    pub digest: Digest,
    /// The records made under the tags.
    pub records: Vec<ImageRecord>,
}

/// The target platform for `xrun build` without `--platform`: this machine's os/arch
/// (and ARM variant), without the amd64 level.
pub fn default_build_platform() -> Platform {
    let h = Platform::host();
    Platform {
        os: h.os.clone(),
        architecture: h.architecture.clone(),
        variant: h
            .variant
            .clone()
            .filter(|_| h.architecture.starts_with("arm")),
        ..Default::default()
    }
    .normalize()
}

struct EngineHost<'a> {
    engine: &'a Engine,
    store: Store,
    observer: &'a dyn Observer,
    pull: bool,
    config: crate::config::Config,
}

impl BuildHost for EngineHost<'_> {
    fn base_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<(ImageState, String), BuildError> {
        let base = |message: String| BuildError::Base {
            image: reference.to_string(),
            message,
        };
        let r = ImageRef::parse(reference).map_err(|e| base(e.to_string()))?;
        let find = || -> Result<Option<ImageRecord>, BuildError> {
            let records = crate::assess::find_records(&self.store, &r)?;
            let av: Vec<_> = records.iter().map(|r| r.platform.clone()).collect();
            Ok(Matcher::new(platform).best(&av).map(|i| records[i].clone()))
        };
        let mut record = if self.pull { None } else { find()? };
        if record.is_none() {
            let opts = PullOptions {
                platform: Some(platform.clone()),
                client: ClientOptions::from_config(&self.config, &[]),
                unpack: true,
                ..Default::default()
            };
            let policy = if self.pull {
                PullPolicy::Always
            } else {
                PullPolicy::Missing
            };
            let progress = self.observer.pull_progress();
            crate::registry::ensure_image(&self.store, &r, policy, &opts, progress.as_ref())
                .map_err(|e| base(format!("{e} (not in the store, and the pull failed)")))?;
            record = find()?;
        }
        let record =
            record.ok_or_else(|| base(format!("no {platform} image of it in the store")))?;
        let config = self.store.read_blob(&record.config_digest)?;
        let state = ImageState::from_config(&config, record.layers.clone(), platform)
            .map_err(|e| base(format!("its config is not JSON: {e}")))?;
        Ok((state, record.manifest_digest.to_string()))
    }

    fn run(
        &self,
        step: &RunStep<'_>,
        collect: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<i32, BuildError> {
        let runner = |e: crate::runtime::RuntimeError| BuildError::Runner(e.to_string());
        let mut config: oci_spec::image::ImageConfiguration =
            serde_json::from_value(step.config.clone())
                .map_err(|e| BuildError::Runner(format!("the image config cannot be read: {e}")))?;
        // The step's command replaces the image's entrypoint and command.
        if let Some(c) = config.config().clone() {
            let mut c = c;
            c.set_entrypoint(None);
            c.set_cmd(None);
            config.set_config(Some(c));
        }
        let image = ImageInput {
            name: "xrun-build".into(),
            config,
            layer_dirs: step.layer_dirs.clone(),
        };
        let host = Platform::host();
        let route = if step.platform.architecture == host.architecture {
            ExecRoute::Native
        } else {
            // A foreign platform's steps take the emulated route: refuse clearly when this
            // host has no usable qemu-user handler for it.
            crate::emulation::route::prepare(step.platform).map_err(|e| {
                BuildError::Runner(format!(
                    "RUN for {} needs emulation here: {e} (see `xrun binfmt status`)",
                    step.platform
                ))
            })?;
            ExecRoute::Emulated
        };
        let opts = RunOptions {
            command: step.argv.clone(),
            env: step.env.clone(),
            workdir: step.workdir.clone(),
            user: step.user.clone(),
            network: Network::None,
            route,
            labels: [("xrun.build".to_string(), "step".to_string())].into(),
            ..Default::default()
        };
        let c: Containers = self
            .engine
            .containers()
            .map_err(|e| BuildError::Runner(e.to_string()))?;
        let rec = lifecycle::create(&c, image, opts).map_err(runner)?;
        let id = rec.id.clone();
        // The step's output goes to its log; a relay hands it to the observer as it comes.
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let log = c.log_path(&id);
            let done = &done;
            let relay = s.spawn(move || relay_output(&log, done, self.observer));
            let r = lifecycle::run_logged(&c, &id, &BundleExtras::default(), &VmMachines);
            done.store(true, Ordering::SeqCst);
            relay.thread().unpark();
            let _ = relay.join();
            r
        })
        .map_err(runner)
        .and_then(|code| {
            if code == 0 {
                collect(&c.container_dir(&id).join("upper"))?;
            }
            Ok(code)
        });
        let _ = lifecycle::remove(&c, &id, true);
        result
    }

    fn progress(&self, line: &str) {
        self.observer.progress(line);
    }
}

/// Hands what a step's container writes to its log (`log`) to `observer`, as it arrives,
/// until `done` is set (then the rest).
fn relay_output(log: &Path, done: &AtomicBool, observer: &dyn Observer) {
    let mut pos = 0u64;
    let mut buf = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        if let Ok(mut f) = std::fs::File::open(log)
            && f.seek(SeekFrom::Start(pos)).is_ok()
        {
            let mut chunk = Vec::new();
            if f.read_to_end(&mut chunk).is_ok() {
                pos += chunk.len() as u64;
                buf.extend_from_slice(&chunk);
            }
        }
        if let Ok((records, used)) = crate::runtime::log::decode(&buf) {
            for r in records {
                observer.build_output(&r.data);
            }
            buf.drain(..used);
        }
        if finished {
            return;
        }
        // Woken early once the step ended.
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

/// The most a Dockerfile may hold.
pub const MAX_DOCKERFILE_BYTES: u64 = 4 << 20;

/// Reads the Dockerfile at `path`, at most [`MAX_DOCKERFILE_BYTES`].
fn read_dockerfile(path: &Path) -> Result<String, EngineError> {
    let cannot = |e: String| {
        EngineError::Invalid(format!(
            "cannot read the Dockerfile {}: {e} (give one with -f)",
            path.display()
        ))
    };
    let f = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCKERFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_DOCKERFILE_BYTES {
        return Err(EngineError::Invalid(format!(
            "the Dockerfile {} is larger than {} MiB",
            path.display(),
            MAX_DOCKERFILE_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))
}

/// A build whose context comes as a tar archive (the API's `POST /build`).
#[derive(Debug, Clone, Default)]
pub struct ArchiveBuildRequest {
    /// Everything but the context (`request.context` and `request.dockerfile` are set from
    /// the archive).
    pub request: BuildRequest,
    /// The Dockerfile's path inside the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// Bounds on the archive.
    pub limits: super::build_context::ContextLimits,
}

/// What [`Engine::prune_build_cache`] removed.
#[derive(Debug, Clone, Default)]
pub struct BuildCachePruned {
    /// The cache entries (step keys).
    pub entries: Vec<String>,
    /// Bytes freed: the entries' files and the layers only they kept.
    pub bytes: u64,
    /// Set when the store was busy and its layers could not be collected now.
    pub deferred: Option<String>,
}

impl Engine {
    /// Removes the build cache (`xrun builder prune`, `POST /build/prune`), then the layers
    /// no image uses any more (intermediate steps' layers).
    pub fn prune_build_cache(&self) -> Result<BuildCachePruned, EngineError> {
        let store = Store::open(self.root())?;
        let (entries, mut bytes) = crate::build::cache::Cache::open(store.root())
            .prune()
            .map_err(|e| EngineError::context("removing the build cache", e))?;
        let mut deferred = None;
        match store.prune() {
            Ok(r) => bytes += r.bytes,
            Err(crate::store::StoreError::Busy(why)) => deferred = Some(why),
            Err(e) => return Err(e.into()),
        }
        Ok(BuildCachePruned {
            entries,
            bytes,
            deferred,
        })
    }

    /// Builds from a context archive (see [`super::build_context`]): unpacked into a scratch
    /// directory of the store (removed afterwards), then [`Engine::build`]. A refused
    /// archive is an [`EngineError::Invalid`] and builds nothing.
    pub fn build_archive(
        &self,
        req: &ArchiveBuildRequest,
        archive: &mut dyn Read,
        observer: &dyn Observer,
    ) -> Result<BuildOutcome, EngineError> {
        let store = Store::open(self.root())?;
        let scratch = store.scratch_dir("build-context")?;
        let dir = scratch.path().join("context");
        std::fs::create_dir(&dir).map_err(|e| EngineError::context("the build context", e))?;
        super::build_context::unpack_context(archive, &dir, req.limits)?;
        let name = req.dockerfile.as_deref().unwrap_or("Dockerfile");
        let rel = super::build_context::clean_relative(name)
            .filter(|r| !r.as_os_str().is_empty())
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "dockerfile {name:?}: must be a path inside the build context"
                ))
            })?;
        let df = dir.join(&rel);
        // The Dockerfile itself must not be a link leading out of the context.
        let inside = std::fs::canonicalize(&df)
            .ok()
            .zip(std::fs::canonicalize(&dir).ok())
            .is_some_and(|(d, c)| d.starts_with(c) && d.is_file());
        if !inside {
            return Err(EngineError::Invalid(format!(
                "Cannot locate specified Dockerfile: {name}"
            )));
        }
        let mut inner = req.request.clone();
        inner.context = dir;
        inner.dockerfile = Some(df);
        self.build(&inner, observer)
    }

    /// Builds `req` (see the module doc); records the image under each tag. A failed build
    /// records nothing and leaves no container behind.
    pub fn build(
        &self,
        req: &BuildRequest,
        observer: &dyn Observer,
    ) -> Result<BuildOutcome, EngineError> {
        let ctx = Context::open(&req.context)?;
        let df_path = req
            .dockerfile
            .clone()
            .unwrap_or_else(|| ctx.dir().join("Dockerfile"));
        let text = read_dockerfile(&df_path)?;
        let file_name = df_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        let df = crate::build::parse(&text, &file_name)?;
        let tags: Vec<ImageRef> = req
            .tags
            .iter()
            .map(|t| ImageRef::parse(t))
            .collect::<Result<_, _>>()?;
        let store = Store::open(self.root())?;
        // No collection while new blobs are not yet referenced by a record.
        let _gc = store.lease()?;
        let mut platforms = req.platforms.clone();
        if platforms.is_empty() {
            platforms.push(default_build_platform());
        }
        let build_platform = default_build_platform();
        let host = EngineHost {
            engine: self,
            store: store.clone(),
            observer,
            pull: req.pull,
            config: self.config()?,
        };
        let counter = AtomicUsize::new(0);
        let show_platform = platforms.len() > 1;
        let build_one =
            |p: &Platform| -> Result<(ImageState, WrittenImage, ImageRequirements), BuildError> {
                let opts = BuildOptions {
                    file_name: file_name.clone(),
                    target: req.target.clone(),
                    build_args: req.build_args.clone(),
                    labels: req.labels.clone(),
                    no_cache: req.no_cache,
                    platform: p.clone(),
                    build_platform: build_platform.clone(),
                    epoch: req.epoch,
                    show_platform,
                };
                let state =
                    crate::build::build_stage_target(&df, &ctx, &store, &host, &opts, &counter)?;
                let written = write_image(&store, &state)?;
                let req = super::build_check::scan_result(&store, &state, observer)?;
                Ok((state, written, req))
            };
        // Platforms build concurrently when there is more than one core.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let results: Vec<Result<(ImageState, WrittenImage, ImageRequirements), BuildError>> =
            if platforms.len() > 1 && cores > 1 {
                std::thread::scope(|s| {
                    let handles: Vec<_> =
                        platforms.iter().map(|p| s.spawn(|| build_one(p))).collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(BuildError::Runner("a platform's build panicked".into()))
                            })
                        })
                        .collect()
                })
            } else {
                platforms.iter().map(build_one).collect()
            };
        let mut built = Vec::new();
        let mut scanned = Vec::new();
        for r in results {
            let (s, w, req) = r?;
            scanned.push((s.clone(), req));
            built.push((s, w));
        }
        // Before anything is recorded: a failed host check leaves no image.
        super::build_check::check_hosts(&req.host_profiles, &scanned)?;
        // One platform: the manifest; several: an index over them.
        let index = if built.len() > 1 {
            let manifests: Vec<_> = built
                .iter()
                .map(|(s, w)| {
                    let mut p =
                        json!({"architecture": s.platform.architecture, "os": s.platform.os});
                    if let Some(v) = &s.platform.variant {
                        p["variant"] = json!(v);
                    }
                    json!({
                        "mediaType": OCI_MANIFEST,
                        "digest": w.manifest_digest.to_string(),
                        "size": w.manifest_size,
                        "platform": p,
                    })
                })
                .collect();
            let bytes = serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
            )
            .expect("JSON serializes");
            let d = Digest::of(&bytes);
            store.put_blob(&d, &bytes)?;
            Some(d)
        } else {
            None
        };
        let mut records = Vec::new();
        let names: Vec<(String, Option<String>)> = if tags.is_empty() {
            vec![]
        } else {
            tags.iter()
                .map(|t| (t.name(), t.tag.clone().or_else(|| Some("latest".into()))))
                .collect()
        };
        for (name, tag) in &names {
            for (s, w) in &built {
                let rec = store.build_record(
                    name,
                    tag.as_deref(),
                    index.as_ref(),
                    &w.manifest_digest,
                    Some(&s.platform),
                )?;
                records.push(rec);
            }
        }
        if let Some(out) = &req.output {
            let recs = if records.is_empty() {
                built
                    .iter()
                    .map(|(s, w)| {
                        store.build_record(
                            "localhost/build",
                            Some("latest"),
                            index.as_ref(),
                            &w.manifest_digest,
                            Some(&s.platform),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                records.iter().take(built.len()).cloned().collect()
            };
            store
                .save_layout(&recs, out)
                .map_err(|e| EngineError::context(format!("--output {}", out.display()), e))?;
        }
        for rec in &records {
            store.record_image(rec)?;
        }
        Ok(BuildOutcome {
            images: built
                .iter()
                .map(|(s, w)| (s.platform.clone(), w.manifest_digest.clone()))
                .collect(),
            digest: index.unwrap_or_else(|| built[0].1.manifest_digest.clone()),
            records,
        })
    }
}
