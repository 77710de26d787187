//! What a host offers ([`HostProfile`]) and what an image needs ([`ImageRequirements`]), as data
//! with evidence.
//!
//! Owner: the kernelcheck stage. [`profile`] holds the host profile's schema (shared with the
//! plan stage); gathering it from this machine lives beside it. The image side is
//! [`requirements::scan`] over a merged view of the layers ([`rootfs`]), with ELF facts
//! ([`elf`]), xrun's labels ([`labels`]) and the command resolved inside the image
//! ([`entrypoint`]).

pub mod elf;
pub mod entrypoint;
pub mod labels;
pub mod profile;
pub mod requirements;
pub mod rootfs;

pub use profile::HostProfile;
pub use requirements::ImageRequirements;
