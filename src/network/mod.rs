//! The network stage: a container's interfaces, addresses and names.

pub mod dns;
