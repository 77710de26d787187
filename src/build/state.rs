//! The image under construction: its config (the OCI image config JSON, kept whole so
//! fields xrun does not know survive), its layers, and its platform.

use serde_json::{Map, Value, json};

use crate::platform::Platform;
use crate::store::LayerRef;

/// An image being built (one stage at one step).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageState {
    /// The image config JSON.
    pub config: Value,
    /// The layers, lowest first.
    pub layers: Vec<LayerRef>,
    /// The platform it is for.
    pub platform: Platform,
}

impl ImageState {
    /// An empty image (`FROM scratch`).
    pub fn scratch(platform: &Platform) -> ImageState {
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        ImageState {
            config,
            layers: Vec::new(),
            platform: platform.clone(),
        }
    }

    /// A base image from its config bytes and layers.
    pub fn from_config(
        bytes: &[u8],
        layers: Vec<LayerRef>,
        platform: &Platform,
    ) -> Result<ImageState, serde_json::Error> {
        let mut config: Value = serde_json::from_slice(bytes)?;
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        Ok(ImageState {
            config,
            layers,
            platform: platform.clone(),
        })
    }

    /// The runtime part (`config` in the image config).
    pub fn run_config(&self) -> &Map<String, Value> {
        self.config["config"]
            .as_object()
            .expect("made an object at creation")
    }

    /// The runtime part, to change.
    pub fn run_config_mut(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"]
            .as_object_mut()
            .expect("just made an object")
    }

    /// `Env` as `KEY=VALUE` entries.
    pub fn env(&self) -> Vec<String> {
        strings(self.run_config().get("Env"))
    }

    /// The value of environment variable `key`, if set.
    pub fn env_var(&self, key: &str) -> Option<String> {
        self.env().into_iter().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Sets environment variable `key` (replacing it in place, or appending).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.run_config_mut().insert("Env".into(), json!(env));
    }

    /// A string field of the runtime part (`WorkingDir`, `User`).
    pub fn get_str(&self, field: &str) -> Option<String> {
        self.run_config()
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// A string-list field of the runtime part (`Cmd`, `Entrypoint`, `Shell`).
    pub fn get_list(&self, field: &str) -> Option<Vec<String>> {
        self.run_config()
            .get(field)
            .filter(|v| v.is_array())
            .map(|v| strings(Some(v)))
    }

    /// Sets a field of the runtime part.
    pub fn set(&mut self, field: &str, value: Value) {
        self.run_config_mut().insert(field.into(), value);
    }

    /// Adds `key` to a set-like object field (`ExposedPorts`, `Volumes`), or `key: value`
    /// to `Labels`.
    pub fn insert_in(&mut self, field: &str, key: &str, value: Value) {
        let rc = self.run_config_mut();
        let obj = rc.entry(field.to_string()).or_insert_with(|| json!({}));
        if !obj.is_object() {
            *obj = json!({});
        }
        obj.as_object_mut()
            .expect("made an object")
            .insert(key.into(), value);
    }

    /// Adds a layer (and its diff_id to `rootfs`).
    pub fn add_layer(&mut self, layer: LayerRef) {
        if !self.config["rootfs"]["diff_ids"].is_array() {
            self.config["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        self.config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("made an array")
            .push(json!(layer.diff_id.to_string()));
        self.layers.push(layer);
    }

    /// Appends a history entry (`empty_layer` for steps that made no layer) and sets
    /// `created` to `created`.
    pub fn push_history(&mut self, created_by: &str, empty_layer: bool, created: &str) {
        let mut h = json!({"created": created, "created_by": created_by, "comment": "xrun build"});
        if empty_layer {
            h["empty_layer"] = json!(true);
        }
        if !self.config["history"].is_array() {
            self.config["history"] = json!([]);
        }
        self.config["history"]
            .as_array_mut()
            .expect("made an array")
            .push(h);
        self.config["created"] = json!(created);
    }

    /// The config's bytes (keys sorted: the same state gives the same bytes).
    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("a JSON value serializes")
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_in_place() {
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        s.set_env("A", "1");
        s.set_env("B", "2");
        s.set_env("A", "3");
        assert_eq!(s.env(), ["A=3", "B=2"]);
        assert_eq!(s.env_var("B").as_deref(), Some("2"));
        assert_eq!(s.config["architecture"], "amd64");
    }
}
