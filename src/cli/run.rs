//! `xrun run`, `xrun create`: the flags become the engine's [`ContainerSpec`]; the engine
//! pulls per `--pull`, takes the route `xrun check` names and records the container; this
//! file prints what it did, then starts it (detached, or attached to this terminal).

use std::path::PathBuf;

use xrun::engine::{
    AttachOptions, ContainerSpec, CreateOutcome, DryRun, Engine, EngineError, ImageSource, Observer,
};
use xrun::network::NetOptions;
use xrun::registry::{Progress, progress};
use xrun::runtime::{RunOptions, RuntimeError, Volume, options};

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
    /// Set a label on the container (KEY=VALUE).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
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
    /// Network: bridge (default), none, host, NAME (a user network) or container:NAME.
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// The container's IPv4 address on a user network.
    #[arg(long)]
    pub ip: Option<String>,
    /// A network-scoped alias (user networks).
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a port: [IP:][HOST:]CONTAINER[/tcp|udp] (IPv4 only).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// A DNS server for the container.
    #[arg(long)]
    pub dns: Vec<String>,
    /// A DNS search domain.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolver option (resolv.conf `options`).
    #[arg(long = "dns-option", value_name = "OPT")]
    pub dns_option: Vec<String>,
    /// Add a line to /etc/hosts: HOST:IP (IP may be host-gateway).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Limit the container's outgoing bandwidth (e.g. 10mbit, 1gbit, 2mbps).
    #[arg(long = "egress-rate", value_name = "RATE")]
    pub egress_rate: Option<String>,
    /// Limit the container's incoming bandwidth (e.g. 10mbit, 1gbit, 2mbps).
    #[arg(long = "ingress-rate", value_name = "RATE")]
    pub ingress_rate: Option<String>,
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
    /// Mount a tmpfs (PATH[:OPTIONS], e.g. /run:size=64m).
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
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
    /// --all` publishes) pulled per `--pull` for the image's architecture, or a local guest
    /// by path or name (`debian`: the Debian cloud kernel guest) (default: the config's
    /// `vm-kernel`, else the local guest, xrun's own kernel).
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
    /// With -it: the key sequence that detaches from the container and leaves it running
    /// (Docker's syntax; empty: none).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = xrun::engine::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
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
    eprintln!(
        "xrun: {}",
        super::hints::with_hint(e.to_string().replace('\n', " "))
    );
    Ok(e.exit_code())
}

/// Gives an engine error to the user: runtime errors and refusals as one line with their
/// exit code; the others to `main` (one line, 125).
pub fn engine_failure(e: EngineError) -> anyhow::Result<u8> {
    match e {
        EngineError::Runtime(e) => fail(e),
        EngineError::Refused(line) => {
            eprintln!("xrun: {line}");
            Ok(super::EXIT_XRUN_ERROR)
        }
        e => Err(e.into()),
    }
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

/// What the engine tells during `run`/`create`/`check`, on stderr: pull lines and the route
/// notice (not with `quiet`), warnings.
pub(super) struct StderrObserver {
    /// `-q`: no pull lines, no notice.
    pub quiet: bool,
}

impl Observer for StderrObserver {
    fn pull_progress(&self) -> Box<dyn Progress> {
        if self.quiet {
            Box::new(progress::Silent)
        } else {
            Box::new(StderrLines)
        }
    }
    fn notice(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
    fn warning(&self, message: &str) {
        eprintln!("xrun: {message}");
    }
}

/// The engine's request for the flags.
fn container_spec(f: &ContainerFlags) -> Result<ContainerSpec, EngineError> {
    let (image, command) = match &f.rootfs {
        Some(dir) => (
            ImageSource::Rootfs(dir.clone()),
            f.image_and_command.clone(),
        ),
        None => (
            ImageSource::Reference(f.image_and_command[0].clone()),
            f.image_and_command[1..].to_vec(),
        ),
    };
    let pull = f.pull.parse().map_err(|_| {
        EngineError::Invalid(format!(
            "invalid --pull {:?}: use missing, always or never",
            f.pull
        ))
    })?;
    let route = f.route.parse().map_err(EngineError::Invalid)?;
    let platform = f.platform.as_deref().map(str::parse).transpose()?;
    Ok(ContainerSpec {
        image,
        platform,
        pull,
        route,
        vm_kernel: f.vm_kernel.clone(),
        options: options(f, command)?,
        dry_run: f.dry_run,
    })
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
        net: net_options(f)?,
        memory: f.memory.as_deref().map(options::parse_memory).transpose()?,
        cpus: f.cpus,
        pids_limit: f.pids_limit,
        read_only: f.read_only,
        tmpfs: f
            .tmpfs
            .iter()
            .map(|t| options::Tmpfs::parse(t))
            .collect::<Result<_, _>>()?,
        init: f.init,
        tty: f.tty,
        interactive: f.interactive,
        auto_remove: f.rm,
        runtime: f.runtime.clone(),
        no_seccomp: false,
        route: Default::default(),
        stdin_once: false,
        labels: f
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect(),
    })
}

/// The network flags as the runtime's [`NetOptions`] (syntax checked here; networks,
/// addresses and ports when the container is created and started).
fn net_options(f: &ContainerFlags) -> Result<NetOptions, RuntimeError> {
    let bad = RuntimeError::BadInput;
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.extend(xrun::network::ports::parse_publish(p).map_err(bad)?);
    }
    let rate = |r: &Option<String>| {
        r.as_deref()
            .map(xrun::network::rate::parse_rate)
            .transpose()
            .map_err(bad)
    };
    let ip = match &f.ip {
        Some(i) => Some(i.parse().map_err(|_| {
            bad(format!(
                "invalid --ip {i:?}: an IPv4 address is expected (IPv4 only)"
            ))
        })?),
        None => None,
    };
    Ok(NetOptions {
        ip,
        aliases: f.network_alias.clone(),
        extra_networks: vec![],
        ports,
        publish_all: f.publish_all,
        dns: f.dns.clone(),
        dns_search: f.dns_search.clone(),
        dns_options: f.dns_option.clone(),
        add_hosts: f.add_host.clone(),
        egress_rate: rate(&f.egress_rate)?,
        ingress_rate: rate(&f.ingress_rate)?,
    })
}

/// Prints a dry run's plan; exit 125 when the image cannot run here.
fn print_dry_run(d: &DryRun) -> u8 {
    println!("image: {}", d.image);
    if let Some(p) = &d.plan {
        println!("platform: {}", p.platform);
        println!("host: {}", p.host);
        for line in &p.lines {
            println!("{line}");
        }
    }
    println!("command: {}", d.command.join(" "));
    if d.unrunnable {
        super::EXIT_XRUN_ERROR
    } else {
        0
    }
}

/// Creates the container through the engine: `Ok(id)`, or `Err(exit code)` when there is
/// nothing to start (a dry run, a failure already told).
fn create_container(engine: &Engine, f: &ContainerFlags) -> anyhow::Result<Result<String, u8>> {
    let created =
        container_spec(f).and_then(|spec| engine.create(spec, &StderrObserver { quiet: f.quiet }));
    match created {
        Ok(CreateOutcome::Created(c)) => Ok(Ok(c.id)),
        Ok(CreateOutcome::DryRun(d)) => Ok(Err(print_dry_run(&d))),
        Err(e) => engine_failure(e).map(Err),
    }
}

/// `xrun run`.
pub fn run(g: &Global, a: RunArgs) -> anyhow::Result<u8> {
    tracing::debug!("phase: run");
    let keys = match super::attach::detach_keys(&a.detach_keys) {
        Ok(k) => k,
        Err(code) => return Ok(code),
    };
    let engine = Engine::open(&g.root);
    if !a.detach
        && let Err(e) = engine.seal()
    {
        return engine_failure(e);
    }
    tracing::debug!("phase: sealed");
    let id = match create_container(&engine, &a.flags)? {
        Ok(id) => id,
        Err(code) => return Ok(code),
    };
    if a.detach {
        if let Err(e) = engine.start(&id, true) {
            return engine_failure(e);
        }
        println!("{id}");
        return Ok(0);
    }
    if a.flags.tty && a.flags.interactive {
        // Under its monitor, this process attached: the detach keys leave it running.
        return super::attach::start_attached(&engine, &id, true, keys, true);
    }
    let how = AttachOptions {
        interactive: false,
        remove_on_error: true,
    };
    match engine.run_attached(&id, how) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => engine_failure(e),
    }
}

/// `xrun create`.
pub fn create(g: &Global, a: CreateArgs) -> anyhow::Result<u8> {
    match create_container(&Engine::open(&g.root), &a.flags)? {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err(code) => Ok(code),
    }
}
