//! `xrun check`. Owner: the kernelcheck stage (requirements) and the plan.

use super::{Global, not_yet};

/// `xrun check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Image reference.
    pub reference: String,
}

pub fn check(_g: &Global, _a: CheckArgs) -> anyhow::Result<u8> {
    not_yet("check")
}
