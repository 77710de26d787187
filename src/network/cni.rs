//! A small CNI invoker (spec 1.0.0): runs a plugin binary with `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` and its network configuration on
//! stdin, reads a bounded stdout, and gives a typed [`CniResult`] or the plugin's JSON error.
//! [`add_list`] runs a configuration list's plugins in order, each with the previous result
//! (`prevResult`) and the `runtimeConfig` its `capabilities` ask for; [`del_list`] runs them
//! in reverse order.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The spec version xrun speaks (Debian's plugins 1.1.1 support it).
pub const CNI_VERSION: &str = "1.0.0";

/// The most a plugin may write on stdout.
const MAX_OUTPUT: u64 = 1 << 20;

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin answered with an error (spec's error object).
    #[error("CNI plugin {plugin} ({command}) failed: {msg}{}", details_suffix(.details))]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: String,
        /// The spec's error code.
        code: u32,
        /// Its message.
        msg: String,
        /// Its details.
        details: String,
    },
    /// The plugin could not be run or said nothing usable.
    #[error("CNI plugin {plugin}: {why}")]
    Exec {
        /// The plugin type.
        plugin: String,
        /// What went wrong.
        why: String,
    },
}

fn details_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

/// CNI_COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach.
    Add,
    /// Detach (must succeed when things are already gone).
    Del,
    /// Verify.
    Check,
}

impl CniCommand {
    fn as_str(&self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// Who and where a call is about.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// CNI_CONTAINERID.
    pub container_id: &'a str,
    /// CNI_NETNS; `None` when it is gone (DEL only).
    pub netns: Option<&'a Path>,
    /// CNI_IFNAME.
    pub ifname: &'a str,
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// The netns path when it is inside the container.
    pub sandbox: String,
}

/// An address in a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpConfig {
    /// `A.B.C.D/N`.
    pub address: String,
    /// The gateway.
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A plugin's success result (the parts xrun uses; the whole JSON is kept as well).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniResult {
    /// Interfaces made.
    pub interfaces: Vec<Interface>,
    /// Addresses given.
    pub ips: Vec<IpConfig>,
}

/// Runs plugin `plugin` (a file in `cni_path`) once; returns its stdout JSON.
pub fn invoke(
    cni_path: &Path,
    plugin: &str,
    command: CniCommand,
    target: &Target,
    config: &Value,
) -> Result<Value, CniError> {
    let exec_err = |why: String| CniError::Exec {
        plugin: plugin.to_string(),
        why,
    };
    if plugin.contains('/') || plugin.is_empty() {
        return Err(exec_err("invalid plugin type".into()));
    }
    let bin: PathBuf = cni_path.join(plugin);
    let stdin = serde_json::to_vec(config).map_err(|e| exec_err(e.to_string()))?;
    let mut child = Command::new(&bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", target.container_id)
        .env(
            "CNI_NETNS",
            target.netns.map(|p| p.as_os_str()).unwrap_or_default(),
        )
        .env("CNI_IFNAME", target.ifname)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| exec_err(format!("cannot run {}: {e}", bin.display())))?;
    let mut input = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut err_pipe = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = (&mut err_pipe).take(64 * 1024).read_to_end(&mut s);
        s
    });
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().expect("piped");
    let _ = (&mut stdout).take(MAX_OUTPUT + 1).read_to_end(&mut out);
    drop(stdout);
    let status = child
        .wait()
        .map_err(|e| exec_err(format!("waiting: {e}")))?;
    let _ = writer.join();
    let stderr = err_reader.join().unwrap_or_default();
    if out.len() as u64 > MAX_OUTPUT {
        return Err(exec_err("its output is larger than 1 MiB".into()));
    }
    if !status.success() {
        if let Ok(v) = serde_json::from_slice::<Value>(&out)
            && let Some(msg) = v.get("msg").and_then(Value::as_str)
        {
            return Err(CniError::Plugin {
                plugin: plugin.to_string(),
                command: command.as_str().to_string(),
                code: v.get("code").and_then(Value::as_u64).unwrap_or(0) as u32,
                msg: msg.to_string(),
                details: v
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        let text = String::from_utf8_lossy(if out.is_empty() { &stderr } else { &out });
        return Err(exec_err(format!(
            "{} failed ({status}): {}",
            command.as_str(),
            text.trim().replace('\n', " ")
        )));
    }
    if command != CniCommand::Add || out.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out).map_err(|e| exec_err(format!("unreadable result: {e}")))
}

/// The configuration one plugin of list `list` gets: its own object plus `cniVersion`,
/// `name`, `prevResult` and the `runtimeConfig` entries its capabilities ask for.
fn plugin_config(list: &Value, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
    let mut conf = plugin.clone();
    let obj = conf.as_object_mut().expect("plugin configs are objects");
    obj.insert("cniVersion".into(), list["cniVersion"].clone());
    obj.insert("name".into(), list["name"].clone());
    if let Some(p) = prev
        && !p.is_null()
    {
        obj.insert("prevResult".into(), p.clone());
    }
    let mut rc = serde_json::Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (k, on) in caps {
            if on.as_bool() == Some(true)
                && let Some(v) = runtime.get(k)
            {
                rc.insert(k.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(rc));
    }
    conf
}

/// Runs ADD through a configuration list; on a failure, DEL through what ran (reverse
/// order) so nothing stays half set up. Returns the last plugin's result.
pub fn add_list(
    cni_path: &Path,
    list: &Value,
    target: &Target,
    runtime: &Value,
) -> Result<Value, CniError> {
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    let mut prev: Option<Value> = None;
    for (i, p) in plugins.iter().enumerate() {
        let typ = p["type"].as_str().unwrap_or("");
        let conf = plugin_config(list, p, prev.as_ref(), runtime);
        match invoke(cni_path, typ, CniCommand::Add, target, &conf) {
            Ok(r) => prev = Some(r),
            Err(e) => {
                // The failing plugin may have done part of its work: DEL it too.
                let _ = del_plugins(
                    cni_path,
                    list,
                    &plugins[..=i],
                    target,
                    runtime,
                    prev.as_ref(),
                );
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| json!({"cniVersion": CNI_VERSION})))
}

fn del_plugins(
    cni_path: &Path,
    list: &Value,
    plugins: &[Value],
    target: &Target,
    runtime: &Value,
    result: Option<&Value>,
) -> Result<(), CniError> {
    let mut first = None;
    for p in plugins.iter().rev() {
        let typ = p["type"].as_str().unwrap_or("");
        let conf = plugin_config(list, p, result, runtime);
        if let Err(e) = invoke(cni_path, typ, CniCommand::Del, target, &conf) {
            tracing::warn!("CNI DEL {typ}: {e}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Runs DEL through a configuration list in reverse order, each plugin with the ADD's final
/// `result`; every plugin runs even when one fails (the first error is returned).
pub fn del_list(
    cni_path: &Path,
    list: &Value,
    target: &Target,
    runtime: &Value,
    result: Option<&Value>,
) -> Result<(), CniError> {
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    del_plugins(cni_path, list, &plugins, target, runtime, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_takes_capabilities_and_prev() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": []});
        let p = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let rt = json!({"portMappings": [1], "bandwidth": {}});
        let c = plugin_config(&list, &p, Some(&json!({"ips": []})), &rt);
        assert_eq!(c["name"], "n");
        assert_eq!(c["runtimeConfig"], json!({"portMappings": [1]}));
        assert_eq!(c["prevResult"], json!({"ips": []}));
        let c = plugin_config(&list, &json!({"type": "bridge"}), None, &rt);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }
}
