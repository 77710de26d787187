//! [`Observer`]: what the engine tells its front end while an operation runs (pull
//! progress, the route notice, warnings), so the CLI can print as it goes and a service can
//! log or stream.

use crate::registry::Progress;
use crate::registry::progress::Silent;

/// Receives what happens during an operation. Every method has a quiet default.
pub trait Observer: Send + Sync {
    /// The progress sink for a pull the engine makes (the image, a VM guest image).
    fn pull_progress(&self) -> Box<dyn Progress> {
        Box::new(Silent)
    }
    /// A line for the user before a run that is not native (the emulation or VM notice).
    fn notice(&self, _line: &str) {}
    /// A problem that does not stop the operation (e.g. a dry run's missing handler).
    fn warning(&self, _message: &str) {}
    /// A build's progress line (`#3 [2/5] RUN …`, `#3 CACHED`).
    fn progress(&self, _line: &str) {}
    /// What a build's `RUN` step writes (stdout and stderr), as it comes.
    fn build_output(&self, _data: &[u8]) {}
}

/// Observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}
