//! What a host offers ([`HostProfile`]) and what an image needs ([`ImageRequirements`]), as data
//! with evidence.
//!
//! Owner: the kernelcheck stage. [`profile`] holds the host profile's schema (shared with the
//! plan stage); gathering it lives beside it, one module per kind of fact, all reading through
//! a [`HostSource`] (this machine, or a recorded one under a root prefix):
//! [`HostProfile::gather`] and [`HostProfile::gather_from`].
//!
//! The image side is
//! [`requirements::scan`] over a merged view of the layers ([`rootfs`]), with ELF facts
//! ([`elf`]), xrun's labels ([`labels`]) and the command resolved inside the image
//! ([`entrypoint`]).

pub mod binfmt;
pub mod cgroups;
pub mod checks;
pub mod cpu;
pub mod elf;
pub mod entrypoint;
pub mod gather;
pub mod kconfig;
pub mod kvm;
pub mod labels;
pub mod module_options;
pub mod modules;
pub mod mountinfo;
pub mod namespaces;
pub mod nfd;
pub mod profile;
pub mod qemu;
pub mod requirements;
pub mod rootfs;
pub mod security;
pub mod source;

pub use profile::HostProfile;
pub use requirements::ImageRequirements;
pub use source::HostSource;
