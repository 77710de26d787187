//! The metadata instructions (`ENV`, `LABEL`, `EXPOSE`, `USER`, `WORKDIR`, `STOPSIGNAL`,
//! `VOLUME`, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, `ONBUILD`, `MAINTAINER`): each
//! changes the image config only. Shared by the build's steps and `xrun commit --change`.

use serde_json::{Value, json};

use super::BuildError;
use super::dockerfile::{CommandForm, Instruction};
use super::executor::{command_argv, duration_ns};
use super::expand;
use super::state::ImageState;

/// Applies metadata instruction `ins` to `state`; variables expand through `lookup`.
/// `cmd_set` tracks whether this stage set `CMD` (a new `ENTRYPOINT` clears an inherited
/// one); `line` names the step in errors. Other instructions are refused.
pub fn apply(
    ins: &Instruction,
    state: &mut ImageState,
    lookup: &dyn Fn(&str) -> Option<String>,
    esc: char,
    shell: &[String],
    cmd_set: &mut bool,
    line: &str,
) -> Result<(), BuildError> {
    match ins {
        Instruction::Env(raw) => {
            let ws = expand::words(raw, lookup, esc)?;
            if ws.first().is_some_and(|w| !w.contains('=')) {
                // Legacy `ENV KEY value with spaces`.
                let k = ws[0].clone();
                let rest = raw.trim_start()[raw
                    .trim_start()
                    .find(char::is_whitespace)
                    .unwrap_or(raw.len())..]
                    .trim();
                state.set_env(&k, &expand::word(rest, lookup, esc)?);
            } else {
                for w in ws {
                    match w.split_once('=') {
                        Some((k, v)) if !k.is_empty() => state.set_env(k, v),
                        Some(_) => {
                            return Err(BuildError::Invalid(format!(
                                "{line}: ENV names can not be blank"
                            )));
                        }
                        None => {
                            return Err(BuildError::Invalid(format!(
                                "{line}: can't find = in {w:?}: must be of the form name=value"
                            )));
                        }
                    }
                }
            }
        }
        Instruction::Label(raw) => {
            for w in expand::words(raw, lookup, esc)? {
                let (k, v) = w.split_once('=').unwrap_or((w.as_str(), ""));
                state.insert_in("Labels", k, json!(v));
            }
        }
        Instruction::Expose(words) => {
            for w in words {
                for p in expand::words(w, lookup, esc)? {
                    let p = if p.contains('/') {
                        p.to_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    state.insert_in("ExposedPorts", &p, json!({}));
                }
            }
        }
        Instruction::User(raw) => state.set("User", json!(expand::word(raw.trim(), lookup, esc)?)),
        Instruction::Workdir(raw) => {
            let w = expand::word(raw.trim(), lookup, esc)?;
            let base = state.get_str("WorkingDir").unwrap_or_else(|| "/".into());
            let joined = if w.starts_with('/') {
                w
            } else {
                format!("{}/{w}", base.trim_end_matches('/'))
            };
            state.set("WorkingDir", json!(joined));
        }
        Instruction::Stopsignal(raw) => {
            state.set("StopSignal", json!(expand::word(raw.trim(), lookup, esc)?))
        }
        Instruction::Volume(words) => {
            for w in words {
                for v in expand::words(w, lookup, esc)? {
                    state.insert_in("Volumes", &v, json!({}));
                }
            }
        }
        Instruction::Cmd(form) => {
            state.set("Cmd", json!(command_argv(form, shell)));
            *cmd_set = true;
        }
        Instruction::Entrypoint(form) => {
            state.set("Entrypoint", json!(command_argv(form, shell)));
            if !*cmd_set {
                // As Docker: an inherited CMD does not survive a new ENTRYPOINT.
                state.set("Cmd", Value::Null);
            }
        }
        Instruction::Shell(words) => {
            if words.is_empty() {
                return Err(BuildError::Invalid(format!(
                    "{line}: SHELL needs a JSON array such as [\"/bin/sh\", \"-c\"]"
                )));
            }
            state.set("Shell", json!(words));
        }
        Instruction::Healthcheck { flags, command } => {
            let test = match command {
                None => json!(["NONE"]),
                Some(CommandForm::Exec(v)) => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(v.iter().cloned());
                    json!(t)
                }
                Some(CommandForm::Shell(s)) => json!(["CMD-SHELL", s]),
            };
            let mut hc = json!({"Test": test});
            for f in flags {
                let v = f.value.clone().unwrap_or_default();
                let field = match f.name.as_str() {
                    "interval" => "Interval",
                    "timeout" => "Timeout",
                    "start-period" => "StartPeriod",
                    "start-interval" => "StartInterval",
                    "retries" => {
                        let n: u64 = v.parse().map_err(|_| {
                            BuildError::Invalid(format!("{line}: --retries={v} is not a number"))
                        })?;
                        hc["Retries"] = json!(n);
                        continue;
                    }
                    other => {
                        return Err(BuildError::Invalid(format!(
                            "{line}: unknown HEALTHCHECK flag --{other}"
                        )));
                    }
                };
                let ns = duration_ns(&v).ok_or_else(|| {
                    BuildError::Invalid(format!(
                        "{line}: --{}={v} is not a duration (like 30s)",
                        f.name
                    ))
                })?;
                hc[field] = json!(ns);
            }
            state.set("Healthcheck", hc);
        }
        Instruction::Onbuild(text) => {
            let mut list = state.get_list("OnBuild").unwrap_or_default();
            list.push(text.clone());
            state.set("OnBuild", json!(list));
        }
        Instruction::Maintainer(name) => state.config["author"] = json!(name),
        _ => {
            return Err(BuildError::Invalid(format!(
                "{line}: not a metadata instruction (CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD)"
            )));
        }
    }
    Ok(())
}
