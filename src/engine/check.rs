//! [`Engine::check`]: the pre-flight. How would an image run here (and on other hosts), and
//! why: each host gets the platform it would select among the image's stored platforms, a
//! route and reasons, through the same `assess`/`plan` functions a run uses.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::assess::{self, GuestChoice};
use crate::kernelcheck::entrypoint::Override;
use crate::kernelcheck::requirements::{ScanInput, scan};
use crate::kernelcheck::{HostProfile, ImageRequirements};
use crate::plan::report::{CheckReport, HostEntry, ImageEntry, REPORT_SCHEMA_VERSION, Require};
use crate::plan::{RouteChoice, Verdict};
use crate::platform::{Matcher, Platform};
use crate::reference::ImageRef;
use crate::registry::{ClientOptions, PullOptions, PullPolicy};
use crate::store::{ImageRecord, Store};

use super::resolve::guest_image;
use super::{Engine, EngineError, Observer};

/// A pre-flight request (`xrun check`).
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// The image reference, or with [`CheckRequest::rootfs`] the directory.
    pub image: String,
    /// The command after the image (overrides the image's Cmd).
    pub command: Vec<String>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Check this platform of the image for every host (default: each host's own choice).
    pub platform: Option<Platform>,
    /// Host profiles (`xrun host --format json` files) to check against.
    pub host_profiles: Vec<PathBuf>,
    /// Leave this host out.
    pub no_local: bool,
    /// The least route every host must get.
    pub require: Require,
    /// The route asked for.
    pub route: RouteChoice,
    /// Profile of the guest kernel the vm route boots.
    pub guest_profile: Option<PathBuf>,
    /// The guest image the vm route would boot.
    pub vm_kernel: Option<String>,
    /// `image` is an unpacked root file system directory.
    pub rootfs: bool,
    /// With `rootfs`: the OCI image config (JSON) giving platform, labels and command.
    pub config: Option<PathBuf>,
    /// Whether a stored image that lacks a platform the hosts need is pulled
    /// ([`PullPolicy::Missing`], the default of `xrun check`) or not ([`PullPolicy::Never`],
    /// `--no-pull`).
    pub pull: PullPolicy,
}

/// The profile files `paths` name: a file as is; a directory stands for every `*.json` in it,
/// sorted by name (a fleet). A directory without any is an error.
pub fn expand_profile_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, EngineError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| {
            EngineError::context(
                format!("cannot read host profile directory {}", p.display()),
                e,
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "json") && f.is_file())
            .collect();
        if files.is_empty() {
            return Err(EngineError::Invalid(format!(
                "host profile directory {} has no *.json profiles: write them with `xrun host --format json > {}/NAME.json`",
                p.display(),
                p.display()
            )));
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// One host to check.
struct HostInput {
    profile: HostProfile,
    source: String,
    /// This machine (its local guest profiles the vm route when no guest profile is given).
    local: bool,
}

/// Reads a host profile file (`what`: "host" or "guest", for the message).
pub(super) fn read_profile(f: &std::path::Path, what: &str) -> Result<HostProfile, EngineError> {
    let text = std::fs::read_to_string(f).map_err(|e| {
        EngineError::context(format!("cannot read {what} profile {}", f.display()), e)
    })?;
    serde_json::from_str(&text).map_err(|e| {
        EngineError::context(
            format!(
                "{} is not a host profile (xrun host --format json)",
                f.display()
            ),
            e,
        )
    })
}

impl Engine {
    /// Runs the pre-flight of `req` (see the module doc); a guest image it needs is pulled
    /// when missing, reporting to `observer`.
    pub fn check(
        &self,
        req: &CheckRequest,
        observer: &dyn Observer,
    ) -> Result<CheckReport, EngineError> {
        let image = req.image.clone();
        let ov = Override {
            entrypoint: req.entrypoint.clone().map(|e| vec![e]),
            cmd: (!req.command.is_empty()).then(|| req.command.clone()),
        };
        let wanted = req.platform.as_ref();

        let mut hosts = Vec::new();
        if !req.no_local {
            hosts.push(HostInput {
                profile: assess::host_profile(),
                source: "this host".into(),
                local: true,
            });
        }
        for f in &expand_profile_paths(&req.host_profiles)? {
            hosts.push(HostInput {
                profile: read_profile(f, "host")?,
                source: f.display().to_string(),
                local: false,
            });
        }
        if hosts.is_empty() {
            return Err(EngineError::Invalid(
                "no host to check: drop --no-local or give --host-profile FILE".into(),
            ));
        }
        let guest = req
            .guest_profile
            .as_deref()
            .map(|f| read_profile(f, "guest"))
            .transpose()?;
        // The vm route is checked against: the given guest profile; else the guest image
        // (`--vm-kernel`, the config's `vm-kernel`) for every host; else, for this host, the
        // local guest a run would boot (when there is one for the image's architecture), and
        // for profile hosts the default guest (the same guest files, whatever qemu this
        // machine has); else it is provisional (`guest-unprofiled`).
        let guest_image = match &guest {
            None => guest_image(
                self.root(),
                &self.config()?,
                req.vm_kernel.as_deref(),
                PullPolicy::Missing,
                observer,
            )?,
            Some(_) => None,
        };
        let local_guest = match (&guest, &guest_image) {
            (Some(p), _) => GuestChoice::Given(Box::new(p.clone())),
            (None, Some(i)) => GuestChoice::Image(i.clone()),
            (None, None) => GuestChoice::Local(self.root().join("vm").join("guests")),
        };
        let other_guest = match (guest, guest_image) {
            (Some(p), _) => GuestChoice::Given(Box::new(p)),
            (None, Some(i)) => GuestChoice::Image(i),
            (None, None) => GuestChoice::Default(self.root().join("vm").join("guests")),
        };
        let decide = |h: &HostInput, ir: &ImageRequirements| -> Result<Verdict, EngineError> {
            let choice = if h.local { &local_guest } else { &other_guest };
            Ok(assess::decide(&h.profile, ir, req.route, choice).map(|(v, _)| v)?)
        };

        let mut images: Vec<ImageEntry> = Vec::new();
        let mut entries = Vec::new();
        if req.rootfs {
            let mut input = match &req.config {
                Some(f) => {
                    let cfg = oci_spec::image::ImageConfiguration::from_file(f).map_err(|e| {
                        EngineError::context(format!("reading image config {}", f.display()), e)
                    })?;
                    ScanInput::from_config(&cfg, HashMap::new(), vec![PathBuf::from(&image)])
                }
                None => ScanInput {
                    platform: Platform::host(),
                    layer_dirs: vec![PathBuf::from(&image)],
                    ..Default::default()
                },
            };
            if let Some(p) = wanted {
                input.platform = p.clone();
            }
            let platform = input.platform.clone();
            if !input.layer_dirs[0].is_dir() {
                return Err(EngineError::Invalid(format!(
                    "--rootfs {image}: not a directory"
                )));
            }
            let ir = scan(&input, &ov)
                .map_err(|e| EngineError::context(format!("scanning {image}"), e))?;
            for h in &hosts {
                let verdict = decide(h, &ir)?;
                entries.push(entry(h, Some(platform.to_string()), verdict, req.require));
            }
            images.push(ImageEntry {
                platform: platform.to_string(),
                manifest_digest: String::new(),
                requirements: ir,
            });
        } else {
            let store = Store::open(self.root())
                .map_err(|e| EngineError::context("opening the store", e))?;
            let r = ImageRef::parse(&image)?;
            let mut records = assess::find_records(&store, &r)?;
            if req.pull == PullPolicy::Missing {
                let wanted_platforms: Vec<Platform> = match wanted {
                    Some(p) => vec![p.clone()],
                    None => {
                        let mut v: Vec<Platform> = Vec::new();
                        for h in &hosts {
                            if !v.contains(&h.profile.platform) {
                                v.push(h.profile.platform.clone());
                            }
                        }
                        v
                    }
                };
                if pull_missing(self, &store, &r, &records, &wanted_platforms, observer)? {
                    records = assess::find_records(&store, &r)?;
                }
            }
            if records.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "image {image} is not in the store: pull it first (xrun pull {image}), or drop --no-pull"
                )));
            }
            let available: Vec<Platform> = records.iter().map(|r| r.platform.clone()).collect();
            let forced = match wanted {
                Some(p) => match Matcher::new(p).best(&available) {
                    Some(i) => Some(i),
                    None => {
                        return Err(EngineError::NotFound(format!(
                            "platform {p} of {image} is not in the store (pulled: {}): xrun pull --platform {p} {image}",
                            crate::platform::describe(&available)
                        )));
                    }
                },
                None => None,
            };
            let mut reqs: HashMap<usize, usize> = HashMap::new(); // record index → images index
            for h in &hosts {
                let pick = match forced {
                    Some(i) => Ok(i),
                    None => crate::plan::report::select_platform(&h.profile, &available),
                };
                let (platform, verdict) = match pick {
                    Err(v) => (None, v),
                    Ok(i) => {
                        let at = match reqs.get(&i) {
                            Some(at) => *at,
                            None => {
                                let ir = requirements(&store, &records[i], &ov)?;
                                images.push(ImageEntry {
                                    platform: records[i].platform.to_string(),
                                    manifest_digest: records[i].manifest_digest.to_string(),
                                    requirements: ir,
                                });
                                reqs.insert(i, images.len() - 1);
                                images.len() - 1
                            }
                        };
                        let v = decide(h, &images[at].requirements)?;
                        (Some(records[i].platform.to_string()), v)
                    }
                };
                entries.push(entry(h, platform, verdict, req.require));
            }
        }
        Ok(CheckReport {
            schema_version: REPORT_SCHEMA_VERSION,
            image,
            require: req.require,
            ok: entries.iter().all(|e| e.meets_require),
            images,
            hosts: entries,
        })
    }
}

/// Pulls the platforms of `platforms` that none of `records` suits (as `xrun run --pull
/// missing` would for each host): `Ok(true)` when something was pulled. A platform the image
/// does not offer is skipped (that host then gets the selection rules' verdict); when nothing
/// is stored and every pull failed, the first failure is the error.
fn pull_missing(
    engine: &Engine,
    store: &Store,
    r: &ImageRef,
    records: &[ImageRecord],
    platforms: &[Platform],
    observer: &dyn Observer,
) -> Result<bool, EngineError> {
    let available: Vec<Platform> = records.iter().map(|r| r.platform.clone()).collect();
    let missing: Vec<&Platform> = platforms
        .iter()
        .filter(|p| Matcher::new(p).best(&available).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let config = engine.config()?;
    let mut pulled = false;
    let mut first_error = None;
    for p in missing {
        let opts = PullOptions {
            platform: Some(p.clone()),
            client: ClientOptions::from_config(&config, &[]),
            unpack: true,
            ..Default::default()
        };
        let progress = observer.pull_progress();
        match crate::registry::ensure_image(store, r, PullPolicy::Missing, &opts, progress.as_ref())
        {
            Ok(_) => pulled = true,
            Err(error) => {
                tracing::debug!("check: pulling {r} for {p}: {error}");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if !pulled && records.is_empty() => Err(EngineError::Pull {
            image: r.to_string(),
            error,
        }),
        _ => Ok(pulled),
    }
}

fn entry(h: &HostInput, platform: Option<String>, verdict: Verdict, require: Require) -> HostEntry {
    HostEntry {
        name: h.profile.name.clone(),
        source: h.source.clone(),
        host_platform: h.profile.platform.to_string(),
        platform,
        meets_require: require.met_by(&verdict.route),
        verdict,
    }
}

/// One stored image's requirements (cached in the store by manifest and command).
fn requirements(
    store: &Store,
    rec: &ImageRecord,
    ov: &Override,
) -> Result<ImageRequirements, EngineError> {
    let img = store.image(rec).map_err(|e| {
        EngineError::context(format!("unpacking {} ({})", rec.name, rec.platform), e)
    })?;
    assess::requirements(store, &img, ov)
        .map_err(|e| EngineError::context(format!("scanning {}", rec.name), e))
}
