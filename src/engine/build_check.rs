//! The pre-flight at the end of a build: the requirements scanner run over each platform's
//! result. Executables for another architecture than the image's warn (an amd64 binary
//! copied into an arm64 image); with `--check-host-profile`, each given host is checked
//! through the same plan as `xrun check`, and the build fails (exit 125) unless the image
//! would run natively there.

use std::path::PathBuf;

use crate::assess::GuestChoice;
use crate::build::{BuildError, ImageState};
use crate::kernelcheck::ImageRequirements;
use crate::kernelcheck::entrypoint::Override;
use crate::kernelcheck::requirements::{ScanInput, scan};
use crate::plan::{Route, RouteChoice};
use crate::store::Store;

use super::{EngineError, Observer};

/// Scans `state` (its layers unpacked in `store`); warns through `observer` about
/// executables of a foreign architecture.
pub(super) fn scan_result(
    store: &Store,
    state: &ImageState,
    observer: &dyn Observer,
) -> Result<ImageRequirements, BuildError> {
    let config: oci_spec::image::ImageConfiguration = serde_json::from_value(state.config.clone())
        .map_err(|e| BuildError::Invalid(format!("the built config does not read back: {e}")))?;
    let dirs: Vec<PathBuf> = state
        .layers
        .iter()
        .map(|l| store.unpack_layer(l))
        .collect::<Result<_, _>>()?;
    let input = ScanInput::from_config(&config, Default::default(), dirs);
    let req = scan(&input, &Override::default())
        .map_err(|e| BuildError::Invalid(format!("scanning the result: {e}")))?;
    for a in &req.elf.arches {
        if a.arch != state.platform.architecture {
            observer.warning(&format!(
                "{}: {} executable(s) or libraries are for {} (e.g. {}): they will not run natively on {} hosts",
                state.platform, a.files, a.arch, a.example, state.platform.architecture
            ));
        }
    }
    Ok(req)
}

/// Checks every host profile in `profiles` against the platform it would pick among
/// `built`; the first host where the image would not run natively fails the build.
pub(super) fn check_hosts(
    profiles: &[PathBuf],
    built: &[(ImageState, ImageRequirements)],
) -> Result<(), EngineError> {
    let available: Vec<_> = built.iter().map(|(s, _)| s.platform.clone()).collect();
    for f in profiles {
        let host = super::check::read_profile(f, "host")?;
        let (platform, verdict) = match crate::plan::report::select_platform(&host, &available) {
            Ok(i) => {
                let (v, _) = crate::assess::decide(
                    &host,
                    &built[i].1,
                    RouteChoice::Auto,
                    &GuestChoice::None,
                )?;
                (available[i].to_string(), v)
            }
            Err(v) => (
                available
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                v,
            ),
        };
        if verdict.route != Route::Native {
            let why = crate::assess::main_reason(&verdict, RouteChoice::Native)
                .map(|r| r.message.clone())
                .unwrap_or_else(|| format!("it would take the {:?} route", verdict.route));
            return Err(BuildError::HostCheck(format!(
                "--check-host-profile {}: the {platform} image would not run natively there: {why}",
                f.display()
            ))
            .into());
        }
    }
    Ok(())
}
