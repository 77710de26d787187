//! The writable layer disk: a sparse ext4 image that holds the container's overlay upper and
//! work directories across runs of the same container (without it, writes go to a tmpfs and
//! vanish with the VM).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::VmError;

/// Creates an empty ext4 disk image of `size` bytes at `path` (temp name + rename). Does
/// nothing when `path` exists already.
pub fn create(path: &Path, size: u64) -> Result<(), VmError> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("tmp-disk");
    let f = fs::File::create(&tmp).map_err(VmError::io(tmp.display().to_string()))?;
    f.set_len(size)
        .map_err(VmError::io(tmp.display().to_string()))?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-J", "size=8", "-L", "xrun-rw"])
        .arg(&tmp)
        .output()
        .map_err(|e| VmError::Tool {
            tool: "mkfs.ext4".into(),
            message: format!("{e} (install e2fsprogs)"),
        })?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(VmError::Tool {
            tool: "mkfs.ext4".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    fs::rename(&tmp, path).map_err(VmError::io(path.display().to_string()))
}
