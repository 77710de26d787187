//! What an image needs from a host: declared platform, labels, and ELF facts.
//!
//! CONTRACT: the plan stage reads this type. The kernelcheck stage fills it in.

use serde::{Deserialize, Serialize};

/// What an image needs, with evidence for each fact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRequirements {}
