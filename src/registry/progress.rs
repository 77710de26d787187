//! Pull progress: bars on a terminal (stderr), Docker-like lines otherwise, nothing but the
//! reference with `-q`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;

/// Receives the events of a pull. Every method has an empty default.
pub trait Progress: Send + Sync {
    /// The pull of `reference` starts (`tag: Pulling from repo`).
    fn start(&self, _tag: &str, _repository: &str) {}
    /// A layer will be downloaded.
    fn layer_queued(&self, _layer: &Digest, _size: u64) {}
    /// A layer is already in the store.
    fn layer_exists(&self, _layer: &Digest) {}
    /// Bytes of a layer arrived (`done` so far).
    fn layer_bytes(&self, _layer: &Digest, _done: u64) {}
    /// A layer was downloaded and verified.
    fn layer_done(&self, _layer: &Digest) {}
    /// All blobs are in and recorded; `digest` is what was pulled (index or manifest).
    fn finish(&self, _reference: &str, _digest: &Digest, _new: bool) {}
}

/// Prints nothing during the pull and the reference at the end (`docker pull -q`).
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn finish(&self, reference: &str, _digest: &Digest, _new: bool) {
        println!("{reference}");
    }
}

/// Prints nothing at all (library callers such as `xrun run` that report themselves).
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Docker's plain progress lines, on stdout.
#[derive(Debug, Default)]
pub struct Lines;

fn line(s: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

impl Progress for Lines {
    fn start(&self, tag: &str, repository: &str) {
        line(format!("{tag}: Pulling from {repository}"));
    }
    fn layer_queued(&self, layer: &Digest, _size: u64) {
        line(format!("{}: Pulling fs layer", layer.short()));
    }
    fn layer_exists(&self, layer: &Digest) {
        line(format!("{}: Already exists", layer.short()));
    }
    fn layer_done(&self, layer: &Digest) {
        line(format!("{}: Download complete", layer.short()));
    }
    fn finish(&self, reference: &str, digest: &Digest, new: bool) {
        finish_lines(reference, digest, new);
    }
}

fn finish_lines(reference: &str, digest: &Digest, new: bool) {
    line(format!("Digest: {digest}"));
    if new {
        line(format!("Status: Downloaded newer image for {reference}"));
    } else {
        line(format!("Status: Image is up to date for {reference}"));
    }
    line(reference.to_string());
}

/// indicatif bars on stderr, one per layer; the final lines on stdout.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Bars {
    fn bar(&self, layer: &Digest) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(layer).cloned()
    }
}

impl Progress for Bars {
    fn start(&self, tag: &str, repository: &str) {
        let _ = self
            .multi
            .println(format!("{tag}: Pulling from {repository}"));
    }
    fn layer_queued(&self, layer: &Digest, size: u64) {
        let style =
            ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> ");
        let pb = self.multi.add(ProgressBar::new(size));
        pb.set_style(style);
        pb.set_prefix(layer.short().to_string());
        pb.set_message("Downloading");
        if let Ok(mut b) = self.bars.lock() {
            b.insert(layer.clone(), pb);
        }
    }
    fn layer_exists(&self, layer: &Digest) {
        let _ = self
            .multi
            .println(format!("{}: Already exists", layer.short()));
    }
    fn layer_bytes(&self, layer: &Digest, done: u64) {
        if let Some(pb) = self.bar(layer) {
            pb.set_position(done);
        }
    }
    fn layer_done(&self, layer: &Digest) {
        if let Some(pb) = self.bar(layer) {
            pb.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("valid"));
            pb.finish_with_message("Download complete");
        }
    }
    fn finish(&self, reference: &str, digest: &Digest, new: bool) {
        let _ = self.multi.clear();
        finish_lines(reference, digest, new);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        // Bars of a failed pull must not linger half-drawn above the error line.
        if let Ok(b) = self.bars.lock() {
            for pb in b.values() {
                if !pb.is_finished() {
                    pb.abandon();
                }
            }
        }
    }
}

/// The progress display for the command line: quiet, bars on a terminal, lines otherwise.
pub fn for_terminal(quiet: bool) -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if quiet {
        Box::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines)
    }
}
