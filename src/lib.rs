//! xrun: a container runner that knows about architectures and kernels.
//!
//! The library is one pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! reference ─► platform ─► registry ─► store ─► kernelcheck ─► plan ─► runtime | emulation | vm
//! ```
//!
//! Lower stages never import higher ones: [`platform`] and [`digest`] are at the bottom;
//! [`engine`] is the one layer of operations above the stages; the CLI (in `src/cli/`, part
//! of the binary) is at the top: argument parsing and printing only.

pub mod api;
pub mod assess;
pub mod build;
pub mod config;
pub mod digest;
pub mod emulation;
pub mod engine;
pub mod fault;
pub mod kernelcheck;
pub mod limits;
pub mod network;
pub mod ociruntime;
pub mod par;
pub mod plan;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod vm;
