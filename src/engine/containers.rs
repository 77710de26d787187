//! The operations on recorded containers: start (detached under its monitor, or attached to
//! the caller's terminal), stop, kill, remove, exec, list, inspect, and the monitor itself.
//! The vm route's containers run as machines ([`super::vm::VmMachines`]).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::runtime::{self, BundleExtras, ContainerRecord, lifecycle};

use super::vm::VmMachines;
use super::{Engine, EngineError};

/// How [`Engine::run_attached`] runs a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Attach stdin too (recorded on the container, as `start -i` does).
    pub interactive: bool,
    /// Remove the container when it cannot be started (`run`, not `start`).
    pub remove_on_error: bool,
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Extra environment (`KEY=VALUE`).
    pub env: Vec<String>,
    /// Attach stdin.
    pub interactive: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Working directory (default: the container's).
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]` (default: the container's): numeric `uid[:gid]` on the native
    /// routes, names too on the vm route (resolved in the image).
    pub user: Option<String>,
}

/// How many containers `rm` removes at a time.
const REMOVE_WORKERS: usize = 16;

impl Engine {
    /// Protects this process's binary before it creates or joins a container (CVE-2019-5736):
    /// call it first in a process that runs containers in the foreground or execs into them.
    pub fn seal(&self) -> Result<(), EngineError> {
        Ok(runtime::seal::ensure_sealed()?)
    }

    /// Cleans up containers whose owner died without recording an exit.
    pub fn cleanup_stale(&self) -> Result<(), EngineError> {
        lifecycle::cleanup_stale(&self.containers()?);
        Ok(())
    }

    /// The container `key` names (id, id prefix or name).
    pub fn inspect(&self, key: &str) -> Result<ContainerRecord, EngineError> {
        Ok(self.containers()?.find(key)?)
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        Ok(self.containers()?.list())
    }

    /// Every container with its status, after cleaning up those whose owner died (`ps`;
    /// one read of each record and one process check each when none did).
    pub fn list_current(
        &self,
    ) -> Result<Vec<(ContainerRecord, crate::runtime::state::Status)>, EngineError> {
        Ok(lifecycle::list_current(&self.containers()?))
    }

    /// Starts container `id` detached, under its monitor; returns once it runs.
    /// `remove_on_error`: drop the container if it cannot be started (`run -d`).
    pub fn start(&self, id: &str, remove_on_error: bool) -> Result<(), EngineError> {
        let c = self.containers()?;
        Ok(lifecycle::start_detached(
            &c,
            self.root(),
            id,
            remove_on_error,
            self.spares.as_ref(),
        )?)
    }

    /// Runs container `id` attached to this process's terminal (or streams) until it exits;
    /// returns its exit code.
    pub fn run_attached(&self, id: &str, how: AttachOptions) -> Result<i32, EngineError> {
        let c = self.containers()?;
        if how.interactive {
            let _ = c.update(id, |r| r.options.interactive = true);
        }
        Ok(lifecycle::run_attached(
            &c,
            id,
            &BundleExtras::default(),
            how.remove_on_error,
            &VmMachines,
        )?)
    }

    /// The signal a name or number (`KILL`, `SIGTERM`, `9`) means.
    pub fn parse_signal(s: &str) -> Result<Signal, EngineError> {
        Ok(runtime::signals::parse_signal(s)?)
    }

    /// Sends `sig` to running container `key`.
    pub fn kill(&self, key: &str, sig: Signal) -> Result<ContainerRecord, EngineError> {
        Ok(lifecycle::kill(&self.containers()?, key, sig)?)
    }

    /// Stops container `key`: SIGTERM, then SIGKILL after `timeout`; returns once the exit
    /// is recorded.
    pub fn stop(&self, key: &str, timeout: Duration) -> Result<ContainerRecord, EngineError> {
        Ok(lifecycle::stop(&self.containers()?, key, timeout)?)
    }

    /// Removes container `key`; a running one only with `force` (killed first).
    pub fn remove(&self, key: &str, force: bool) -> Result<ContainerRecord, EngineError> {
        Ok(lifecycle::remove(&self.containers()?, key, force)?)
    }

    /// Removes the containers `keys` (as [`Engine::remove`]) several at a time: a removal
    /// mostly waits (for the process to die, for its monitor to record the exit and clean
    /// up), so `rm -f` of many overlaps those waits. The results are in the order of `keys`.
    pub fn remove_many(
        &self,
        keys: &[String],
        force: bool,
    ) -> Vec<Result<ContainerRecord, EngineError>> {
        let c = match self.containers() {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return keys
                    .iter()
                    .map(|_| Err(EngineError::Invalid(msg.clone())))
                    .collect();
            }
        };
        // (More threads than cores: a removal mostly waits.)
        crate::par::map(keys, REMOVE_WORKERS, |key| {
            lifecycle::remove(&c, key, force).map_err(EngineError::from)
        })
    }

    /// Runs a command in running container `key` attached to this process's terminal;
    /// returns its exit code.
    pub fn exec(&self, key: &str, spec: ExecSpec) -> Result<i32, EngineError> {
        let c = self.containers()?;
        let rec = c.find(key)?;
        if rec.options.route == runtime::options::ExecRoute::Vm {
            if !rec.is_running() {
                return Err(EngineError::Runtime(runtime::RuntimeError::WrongState(
                    format!("container {key} is not running"),
                )));
            }
            if spec.command.is_empty() {
                return Err(EngineError::Invalid("exec needs a command".into()));
            }
            return super::vm::vm_exec(&c, &rec, &spec);
        }
        let user = spec.user.as_deref().map(numeric_user).transpose()?;
        Ok(lifecycle::exec(
            &c,
            key,
            spec.command,
            spec.env,
            spec.interactive,
            spec.tty,
            spec.workdir,
            user,
        )?)
    }

    /// The body of container `id`'s monitor process (`xrun internal monitor ID`; fd 3, when
    /// open, is the readiness pipe): starts the container, waits for it, records its exit.
    /// A spare monitor (`ID` is [`runtime::monitor::SPARE_ID`]) first waits for its id on
    /// fd 4 and ends quietly when none comes.
    pub fn monitor(&self, id: &str) -> Result<u8, EngineError> {
        let ready = runtime::monitor::ready_fd();
        if let Some(fd) = &ready {
            // Who to watch: see `lifecycle::start_detached`.
            use std::io::Write as _;
            let mut f = std::fs::File::from(
                fd.try_clone()
                    .map_err(|e| EngineError::context("the monitor's readiness pipe", e))?,
            );
            let _ = writeln!(f, "PID {}", std::process::id());
        }
        self.seal()?;
        let id = if id == runtime::monitor::SPARE_ID {
            match runtime::monitor::wait_for_assignment() {
                Some(id) => id,
                None => return Ok(0),
            }
        } else {
            id.to_string()
        };
        let c = self.containers()?;
        Ok(lifecycle::monitor(&c, &id, ready, &VmMachines)?)
    }
}

/// `-u` for exec on the native routes: numeric `uid[:gid]` (gid defaults to uid).
fn numeric_user(u: &str) -> Result<(u32, u32), EngineError> {
    let bad = || {
        EngineError::Invalid(format!(
            "exec -u {u:?}: give a numeric uid[:gid] (names are resolved on the vm route only)"
        ))
    };
    let (a, b) = u.split_once(':').unwrap_or((u, u));
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}
