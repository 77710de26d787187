//! xrun's own iptables rules: the isolation chain of an `--internal` network (nothing is
//! forwarded into or out of its bridge from elsewhere), `XRUN-ISO-<first 8 of the id>` in
//! the filter table, jumped to first from `FORWARD`; made with the network, removed with it.

use std::process::{Command, Stdio};

use super::{NetworkDef, NetworkError};

/// The isolation chain of `def`.
pub fn chain(def: &NetworkDef) -> String {
    format!("XRUN-ISO-{}", &def.id[..8])
}

fn iptables(args: &[&str]) -> Result<(), NetworkError> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetworkError::io("running iptables", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::BadInput(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn quiet(args: &[&str]) -> bool {
    iptables(args).is_ok()
}

/// Creates the isolation chain of internal network `def` and jumps to it first in FORWARD.
pub fn add_isolation(def: &NetworkDef) -> Result<(), NetworkError> {
    let c = chain(def);
    let br = def.bridge.as_str();
    let made = (|| {
        if !quiet(&["-N", &c]) {
            iptables(&["-F", &c])?;
        }
        iptables(&["-A", &c, "-i", br, "!", "-o", br, "-j", "DROP"])?;
        iptables(&["-A", &c, "-o", br, "!", "-i", br, "-j", "DROP"])?;
        ensure_first(def)
    })();
    if made.is_err() {
        let _ = remove_isolation(def);
    }
    made
}

/// Puts the jump to `def`'s isolation chain first in FORWARD again (a CNI plugin may have
/// inserted its own chain above it).
pub fn ensure_first(def: &NetworkDef) -> Result<(), NetworkError> {
    let c = chain(def);
    while quiet(&["-D", "FORWARD", "-j", &c]) {}
    iptables(&["-I", "FORWARD", "1", "-j", &c])
}

/// Removes the isolation chain of `def` (none: nothing to do).
pub fn remove_isolation(def: &NetworkDef) -> Result<(), NetworkError> {
    let c = chain(def);
    while quiet(&["-D", "FORWARD", "-j", &c]) {}
    if quiet(&["-F", &c]) {
        iptables(&["-X", &c])?;
    }
    Ok(())
}

/// The chain the bridge plugin's `ipMasq` makes for container `id` on network `name`
/// (`CNI-` and 24 hex digits of SHA-512 of name + id, as the plugins name it).
pub fn masquerade_chain(name: &str, id: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha512::digest(format!("{name}{id}").as_bytes()));
    format!("CNI-{}", &h[..24])
}

/// Removes the bridge plugin's masquerade rules for container `id` at `ip` on network
/// `name`: the plugin can only do it while the namespace exists (it reads the addresses
/// there), so after a lost namespace xrun does it from what it recorded.
pub fn remove_masquerade(name: &str, id: &str, ip: std::net::Ipv4Addr) {
    let chain = masquerade_chain(name, id);
    let comment = format!("name: \"{name}\" id: \"{id}\"");
    let src = format!("{ip}/32");
    while quiet(&[
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        "-s",
        &src,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        &chain,
    ]) {}
    if quiet(&["-t", "nat", "-F", &chain]) {
        let _ = quiet(&["-t", "nat", "-X", &chain]);
    }
}
