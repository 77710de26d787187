//! Push progress: Docker's plain lines (`Pushed`, `Layer already exists`, `Mounted from …`,
//! and the final `TAG: digest: sha256:… size: N`), or nothing but the digest with `-q`.

use std::io::Write;

use crate::digest::Digest;

/// Receives the events of a push. Every method has an empty default. Only layers are
/// reported (as Docker does); the config goes up silently.
pub trait PushProgress: Send + Sync {
    /// The push to `repository` (`host/repo`) starts.
    fn start(&self, _repository: &str) {}
    /// A layer will be checked and, if needed, sent.
    fn preparing(&self, _layer: &Digest) {}
    /// Bytes of a layer went out (`done` of `total`).
    fn bytes(&self, _layer: &Digest, _done: u64, _total: u64) {}
    /// The registry already had the layer in this repository: nothing sent.
    fn exists(&self, _layer: &Digest) {}
    /// The registry linked the layer from `from` (another repository of it): nothing sent.
    fn mounted(&self, _layer: &Digest, _from: &str) {}
    /// The layer was uploaded and the registry accepted it.
    fn pushed(&self, _layer: &Digest) {}
    /// The manifest (or index) went up under `tag` (or its digest), `size` bytes long.
    fn finish(&self, _tag: &str, _digest: &Digest, _size: u64) {}
}

/// Prints nothing.
#[derive(Debug, Default)]
pub struct SilentPush;

impl PushProgress for SilentPush {}

/// Prints only the digest pushed.
#[derive(Debug, Default)]
pub struct QuietPush;

impl PushProgress for QuietPush {
    fn finish(&self, _tag: &str, digest: &Digest, _size: u64) {
        line(digest.to_string());
    }
}

/// Docker's plain push lines, on stdout.
#[derive(Debug, Default)]
pub struct PushLines;

fn line(s: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

impl PushProgress for PushLines {
    fn start(&self, repository: &str) {
        line(format!("The push refers to repository [{repository}]"));
    }
    fn preparing(&self, layer: &Digest) {
        line(format!("{}: Preparing", layer.short()));
    }
    fn exists(&self, layer: &Digest) {
        line(format!("{}: Layer already exists", layer.short()));
    }
    fn mounted(&self, layer: &Digest, from: &str) {
        line(format!("{}: Mounted from {from}", layer.short()));
    }
    fn pushed(&self, layer: &Digest) {
        line(format!("{}: Pushed", layer.short()));
    }
    fn finish(&self, tag: &str, digest: &Digest, size: u64) {
        line(format!("{tag}: digest: {digest} size: {size}"));
    }
}

/// The display for the command line: the digest only with `quiet`, else Docker's lines.
pub fn for_terminal(quiet: bool) -> Box<dyn PushProgress> {
    if quiet {
        Box::new(QuietPush)
    } else {
        Box::new(PushLines)
    }
}
