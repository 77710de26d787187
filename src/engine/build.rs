//! [`Engine::build`]: a Dockerfile and a context into an image in the store (one platform,
//! or several under one OCI index). The build stage ([`crate::build`]) runs the steps; the
//! engine gives it base images (found in the store or pulled, as `run` does) and runs each
//! `RUN` as a container through the runtime — natively, or emulated for a foreign platform,
//! with no network (`--network none` semantics) — and records the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

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
        let result = lifecycle::run_attached(&c, &id, &BundleExtras::default(), true, &VmMachines)
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

impl Engine {
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
        let text = std::fs::read_to_string(&df_path).map_err(|e| {
            EngineError::Invalid(format!(
                "cannot read the Dockerfile {}: {e} (give one with -f)",
                df_path.display()
            ))
        })?;
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
