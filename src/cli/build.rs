//! `xrun build` and `xrun commit`: parse the flags into a [`BuildRequest`] or a
//! [`CommitRequest`], print the engine's progress lines and the result.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use xrun::engine::{BuildRequest, CommitRequest, Engine, EngineError, Observer};
use xrun::registry::{Progress, progress};

use super::Global;

/// Build an image from a Dockerfile.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name (and tag) for the image; repeatable.
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Platforms to build, comma-separated (default: this machine's).
    #[arg(long, value_name = "P1,P2")]
    pub platform: Option<String>,
    /// A build argument `KEY=VALUE` (or `KEY` to take it from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, using no cached result.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// A label `KEY=VALUE` for the image; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Progress output: auto or plain (both print one line per step).
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "quiet"])]
    pub progress: String,
    /// Only print the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Also write the image elsewhere: `type=oci,dest=FILE` (an OCI layout tar).
    #[arg(long, value_name = "type=oci,dest=FILE")]
    pub output: Option<String>,
    /// A host profile (`xrun host --format json`) the image must run on natively; the
    /// build fails (exit 125) otherwise. Repeatable.
    #[arg(long = "check-host-profile", value_name = "FILE")]
    pub check_host_profile: Vec<PathBuf>,
    /// The build context directory.
    pub context: PathBuf,
}

struct BuildObserver {
    quiet: bool,
}

impl Observer for BuildObserver {
    fn pull_progress(&self) -> Box<dyn Progress> {
        if self.quiet {
            Box::new(progress::Silent)
        } else {
            Box::new(super::run::StderrLines)
        }
    }
    fn warning(&self, message: &str) {
        eprintln!("xrun: warning: {message}");
    }
    fn progress(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
    fn build_output(&self, data: &[u8]) {
        if !self.quiet {
            use std::io::Write;
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(data);
            let _ = e.flush();
        }
    }
}

fn key_values(
    flag: &str,
    list: &[String],
    from_env: bool,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut out = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !kv.is_empty() => {
                if let Ok(v) = std::env::var(kv) {
                    out.insert(kv.clone(), v);
                }
            }
            _ => {
                return Err(EngineError::Invalid(format!(
                    "{flag} {kv:?}: expected KEY=VALUE"
                )));
            }
        }
    }
    Ok(out)
}

/// `--output type=oci,dest=FILE` → FILE.
fn output(spec: &str) -> Result<PathBuf, EngineError> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "--output {spec}: expected type=oci,dest=FILE"
                )));
            }
        }
    }
    match (kind, dest) {
        (Some("oci"), Some(d)) => Ok(d),
        _ => Err(EngineError::Invalid(format!(
            "--output {spec}: only type=oci,dest=FILE is supported (an OCI layout tar)"
        ))),
    }
}

fn request(a: &BuildArgs) -> Result<BuildRequest, EngineError> {
    let platforms = match &a.platform {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<xrun::platform::Platform>()
                    .map(|p| p.normalize())
            })
            .collect::<Result<_, _>>()?,
    };
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<u64>().map_err(|_| {
            EngineError::Invalid(format!(
                "SOURCE_DATE_EPOCH={v}: expected seconds since 1970"
            ))
        })?),
        _ => None,
    };
    Ok(BuildRequest {
        context: a.context.clone(),
        dockerfile: a.file.clone(),
        tags: a.tags.clone(),
        platforms,
        build_args: key_values("--build-arg", &a.build_args, true)?,
        labels: key_values("--label", &a.labels, false)?,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        output: a.output.as_deref().map(output).transpose()?,
        epoch,
        host_profiles: a.check_host_profile.clone(),
    })
}

/// `xrun build`.
pub fn build(g: &Global, a: BuildArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let quiet = a.quiet || a.progress == "quiet";
    let result = request(&a).and_then(|req| engine.build(&req, &BuildObserver { quiet }));
    match result {
        Ok(out) => {
            if quiet {
                println!("{}", out.digest);
            } else {
                for (p, d) in &out.images {
                    if out.images.len() > 1 {
                        eprintln!("{p}: {d}");
                    }
                }
                eprintln!("writing image {} done", out.digest);
                for t in &a.tags {
                    eprintln!("naming to {t} done");
                }
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("xrun: {}", super::hints::with_hint(e.to_string()));
            Ok(e.exit_code())
        }
    }
}

/// Create a new image from a container's changes.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction to apply to the config (CMD, ENTRYPOINT, ENV, LABEL, EXPOSE,
    /// USER, WORKDIR, VOLUME, STOPSIGNAL…); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// A commit message (the history entry's comment).
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// The author.
    #[arg(short = 'a', long = "author")]
    pub author: Option<String>,
    /// The container.
    pub container: String,
    /// The image name to record it under.
    pub reference: String,
}

/// `xrun commit`.
pub fn commit(g: &Global, a: CommitArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let req = CommitRequest {
        container: a.container,
        reference: a.reference,
        changes: a.changes,
        message: a.message,
        author: a.author,
    };
    match engine.commit(&req) {
        Ok(rec) => {
            println!("{}", rec.config_digest);
            Ok(0)
        }
        Err(e) => {
            eprintln!("xrun: {}", super::hints::with_hint(e.to_string()));
            Ok(e.exit_code())
        }
    }
}

/// `xrun builder …`.
#[derive(Debug, clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache (and the layers only it kept).
    Prune {
        /// Accepted for Docker compatibility (xrun never asks).
        #[arg(short, long)]
        force: bool,
        /// Accepted for Docker compatibility (the whole cache goes).
        #[arg(short, long)]
        all: bool,
    },
}

/// `xrun builder prune`.
pub fn builder(g: &Global, c: BuilderCommand) -> anyhow::Result<u8> {
    let BuilderCommand::Prune { .. } = c;
    let engine = Engine::open(&g.root);
    match engine.prune_build_cache() {
        Ok(out) => {
            if let Some(why) = &out.deferred {
                eprintln!("xrun: warning: layers not collected now: {why}");
            }
            println!(
                "Deleted build cache objects: {}\nTotal reclaimed space: {}",
                out.entries.len(),
                super::images::human_size(out.bytes)
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("xrun: {}", super::hints::with_hint(e.to_string()));
            Ok(e.exit_code())
        }
    }
}
