//! `xrun run`, `xrun create`: pull per `--pull`, take the route `xrun check` names (the same
//! `xrun::assess`), then the runtime, the emulated route or the vm route.

use std::path::PathBuf;

use anyhow::Context as _;
use xrun::runtime::{
    self, BundleExtras, Containers, ImageInput, RunOptions, RuntimeError, Volume, lifecycle,
    options,
};

use xrun::assess;
use xrun::kernelcheck::entrypoint::Override;
use xrun::plan::RouteChoice;
use xrun::registry::{ClientOptions, Progress, PullOptions, PullPolicy, progress};

use super::Global;

/// Flags shared by `run` and `create` (Docker's meanings).
#[derive(Debug, clap::Args)]
pub struct ContainerFlags {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass xrun's own).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP] (names or ids).
    #[arg(short, long, allow_hyphen_values = true)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname (default: the short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: none (default) or host.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Mount the root file system read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run xrun's init as PID 1 (reaps zombies, forwards signals).
    #[arg(long)]
    pub init: bool,
    /// Image platform (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull policy: missing, always, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// An external OCI runtime (runc, crun) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Quiet pull output (and no emulation notice).
    #[arg(short, long)]
    pub quiet: bool,
    /// Route: auto (native, else emulated, else vm), native, emulated or vm.
    #[arg(long, default_value = "auto", value_name = "ROUTE")]
    pub route: String,
    /// The VM guest for the vm route: an image (as `ci/guest-image` builds and `skopeo copy
    /// --all` publishes) pulled per `--pull` for the image's architecture (default: the
    /// config's `vm-kernel`, else the local guest).
    #[arg(long = "vm-kernel", value_name = "REF")]
    pub vm_kernel: Option<String>,
    /// Print the plan (image, platform, route, emulator) and exit without creating anything.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Use a directory as the root file system instead of an image (Podman's --rootfs);
    /// then every positional argument is the command.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// The image, then the command and its arguments (everything after the image belongs
    /// to the command, flags included; an unknown flag before the image is an error, not an
    /// image name).
    #[arg(
        value_name = "IMAGE [COMMAND]...",
        required = true,
        trailing_var_arg = true
    )]
    pub image_and_command: Vec<String>,
}

/// `xrun run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// `xrun create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// Prints a runtime error as one line and gives its exit code (125/126/127).
pub fn fail(e: RuntimeError) -> anyhow::Result<u8> {
    eprintln!("xrun: {}", e.to_string().replace('\n', " "));
    Ok(e.exit_code())
}

/// Pull progress for `run`/`create`: Docker's plain lines, all on stderr (stdout belongs to
/// the container).
pub(super) struct StderrLines;

impl Progress for StderrLines {
    fn start(&self, tag: &str, repository: &str) {
        eprintln!("{tag}: Pulling from {repository}");
    }
    fn layer_exists(&self, layer: &xrun::digest::Digest) {
        eprintln!("{}: Already exists", layer.short());
    }
    fn layer_done(&self, layer: &xrun::digest::Digest) {
        eprintln!("{}: Pull complete", layer.short());
    }
    fn finish(&self, reference: &str, digest: &xrun::digest::Digest, new: bool) {
        eprintln!("Digest: {digest}");
        if new {
            eprintln!("Status: Downloaded newer image for {reference}");
        } else {
            eprintln!("Status: Image is up to date for {reference}");
        }
    }
}

/// The image to run, its command, and (for a stored image) its route; `Err` is a refusal.
struct Resolved {
    image: ImageInput,
    command: Vec<String>,
    routed: Option<super::route::Routed>,
    /// The diff_ids to lease for the container (stored images).
    diff_ids: Vec<xrun::digest::Digest>,
    /// Holds off garbage collection until the container's snapshot lease is written.
    _gc: Option<xrun::store::Lease>,
}

fn resolve_image(
    g: &Global,
    f: &ContainerFlags,
) -> anyhow::Result<Result<Resolved, super::route::Refusal>> {
    if let Some(dir) = &f.rootfs {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("--rootfs {}", dir.display()))?;
        return Ok(Ok(Resolved {
            image: ImageInput::from_rootfs(dir),
            command: f.image_and_command.clone(),
            routed: None,
            diff_ids: Vec::new(),
            _gc: None,
        }));
    }
    let image_name = &f.image_and_command[0];
    let command = f.image_and_command[1..].to_vec();
    let policy: PullPolicy = f.pull.parse().map_err(|_| {
        anyhow::anyhow!("invalid --pull {:?}: use missing, always or never", f.pull)
    })?;
    let choice: RouteChoice = f.route.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let r = xrun::reference::ImageRef::parse(image_name)?;
    let wanted: Option<xrun::platform::Platform> =
        f.platform.as_deref().map(str::parse).transpose()?;
    let store = xrun::store::Store::open(&g.root)?;
    let config = xrun::config::Config::load()?;
    let vm_kernel = guest_image(&g.root, &config, f.vm_kernel.as_deref(), policy, f.quiet)?;
    let mut records = assess::find_records(&store, &r)?;
    let has_wanted = |records: &[xrun::store::ImageRecord]| match &wanted {
        None => !records.is_empty(),
        Some(p) => {
            let av: Vec<_> = records.iter().map(|r| r.platform.clone()).collect();
            xrun::platform::Matcher::new(p).best(&av).is_some()
        }
    };
    let pull = match policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => !has_wanted(&records),
        PullPolicy::Never => false,
    };
    if pull {
        let opts = PullOptions {
            platform: wanted.clone(),
            client: ClientOptions::from_config(&config, &[]),
            unpack: true,
            ..Default::default()
        };
        let progress: Box<dyn Progress> = if f.quiet {
            Box::new(progress::Silent)
        } else {
            Box::new(StderrLines)
        };
        xrun::registry::ensure_image(&store, &r, policy, &opts, progress.as_ref())
            .map_err(|e| anyhow::anyhow!("pulling {image_name}: {e}"))?;
        records = assess::find_records(&store, &r)?;
    }
    if !has_wanted(&records) {
        let what = match &wanted {
            Some(p) => format!("platform {p} of {image_name}"),
            None => format!("image {image_name}"),
        };
        anyhow::bail!(
            "no such {what} in the store{}: run `xrun pull {}{image_name}` first",
            if policy == PullPolicy::Never {
                " (--pull never)"
            } else {
                ""
            },
            wanted
                .as_ref()
                .map(|p| format!("--platform {p} "))
                .unwrap_or_default()
        );
    }
    tracing::debug!("phase: image found");
    // A native verdict never depends on the emulation facts: gather them only when needed.
    let native_first = matches!(choice, RouteChoice::Auto | RouteChoice::Native);
    let mut host = if native_first {
        assess::host_profile_without_emulation()
    } else {
        assess::host_profile()
    };
    tracing::debug!("phase: host profile gathered");
    let available: Vec<_> = records.iter().map(|r| r.platform.clone()).collect();
    let index = match &wanted {
        Some(p) => xrun::platform::Matcher::new(p)
            .best(&available)
            .expect("checked above"),
        None => match xrun::plan::report::select_platform(&host, &available) {
            Ok(i) => i,
            Err(v) => {
                let req = xrun::kernelcheck::ImageRequirements::default();
                return Ok(Err(super::route::refusal(image_name, &v, &req, choice)));
            }
        },
    };
    let record = &records[index];
    // No collection between unpacking the layers and leasing them for the container.
    let gc = store.lease()?;
    let image = store.image(record)?;
    let ov = Override {
        entrypoint: f.entrypoint.clone().map(|e| vec![e]),
        cmd: (!command.is_empty()).then(|| command.clone()),
    };
    let mut routed = super::route::route_for(
        image_name,
        &store,
        &image,
        &ov,
        &host,
        choice,
        f.dry_run,
        vm_kernel.clone(),
    )?;
    if native_first && !matches!(&routed, Ok(r) if r.route == xrun::plan::Route::Native) {
        host = assess::host_profile();
        routed = super::route::route_for(
            image_name, &store, &image, &ov, &host, choice, f.dry_run, vm_kernel,
        )?;
    }
    let routed = match routed {
        Ok(r) => r,
        Err(refusal) => return Ok(Err(refusal)),
    };
    tracing::debug!("phase: routed");
    Ok(Ok(Resolved {
        image: ImageInput::from_store(image_name, &image),
        command,
        routed: Some(routed),
        diff_ids: record.layers.iter().map(|l| l.diff_id.clone()).collect(),
        _gc: Some(gc),
    }))
}

/// The guest image `--vm-kernel` (else the config's `vm-kernel`) names, if any; pulled
/// later, only when the vm route is considered.
pub(super) fn guest_image(
    root: &std::path::Path,
    config: &xrun::config::Config,
    flag: Option<&str>,
    policy: PullPolicy,
    quiet: bool,
) -> anyhow::Result<Option<std::sync::Arc<xrun::vm::GuestImage>>> {
    let (r, from) = match (flag, config.vm_kernel.as_deref()) {
        (Some(r), _) => (r, "--vm-kernel".to_string()),
        (None, Some(r)) => (
            r,
            format!("vm-kernel in {}", xrun::config::Config::path().display()),
        ),
        (None, None) => return Ok(None),
    };
    let reference = xrun::reference::ImageRef::parse(r).with_context(|| format!("{from} {r}"))?;
    let progress: Box<dyn Progress> = if quiet {
        Box::new(progress::Silent)
    } else {
        Box::new(StderrLines)
    };
    Ok(Some(std::sync::Arc::new(xrun::vm::GuestImage::new(
        xrun::store::Store::open(root)?,
        reference,
        policy,
        ClientOptions::from_config(config, &[]),
        progress,
    ))))
}

fn options(f: &ContainerFlags, command: Vec<String>) -> Result<RunOptions, RuntimeError> {
    let mut env = Vec::new();
    for file in &f.env_file {
        env.extend(options::read_env_file(file)?);
    }
    env.extend(f.env.iter().filter_map(|e| options::expand_env(e)));
    Ok(RunOptions {
        name: f.name.clone(),
        command,
        entrypoint: f.entrypoint.clone(),
        env,
        volumes: f
            .volume
            .iter()
            .map(|v| Volume::parse(v))
            .collect::<Result<_, _>>()?,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        network: f.network.parse()?,
        memory: f.memory.as_deref().map(options::parse_memory).transpose()?,
        cpus: f.cpus,
        pids_limit: f.pids_limit,
        read_only: f.read_only,
        init: f.init,
        tty: f.tty,
        interactive: f.interactive,
        auto_remove: f.rm,
        runtime: f.runtime.clone(),
        no_seccomp: false,
        route: Default::default(),
    })
}

/// What [`create_record`] did.
enum Created {
    /// A container record (to start).
    Container(Containers, String),
    /// Nothing to start: `--dry-run` printed the plan, or a refusal (its code).
    Done(u8),
}

/// Creates the container record (see [`Created`]).
fn create_record(g: &Global, f: &ContainerFlags) -> anyhow::Result<Result<Created, RuntimeError>> {
    let resolved = match resolve_image(g, f)? {
        Ok(r) => r,
        Err(refusal) => {
            eprintln!("xrun: {}", refusal.0);
            return Ok(Ok(Created::Done(125)));
        }
    };
    let Resolved {
        image,
        command,
        routed,
        diff_ids,
        _gc,
    } = resolved;
    let mut opts = match options(f, command) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let emulated = routed.as_ref().and_then(|r| r.emulated.as_ref());
    if emulated.is_some() {
        opts.route = runtime::options::ExecRoute::Emulated;
    }
    let vm = routed.as_ref().and_then(|r| r.vm.as_ref());
    if vm.is_some() {
        opts.route = runtime::options::ExecRoute::Vm;
        if !f.dry_run
            && let Some(why) = super::route::vm_unsupported(&opts)
        {
            return Ok(Err(RuntimeError::BadInput(why)));
        }
    }
    if f.dry_run {
        println!("image: {}", image.name);
        if let Some(r) = &routed {
            println!("platform: {}", r.platform);
            println!("host: {}", xrun::platform::Platform::host());
            for line in super::route::describe(r) {
                println!("{line}");
            }
        }
        println!(
            "command: {}",
            runtime::spec::command(&image, &opts).join(" ")
        );
        let unrunnable = routed
            .as_ref()
            .is_some_and(|r| r.route == xrun::plan::Route::Unrunnable);
        return Ok(Ok(Created::Done(if unrunnable { 125 } else { 0 })));
    }
    if let Some(r) = &routed
        && !f.quiet
        && let Some(line) = super::route::notice(r)
    {
        eprintln!("{line}");
    }
    let c = match Containers::open(&g.root) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    lifecycle::cleanup_stale(&c);
    let launch_input = vm.map(|_| (image.clone(), opts.clone()));
    let id = match lifecycle::create(&c, image, opts) {
        Ok(r) => r.id,
        Err(e) => return Ok(Err(e)),
    };
    if let (Some(vm), Some((image, opts))) = (vm, launch_input) {
        // What `start` needs to boot the VM again, next to the record.
        let saved = super::route::vm_launch(vm, &image, &opts, &id[..12])
            .and_then(|l| Ok(l.save(&c.container_dir(&id))?));
        if let Err(e) = saved {
            let _ = lifecycle::remove(&c, &id, true);
            return Err(e.context("recording the VM of the container"));
        }
    }
    // A guest pulled from a registry is a layer snapshot of the store: leased too, so the
    // container boots again after `rmi` of the guest image.
    let guest_dir = vm.and_then(|v| v.guest.as_ref()).map(|gu| gu.dir.clone());
    let mut diff_ids = diff_ids;
    if let Some(d) = guest_dir
        .as_deref()
        .and_then(|d| guest_snapshot(&g.root, d))
    {
        diff_ids.push(d);
    }
    if !diff_ids.is_empty() {
        // Before anything is mounted: prune/rmi keep these snapshots until `rm`.
        let store = xrun::store::Store::open(&g.root)?;
        if let Err(e) = store.lease_snapshots(&id, &diff_ids) {
            let _ = lifecycle::remove(&c, &id, true);
            return Err(anyhow::anyhow!(e).context("leasing the image's layers"));
        }
    }
    drop(_gc);
    tracing::debug!("phase: container recorded");
    Ok(Ok(Created::Container(c, id)))
}

/// The diff_id of the store's layer snapshot `dir` is, if it is one (`<root>/snapshots/<hex>`).
fn guest_snapshot(root: &std::path::Path, dir: &std::path::Path) -> Option<xrun::digest::Digest> {
    let snapshots = std::fs::canonicalize(root.join("snapshots")).ok()?;
    let dir = std::fs::canonicalize(dir).ok()?;
    if dir.parent()? != snapshots {
        return None;
    }
    format!("sha256:{}", dir.file_name()?.to_str()?)
        .parse()
        .ok()
}

/// `xrun run`.
pub fn run(g: &Global, a: RunArgs) -> anyhow::Result<u8> {
    tracing::debug!("phase: run");
    if !a.detach
        && let Err(e) = runtime::seal::ensure_sealed()
    {
        return fail(e);
    }
    tracing::debug!("phase: sealed");
    let (c, id) = match create_record(g, &a.flags)? {
        Ok(Created::Container(c, id)) => (c, id),
        Ok(Created::Done(code)) => return Ok(code),
        Err(e) => return fail(e),
    };
    if a.detach {
        if let Err(e) = lifecycle::start_detached(&c, &g.root, &id, true) {
            return fail(e);
        }
        println!("{id}");
        return Ok(0);
    }
    match lifecycle::run_attached(
        &c,
        &id,
        &BundleExtras::default(),
        true,
        &super::route::VmMachines,
    ) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => fail(e),
    }
}

/// `xrun create`.
pub fn create(g: &Global, a: CreateArgs) -> anyhow::Result<u8> {
    match create_record(g, &a.flags)? {
        Ok(Created::Container(_, id)) => {
            println!("{id}");
            Ok(0)
        }
        Ok(Created::Done(code)) => Ok(code),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::guest_snapshot;

    #[test]
    fn a_guest_in_a_store_snapshot_is_leased_by_its_diff_id() {
        let root = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let snap = root.path().join("snapshots").join(&hex);
        std::fs::create_dir_all(&snap).unwrap();
        let d = guest_snapshot(root.path(), &snap).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        let elsewhere = root.path().join("guest");
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert!(guest_snapshot(root.path(), &elsewhere).is_none());
        assert!(guest_snapshot(root.path(), &root.path().join("snapshots/x")).is_none());
    }
}
