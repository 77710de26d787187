//! The container's seccomp filter as a compiled BPF program, built once and reused.
//!
//! Turning an OCI seccomp profile into BPF with libseccomp costs milliseconds per architecture
//! on every start (Docker's profile lists three on amd64). xrun compiles the profile of
//! `config.json` once per (profile, libseccomp version), keeps the program in the store's
//! cache (`<root>/cache/seccomp/<key>.bpf`, written under a temporary name and renamed), and
//! has the built-in executor load it with `seccomp(2)` right before the container's `execve`,
//! after `no_new_privs` and the capability drop — where runc loads its filter too. The bundle's
//! `config.json` keeps the profile, so runc and crun enforce the same rules from it.
//!
//! The translation follows the runtime spec: the default action and errno, the listed
//! architectures, per-syscall actions with argument comparisons (several comparisons of one
//! argument become separate rules, as runc does), names libseccomp does not know skipped.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use sha2::{Digest as _, Sha256};

use super::RuntimeError;

/// The program the built-in executor loads before `execve` (set by the parent before the
/// container's processes are cloned, so they inherit it).
static PROGRAM: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// One classic BPF instruction (`struct sock_filter`).
const INSN: usize = 8;

fn err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Runtime(format!("seccomp: {what}: {e}"))
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, RuntimeError> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(errno).map_err(|e| err("trace errno", e))?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(RuntimeError::BadInput(
                "seccomp: SCMP_ACT_NOTIFY needs a listener, which xrun does not provide".into(),
            ));
        }
    })
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Builds libseccomp's filter for `profile` (see the module doc).
fn filter(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, RuntimeError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter", e))?;
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(RuntimeError::BadInput(
            "seccomp: filter flags are not supported by xrun's built-in runtime".into(),
        ));
    }
    for a in profile.architectures().iter().flatten() {
        ctx.add_arch(arch(*a))
            .map_err(|e| err(&format!("architecture {a:?}"), e))?;
    }
    // xrun sets no_new_privs itself (from the spec), never libseccomp.
    ctx.set_ctl_nnp(false).map_err(|e| err("nnp", e))?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let cmps: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        let mut indexes: Vec<u32> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| a.index() as u32)
            .collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            // Unknown to this libseccomp: the kernel cannot have it either.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if cmps.is_empty() {
                ctx.add_rule(act, sc).map(|_| ())
            } else if repeated {
                cmps.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map(|_| ())
                })
            } else {
                ctx.add_rule_conditional(act, sc, &cmps).map(|_| ())
            };
            added.map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

/// The cache key of `profile`: its JSON and the libseccomp version that compiles it.
fn key(profile: &LinuxSeccomp) -> Result<String, RuntimeError> {
    let json = serde_json::to_vec(profile).map_err(|e| err("profile", e))?;
    let v = ScmpVersion::current().map_err(|e| err("libseccomp version", e))?;
    let mut h = Sha256::new();
    h.update(
        format!(
            "xrun-seccomp-1 libseccomp {}.{}.{}\n",
            v.major, v.minor, v.micro
        )
        .as_bytes(),
    );
    h.update(&json);
    Ok(hex::encode(h.finalize()))
}

/// Compiles `profile` into a BPF program (raw `struct sock_filter` array).
pub fn compile(profile: &LinuxSeccomp, scratch: &Path) -> Result<Vec<u8>, RuntimeError> {
    let ctx = filter(profile)?;
    let mut f =
        tempfile::tempfile_in(scratch).map_err(|e| RuntimeError::io("seccomp scratch file", e))?;
    ctx.export_bpf(f.as_fd()).map_err(|e| err("export", e))?;
    use std::io::{Read, Seek};
    f.rewind()
        .map_err(|e| RuntimeError::io("seccomp program", e))?;
    let mut bpf = Vec::new();
    f.read_to_end(&mut bpf)
        .map_err(|e| RuntimeError::io("seccomp program", e))?;
    if bpf.is_empty() || bpf.len() % INSN != 0 {
        return Err(err(
            "export",
            format!("{} bytes is no BPF program", bpf.len()),
        ));
    }
    Ok(bpf)
}

/// The compiled program of `profile`, from `cache_dir` when it was compiled before.
pub fn cached(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Vec<u8>, RuntimeError> {
    let path: PathBuf = cache_dir.join(format!("{}.bpf", key(profile)?));
    if let Ok(bpf) = std::fs::read(&path)
        && !bpf.is_empty()
        && bpf.len() % INSN == 0
    {
        return Ok(bpf);
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| RuntimeError::io("seccomp cache", e))?;
    let bpf = compile(profile, cache_dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(cache_dir)
        .map_err(|e| RuntimeError::io("seccomp cache", e))?;
    tmp.write_all(&bpf)
        .map_err(|e| RuntimeError::io("seccomp cache", e))?;
    tmp.persist(&path)
        .map_err(|e| RuntimeError::io("seccomp cache", e.error))?;
    Ok(bpf)
}

/// Sets (or clears) the program the built-in executor loads in the next container process.
pub fn arm(program: Option<Vec<u8>>) {
    *PROGRAM.lock().unwrap_or_else(|p| p.into_inner()) = program;
}

/// In the container's init (or exec'd) process, right before `execve`: loads the armed
/// program. The caller has set `no_new_privs` (or keeps `CAP_SYS_ADMIN`).
pub fn load_armed() -> std::io::Result<()> {
    // In a freshly cloned process: never wait on a lock another thread held at clone time.
    let guard = match PROGRAM.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            return Err(std::io::Error::other("the seccomp program is locked"));
        }
    };
    let Some(bpf) = guard.as_ref() else {
        return Ok(());
    };
    let prog = libc::sock_fprog {
        len: (bpf.len() / INSN) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` sock_filter records that live until the call returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_profile_compiles_to_a_bpf_program_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let p = super::super::seccomp::default_profile();
        let a = cached(&p, dir.path()).unwrap();
        assert_eq!(a.len() % INSN, 0);
        // Hundreds of instructions: three architectures, hundreds of system calls.
        assert!(a.len() / INSN > 300, "{} instructions", a.len() / INSN);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one program, no temporary left");
        assert_eq!(
            cached(&p, dir.path()).unwrap(),
            a,
            "the cached program is reused"
        );
    }

    #[test]
    fn a_corrupt_cache_entry_is_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = super::super::seccomp::default_profile();
        let good = cached(&p, dir.path()).unwrap();
        let path = dir.path().join(format!("{}.bpf", key(&p).unwrap()));
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(cached(&p, dir.path()).unwrap(), good);
    }

    #[test]
    fn the_notify_action_is_refused() {
        let p = oci_spec::runtime::LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap();
        assert!(matches!(filter(&p), Err(RuntimeError::BadInput(_))));
    }
}
