//! `xrun host`. Owner: the kernelcheck stage (host profile).

use super::{Global, not_yet};

/// `xrun host` arguments.
#[derive(Debug, clap::Args)]
pub struct HostArgs {}

pub fn host(_g: &Global, _a: HostArgs) -> anyhow::Result<u8> {
    not_yet("host")
}
