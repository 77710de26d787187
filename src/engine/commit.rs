//! [`Engine::commit`]: a container's writable layer (its `upper/`) as a new layer on top of
//! its image, through the build's layer writer, with `--change` instructions applied to the
//! config (`CMD`, `ENV`, … — the metadata instructions of a Dockerfile).

use crate::build::ImageState;
use crate::build::image::{store_layer, write_image};
use crate::build::layer::LayerOptions;
use crate::reference::ImageRef;
use crate::store::{ImageRecord, Store};

use super::{Engine, EngineError};

/// A commit request (`xrun commit`).
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The container (id, prefix or name).
    pub container: String,
    /// The name to record the image under.
    pub reference: String,
    /// `-c`: Dockerfile metadata instructions (`CMD ["sh"]`, `ENV A=1`).
    pub changes: Vec<String>,
    /// `-m`: the history comment.
    pub message: Option<String>,
    /// `-a`: the author.
    pub author: Option<String>,
}

impl Engine {
    /// Commits `req.container` as a new image (see the module doc); returns its record.
    pub fn commit(&self, req: &CommitRequest) -> Result<ImageRecord, EngineError> {
        let r = ImageRef::parse(&req.reference)?;
        let c = self.containers()?;
        let rec = c.find(&req.container)?;
        if rec.route == "vm" {
            return Err(EngineError::Invalid(format!(
                "container {}: commit of a vm-route container is not supported (its layer is a disk image)",
                req.container
            )));
        }
        let store = Store::open(self.root())?;
        let _gc = store.lease()?;
        // The image the container was made from: the stored record with its snapshots.
        let dirs = &rec.image.layer_dirs;
        let base = store
            .list_images()?
            .into_iter()
            .find(|i| {
                i.layers.len() == dirs.len()
                    && i.layers.iter().zip(dirs).all(|(l, d)| store.snapshot_path(&l.diff_id) == *d)
            })
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "container {}: its image {} is no longer in the store (commit needs its layers)",
                    req.container, rec.image.name
                ))
            })?;
        let config = store.read_blob(&base.config_digest)?;
        let mut state = ImageState::from_config(&config, base.layers.clone(), &base.platform)
            .map_err(|e| EngineError::Invalid(format!("the image config is not JSON: {e}")))?;
        let created = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut cmd_set = false;
        for change in &req.changes {
            let df = crate::build::parse(&format!("FROM scratch\n{change}\n"), "--change")
                .map_err(|e| EngineError::Invalid(format!("--change {change:?}: {e}")))?;
            let Some(step) = df.stages.first().and_then(|s| s.get(1)) else {
                return Err(EngineError::Invalid(format!(
                    "--change {change:?}: no instruction"
                )));
            };
            let snapshot = state.clone();
            let lookup = move |k: &str| snapshot.env_var(k);
            let shell = state
                .get_list("Shell")
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            crate::build::metadata::apply(
                &step.instruction,
                &mut state,
                &lookup,
                df.escape,
                &shell,
                &mut cmd_set,
                change,
            )?;
        }
        let upper = c.container_dir(&rec.id).join("upper");
        let layer = store_layer(&store, &upper, LayerOptions::default())?;
        let empty = layer.is_none();
        if let Some(l) = layer {
            state.add_layer(l);
        }
        if let Some(a) = &req.author {
            state.config["author"] = serde_json::json!(a);
        }
        state.push_history(&format!("xrun commit {}", rec.name), empty, &created);
        if let Some(m) = &req.message {
            // Docker shows it as the image's `Comment`.
            state.config["comment"] = serde_json::json!(m);
        }
        if let Some(m) = &req.message
            && let Some(last) = state.config["history"]
                .as_array_mut()
                .and_then(|h| h.last_mut())
        {
            last["comment"] = serde_json::json!(m);
        }
        let written = write_image(&store, &state).map_err(EngineError::from)?;
        let record = store.build_record(
            &r.name(),
            Some(r.tag.as_deref().unwrap_or("latest")),
            None,
            &written.manifest_digest,
            Some(&state.platform),
        )?;
        store.record_image(&record)?;
        Ok(record)
    }
}
