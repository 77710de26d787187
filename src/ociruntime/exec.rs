//! `exec`: a new process in a running container, from runc's `--process P.json` or its
//! positional form (`exec ID CMD ARG…` with `--env`, `--cwd`, `--user`, `--tty`).

use std::collections::HashMap;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::wait::waitpid;

use super::{OciError, StateRoot, check_id};

/// What `exec` was given.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The container id.
    pub id: String,
    /// `--process`: a runtime-spec `process` JSON (takes the place of everything below).
    pub process: Option<PathBuf>,
    /// The command (positional form).
    pub args: Vec<String>,
    /// `--env KEY=VALUE`.
    pub env: Vec<String>,
    /// `--cwd`.
    pub cwd: Option<PathBuf>,
    /// `--user UID[:GID]`.
    pub user: Option<(u32, Option<u32>)>,
    /// `--additional-gids`.
    pub additional_gids: Vec<u32>,
    /// `--cap`: capabilities added.
    pub caps: Vec<String>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
    /// `--detach`: return once it runs, without waiting.
    pub detach: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
    /// `--ignore-paused`.
    pub ignore_paused: bool,
}

/// Runs the process; returns its exit code (0 when detached).
pub fn exec(root: &StateRoot, req: &ExecRequest) -> Result<i32, OciError> {
    check_id(&req.id)?;
    if !root.container_dir(&req.id).join("state.json").exists() {
        return Err(OciError::NotFound(req.id.clone()));
    }
    if req.process.is_none() && req.args.is_empty() {
        return Err(OciError::BadInput(
            "exec needs --process FILE or a command after the container id".into(),
        ));
    }
    let env: HashMap<String, String> = req
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    let mut b = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(root.dir())
        .map_err(|e| OciError::runtime("state root", e))?
        .with_pid_file(req.pid_file.as_ref())
        .map_err(|e| OciError::runtime("pid file", e))?
        .with_console_socket(req.console_socket.as_ref())
        .with_preserved_fds(req.preserve_fds)
        .validate_id()
        .map_err(|e| OciError::runtime("container id", e))?
        .as_tenant()
        .with_detach(req.detach)
        .with_ignore_paused(req.ignore_paused)
        .with_process(req.process.as_ref());
    if req.process.is_none() {
        b = b
            .with_container_args(req.args.clone())
            .with_env(env)
            .with_cwd(req.cwd.as_ref())
            .with_no_new_privs(req.no_new_privs)
            .with_capabilities(req.caps.clone())
            .with_additional_gids(req.additional_gids.clone());
        if let Some((uid, gid)) = req.user {
            b = b.with_user(Some(uid)).with_group(gid);
        }
    }
    let pid = b
        .build()
        .map_err(|e| OciError::runtime(format!("exec in container {}", req.id), e))?;
    if req.detach {
        return Ok(0);
    }
    loop {
        match waitpid(pid, None) {
            Ok(st) => {
                if let Some(code) = crate::runtime::executor::exit_code(st) {
                    return Ok(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(OciError::io("waiting for the process", e.into())),
        }
    }
}

/// Parses `--user UID[:GID]` (numbers, as runc).
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>), OciError> {
    let bad = || OciError::BadInput(format!("--user {s:?}: use UID or UID:GID (numbers)"));
    match s.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}
