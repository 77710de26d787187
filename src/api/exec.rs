//! The exec endpoints: `POST /containers/{id}/exec`, `/exec/{id}/start`, `/exec/{id}/resize`,
//! `GET /exec/{id}/json`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::router::Router;

/// One exec instance (created, then started once).
#[derive(Debug, Clone)]
pub struct ExecInstance {
    /// The container it runs in (full id).
    pub container: String,
}

/// The exec instances this service made, by id.
#[derive(Debug, Default)]
pub struct Execs {
    instances: Mutex<HashMap<String, ExecInstance>>,
}

impl Execs {
    /// The number of instances known.
    pub fn len(&self) -> usize {
        self.instances.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no instance is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registers the exec endpoints.
pub fn routes(_r: &mut Router) {}
