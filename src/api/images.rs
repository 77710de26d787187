//! The image endpoints (`/images/…`, `/xrun/check`). Owned by the images work; the router
//! already calls [`routes`].

use super::router::Router;

/// Registers the image endpoints.
pub fn routes(_r: &mut Router) {}
