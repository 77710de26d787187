//! Builds the OCI runtime `config.json` ([`Spec`]) from the image config and the command
//! line, with runc's/Docker's defaults: namespaces, mounts, Docker's default capabilities,
//! `no_new_privs`, masked and read-only paths, the default seccomp profile, device rules and
//! cgroup limits.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::options::{Network, RunOptions};
use super::{ImageInput, RuntimeError, cgroups, resolve, seccomp, user};

/// The PATH used when the image sets none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths masked in the container (runc's defaults plus Docker's additions).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bind mount added by the caller (the init binary, files in `/etc`, emulators…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMount {
    /// Host path.
    pub source: std::path::PathBuf,
    /// Path inside the container.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
}

/// What [`build`] needs besides the image and the options.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container id (hostname default, cgroups path).
    pub id: &'a str,
    /// The merged root file system (to resolve users and check the command).
    pub rootfs: &'a Path,
    /// Extra bind mounts.
    pub mounts: &'a [ExtraMount],
    /// Arguments put before the command (the init: `[loader, …, xrun, internal, init, --]`).
    pub args_prefix: &'a [String],
    /// The network namespace to join (`None`: a new one with only loopback, or the host's
    /// with `--network host`).
    pub netns: Option<&'a Path>,
}

/// The command the container runs: the image's Entrypoint/Cmd overridden as Docker does.
pub fn command(image: &ImageInput, opts: &RunOptions) -> Vec<String> {
    let cfg = image.config.config().as_ref();
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    if !opts.command.is_empty() {
        args.extend(opts.command.iter().cloned());
    } else if opts.entrypoint.is_none() {
        args.extend(cfg.and_then(|c| c.cmd().clone()).unwrap_or_default());
    }
    args
}

fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split('=').next().unwrap_or(entry);
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(entry.to_string());
}

fn has_env(env: &[String], key: &str) -> bool {
    env.iter().any(|e| e.split('=').next() == Some(key))
}

fn env_value<'e>(env: &'e [String], key: &str) -> Option<&'e str> {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Mount {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .expect("bind mount")
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

fn dev_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().expect("device rule")
}

/// The device cgroup rules: deny everything, allow the default devices (runc's list).
fn device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, C};
    let mut rules = vec![dev_rule(false, A, None, None, "rwm")];
    for (maj, min) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(dev_rule(true, C, Some(maj), Some(min), "rwm"));
    }
    rules.push(dev_rule(true, C, Some(136), None, "rwm")); // /dev/pts/*
    rules
}

/// The final environment: image Env, then the user's, with PATH, HOSTNAME, HOME and TERM
/// filled in as Docker does.
pub fn environment(
    image: &ImageInput,
    opts: &RunOptions,
    hostname: &str,
    home: Option<&str>,
) -> Vec<String> {
    let mut env = Vec::new();
    if let Some(c) = image.config.config() {
        for e in c.env().clone().unwrap_or_default() {
            set_env(&mut env, &e);
        }
    }
    for e in &opts.env {
        set_env(&mut env, e);
    }
    if !has_env(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has_env(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if opts.tty && !has_env(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    if !has_env(&env, "HOME") {
        env.push(format!(
            "HOME={}",
            home.filter(|h| !h.is_empty()).unwrap_or("/root")
        ));
    }
    env
}

/// The hostname: `--hostname`, else the short id.
pub fn hostname(id: &str, opts: &RunOptions) -> String {
    opts.hostname
        .clone()
        .unwrap_or_else(|| id[..12.min(id.len())].to_string())
}

/// Builds the runtime config for `image` + `opts`; checks the user and the command inside
/// the root file system (so a missing command is 127 and a non-executable one 126).
pub fn build(
    image: &ImageInput,
    opts: &RunOptions,
    input: &SpecInput<'_>,
) -> Result<Spec, RuntimeError> {
    let hostname = hostname(input.id, opts);
    let cfg = image.config.config().as_ref();
    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let user = user::resolve(input.rootfs, &user_spec).map_err(|e| match e {
        RuntimeError::BadInput(m) if opts.user.is_none() => {
            RuntimeError::BadInput(format!("the image's User {user_spec:?}: {m}"))
        }
        e => e,
    })?;
    let env = environment(image, opts, &hostname, user.home.as_deref());
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| {
            cfg.and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::BadInput(format!(
            "the working directory {cwd:?} is not absolute"
        )));
    }
    let cmd = command(image, opts);
    if cmd.is_empty() {
        return Err(RuntimeError::BadInput(
            "no command specified: the image has no Entrypoint or Cmd; give one after the image"
                .into(),
        ));
    }
    resolve::check_command(
        input.rootfs,
        &cmd[0],
        env_value(&env, "PATH").unwrap_or(""),
        &cwd,
    )?;
    let mut args = input.args_prefix.to_vec();
    args.extend(cmd);

    let caps: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_err)?;
    let mut ub = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        ub = ub.additional_gids(user.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(ub.build().map_err(spec_err)?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![])
        .build()
        .map_err(spec_err)?;

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for m in input.mounts {
        mounts.push(bind(&m.source, &m.destination, m.read_only));
    }
    for v in &opts.volumes {
        mounts.push(bind(&v.host, &v.container, v.read_only));
    }
    for t in &opts.tmpfs {
        let o = t.option_list();
        let o: Vec<&str> = o.iter().map(String::as_str).collect();
        mounts.push(mount(&t.path, "tmpfs", "tmpfs", &o));
    }

    let mut namespaces = vec![];
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Cgroup,
    ] {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(path) = input.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()
                .map_err(spec_err)?,
        );
    } else if opts.network != Network::Host {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()
                .map_err(spec_err)?,
        );
    }

    let mut resources = LinuxResourcesBuilder::default().devices(device_rules());
    if let Some(m) = opts.memory {
        let mut mb = LinuxMemoryBuilder::default().limit(m as i64);
        if cgroups::swap_limit_supported() {
            mb = mb.swap(m as i64);
        }
        resources = resources.memory(mb.build().map_err(spec_err)?);
    }
    if let Some(c) = opts.cpus {
        let period: u64 = 100_000;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota((c * period as f64).round().max(1000.0) as i64)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(p) = opts.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(spec_err)?,
        );
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(spec_err)?)
        .cgroups_path(cgroups::cgroups_path(input.id))
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .rootfs_propagation("private");
    if !opts.no_seccomp {
        linux = linux.seccomp(seccomp::default_profile());
    }

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(opts.read_only)
                .build()
                .map_err(spec_err)?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(spec_err)?)
        .build()
        .map_err(spec_err)
}

fn spec_err(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Runtime(format!("building the OCI config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn image(entry: Option<Vec<&str>>, cmd: Option<Vec<&str>>) -> ImageInput {
        let mut c = ConfigBuilder::default();
        if let Some(e) = entry {
            c = c.entrypoint(e.into_iter().map(String::from).collect::<Vec<_>>());
        }
        if let Some(x) = cmd {
            c = c.cmd(x.into_iter().map(String::from).collect::<Vec<_>>());
        }
        c = c.env(vec!["PATH=/bin".to_string(), "A=1".to_string()]);
        ImageInput {
            name: "t".into(),
            config: ImageConfigurationBuilder::default()
                .config(c.build().unwrap())
                .build()
                .unwrap(),
            layer_dirs: vec![],
        }
    }

    #[test]
    fn docker_command_rules() {
        let img = image(Some(vec!["/ep", "x"]), Some(vec!["c1"]));
        let mut o = RunOptions::default();
        assert_eq!(command(&img, &o), ["/ep", "x", "c1"]);
        o.command = vec!["y".into()];
        assert_eq!(command(&img, &o), ["/ep", "x", "y"]);
        o.command.clear();
        o.entrypoint = Some("sh".into());
        assert_eq!(command(&img, &o), ["sh"]);
        o.entrypoint = Some(String::new());
        o.command = vec!["ls".into()];
        assert_eq!(command(&img, &o), ["ls"]);
    }

    #[test]
    fn env_overrides() {
        let img = image(None, Some(vec!["sh"]));
        let o = RunOptions {
            env: vec!["A=2".into(), "B=3".into()],
            tty: true,
            ..Default::default()
        };
        let env = environment(&img, &o, "h", Some("/home/u"));
        assert_eq!(
            env,
            [
                "PATH=/bin",
                "A=2",
                "B=3",
                "HOSTNAME=h",
                "TERM=xterm",
                "HOME=/home/u"
            ]
        );
    }
}
