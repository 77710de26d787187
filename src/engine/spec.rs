//! The typed request to create a container ([`ContainerSpec`]) and what creating gives back
//! ([`CreateOutcome`]).

use std::path::PathBuf;

use crate::plan::{Reason, Route, RouteChoice};
use crate::platform::Platform;
use crate::registry::PullPolicy;
use crate::runtime::RunOptions;

use super::EngineError;

/// Where the container's root file system comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An image reference (`busybox`, `127.0.0.1:5000/app:1`, `repo@sha256:…`), looked up in
    /// the store and pulled per the [`ContainerSpec::pull`] policy.
    Reference(String),
    /// A directory used as the root file system (Podman's `--rootfs`); no route is planned.
    Rootfs(PathBuf),
}

/// A request to create a container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The image or root file system.
    pub image: ImageSource,
    /// The image platform to run (default: the best for this host).
    pub platform: Option<Platform>,
    /// When to pull the image.
    pub pull: PullPolicy,
    /// The route asked for.
    pub route: RouteChoice,
    /// The VM guest image for the vm route (default: the config's `vm-kernel`, else the
    /// local guest).
    pub vm_kernel: Option<String>,
    /// The container's options: name, command (the arguments after the image), entrypoint,
    /// environment, mounts, resources. `options.route` is set by the engine.
    pub options: RunOptions,
    /// Plan only: decide the route and describe it, create nothing.
    pub dry_run: bool,
}

impl ContainerSpec {
    /// A spec for `image` with its defaults (pull when missing, the automatic route).
    pub fn new(image: ImageSource, options: RunOptions) -> ContainerSpec {
        ContainerSpec {
            image,
            platform: None,
            pull: PullPolicy::Missing,
            route: RouteChoice::Auto,
            vm_kernel: None,
            options,
            dry_run: false,
        }
    }

    /// Checks what can be checked before any work: an image is named, and the options the
    /// engine sets itself are left alone.
    pub fn validate(&self) -> Result<(), EngineError> {
        match &self.image {
            ImageSource::Reference(r) if r.trim().is_empty() => {
                return Err(EngineError::Invalid(
                    "no image given: name an image (or use --rootfs DIR)".into(),
                ));
            }
            ImageSource::Rootfs(dir) if dir.as_os_str().is_empty() => {
                return Err(EngineError::Invalid(
                    "empty --rootfs: give the directory to use as the root file system".into(),
                ));
            }
            _ => {}
        }
        if self.options.route != Default::default() {
            return Err(EngineError::Invalid(
                "the route is chosen by the plan: ask for it with the spec's route, not in the options"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What [`super::Engine::create`] did.
#[derive(Debug)]
pub enum CreateOutcome {
    /// A container was recorded (created, not started).
    Created(Created),
    /// A dry run: the plan, nothing created.
    DryRun(DryRun),
}

/// A container recorded by [`super::Engine::create`].
#[derive(Debug, Clone)]
pub struct Created {
    /// Its full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The image platform it runs (`None` for a root file system directory).
    pub platform: Option<Platform>,
    /// The route it takes (`None` for a root file system directory: native).
    pub route: Option<Route>,
    /// The reasons behind the route (the plan's, as `xrun check` gives them).
    pub reasons: Vec<Reason>,
    /// The lines told to the user before the run (the emulation or VM notice).
    pub notices: Vec<String>,
}

/// The plan of a dry run.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The image as given (or the root file system directory).
    pub image: String,
    /// The image platform, the host's, and the route lines (route, emulator or guest,
    /// reasons): `None` for a root file system directory.
    pub plan: Option<DryRunPlan>,
    /// The command the container would run.
    pub command: Vec<String>,
    /// The image cannot run here.
    pub unrunnable: bool,
}

/// The route part of a [`DryRun`].
#[derive(Debug, Clone)]
pub struct DryRunPlan {
    /// The image platform chosen.
    pub platform: Platform,
    /// This host's platform.
    pub host: Platform,
    /// The route, its emulator or guest, and the reasons, one line each.
    pub lines: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_needs_an_image() {
        let spec = ContainerSpec::new(ImageSource::Reference(" ".into()), RunOptions::default());
        let e = spec.validate().unwrap_err();
        assert!(e.to_string().contains("no image given"), "{e}");
        let spec = ContainerSpec::new(ImageSource::Rootfs(PathBuf::new()), RunOptions::default());
        assert!(spec.validate().is_err());
        let spec = ContainerSpec::new(
            ImageSource::Reference("busybox".into()),
            RunOptions::default(),
        );
        spec.validate().unwrap();
        assert_eq!(spec.pull, PullPolicy::Missing);
        assert_eq!(spec.route, RouteChoice::Auto);
    }

    #[test]
    fn the_route_is_not_set_by_the_caller() {
        let mut options = RunOptions::default();
        options.route = crate::runtime::options::ExecRoute::Vm;
        let spec = ContainerSpec::new(ImageSource::Reference("busybox".into()), options);
        let e = spec.validate().unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Invalid);
    }
}
