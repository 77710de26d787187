//! The container endpoints (`/containers/…`): create, inspect, list, start, wait, attach,
//! resize, kill, stop, restart, remove, logs, top.

use super::router::Router;

/// Registers the container endpoints.
pub fn routes(_r: &mut Router) {}
