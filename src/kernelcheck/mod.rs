//! What a host offers ([`HostProfile`]) and what an image needs ([`ImageRequirements`]), as data
//! with evidence.
//!
//! Owner: the kernelcheck stage. [`profile`] holds the host profile's schema (shared with the
//! plan stage); gathering it from this machine lives beside it.

pub mod profile;
pub mod requirements;

pub use profile::HostProfile;
pub use requirements::ImageRequirements;
