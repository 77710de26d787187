//! [`Engine::create`]: resolve and route the image, then record the container (with the
//! vm route's launch description and the lease on the image's layers), or describe the plan
//! for a dry run.

use std::path::Path;

use crate::digest::Digest;
use crate::runtime::lifecycle;
use crate::runtime::options::ExecRoute;

use super::resolve::{Resolved, resolve_image};
use super::route::{describe, notice};
use super::spec::DryRunPlan;
use super::vm::{vm_launch, vm_unsupported};
use super::{ContainerSpec, CreateOutcome, Created, DryRun, Engine, EngineError, Observer};

impl Engine {
    /// Creates a container from `spec`: finds (or pulls) the image, picks its platform and
    /// route, and records the container, not started. A dry run only plans.
    ///
    /// Refusals (no route works here) are [`EngineError::Refused`]; nothing is left behind
    /// by a failed create.
    pub fn create(
        &self,
        spec: ContainerSpec,
        observer: &dyn Observer,
    ) -> Result<CreateOutcome, EngineError> {
        spec.validate()?;
        let Resolved {
            image,
            routed,
            diff_ids,
            gc,
        } = resolve_image(self.root(), || self.config(), &spec, observer)?;
        let mut opts = spec.options;
        if routed.as_ref().is_some_and(|r| r.emulated.is_some()) {
            opts.route = ExecRoute::Emulated;
        }
        let vm = routed.as_ref().and_then(|r| r.vm.as_ref());
        if vm.is_some() {
            opts.route = ExecRoute::Vm;
            if !spec.dry_run
                && let Some(why) = vm_unsupported(&opts)
            {
                return Err(crate::runtime::RuntimeError::BadInput(why).into());
            }
        }
        if spec.dry_run {
            return Ok(CreateOutcome::DryRun(DryRun {
                image: image.name.clone(),
                plan: routed.as_ref().map(|r| DryRunPlan {
                    platform: r.platform.clone(),
                    host: crate::platform::Platform::host(),
                    lines: describe(r),
                }),
                command: crate::runtime::spec::command(&image, &opts),
                unrunnable: routed
                    .as_ref()
                    .is_some_and(|r| r.route == crate::plan::Route::Unrunnable),
            }));
        }
        let notices: Vec<String> = routed.as_ref().and_then(notice).into_iter().collect();
        for line in &notices {
            observer.notice(line);
        }
        let c = self.containers()?;
        // No sweep of every container here (a start costs the same with 1,000 containers as
        // with 10): stale containers are cleaned up by `ps`, `start`, the network commands,
        // `system check`, and by `lifecycle::create` when one holds the name asked for.
        super::networks::prepare(self, &c, &image, &mut opts)?;
        let launch_input = vm.map(|_| (image.clone(), opts.clone()));
        let rec = lifecycle::create(&c, image, opts)?;
        let id = rec.id.clone();
        if let Some(r) = &routed {
            // What inspect shows: the platform and the reasons behind the route.
            let platform = r.platform.to_string();
            let reasons = r.reasons();
            if let Err(e) = c.update(&id, |rec| {
                rec.platform = Some(platform);
                rec.reasons = reasons;
            }) {
                let _ = lifecycle::remove(&c, &id, true);
                return Err(e.into());
            }
        }
        if let (Some(vm), Some((image, opts))) = (vm, launch_input) {
            // What `start` needs to boot the VM again, next to the record.
            let saved = vm_launch(vm, &image, &opts, &id[..12]).and_then(|l| {
                l.save(&c.container_dir(&id))
                    .map_err(|e| EngineError::context("recording the VM of the container", e))
            });
            if let Err(e) = saved {
                let _ = lifecycle::remove(&c, &id, true);
                return Err(e);
            }
        }
        // A guest pulled from a registry is a layer snapshot of the store: leased too, so the
        // container boots again after `rmi` of the guest image.
        let guest_dir = vm.and_then(|v| v.guest.as_ref()).map(|gu| gu.dir.clone());
        let mut diff_ids = diff_ids;
        if let Some(d) = guest_dir
            .as_deref()
            .and_then(|d| guest_snapshot(self.root(), d))
        {
            diff_ids.push(d);
        }
        if !diff_ids.is_empty() {
            // Before anything is mounted: prune/rmi keep these snapshots until `rm`.
            let leased = crate::store::Store::open(self.root())
                .and_then(|store| store.lease_snapshots(&id, &diff_ids));
            if let Err(e) = leased {
                let _ = lifecycle::remove(&c, &id, true);
                return Err(EngineError::context("leasing the image's layers", e));
            }
        }
        drop(gc);
        tracing::debug!("phase: container recorded");
        Ok(CreateOutcome::Created(Created {
            id,
            name: rec.name,
            platform: routed.as_ref().map(|r| r.platform.clone()),
            route: routed.as_ref().map(|r| r.route.clone()),
            reasons: routed.as_ref().map(|r| r.reasons()).unwrap_or_default(),
            notices,
        }))
    }
}

/// The diff_id of the store's layer snapshot `dir` is, if it is one (`<root>/snapshots/<hex>`).
fn guest_snapshot(root: &Path, dir: &Path) -> Option<Digest> {
    let snapshots = std::fs::canonicalize(root.join("snapshots")).ok()?;
    let dir = std::fs::canonicalize(dir).ok()?;
    if dir.parent()? != snapshots {
        return None;
    }
    format!("sha256:{}", dir.file_name()?.to_str()?)
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::guest_snapshot;

    #[test]
    fn a_guest_in_a_store_snapshot_is_leased_by_its_diff_id() {
        let root = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let snap = root.path().join("snapshots").join(&hex);
        std::fs::create_dir_all(&snap).unwrap();
        let d = guest_snapshot(root.path(), &snap).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        let elsewhere = root.path().join("guest");
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert!(guest_snapshot(root.path(), &elsewhere).is_none());
        assert!(guest_snapshot(root.path(), &root.path().join("snapshots/x")).is_none());
    }
}
