//! runc's command line (`xrun-runc …`, or `xrun runtime …`): parsing and printing only; the
//! commands are in [`xrun::ociruntime`]. Failures print one line on stderr (and to `--log`,
//! JSON with `--log-format json`, which containerd reads) and exit 1, as runc.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xrun::ociruntime::log::{LogFormat, RuntimeLog};
use xrun::ociruntime::{
    self, OciError, StateRoot, control, exec, features, lifecycle, route::Decision, state,
};

/// An OCI runtime with runc's command line, backed by xrun (youki's libcontainer), that runs
/// foreign-architecture bundles under emulation and refuses bundles the node cannot run.
#[derive(Debug, Parser)]
#[command(name = "xrun-runc", disable_version_flag = true)]
struct RuncCli {
    /// State directory.
    #[arg(long, default_value = ociruntime::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file for errors.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Use systemd for cgroups (not supported: refused).
    #[arg(long)]
    systemd_cgroup: bool,
    /// More output (accepted, no effect).
    #[arg(long)]
    debug: bool,
    /// Rootless mode (accepted: `auto`/`false`; `true` is refused).
    #[arg(long)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<RuncCommand>,
}

#[derive(Debug, Subcommand)]
enum RuncCommand {
    /// Create a container (its process waits for `start`).
    Create {
        /// The bundle directory.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Write the init's pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket receiving the terminal's master side.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Do not use pivot_root.
        #[arg(long)]
        no_pivot: bool,
        /// Do not create a session keyring (accepted; libcontainer's default).
        #[arg(long)]
        no_new_keyring: bool,
        /// Pass this many descriptors above stderr.
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        /// Container id.
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and delete it.
    Run {
        /// The bundle directory.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Write the init's pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket receiving the terminal's master side.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Return once it started (create + start).
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not delete the container when it exits.
        #[arg(long)]
        keep: bool,
        /// Do not use pivot_root.
        #[arg(long)]
        no_pivot: bool,
        /// Do not create a session keyring (accepted; libcontainer's default).
        #[arg(long)]
        no_new_keyring: bool,
        /// Pass this many descriptors above stderr.
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        /// Container id.
        id: String,
    },
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Print a container's state (JSON).
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM).
    Kill {
        /// Every process of the container.
        #[arg(short = 'a', long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal: name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it runs.
        #[arg(short = 'f', long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List a container's processes.
    Ps {
        /// table or json (pids).
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// ps options (table format).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        /// Ids only.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Print the features this runtime implements (JSON).
    Features,
    /// Update a container's resources (not supported: refused).
    Update {
        /// Anything.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// A runtime-spec process JSON.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Write the process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket receiving the terminal's master side.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// KEY=VALUE.
    #[arg(short = 'e', long)]
    env: Vec<String>,
    /// UID[:GID].
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional group ids.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Capabilities to add.
    #[arg(short = 'c', long)]
    cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    no_new_privs: bool,
    /// Pass this many descriptors above stderr.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// Exec even when paused.
    #[arg(long)]
    ignore_paused: bool,
    /// AppArmor profile (refused: not supported).
    #[arg(long)]
    apparmor: Option<String>,
    /// SELinux label (refused: not supported).
    #[arg(long)]
    process_label: Option<String>,
    /// Container id.
    id: String,
    /// Command and arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Whether this process was started as the runtime: through a file named `xrun-runc`, or
/// as `xrun runtime …`. Returns the arguments for the runtime's parser.
pub fn runtime_args() -> Option<Vec<OsString>> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args.first().and_then(|a| {
        std::path::Path::new(a)
            .file_name()
            .map(|n| n.to_os_string())
    });
    if name.as_deref() == Some(std::ffi::OsStr::new(ociruntime::RUNC_NAME)) {
        return Some(args);
    }
    if args.get(1).is_some_and(|a| a == "runtime") {
        let mut out = vec![OsString::from(ociruntime::RUNC_NAME)];
        out.extend(args.into_iter().skip(2));
        return Some(out);
    }
    None
}

/// Runs runc's command line; exits 1 on failure, as runc.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match RuncCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let log = RuntimeLog {
        path: cli.log.clone(),
        format: cli.log_format,
    };
    match run(&cli, &log) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = e.to_string();
            log.write("error", &msg);
            eprintln!("xrun-runc: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &RuncCli, log: &RuntimeLog) -> Result<u8, OciError> {
    if cli.version {
        println!(
            "xrun-runc version {}\nspec: {}\nengine: youki libcontainer 0.7",
            env!("CARGO_PKG_VERSION"),
            oci_spec::runtime::VERSION
        );
        return Ok(0);
    }
    if cli.systemd_cgroup {
        return Err(OciError::BadInput(
            "--systemd-cgroup is not supported: xrun's runtime manages cgroups itself \
             (cgroupfs); set SystemdCgroup = false (containerd) or --cgroup-manager cgroupfs \
             (podman)"
                .into(),
        ));
    }
    if cli.rootless.as_deref() == Some("true") {
        return Err(OciError::BadInput(
            "--rootless=true is not supported: run xrun-runc as root".into(),
        ));
    }
    let Some(command) = &cli.command else {
        return Err(OciError::BadInput(
            "no command: create, run, start, state, kill, delete, exec, ps, pause, resume, list, \
             features (xrun-runc --help)"
                .into(),
        ));
    };
    let root = StateRoot::new(&cli.root);
    match command {
        RuncCommand::Create {
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            no_new_keyring: _,
            preserve_fds,
            id,
        } => {
            seal()?;
            let req = lifecycle::CreateRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                no_pivot: *no_pivot,
                preserve_fds: *preserve_fds,
            };
            if let Decision::Emulated { arch, handler } = lifecycle::create(&root, &req)? {
                log.write(
                    "info",
                    &format!(
                        "container {id}: {arch} root file system runs under emulation \
                         (binfmt handler {handler})"
                    ),
                );
            }
        }
        RuncCommand::Run {
            bundle,
            pid_file,
            console_socket,
            detach,
            keep,
            no_pivot,
            no_new_keyring: _,
            preserve_fds,
            id,
        } => {
            seal()?;
            let req = lifecycle::CreateRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                no_pivot: *no_pivot,
                preserve_fds: *preserve_fds,
            };
            if *detach {
                lifecycle::run_detached(&root, &req)?;
                return Ok(0);
            }
            let (code, warnings) = lifecycle::run(&root, &req, *keep)?;
            warn_all(log, &warnings);
            return Ok(code.clamp(0, 255) as u8);
        }
        RuncCommand::Start { id } => lifecycle::start(&root, id)?,
        RuncCommand::State { id } => {
            let s = state::state(&root, id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&s).expect("state serializes")
            );
        }
        RuncCommand::Kill { all, id, signal } => {
            let sig = lifecycle::parse_signal(signal)?;
            lifecycle::kill(&root, id, sig, *all)?;
        }
        RuncCommand::Delete { force, id } => warn_all(log, &lifecycle::delete(&root, id, *force)?),
        RuncCommand::Exec(a) => {
            if a.apparmor.is_some() || a.process_label.is_some() {
                return Err(OciError::BadInput(
                    "--apparmor and --process-label are not supported: this host's xrun \
                     runtime has no AppArmor or SELinux support"
                        .into(),
                ));
            }
            if a.tty && a.process.is_none() && a.console_socket.is_none() {
                return Err(OciError::BadInput(
                    "--tty needs --console-socket (or a --process file with terminal: true)".into(),
                ));
            }
            seal()?;
            let req = exec::ExecRequest {
                id: a.id.clone(),
                process: a.process.clone(),
                args: a.command.clone(),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.as_deref().map(exec::parse_user).transpose()?,
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
            };
            let code = exec::exec(&root, &req)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        RuncCommand::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = control::pids(&root, id)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&pids).expect("pids")),
                "table" => return ps_table(&pids, ps_args),
                other => {
                    return Err(OciError::BadInput(format!(
                        "--format {other:?}: use table or json"
                    )));
                }
            }
        }
        RuncCommand::Pause { id } => control::pause(&root, id)?,
        RuncCommand::Resume { id } => control::resume(&root, id)?,
        RuncCommand::List { format, quiet } => {
            let states: Vec<state::RuncState> = state::ids(&root)
                .iter()
                .filter_map(|id| state::state(&root, id).ok())
                .collect();
            if *quiet {
                for s in &states {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&states).expect("states"));
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
                for s in &states {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    );
                }
            }
        }
        RuncCommand::Features => println!(
            "{}",
            serde_json::to_string_pretty(&features::features()).expect("features")
        ),
        RuncCommand::Update { .. } => {
            return Err(OciError::BadInput(
                "update is not supported by xrun's runtime: recreate the container with the \
                 new resources"
                    .into(),
            ));
        }
    }
    Ok(0)
}

/// Prints warnings on stderr and to `--log` (the command still succeeds).
fn warn_all(log: &RuntimeLog, warnings: &[String]) {
    for w in warnings {
        log.write("warning", w);
        eprintln!("xrun-runc: warning: {w}");
    }
}

/// The runtime binary is protected before it creates or joins a container (CVE-2019-5736):
/// xrun re-executes itself from a protected copy.
fn seal() -> Result<(), OciError> {
    xrun::runtime::seal::ensure_sealed()
        .map_err(|e| OciError::BadInput(format!("protecting the runtime binary: {e}")))
}

/// `ps` in table form: the host's `ps` for those pids.
fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<u8, OciError> {
    if pids.is_empty() {
        return Ok(0);
    }
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let mut cmd = std::process::Command::new("ps");
    if ps_args.is_empty() {
        cmd.arg("-f");
    } else {
        cmd.args(ps_args);
    }
    let st = cmd
        .arg("-p")
        .arg(list.join(","))
        .status()
        .map_err(|e| OciError::io("running ps", e))?;
    Ok(st.code().unwrap_or(1).clamp(0, 255) as u8)
}
