//! Runs a parsed Dockerfile for one platform: picks the stages the target needs (and
//! refuses cycles), then runs each stage's steps in order — metadata steps change the
//! config, `RUN` runs a container through the [`BuildHost`], `COPY`/`ADD` stage files —
//! taking each step's result from the cache when its key is known.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::BuildError;
use super::cache::{Cache, step_key};
use super::context::Context;
use super::copy::{self, Attrs};
use super::dockerfile::{CommandForm, Dockerfile, Flag, Instruction, Source, Step};
use super::expand;
use super::image::store_layer;
use super::layer::LayerOptions;
use super::rootfs;
use super::state::ImageState;
use crate::platform::Platform;
use crate::store::Store;

/// A `RUN` step for the host to run as a container.
#[derive(Debug)]
pub struct RunStep<'a> {
    /// The image config the container starts from.
    pub config: &'a Value,
    /// The layer snapshot directories, lowest first (read-only lower layers).
    pub layer_dirs: Vec<PathBuf>,
    /// The command (already through the `SHELL` for the shell form).
    pub argv: Vec<String>,
    /// The environment (`ENV` and the `ARG`s in scope).
    pub env: Vec<String>,
    /// `WORKDIR`.
    pub workdir: Option<String>,
    /// `USER`.
    pub user: Option<String>,
    /// The platform the step's image is for (a foreign one runs emulated).
    pub platform: &'a Platform,
}

/// What the executor needs from its caller: base images, containers, and a place for
/// progress lines.
pub trait BuildHost: Sync {
    /// The image `reference` for `platform` (pulled when missing), and a string that
    /// identifies its content (the manifest digest) for cache keys.
    fn base_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<(ImageState, String), BuildError>;
    /// Runs `step` as a container; when it exits 0, calls `collect` with its writable
    /// layer's directory (overlay form) before the container is removed. Returns the exit code.
    fn run(
        &self,
        step: &RunStep<'_>,
        collect: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<i32, BuildError>;
    /// A progress line (`#3 [2/5] RUN …`).
    fn progress(&self, line: &str);
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's name for messages.
    pub file_name: String,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// The platform to build for.
    pub platform: Platform,
    /// The platform of this machine.
    pub build_platform: Platform,
    /// `SOURCE_DATE_EPOCH`: clamp layer times, date the config.
    pub epoch: Option<u64>,
    /// Name the platform in progress lines (multi-platform builds).
    pub show_platform: bool,
}

/// A stage built: its image and its key.
#[derive(Debug, Clone)]
struct Built {
    state: ImageState,
    key: String,
}

struct Run<'a> {
    df: &'a Dockerfile,
    ctx: &'a Context,
    store: &'a Store,
    host: &'a dyn BuildHost,
    opts: &'a BuildOptions,
    counter: &'a AtomicUsize,
    cache: Cache,
    names: Vec<Option<String>>,
    meta: HashMap<String, String>,
    built: HashMap<usize, Built>,
}

/// Builds the target stage of `df` for `opts.platform`; `counter` numbers the progress
/// lines (shared between concurrent platform builds). The image's layers are in the store;
/// write the image itself with [`super::image::write_image`].
pub fn build_stage_target(
    df: &Dockerfile,
    ctx: &Context,
    store: &Store,
    host: &dyn BuildHost,
    opts: &BuildOptions,
    counter: &AtomicUsize,
) -> Result<ImageState, BuildError> {
    let names = df
        .stages
        .iter()
        .map(|s| match &s[0].instruction {
            Instruction::From { name, .. } => name.as_ref().map(|n| n.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut run = Run {
        df,
        ctx,
        store,
        host,
        opts,
        counter,
        cache: Cache::open(store.root()),
        names,
        meta: HashMap::new(),
        built: HashMap::new(),
    };
    run.meta = run.meta_args()?;
    let target = match &opts.target {
        None => df.stages.len() - 1,
        Some(t) => run.stage_index(t).ok_or_else(|| {
            BuildError::Invalid(format!(
                "--target {t}: no stage of that name in {}",
                opts.file_name
            ))
        })?,
    };
    let mut order = Vec::new();
    run.order(target, &mut Vec::new(), &mut order)?;
    for i in order {
        let b = run.build_stage(i)?;
        run.built.insert(i, b);
    }
    let mut state = run
        .built
        .remove(&target)
        .expect("the target was built")
        .state;
    for (k, v) in &opts.labels {
        state.insert_in("Labels", k, json!(v));
    }
    Ok(state)
}

/// The automatic platform args (`TARGETPLATFORM`, `BUILDARCH`, …).
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        let variant = p
            .variant
            .clone()
            .filter(|v| !(p.architecture == "arm64" && v == "v8"))
            .unwrap_or_default();
        let full = if variant.is_empty() {
            format!("{}/{}", p.os, p.architecture)
        } else {
            format!("{}/{}/{variant}", p.os, p.architecture)
        };
        out.push((format!("{prefix}PLATFORM"), full));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), variant));
    }
    out
}

fn now(epoch: Option<u64>) -> String {
    let t = match epoch {
        Some(e) => time::OffsetDateTime::from_unix_timestamp(e as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        None => time::OffsetDateTime::now_utc(),
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn flag<'f>(flags: &'f [Flag], name: &str) -> Option<&'f str> {
    flags
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.as_deref())
}

pub(super) fn command_argv(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// Parses a Go-style duration (`30s`, `1m30s`, `500ms`) into nanoseconds.
pub fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[u..];
    }
    Some(total as u64)
}

impl Run<'_> {
    fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&i| i < self.df.stages.len())
            })
    }

    /// The global (meta) args: declared before the first FROM, with build args and the
    /// automatic platform args.
    fn meta_args(&self) -> Result<HashMap<String, String>, BuildError> {
        let mut m: HashMap<String, String> =
            platform_args(&self.opts.platform, &self.opts.build_platform)
                .into_iter()
                .collect();
        for step in &self.df.global_args {
            if let Instruction::Arg(raw) = &step.instruction {
                for w in expand::words(raw, &|k| m.get(k).cloned(), self.df.escape)? {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.clone(), None),
                    };
                    let v = self.opts.build_args.get(&name).cloned().or(default);
                    if let Some(v) = v {
                        m.insert(name, v);
                    }
                }
            }
        }
        Ok(m)
    }

    /// The stages stage `i` needs (its FROM stage, its COPY --from stages).
    fn deps(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for (n, step) in self.df.stages[i].iter().enumerate() {
            match &step.instruction {
                Instruction::From { image, .. } if n == 0 => {
                    let img = expand::word(image, &|k| self.meta.get(k).cloned(), self.df.escape)
                        .unwrap_or_default();
                    if let Some(j) = self.stage_index_named(&img)
                        && j < i
                    {
                        out.push(j);
                    }
                }
                Instruction::Copy { flags, .. } => {
                    if let Some(from) = flag(flags, "from")
                        && let Some(j) = self.stage_index(from)
                    {
                        out.push(j);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// A stage by name only (FROM never takes an index).
    fn stage_index_named(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
    }

    fn stage_label(&self, i: usize) -> String {
        match &self.names[i] {
            Some(n) => n.clone(),
            None => format!("stage-{i}"),
        }
    }

    fn order(
        &self,
        i: usize,
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), BuildError> {
        if out.contains(&i) {
            return Ok(());
        }
        if let Some(pos) = path.iter().position(|&p| p == i) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&s| self.stage_label(s)).collect();
            cycle.push(self.stage_label(i));
            return Err(BuildError::Cycle(format!(
                "{} (COPY --from and FROM must not refer back to a stage that needs them)",
                cycle.join(" -> ")
            )));
        }
        path.push(i);
        for d in self.deps(i) {
            self.order(d, path, out)?;
        }
        path.pop();
        out.push(i);
        Ok(())
    }

    fn header(&self, i: usize, n: usize, total: usize, step: &Step) -> (usize, String) {
        let id = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let mut label = String::new();
        if self.opts.show_platform {
            label.push_str(&self.opts.platform.to_string());
            label.push(' ');
        }
        if self.df.stages.len() > 1 {
            label.push_str(&self.stage_label(i));
            label.push(' ');
        }
        let line = format!("[{label}{n}/{total}] {}", step.text);
        self.host.progress(&format!("#{id} {line}"));
        (id, line)
    }

    fn build_stage(&mut self, i: usize) -> Result<Built, BuildError> {
        let steps = &self.df.stages[i];
        let total = steps.len();
        let esc = self.df.escape;
        let Instruction::From {
            image, platform, ..
        } = &steps[0].instruction
        else {
            unreachable!("a stage starts with FROM")
        };
        let (id, _) = self.header(i, 1, total, &steps[0]);
        let meta = |k: &str| self.meta.get(k).cloned();
        let image = expand::word(image, &meta, esc)?;
        let platform = match platform {
            Some(p) => {
                let p = expand::word(p, &meta, esc)?;
                p.parse::<Platform>()
                    .map_err(|e| BuildError::Invalid(format!("FROM --platform={p}: {e}")))?
                    .normalize()
            }
            None => self.opts.platform.clone(),
        };
        let (mut state, base_id) = if image.eq_ignore_ascii_case("scratch") {
            (ImageState::scratch(&platform), "scratch".to_string())
        } else if let Some(j) = self.stage_index_named(&image).filter(|&j| j < i) {
            let b = &self.built[&j];
            (b.state.clone(), format!("stage:{}", b.key))
        } else {
            self.host.base_image(&image, &platform)?
        };
        self.host.progress(&format!("#{id} DONE"));
        let mut key = step_key("", &["FROM", &base_id, &platform.to_string()]);
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        let mut cmd_set = false;
        self.run_triggers(i, &mut state, &mut key, &mut args, &mut cmd_set)?;
        for (n, step) in steps.iter().enumerate().skip(1) {
            let (id, line) = self.header(i, n + 1, total, step);
            let started = Instant::now();
            let cached = self.step(step, &line, &mut state, &mut key, &mut args, &mut cmd_set)?;
            if cached {
                self.host.progress(&format!("#{id} CACHED"));
            } else {
                self.host.progress(&format!(
                    "#{id} DONE {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        Ok(Built { state, key })
    }

    /// Runs the base image's `ONBUILD` triggers (its config's `OnBuild`), right after
    /// `FROM` as Docker does, and clears them from the new image's config.
    fn run_triggers(
        &self,
        i: usize,
        state: &mut ImageState,
        key: &mut String,
        args: &mut BTreeMap<String, String>,
        cmd_set: &mut bool,
    ) -> Result<(), BuildError> {
        let triggers = state.get_list("OnBuild").unwrap_or_default();
        if triggers.is_empty() {
            return Ok(());
        }
        state.set("OnBuild", Value::Null);
        let from_line = self.df.stages[i][0].line;
        let id = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.host.progress(&format!(
            "#{id} Executing {} build trigger{}",
            triggers.len(),
            if triggers.len() == 1 { "" } else { "s" }
        ));
        for t in &triggers {
            let bad = |message: String| BuildError::Syntax {
                file: self.opts.file_name.clone(),
                line: from_line,
                message: format!("ONBUILD trigger {t:?} of the base image: {message}"),
            };
            let df = super::parse(&format!("FROM scratch\n{t}\n"), "ONBUILD")
                .map_err(|e| bad(e.to_string()))?;
            let Some(step) = df.stages.first().and_then(|s| s.get(1)).cloned() else {
                return Err(bad("no instruction".into()));
            };
            if df.stages.len() > 1
                || df.stages[0].len() > 2
                || matches!(
                    step.instruction,
                    Instruction::Onbuild(_) | Instruction::Maintainer(_)
                )
            {
                return Err(bad("not one instruction ONBUILD may run".into()));
            }
            let step = Step {
                line: from_line,
                ..step
            };
            let (id, line) = self.header(i, 1, self.df.stages[i].len(), &step);
            let cached = self.step(&step, &line, state, key, args, cmd_set)?;
            self.host
                .progress(&format!("#{id} {}", if cached { "CACHED" } else { "DONE" }));
        }
        Ok(())
    }

    /// Runs one step; true when its result came from the cache.
    fn step(
        &self,
        step: &Step,
        line: &str,
        state: &mut ImageState,
        key: &mut String,
        args: &mut BTreeMap<String, String>,
        cmd_set: &mut bool,
    ) -> Result<bool, BuildError> {
        let esc = self.df.escape;
        let env_snapshot = state.clone();
        let args_snapshot = args.clone();
        let lookup = move |k: &str| {
            env_snapshot
                .env_var(k)
                .or_else(|| args_snapshot.get(k).cloned())
        };
        let created = now(self.opts.epoch);
        let shell = state
            .get_list("Shell")
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let metadata = !matches!(
            step.instruction,
            Instruction::Arg(_) | Instruction::Run { .. } | Instruction::Copy { .. }
        );
        if metadata {
            // Its inputs (config, args) are in the parent's key already.
            *key = step_key(key, &["META", &step.text, &format!("{cmd_set}")]);
            if self.cached(key, state) {
                if matches!(step.instruction, Instruction::Cmd(_)) {
                    *cmd_set = true;
                }
                return Ok(true);
            }
        }
        match &step.instruction {
            Instruction::From { .. } => unreachable!("FROM starts a stage"),
            Instruction::Arg(raw) => {
                for w in expand::words(raw, &lookup, esc)? {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.clone(), None),
                    };
                    let v = self
                        .opts
                        .build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| self.meta.get(&name).cloned());
                    args.insert(name, v.unwrap_or_default());
                }
                *key = step_key(key, &["ARG", &format!("{args:?}")]);
                return Ok(false);
            }
            Instruction::Run { flags, command } => {
                return self.run_step(
                    step, line, state, key, args, flags, command, &shell, &created,
                );
            }
            Instruction::Copy {
                add,
                flags,
                sources,
                dest,
            } => {
                return self.copy_step(
                    step, line, state, key, &lookup, *add, flags, sources, dest, &created,
                );
            }
            other => super::metadata::apply(other, state, &lookup, esc, &shell, cmd_set, line)?,
        }
        // A metadata step: no layer, a history entry.
        state.push_history(&step.text, true, &created);
        self.cache.put(key, state);
        Ok(false)
    }

    /// The snapshot directories of `state`'s layers (unpacked on first use).
    fn layer_dirs(&self, state: &ImageState) -> Result<Vec<PathBuf>, BuildError> {
        state
            .layers
            .iter()
            .map(|l| Ok(self.store.unpack_layer(l)?))
            .collect()
    }

    fn cached(&self, key: &str, state: &mut ImageState) -> bool {
        if self.opts.no_cache {
            return false;
        }
        match self.cache.get(key, self.store, &state.platform) {
            Some(s) => {
                *state = s;
                true
            }
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        step: &Step,
        line: &str,
        state: &mut ImageState,
        key: &mut String,
        args: &BTreeMap<String, String>,
        flags: &[Flag],
        command: &CommandForm,
        shell: &[String],
        created: &str,
    ) -> Result<bool, BuildError> {
        for f in flags {
            match (f.name.as_str(), f.value.as_deref()) {
                ("network", Some("none" | "default")) => {}
                _ => {
                    return Err(BuildError::Invalid(format!(
                        "{}:{}: RUN --{}: not supported by xrun build (steps run with no network; mounts are not offered)",
                        self.opts.file_name, step.line, f.name
                    )));
                }
            }
        }
        let argv = command_argv(command, shell);
        let mut env = state.env();
        for (k, v) in args {
            if state.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        let workdir = state.get_str("WorkingDir");
        let user = state.get_str("User");
        *key = step_key(
            key,
            &[
                "RUN",
                &serde_json::to_string(&argv).unwrap_or_default(),
                &serde_json::to_string(&env).unwrap_or_default(),
                workdir.as_deref().unwrap_or(""),
                user.as_deref().unwrap_or(""),
            ],
        );
        if self.cached(key, state) {
            return Ok(true);
        }
        let run = RunStep {
            config: &state.config,
            layer_dirs: self.layer_dirs(state)?,
            argv: argv.clone(),
            env,
            workdir,
            user,
            platform: &state.platform,
        };
        let mut layer = None;
        let opts = LayerOptions {
            epoch: self.opts.epoch,
        };
        let code = self.host.run(&run, &mut |upper| {
            layer = store_layer(self.store, upper, opts)?;
            Ok(())
        })?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                step: line.to_string(),
                command: match command {
                    CommandForm::Shell(s) => format!("{} {s}", shell.join(" ")),
                    CommandForm::Exec(v) => v.join(" "),
                },
                code,
            });
        }
        let empty = layer.is_none();
        if let Some(l) = layer {
            state.add_layer(l);
        }
        state.push_history(&step.text, empty, created);
        self.cache.put(key, state);
        Ok(false)
    }

    /// The directory `--from` sources are read from (a merged view of a stage or image),
    /// and its cache identity; the guard unmounts it.
    fn source_root(&self, from: &str) -> Result<(FromRoot, String), BuildError> {
        let (state, id) = match self.stage_index(from).and_then(|j| self.built.get(&j)) {
            Some(b) => (b.state.clone(), format!("stage:{}", b.key)),
            None => self.host.base_image(from, &self.opts.platform)?,
        };
        let dirs = self.layer_dirs(&state)?;
        Ok((FromRoot::new(self.store, dirs)?, id))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        step: &Step,
        line: &str,
        state: &mut ImageState,
        key: &mut String,
        lookup: &dyn Fn(&str) -> Option<String>,
        add: bool,
        flags: &[Flag],
        sources: &[Source],
        dest: &str,
        created: &str,
    ) -> Result<bool, BuildError> {
        let esc = self.df.escape;
        let what = if add { "ADD" } else { "COPY" };
        for f in flags {
            if !matches!(f.name.as_str(), "from" | "chown" | "chmod" | "link") {
                return Err(BuildError::Invalid(format!(
                    "{}:{}: {what} --{}: not supported (use --from, --chown, --chmod)",
                    self.opts.file_name, step.line, f.name
                )));
            }
        }
        if add && flag(flags, "from").is_some() {
            return Err(BuildError::Invalid(format!(
                "{line}: ADD has no --from: use COPY --from"
            )));
        }
        let from = flag(flags, "from")
            .map(|f| expand::word(f, lookup, esc))
            .transpose()?;
        let chown = flag(flags, "chown")
            .map(|f| expand::word(f, lookup, esc))
            .transpose()?;
        let chmod = match flag(flags, "chmod") {
            None => None,
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                BuildError::Invalid(format!(
                    "{line}: --chmod={m}: give octal mode bits such as 0755"
                ))
            })?),
        };
        let mut dest = expand::word(dest.trim(), lookup, esc)?;
        if !dest.starts_with('/') {
            let wd = state.get_str("WorkingDir").unwrap_or_else(|| "/".into());
            let keep_slash = dest.ends_with('/') || dest == ".";
            dest = format!(
                "{}/{}",
                wd.trim_end_matches('/'),
                dest.trim_start_matches("./")
            );
            if dest.ends_with("/.") {
                dest.truncate(dest.len() - 1);
            }
            if keep_slash && !dest.ends_with('/') {
                dest.push('/');
            }
        }
        // Lexically inside the image, as Docker cleans it: `/../../tmp` is `/tmp`.
        dest = clean_image_path(&dest);
        // Sources: context (or --from root) paths, and inline heredoc files.
        let (root_guard, from_id) = match &from {
            Some(f) => {
                let (r, id) = self.source_root(f)?;
                (Some(r), Some(id))
            }
            None => (None, None),
        };
        let src_ctx = match &root_guard {
            Some(r) => Context::plain(r.path()),
            None => self.ctx.clone(),
        };
        let mut paths: Vec<String> = Vec::new();
        let mut inline: Vec<String> = Vec::new();
        for s in sources {
            match s {
                Source::Path(p) => {
                    let p = expand::word(p, lookup, esc)?;
                    if add && (p.contains("://") || p.starts_with("git@")) {
                        return Err(BuildError::Invalid(format!(
                            "{line}: ADD {p}: remote sources are refused — builds here have no internet; download it first and ADD the local file"
                        )));
                    }
                    paths.extend(src_ctx.resolve(&p).map_err(|e| match &from {
                        Some(f) => BuildError::Context(format!("{line}: {p} not found in {f}")),
                        None => e,
                    })?);
                }
                Source::Inline { body, expand: ex } => {
                    inline.push(if *ex {
                        expand::variables_only(body, lookup)?
                    } else {
                        body.clone()
                    });
                }
            }
        }
        let count = paths.len() + inline.len();
        let dest_is_dir = dest.ends_with('/');
        if count > 1 && !dest_is_dir {
            return Err(BuildError::Invalid(format!(
                "{line}: with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let content = match &from_id {
            Some(id) => format!("{id}:{paths:?}"),
            None => src_ctx.digest(&paths)?,
        };
        *key = step_key(
            key,
            &[
                what,
                &step.text,
                &dest,
                &content,
                &format!("{inline:?}{chown:?}{chmod:?}"),
            ],
        );
        if self.cached(key, state) {
            return Ok(true);
        }
        let layers = self.layer_dirs(state)?;
        let owner = chown
            .as_deref()
            .map(|c| rootfs::owner(&layers, c))
            .transpose()?;
        let attrs = Attrs { owner, mode: chmod };
        let scratch = self.store.scratch_dir("copy")?;
        let staging = scratch.path().join("rootfs");
        std::fs::create_dir(&staging).map_err(|e| BuildError::io("staging a copy", e))?;
        let dest_rel = dest
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let into_dir = dest_is_dir || rootfs::is_dir(&layers, &dest_rel);
        for body in &inline {
            let target_rel = if into_dir {
                format!("{dest_rel}/heredoc")
            } else {
                dest_rel.clone()
            };
            copy::make_parents(&staging, &target_rel, &layers)?;
            copy::write_inline(&staging.join(&target_rel), body, attrs)?;
        }
        for rel in &paths {
            let src = src_ctx.dir().join(rel);
            let md = std::fs::symlink_metadata(&src)
                .map_err(|e| BuildError::io(src.display().to_string(), e))?;
            if md.is_dir() || (add && from.is_none() && copy::is_archive(&src)) {
                // A directory's contents (or an archive's) go into the destination directory.
                let mut acc = String::new();
                for part in dest_rel.split('/').filter(|p| !p.is_empty()) {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(part);
                    copy::make_dir(&staging, &acc, &layers)?;
                }
                if md.is_dir() {
                    copy::copy_tree(&src, &staging.join(&dest_rel), attrs)?;
                } else {
                    copy::extract_archive(&src, &staging.join(&dest_rel))?;
                }
            } else {
                let name = Path::new(rel)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target_rel = if into_dir || dest_rel.is_empty() {
                    if dest_rel.is_empty() {
                        name
                    } else {
                        format!("{dest_rel}/{name}")
                    }
                } else {
                    dest_rel.clone()
                };
                copy::make_parents(&staging, &target_rel, &layers)?;
                copy::copy_tree(&src, &staging.join(&target_rel), attrs)?;
            }
        }
        drop(root_guard);
        let layer = store_layer(
            self.store,
            &staging,
            LayerOptions {
                epoch: self.opts.epoch,
            },
        )?;
        let empty = layer.is_none();
        if let Some(l) = layer {
            state.add_layer(l);
        }
        state.push_history(&step.text, empty, created);
        self.cache.put(key, state);
        Ok(false)
    }
}

/// A read-only merged view of layer snapshots: the one directory itself, an empty scratch
/// directory, or an overlay mount removed on drop.
struct FromRoot {
    path: PathBuf,
    mounted: bool,
    _scratch: Option<crate::store::ScratchDir>,
}

impl FromRoot {
    fn new(store: &Store, dirs: Vec<PathBuf>) -> Result<FromRoot, BuildError> {
        match dirs.len() {
            1 => Ok(FromRoot {
                path: dirs[0].clone(),
                mounted: false,
                _scratch: None,
            }),
            n => {
                let scratch = store.scratch_dir("from")?;
                let path = scratch.path().join("merged");
                std::fs::create_dir(&path)
                    .map_err(|e| BuildError::io("making a mount point", e))?;
                let mut mounted = false;
                if n > 1 {
                    let lower: Vec<String> =
                        dirs.iter().rev().map(|d| d.display().to_string()).collect();
                    let data = format!("lowerdir={}", lower.join(":"));
                    nix::mount::mount(
                        Some("overlay"),
                        &path,
                        Some("overlay"),
                        nix::mount::MsFlags::MS_RDONLY,
                        Some(data.as_str()),
                    )
                    .map_err(|e| BuildError::io("mounting the --from stage's layers", e.into()))?;
                    mounted = true;
                }
                Ok(FromRoot {
                    path,
                    mounted,
                    _scratch: Some(scratch),
                })
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FromRoot {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_platform_args() {
        assert_eq!(duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("x"), None);
        let a = platform_args(
            &"linux/arm64".parse::<Platform>().unwrap().normalize(),
            &"linux/amd64".parse().unwrap(),
        );
        let m: HashMap<_, _> = a.into_iter().collect();
        assert_eq!(m["TARGETPLATFORM"], "linux/arm64");
        assert_eq!(m["TARGETARCH"], "arm64");
        assert_eq!(m["TARGETVARIANT"], "");
        assert_eq!(m["BUILDARCH"], "amd64");
    }
}

/// An absolute image path cleaned lexically, as Go's `path.Clean` on a rooted path: `.` and
/// empty parts dropped, `..` removes the part before it and never climbs above `/`; a trailing
/// `/` (the destination is a directory) is kept.
pub(crate) fn clean_image_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod clean_tests {
    use super::clean_image_path;

    #[test]
    fn destinations_stay_inside_the_image() {
        for (given, want) in [
            ("/../../../../tmp/evil", "/tmp/evil"),
            ("/app/../../etc/", "/etc/"),
            ("/a/./b//c", "/a/b/c"),
            ("/..", "/"),
            ("/", "/"),
            ("/app/", "/app/"),
        ] {
            assert_eq!(clean_image_path(given), want, "{given}");
        }
    }
}
