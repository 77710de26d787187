//! The push operation: the store's records for a reference → what to send (one manifest,
//! or a whole index) → the registry.

use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::push::{PushOptions, push_blocking, select_content};
use crate::registry::upload::UploadOptions;
use crate::registry::{ClientOptions, Credentials, PushOutcome, PushProgress};

use super::{Engine, EngineError};

/// A request to push an image (`xrun push`, `POST /images/{name}/push`).
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// The image reference, as it is named in the store and will be on the registry.
    pub reference: String,
    /// Push only this platform's manifest under the tag (default: the whole index when the
    /// store has every platform of it, else the one image).
    pub platform: Option<Platform>,
    /// Registries reached over plain HTTP besides the config's (and loopback ones).
    pub insecure_registries: Vec<String>,
    /// Credentials instead of those saved by `xrun login`.
    pub credentials: Option<Credentials>,
    /// Upload sizes (default: [`UploadOptions::default`]).
    pub upload: Option<UploadOptions>,
}

impl Engine {
    /// Pushes `req.reference` from the store to its registry, reporting to `progress`.
    pub fn push(
        &self,
        req: &PushRequest,
        progress: &dyn PushProgress,
    ) -> Result<PushOutcome, EngineError> {
        let image = ImageRef::parse(&req.reference)?;
        let store = self.image_store()?;
        let records = match &req.platform {
            Some(p) => super::images::resolve(&store, &req.reference, Some(p))
                .map(|r| vec![r])
                .map_err(|_| {
                    EngineError::NotFound(format!(
                        "an image does not exist locally with the tag {} for platform {p}",
                        req.reference
                    ))
                })?,
            None => store.find_images(&image.name(), &image.tag_or_digest())?,
        };
        if records.is_empty() {
            return Err(EngineError::NotFound(format!(
                "an image does not exist locally with the tag {}: pull, load or tag it first",
                req.reference
            )));
        }
        let shown = image.to_string();
        let content = select_content(&store, &shown, &records, req.platform.is_some())?;
        let opts = PushOptions {
            client: ClientOptions::from_config(&self.config()?, &req.insecure_registries),
            credentials: req.credentials.clone(),
            upload: req.upload.unwrap_or_default(),
        };
        Ok(push_blocking(&store, &image, &content, &opts, progress)?)
    }
}
