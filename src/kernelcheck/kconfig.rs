//! The kernel's version and build configuration (`/proc/config.gz`, `/boot/config-$(uname -r)`,
//! `/boot/config`, kernel source trees).

use std::collections::BTreeMap;
use std::io::Read;

use super::profile::OptionState;
use super::source::HostSource;

/// `major.minor.patch` from a release string (`6.1.0-13-amd64` → `[6, 1, 0]`,
/// `5.10.205-195.807.amzn2.aarch64` → `[5, 10, 205]`); missing parts are 0, `None` when the
/// release does not start with a number.
pub fn parse_version(release: &str) -> Option<[u32; 3]> {
    let mut out = [0u32; 3];
    let mut parts = release.split('.');
    for (i, slot) in out.iter_mut().enumerate() {
        let Some(part) = parts.next() else { break };
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            if i == 0 {
                return None;
            }
            break;
        }
        *slot = digits.parse().ok()?;
        if digits.len() != part.len() {
            break;
        }
    }
    Some(out)
}

/// Parses kernel config text: every option set to `y` or `m` (keys keep the `CONFIG_` prefix).
pub fn parse_config(text: &str) -> BTreeMap<String, OptionState> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with("CONFIG_") {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let state = match value.trim() {
            "y" => OptionState::Enabled,
            "m" => OptionState::Module,
            _ => continue,
        };
        out.insert(name.trim().to_string(), state);
    }
    out
}

/// The config files tried, in order, for a release.
pub fn config_candidates(release: &str) -> Vec<String> {
    vec![
        "/proc/config.gz".to_string(),
        format!("/boot/config-{release}"),
        "/boot/config".to_string(),
        format!("/lib/modules/{release}/build/.config"),
        format!("/usr/src/linux-{release}/.config"),
        "/usr/src/linux/.config".to_string(),
    ]
}

/// Finds and parses the running kernel's config: `(source, options)`, or the reason none was
/// usable (every path tried, with what went wrong).
pub fn read_config(
    src: &HostSource,
    release: &str,
) -> Result<(String, BTreeMap<String, OptionState>), String> {
    let mut tried = Vec::new();
    for path in config_candidates(release) {
        let bytes = match src.read_bytes(&path) {
            Ok(b) => b,
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            if let Err(e) = flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s) {
                tried.push(format!("{path}: bad gzip: {e}"));
                continue;
            }
            s
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let options = parse_config(&text);
        if options.is_empty() {
            tried.push(format!("{path}: no CONFIG_ options in it"));
            continue;
        }
        return Ok((path, options));
    }
    Err(format!("no kernel config found ({})", tried.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.18.44-fc-v657"), Some([6, 18, 44]));
        assert_eq!(parse_version("6.1.0-13-amd64"), Some([6, 1, 0]));
        assert_eq!(
            parse_version("5.10.205-195.807.amzn2.aarch64"),
            Some([5, 10, 205])
        );
        assert_eq!(parse_version("4.19.0+"), Some([4, 19, 0]));
        assert_eq!(parse_version("5.15-rc1"), Some([5, 15, 0]));
        assert_eq!(parse_version("3"), Some([3, 0, 0]));
        assert_eq!(parse_version("linux"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn config_states() {
        let c = parse_config(
            "#\n# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"str\"\nCONFIG_E=16\n",
        );
        assert_eq!(c.get("CONFIG_A"), Some(&OptionState::Enabled));
        assert_eq!(c.get("CONFIG_B"), Some(&OptionState::Module));
        assert_eq!(c.len(), 2);
    }
}
