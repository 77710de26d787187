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
use crate::registry::PullPolicy;
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
        for f in &req.host_profiles {
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
        // local guest a run would boot (when there is one for the image's architecture);
        // else it is provisional (`guest-unprofiled`).
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
            (None, None) => GuestChoice::None,
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
            let records = assess::find_records(&store, &r)?;
            if records.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "image {image} is not in the store: pull it first (xrun pull {image})"
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
