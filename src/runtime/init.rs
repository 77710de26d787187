//! xrun's own init (`xrun internal init -- CMD`): PID 1 of the container for `--init` (and
//! always on the emulated route). It starts the command in its own process group (made the
//! terminal's foreground group under `-t`), forwards every signal it gets to it, reaps all
//! zombies, and exits with the command's status (128+N if killed by signal N).
//!
//! The binary is xrun itself, bound read-only into the container at `/.xrun/`, with the host's
//! dynamic loader and the libraries it was linked against, and started through that loader:
//! it works in any root file system (no libc needed in the image, none of the image's used).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::RuntimeError;
use super::spec::ExtraMount;

/// The directory in the container holding the init binary and its loader.
pub const INIT_DIR: &str = "/.xrun";

/// The bind mounts and the argument prefix that run `xrun internal init --` as PID 1.
pub fn init_mounts() -> Result<(Vec<ExtraMount>, Vec<String>), RuntimeError> {
    let exe = super::seal::original_exe()?;
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| RuntimeError::io("reading /proc/self/maps", e))?;
    let mut libs: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let p = Path::new(path);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.starts_with('/') && name.contains(".so") && !libs.iter().any(|l| l == p) {
            libs.push(p.to_path_buf());
        }
    }
    let mut mounts = vec![ExtraMount {
        source: exe,
        destination: format!("{INIT_DIR}/xrun"),
        read_only: true,
    }];
    let mut loader = None;
    for l in &libs {
        let file = l
            .file_name()
            .expect("has a name")
            .to_string_lossy()
            .into_owned();
        // The loader looks libraries up by their soname (libseccomp.so.2), not the file name.
        let name = soname(l).unwrap_or(file);
        if name.starts_with("ld-") {
            loader = Some(name.clone());
        }
        mounts.push(ExtraMount {
            source: l.clone(),
            destination: format!("{INIT_DIR}/{name}"),
            read_only: true,
        });
    }
    let mut prefix = Vec::new();
    if let Some(ld) = loader {
        prefix.extend([
            format!("{INIT_DIR}/{ld}"),
            "--library-path".into(),
            INIT_DIR.into(),
        ]);
    }
    prefix.extend([
        format!("{INIT_DIR}/xrun"),
        "internal".into(),
        "init".into(),
        "--".into(),
    ]);
    Ok((mounts, prefix))
}

fn soname(lib: &Path) -> Option<String> {
    let bytes = std::fs::read(lib).ok()?;
    let elf = goblin::elf::Elf::parse(&bytes).ok()?;
    elf.soname.map(str::to_string)
}

/// Whether a container process's `args` start xrun's init (see [`init_mounts`]).
pub fn is_init(args: &[String]) -> bool {
    args.first()
        .is_some_and(|a| a.starts_with(&format!("{INIT_DIR}/")))
        && args
            .windows(2)
            .any(|w| w[0] == "internal" && w[1] == "init")
}

/// The signals the init waits for and passes on (all but the ones that cannot be caught or
/// report a fault).
pub fn forwarded_signals() -> SigSet {
    all_signals()
}

fn all_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
        ) {
            set.add(s);
        }
    }
    set
}

/// Runs `cmd` as described in the module doc; returns the exit code.
pub fn run(cmd: &[String]) -> u8 {
    if cmd.is_empty() {
        eprintln!("xrun init: no command");
        return super::EXIT_XRUN;
    }
    let set = all_signals();
    if set.thread_block().is_err() {
        eprintln!("xrun init: cannot block signals");
        return super::EXIT_XRUN;
    }
    let mut command = std::process::Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    unsafe {
        command.pre_exec(|| {
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpgrp());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("xrun init: exec {:?}: {e}", cmd[0]);
            return match e.kind() {
                std::io::ErrorKind::NotFound => super::EXIT_NOT_FOUND,
                _ => super::EXIT_NOT_EXECUTABLE,
            };
        }
    };
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == child => return code as u8,
                Ok(WaitStatus::Signaled(p, s, _)) if p == child => return 128 + s as u8,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
