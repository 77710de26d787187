//! `xrun check`: how would an image run here (and on other hosts), and why.
//! Owner: the kernelcheck stage (requirements) and the plan.
//!
//! The image comes from the store (pulled with `xrun pull` or loaded with `xrun load`), or,
//! with `--rootfs DIR`, from an unpacked directory. Each host (this one, unless `--no-local`,
//! plus every `--host-profile`) gets the platform it would select among the image's pulled
//! platforms, a route and reasons. Exit 0 when every host meets `--require`, 1 when one does
//! not, 125 on errors.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use xrun::assess::{self, GuestChoice};
use xrun::kernelcheck::HostProfile;
use xrun::kernelcheck::entrypoint::Override;
use xrun::kernelcheck::requirements::{ScanInput, scan};
use xrun::plan::RouteChoice;
use xrun::plan::report::{CheckReport, HostEntry, ImageEntry, REPORT_SCHEMA_VERSION, Require};
use xrun::platform::Platform;
use xrun::reference::ImageRef;
use xrun::store::{ImageRecord, Store};

use super::Global;

/// `xrun check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Check this platform of the image for every host (default: each host's own choice).
    #[arg(long)]
    pub platform: Option<String>,
    /// A host profile (`xrun host --format json`) to check against; repeatable.
    #[arg(long = "host-profile", value_name = "FILE")]
    pub host_profiles: Vec<PathBuf>,
    /// Leave this host out (only the `--host-profile`s).
    #[arg(long)]
    pub no_local: bool,
    /// The least route every host must get: native, emulated, vm or any.
    #[arg(long, default_value = "native")]
    pub require: Require,
    /// Force a route (auto, native, emulated, vm) as `xrun run --route` would.
    #[arg(long, default_value = "auto")]
    pub route: RouteChoice,
    /// Profile of the guest kernel the vm route boots (default for this host: its local
    /// guest's description, when one exists for the image's architecture).
    #[arg(long = "guest-profile", value_name = "FILE")]
    pub guest_profile: Option<PathBuf>,
    /// Check the vm route against this guest image (pulled when not in the store, as `xrun
    /// run --vm-kernel` would boot it; default: the config's `vm-kernel`, else the local
    /// guest).
    #[arg(
        long = "vm-kernel",
        value_name = "REF",
        conflicts_with = "guest_profile"
    )]
    pub vm_kernel: Option<String>,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Override the image's entrypoint (as `xrun run --entrypoint`).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Check an unpacked root file system directory instead of a stored image (IMAGE is then
    /// the directory; `--platform` gives its declared platform, default the host's).
    #[arg(long)]
    pub rootfs: bool,
    /// With `--rootfs`: the OCI image config (JSON) giving platform, labels and command.
    #[arg(long, value_name = "FILE", requires = "rootfs")]
    pub config: Option<PathBuf>,
    /// Image reference (or directory with `--rootfs`), then the command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [CMD]..."
    )]
    pub args: Vec<String>,
}

/// One host to check.
struct HostInput {
    profile: HostProfile,
    source: String,
    /// This machine (its local guest profiles the vm route when no `--guest-profile`).
    local: bool,
}

pub fn check(g: &Global, a: CheckArgs) -> anyhow::Result<u8> {
    if a.format != "table" && a.format != "json" {
        bail!("unknown --format {:?} (expected table or json)", a.format);
    }
    let image = a.args[0].clone();
    let cmd: Vec<String> = a.args[1..].to_vec();
    let ov = Override {
        entrypoint: a.entrypoint.clone().map(|e| vec![e]),
        cmd: (!cmd.is_empty()).then_some(cmd),
    };
    let wanted: Option<Platform> = a
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--platform")?;

    let mut hosts = Vec::new();
    if !a.no_local {
        hosts.push(HostInput {
            profile: assess::host_profile(),
            source: "this host".into(),
            local: true,
        });
    }
    for f in &a.host_profiles {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read host profile {}", f.display()))?;
        let profile: HostProfile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a host profile (xrun host --format json)",
                f.display()
            )
        })?;
        hosts.push(HostInput {
            profile,
            source: f.display().to_string(),
            local: false,
        });
    }
    if hosts.is_empty() {
        bail!("no host to check: drop --no-local or give --host-profile FILE");
    }
    let guest = match &a.guest_profile {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read guest profile {}", f.display()))?;
            Some(serde_json::from_str::<HostProfile>(&text).with_context(|| {
                format!(
                    "{} is not a host profile (xrun host --format json)",
                    f.display()
                )
            })?)
        }
        None => None,
    };
    // The vm route is checked against: the given guest profile; else the guest image
    // (`--vm-kernel`, the config's `vm-kernel`) for every host; else, for this host, the
    // local guest `xrun run` would boot (when there is one for the image's architecture);
    // else it is provisional (`guest-unprofiled`).
    let guest_image = match &guest {
        None => super::run::guest_image(
            &g.root,
            &xrun::config::Config::load()?,
            a.vm_kernel.as_deref(),
            xrun::registry::PullPolicy::Missing,
            false,
        )?,
        Some(_) => None,
    };
    let local_guest = match (&guest, &guest_image) {
        (Some(p), _) => GuestChoice::Given(Box::new(p.clone())),
        (None, Some(i)) => GuestChoice::Image(i.clone()),
        (None, None) => GuestChoice::Local(g.root.join("vm").join("guests")),
    };
    let other_guest = match (guest, guest_image) {
        (Some(p), _) => GuestChoice::Given(Box::new(p)),
        (None, Some(i)) => GuestChoice::Image(i),
        (None, None) => GuestChoice::None,
    };
    let decide = |h: &HostInput, req: &xrun::kernelcheck::ImageRequirements| {
        let choice = if h.local { &local_guest } else { &other_guest };
        assess::decide(&h.profile, req, a.route, choice)
            .map(|(v, _)| v)
            .map_err(anyhow::Error::new)
    };

    let mut images: Vec<ImageEntry> = Vec::new();
    let mut entries = Vec::new();
    if a.rootfs {
        let mut input = match &a.config {
            Some(f) => {
                let cfg = oci_spec::image::ImageConfiguration::from_file(f)
                    .with_context(|| format!("reading image config {}", f.display()))?;
                ScanInput::from_config(&cfg, HashMap::new(), vec![PathBuf::from(&image)])
            }
            None => ScanInput {
                platform: Platform::host(),
                layer_dirs: vec![PathBuf::from(&image)],
                ..Default::default()
            },
        };
        if let Some(p) = &wanted {
            input.platform = p.clone();
        }
        let platform = input.platform.clone();
        if !input.layer_dirs[0].is_dir() {
            bail!("--rootfs {image}: not a directory");
        }
        let req = scan(&input, &ov).with_context(|| format!("scanning {image}"))?;
        for h in &hosts {
            let verdict = decide(h, &req)?;
            entries.push(entry(h, Some(platform.to_string()), verdict, a.require));
        }
        images.push(ImageEntry {
            platform: platform.to_string(),
            manifest_digest: String::new(),
            requirements: req,
        });
    } else {
        let store = Store::open(&g.root).context("opening the store")?;
        let r = ImageRef::parse(&image)?;
        let records = assess::find_records(&store, &r)?;
        if records.is_empty() {
            bail!("image {image} is not in the store: pull it first (xrun pull {image})");
        }
        let available: Vec<Platform> = records.iter().map(|r| r.platform.clone()).collect();
        let forced = match &wanted {
            Some(p) => match xrun::platform::Matcher::new(p).best(&available) {
                Some(i) => Some(i),
                None => bail!(
                    "platform {p} of {image} is not in the store (pulled: {}): xrun pull --platform {p} {image}",
                    xrun::platform::describe(&available)
                ),
            },
            None => None,
        };
        let mut reqs: HashMap<usize, usize> = HashMap::new(); // record index → images index
        for h in &hosts {
            let pick = match forced {
                Some(i) => Ok(i),
                None => xrun::plan::report::select_platform(&h.profile, &available),
            };
            let (platform, verdict) = match pick {
                Err(v) => (None, v),
                Ok(i) => {
                    let at = match reqs.get(&i) {
                        Some(at) => *at,
                        None => {
                            let req = requirements(&store, &records[i], &ov)?;
                            images.push(ImageEntry {
                                platform: records[i].platform.to_string(),
                                manifest_digest: records[i].manifest_digest.to_string(),
                                requirements: req,
                            });
                            reqs.insert(i, images.len() - 1);
                            images.len() - 1
                        }
                    };
                    let v = decide(h, &images[at].requirements)?;
                    (Some(records[i].platform.to_string()), v)
                }
            };
            entries.push(entry(h, platform, verdict, a.require));
        }
    }
    let report = CheckReport {
        schema_version: REPORT_SCHEMA_VERSION,
        image,
        require: a.require,
        ok: entries.iter().all(|e| e.meets_require),
        images,
        hosts: entries,
    };
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", xrun::plan::report::render_table(&report));
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn entry(
    h: &HostInput,
    platform: Option<String>,
    verdict: xrun::plan::Verdict,
    require: Require,
) -> HostEntry {
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
) -> anyhow::Result<xrun::kernelcheck::ImageRequirements> {
    let img = store
        .image(rec)
        .with_context(|| format!("unpacking {} ({})", rec.name, rec.platform))?;
    assess::requirements(store, &img, ov).with_context(|| format!("scanning {}", rec.name))
}
