//! The registry operations that do not touch the store: log in (checked against the
//! registry, saved in the Docker config file), log out, and a remote manifest's platforms.

use crate::reference::ImageRef;
use crate::registry::auth::normalize_server;
use crate::registry::pull::{RemoteManifest, runtime};
use crate::registry::{ClientOptions, Credentials, DockerConfig};

use super::{Engine, EngineError};

/// The registry `server` (`host[:port]`, `docker.io` for Docker Hub) is checked at.
fn login_registry(server: &str) -> String {
    let registry = normalize_server(server);
    if registry == "docker.io" {
        "index.docker.io".to_string()
    } else {
        registry
    }
}

impl Engine {
    /// Checks `creds` against `server` (plain HTTP for `insecure_registries` and loopback),
    /// then saves them in the Docker config file (`~/.docker/config.json`).
    pub fn login(
        &self,
        server: &str,
        creds: &Credentials,
        insecure_registries: &[String],
    ) -> Result<(), EngineError> {
        let opts = ClientOptions::from_config(&self.config()?, insecure_registries);
        runtime()?.block_on(crate::registry::verify_login(
            &login_registry(server),
            creds,
            &opts,
        ))?;
        let mut file = DockerConfig::load()?;
        file.set(server, creds);
        file.save()?;
        Ok(())
    }

    /// Forgets the saved credentials for `server`; `false` when there were none.
    pub fn logout(&self, server: &str) -> Result<bool, EngineError> {
        let mut file = DockerConfig::load()?;
        if !file.remove(server) {
            return Ok(false);
        }
        file.save()?;
        Ok(true)
    }

    /// The manifest `image` names in its registry (an index's platforms, digests and
    /// sizes), without pulling layers.
    pub fn inspect_remote(
        &self,
        image: &ImageRef,
        insecure_registries: &[String],
        creds: Option<&Credentials>,
    ) -> Result<RemoteManifest, EngineError> {
        let client = ClientOptions::from_config(&self.config()?, insecure_registries);
        Ok(runtime()?.block_on(crate::registry::inspect_remote(image, &client, creds))?)
    }
}

#[cfg(test)]
mod tests {
    use super::login_registry;

    #[test]
    fn docker_hub_is_checked_at_its_index() {
        assert_eq!(login_registry("docker.io"), "index.docker.io");
        assert_eq!(login_registry("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
