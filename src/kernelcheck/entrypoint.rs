//! Resolving the command a container would execute, inside the image: `Entrypoint` + `Cmd`
//! (or the `run` overrides), looked up through the image's `PATH` (never the host's), symlinks
//! followed inside the root file system, `#!` scripts followed to their interpreter, and an ELF
//! file's `PT_INTERP` loader checked to exist.

use serde::{Deserialize, Serialize};

use super::elf::{self, ElfInfo, Head};
use super::requirements::{Problem, ProblemCode};
use super::rootfs::{Kind, Rootfs};

/// The `PATH` used when the image sets none (as runc/Docker).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How many `#!` interpreters are followed (Linux allows 4 levels).
const MAX_SCRIPT_DEPTH: usize = 4;

/// One step of what the kernel would execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecLink {
    /// The name as written (argv[0], a `#!` interpreter, a `PT_INTERP`).
    pub name: String,
    /// The file it resolves to inside the image (`/usr/bin/busybox`), after symlinks.
    pub path: String,
    /// What it is: `elf`, `script`, `loader`.
    pub kind: String,
    /// ELF facts when it is an ELF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elf: Option<ElfInfo>,
}

/// The resolved command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrypointFacts {
    /// The argv the container would start with.
    pub argv: Vec<String>,
    /// Where argv came from (`image config`, `--entrypoint override`, …).
    pub source: String,
    /// What gets executed, in order: the command, its script interpreters, the ELF loader.
    pub chain: Vec<ExecLink>,
}

/// What the user overrides at `run` time (Docker semantics: a new entrypoint clears the
/// image's `Cmd`; a command replaces `Cmd`).
#[derive(Debug, Clone, Default)]
pub struct Override {
    /// `--entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// The command arguments after the image.
    pub cmd: Option<Vec<String>>,
}

/// The image config's execution fields.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
}

/// Computes argv and follows it through the image. Problems go to `problems`.
pub fn resolve(
    fs: &Rootfs,
    cfg: &ExecConfig,
    ov: &Override,
    problems: &mut Vec<Problem>,
) -> EntrypointFacts {
    let (argv, source) = match (&ov.entrypoint, &ov.cmd) {
        (Some(e), c) => {
            let mut a = e.clone();
            a.extend(c.clone().unwrap_or_default());
            (a, "--entrypoint override".to_string())
        }
        (None, Some(c)) => {
            let mut a = cfg.entrypoint.clone();
            a.extend(c.clone());
            (a, "image Entrypoint + command override".to_string())
        }
        (None, None) => {
            let mut a = cfg.entrypoint.clone();
            a.extend(cfg.cmd.clone());
            (a, "image config Entrypoint + Cmd".to_string())
        }
    };
    let mut facts = EntrypointFacts {
        argv: argv.clone(),
        source: source.clone(),
        chain: Vec::new(),
    };
    let Some(cmd) = argv.first().filter(|c| !c.is_empty()) else {
        problems.push(Problem {
            code: ProblemCode::NoCommand,
            message: "no command: the image sets neither Entrypoint nor Cmd and none was given"
                .into(),
            evidence: vec![source],
        });
        return facts;
    };
    let path_var = cfg
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let cwd = cfg.working_dir.trim_start_matches('/').to_string();

    // argv[0]: with a slash, a path (relative to WorkingDir); without, a PATH search.
    let found = if cmd.contains('/') {
        match fs.resolve(cmd, &cwd) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(Problem {
                    code: ProblemCode::EntrypointMissing,
                    message: format!("entrypoint {cmd} not found in the image: {e}"),
                    evidence: vec![source.clone()],
                });
                return facts;
            }
        }
    } else {
        lookup_path(fs, cmd, &path_var, &cwd)
    };
    let Some(first) = found else {
        problems.push(Problem {
            code: ProblemCode::EntrypointMissing,
            message: format!("entrypoint {cmd:?} not found in the image's PATH"),
            evidence: vec![source.clone(), format!("PATH={path_var}")],
        });
        return facts;
    };

    let mut name = cmd.clone();
    let mut path = first;
    for depth in 0..=MAX_SCRIPT_DEPTH {
        let role = if depth == 0 {
            "entrypoint"
        } else {
            "interpreter"
        };
        let missing_code = if depth == 0 {
            ProblemCode::EntrypointMissing
        } else {
            ProblemCode::InterpreterMissing
        };
        let evidence = |facts: &EntrypointFacts| -> Vec<String> {
            let mut v: Vec<String> = facts.chain.iter().map(|l| format!("/{}", l.path)).collect();
            v.push(format!("/{path}"));
            v
        };
        let Some(entry) = fs.entry(&path) else {
            problems.push(Problem {
                code: missing_code,
                message: format!("{role} {name} not found in the image"),
                evidence: evidence(&facts),
            });
            return facts;
        };
        let host = fs.host_path(&path, entry);
        if entry.kind != Kind::File {
            problems.push(Problem {
                code: ProblemCode::EntrypointNotExecutable,
                message: format!("{role} /{path} is not a regular file"),
                evidence: evidence(&facts),
            });
            return facts;
        }
        let mode = std::fs::metadata(&host)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
            .unwrap_or(0);
        if mode & 0o111 == 0 {
            problems.push(Problem {
                code: ProblemCode::EntrypointNotExecutable,
                message: format!(
                    "{role} /{path} has no execute permission (mode {:o})",
                    mode & 0o7777
                ),
                evidence: evidence(&facts),
            });
            return facts;
        }
        let head = match elf::read_head(&host) {
            Ok(h) => h,
            Err(e) => {
                problems.push(Problem {
                    code: ProblemCode::EntrypointNotExecutable,
                    message: format!("{role} /{path} cannot be read: {e}"),
                    evidence: evidence(&facts),
                });
                return facts;
            }
        };
        match head {
            Head::Elf(info) => {
                let loader = info.interpreter.clone();
                facts.chain.push(ExecLink {
                    name: name.clone(),
                    path: path.clone(),
                    kind: "elf".into(),
                    elf: Some(*info),
                });
                if let Some(loader) = loader {
                    follow_loader(fs, &loader, &mut facts, problems);
                }
                return facts;
            }
            Head::Script { interpreter, arg } => {
                facts.chain.push(ExecLink {
                    name: name.clone(),
                    path: path.clone(),
                    kind: "script".into(),
                    elf: None,
                });
                if interpreter.is_empty() {
                    problems.push(Problem {
                        code: ProblemCode::InterpreterMissing,
                        message: format!("/{path} starts with #! but names no interpreter"),
                        evidence: evidence(&facts),
                    });
                    return facts;
                }
                // `#!/usr/bin/env prog`: env runs prog from PATH; follow env itself, then note
                // prog's absence as well (the container would fail the same way).
                match fs.resolve(&interpreter, "") {
                    Ok(p) => {
                        if interpreter.ends_with("/env")
                            && let Some(prog) = arg.as_deref().and_then(env_program)
                            && lookup_path(fs, prog, &path_var, &cwd).is_none()
                        {
                            problems.push(Problem {
                                        code: ProblemCode::InterpreterMissing,
                                        message: format!(
                                            "/{path} runs {prog:?} through {interpreter}, but {prog} is not in the image's PATH"
                                        ),
                                        evidence: vec![format!("/{path}"), format!("PATH={path_var}")],
                                    });
                        }
                        name = interpreter;
                        path = p;
                    }
                    Err(e) => {
                        problems.push(Problem {
                            code: ProblemCode::InterpreterMissing,
                            message: format!("script /{path} needs interpreter {interpreter}: {e}"),
                            evidence: evidence(&facts),
                        });
                        return facts;
                    }
                }
            }
            Head::Other => {
                facts.chain.push(ExecLink {
                    name: name.clone(),
                    path: path.clone(),
                    kind: "other".into(),
                    elf: None,
                });
                problems.push(Problem {
                    code: ProblemCode::EntrypointNotExecutable,
                    message: format!(
                        "{role} /{path} is neither ELF nor a #! script (exec format error)"
                    ),
                    evidence: evidence(&facts),
                });
                return facts;
            }
        }
    }
    problems.push(Problem {
        code: ProblemCode::EntrypointNotExecutable,
        message: format!("more than {MAX_SCRIPT_DEPTH} nested #! interpreters"),
        evidence: facts.chain.iter().map(|l| format!("/{}", l.path)).collect(),
    });
    facts
}

/// The program `env` would run: the first word that is not an option or an assignment.
fn env_program(arg: &str) -> Option<&str> {
    arg.split_whitespace()
        .find(|w| !w.starts_with('-') && !w.contains('='))
}

fn follow_loader(
    fs: &Rootfs,
    loader: &str,
    facts: &mut EntrypointFacts,
    problems: &mut Vec<Problem>,
) {
    let exe = facts
        .chain
        .last()
        .map(|l| l.path.clone())
        .unwrap_or_default();
    match fs.resolve(loader, "") {
        Ok(p) => {
            let elf = fs
                .entry(&p)
                .filter(|e| e.kind == Kind::File)
                .and_then(|e| elf::read_head(&fs.host_path(&p, e)).ok());
            match elf {
                Some(Head::Elf(info)) => facts.chain.push(ExecLink {
                    name: loader.to_string(),
                    path: p,
                    kind: "loader".into(),
                    elf: Some(*info),
                }),
                _ => problems.push(Problem {
                    code: ProblemCode::InterpreterMissing,
                    message: format!(
                        "/{exe} needs loader {loader}, which is not an ELF file in the image"
                    ),
                    evidence: vec![format!("/{exe} PT_INTERP {loader}"), format!("/{p}")],
                }),
            }
        }
        Err(e) => problems.push(Problem {
            code: ProblemCode::InterpreterMissing,
            message: format!("/{exe} needs loader {loader}: {e}"),
            evidence: vec![format!("/{exe} PT_INTERP {loader}")],
        }),
    }
}

/// Searches `PATH` as execvp does: the first entry naming an existing regular file (after
/// symlinks) wins. Relative PATH entries are relative to the working directory.
fn lookup_path(fs: &Rootfs, cmd: &str, path_var: &str, cwd: &str) -> Option<String> {
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{cmd}", dir.trim_end_matches('/'));
        if let Ok(p) = fs.resolve(&candidate, cwd)
            && fs.entry(&p).map(|e| e.kind == Kind::File).unwrap_or(false)
        {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    fn exe(p: &Path, body: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn codes(p: &[Problem]) -> Vec<ProblemCode> {
        p.iter().map(|p| p.code).collect()
    }

    fn setup() -> (tempfile::TempDir, Rootfs) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("l0");
        // A real static ELF (the host's busybox) and a real dynamic one without its loader.
        let busybox = std::fs::read("/bin/busybox").expect("busybox-static installed (ci/setup)");
        exe(&r.join("usr/bin/busybox"), &busybox);
        symlink("/usr/bin/busybox", r.join("usr/bin/sh")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        exe(&r.join("usr/local/bin/app.sh"), b"#!/bin/sh\necho hi\n");
        exe(&r.join("usr/local/bin/py"), b"#!/usr/bin/env python3\n");
        exe(&r.join("usr/local/bin/bad-interp"), b"#!/opt/nope/ruby\n");
        exe(&r.join("usr/local/bin/text"), b"just text\n");
        std::fs::write(r.join("usr/local/bin/noexec"), b"#!/bin/sh\n").unwrap();
        exe(
            &r.join("usr/bin/ls"),
            &std::fs::read("/usr/bin/ls").unwrap(),
        );
        let fs = Rootfs::open(&[r]).unwrap();
        (t, fs)
    }

    fn run(fs: &Rootfs, cmd: &[&str]) -> (EntrypointFacts, Vec<ProblemCode>) {
        let cfg = ExecConfig {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/local/bin:/bin".into()],
            ..Default::default()
        };
        let mut p = Vec::new();
        let f = resolve(fs, &cfg, &Override::default(), &mut p);
        (f, codes(&p))
    }

    #[test]
    fn chains() {
        let (_t, fs) = setup();
        let (f, p) = run(&fs, &["sh", "-c", "true"]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(f.chain.len(), 1);
        assert_eq!(f.chain[0].path, "usr/bin/busybox");
        assert_eq!(
            f.chain[0].elf.as_ref().unwrap().arch.as_deref(),
            Some("amd64")
        );

        let (f, p) = run(&fs, &["app.sh"]);
        assert!(p.is_empty(), "{p:?}");
        let paths: Vec<_> = f.chain.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["usr/local/bin/app.sh", "usr/bin/busybox"]);
    }

    #[test]
    fn problems() {
        let (_t, fs) = setup();
        assert_eq!(run(&fs, &["nope"]).1, [ProblemCode::EntrypointMissing]);
        assert_eq!(run(&fs, &["/nope/x"]).1, [ProblemCode::EntrypointMissing]);
        assert_eq!(run(&fs, &["py"]).1, [ProblemCode::InterpreterMissing]);
        assert_eq!(
            run(&fs, &["bad-interp"]).1,
            [ProblemCode::InterpreterMissing]
        );
        assert_eq!(
            run(&fs, &["text"]).1,
            [ProblemCode::EntrypointNotExecutable]
        );
        assert_eq!(
            run(&fs, &["/usr/local/bin/noexec"]).1,
            [ProblemCode::EntrypointNotExecutable]
        );
        assert_eq!(
            run(&fs, &["/usr/bin"]).1,
            [ProblemCode::EntrypointNotExecutable]
        );
        // ls is dynamic; its loader is not in this image.
        assert_eq!(
            run(&fs, &["/usr/bin/ls"]).1,
            [ProblemCode::InterpreterMissing]
        );
        assert_eq!(run(&fs, &[]).1, [ProblemCode::NoCommand]);
    }

    #[test]
    fn overrides() {
        let (_t, fs) = setup();
        let cfg = ExecConfig {
            entrypoint: vec!["nope".into()],
            cmd: vec!["x".into()],
            ..Default::default()
        };
        let mut p = Vec::new();
        let ov = Override {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: None,
        };
        let f = resolve(&fs, &cfg, &ov, &mut p);
        assert!(p.is_empty());
        assert_eq!(f.argv, ["/bin/sh"]);
        // Without an image PATH the default one is used (/bin is in it).
        let ov = Override {
            entrypoint: None,
            cmd: Some(vec!["sh".into()]),
        };
        let cfg = ExecConfig::default();
        let f = resolve(&fs, &cfg, &ov, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(f.chain[0].path, "usr/bin/busybox");
    }
}
