//! Parsing of platform specifiers as users type them (`--platform`), with containerd's syntax:
//! `os`, `arch`, `os/arch`, `arch/variant`, `os/arch/variant`, where `os` may carry options
//! `os(version+feature+feature)`. The result is always normalized.

use super::normalize::{is_known_arch, is_known_os, normalize_arch, normalize_os};
use super::{Platform, PlatformError};

/// Builds the error for `input` with `message`.
fn err(input: &str, message: impl Into<String>) -> PlatformError {
    PlatformError {
        input: input.to_string(),
        message: message.into(),
    }
}

/// Characters allowed in the arch and variant components (and the os name).
fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Decodes `%XX` escapes in an os option (version or feature).
fn decode_option(input: &str, s: &str) -> Result<String, PlatformError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| err(input, format!("bad %-escape in os option {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| err(input, format!("os option {s:?} is not UTF-8")))
}

/// The os component: its name, and the version and features given in parentheses.
struct OsPart {
    name: String,
    version: Option<String>,
    features: Vec<String>,
}

/// Parses `os[(version[+feature]*)]`.
fn parse_os(input: &str, part: &str) -> Result<OsPart, PlatformError> {
    let (name, options) = match part.find('(') {
        Some(open) => {
            let Some(inner) = part[open + 1..].strip_suffix(')') else {
                return Err(err(input, format!("unclosed '(' in os component {part:?}")));
            };
            (&part[..open], Some(inner))
        }
        None => (part, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(err(
            input,
            format!("{part:?} is not a valid os (letters, digits, '_' and '-' only)"),
        ));
    }
    let mut out = OsPart {
        name: normalize_os(name),
        version: None,
        features: Vec::new(),
    };
    if let Some(options) = options {
        if options.contains(['(', ')', '/']) {
            return Err(err(input, format!("invalid os options {options:?}")));
        }
        let mut it = options.split('+');
        let version = it.next().unwrap_or_default();
        if !version.is_empty() {
            out.version = Some(decode_option(input, version)?);
        }
        for f in it {
            if f.is_empty() {
                return Err(err(input, "empty os feature after '+'"));
            }
            out.features.push(decode_option(input, f)?);
        }
    }
    Ok(out)
}

/// Checks an arch or variant component's characters.
fn check_component(input: &str, what: &str, part: &str) -> Result<(), PlatformError> {
    if valid_component(part) {
        Ok(())
    } else if part.is_empty() {
        Err(err(input, format!("empty {what}")))
    } else {
        Err(err(
            input,
            format!("{what} {part:?} may hold only letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// Normalizes `arch`/`variant` and refuses an architecture nobody builds images for.
fn arch_of(
    input: &str,
    arch: &str,
    variant: Option<&str>,
) -> Result<(String, Option<String>), PlatformError> {
    check_component(input, "architecture", arch)?;
    if let Some(v) = variant {
        check_component(input, "variant", v)?;
    }
    let (a, v) = normalize_arch(arch, variant);
    if !is_known_arch(&a) {
        return Err(err(
            input,
            format!("unknown architecture {arch:?} (e.g. amd64, arm64, arm, 386, riscv64)"),
        ));
    }
    Ok((a, v))
}

/// Parses a platform specifier (see the module documentation). A lone os takes this host's
/// architecture and variant; a lone architecture (or `arch/variant`) takes os `linux`.
pub fn parse(input: &str) -> Result<Platform, PlatformError> {
    if input.trim().is_empty() {
        return Err(err(input, "empty platform; expected os/arch[/variant]"));
    }
    if input.contains('*') {
        return Err(err(input, "wildcards are not supported"));
    }
    let parts: Vec<&str> = input.split('/').collect();
    if parts.len() > 3 {
        return Err(err(input, "too many '/'; expected os/arch[/variant]"));
    }
    let os = parse_os(input, parts[0]);
    // Whether the first component names an operating system rather than an architecture.
    // Options do not make an unknown name an os: it would not survive printing (`0()` once
    // became `0/amd64/v4`, which does not parse).
    let first_is_os = matches!(&os, Ok(o) if is_known_os(&o.name));
    let p = match parts.len() {
        1 if first_is_os => {
            let os = os?;
            let host = Platform::host();
            Platform {
                os: os.name,
                architecture: host.architecture,
                variant: host.variant,
                os_version: os.version,
                os_features: os.features,
            }
        }
        1 | 2 if !first_is_os => {
            if !is_known_arch(&normalize_arch(parts[0], None).0) {
                return Err(match os {
                    Err(e) => e,
                    Ok(_) if parts.len() == 1 => err(
                        input,
                        format!("unknown operating system or architecture {:?}", parts[0]),
                    ),
                    Ok(o) => err(input, format!("unknown operating system {:?}", o.name)),
                });
            }
            let (architecture, variant) = arch_of(input, parts[0], parts.get(1).copied())?;
            Platform {
                os: "linux".into(),
                architecture,
                variant,
                ..Default::default()
            }
        }
        _ => {
            let os = os?;
            if !first_is_os {
                return Err(err(
                    input,
                    format!("unknown operating system {:?}", os.name),
                ));
            }
            let (architecture, variant) = arch_of(input, parts[1], parts.get(2).copied())?;
            Platform {
                os: os.name,
                architecture,
                variant,
                os_version: os.version,
                os_features: os.features,
            }
        }
    };
    Ok(p.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn parse_table() {
        let table: &[(&str, Platform)] = &[
            ("linux/amd64", p("linux", "amd64", None)),
            ("linux/amd64/v1", p("linux", "amd64", None)),
            ("linux/amd64/v3", p("linux", "amd64", Some("v3"))),
            ("amd64/v3", p("linux", "amd64", Some("v3"))),
            ("amd64", p("linux", "amd64", None)),
            ("arm64", p("linux", "arm64", Some("v8"))),
            ("aarch64", p("linux", "arm64", Some("v8"))),
            ("linux/arm64", p("linux", "arm64", Some("v8"))),
            ("linux/arm64/v8", p("linux", "arm64", Some("v8"))),
            ("linux/arm64/8", p("linux", "arm64", Some("v8"))),
            ("linux/arm64/v8.2", p("linux", "arm64", Some("v8.2"))),
            ("linux/arm64/v9", p("linux", "arm64", Some("v9"))),
            ("linux/arm", p("linux", "arm", Some("v7"))),
            ("linux/arm/v6", p("linux", "arm", Some("v6"))),
            ("linux/arm/7", p("linux", "arm", Some("v7"))),
            ("linux/armhf", p("linux", "arm", Some("v7"))),
            ("linux/armel", p("linux", "arm", Some("v6"))),
            ("armhf", p("linux", "arm", Some("v7"))),
            ("LINUX/X86_64", p("linux", "amd64", None)),
            ("Linux/AMD64/V2", p("linux", "amd64", Some("v2"))),
            ("linux/x86-64", p("linux", "amd64", None)),
            ("linux/i386", p("linux", "386", None)),
            ("linux/i686", p("linux", "386", None)),
            ("i386", p("linux", "386", None)),
            ("linux/ppc64le", p("linux", "ppc64le", None)),
            ("linux/s390x", p("linux", "s390x", None)),
            ("linux/riscv64", p("linux", "riscv64", None)),
            ("linux/mips64le", p("linux", "mips64le", None)),
            ("linux/loong64", p("linux", "loong64", None)),
            ("windows/amd64", p("windows", "amd64", None)),
            ("darwin/arm64", p("darwin", "arm64", Some("v8"))),
            ("macos/arm64", p("darwin", "arm64", Some("v8"))),
        ];
        for (input, want) in table {
            let got: Platform = input
                .parse()
                .unwrap_or_else(|e| panic!("{input:?} failed: {e}"));
            assert_eq!(&got, want, "parse({input:?})");
        }
    }

    #[test]
    fn lone_os_takes_host_arch() {
        let host = Platform::host();
        for (input, os) in [
            ("linux", "linux"),
            ("Windows", "windows"),
            ("macos", "darwin"),
        ] {
            let got: Platform = input.parse().unwrap();
            assert_eq!(got.os, os, "{input}");
            assert_eq!(got.architecture, host.architecture, "{input}");
            assert_eq!(got.variant, host.variant, "{input}");
        }
    }

    #[test]
    fn os_options() {
        let got: Platform = "windows(10.0.17763)/amd64".parse().unwrap();
        assert_eq!(got.os, "windows");
        assert_eq!(got.os_version.as_deref(), Some("10.0.17763"));
        assert!(got.os_features.is_empty());

        let got: Platform = "windows(10.0.17763+win32k)/amd64".parse().unwrap();
        assert_eq!(got.os_features, vec!["win32k".to_string()]);

        // Features are sorted and deduplicated; an escaped '+' survives.
        let got: Platform = "linux(+zeta+alpha+zeta+a%2Bb)/arm64".parse().unwrap();
        assert_eq!(got.os_version, None);
        assert_eq!(got.os_features, vec!["a+b", "alpha", "zeta"]);
        assert_eq!(got.architecture, "arm64");
    }

    #[test]
    fn errors_name_the_input() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("linux/", "empty architecture"),
            ("/amd64", "not a valid os"),
            ("linux//v7", "empty architecture"),
            ("linux/arm/", "empty variant"),
            ("linux/amd64/v3/x", "too many"),
            ("linux/*", "wildcards"),
            ("linx/amd64", "unknown operating system \"linx\""),
            ("linux/amd46", "unknown architecture \"amd46\""),
            ("foo", "unknown operating system or architecture \"foo\""),
            ("linux/amd 64", "may hold only"),
            ("linux/arm/v7!", "may hold only"),
            ("linux(10.0/amd64", "unclosed"),
            ("linux(+)/amd64", "empty os feature"),
            ("linux(%zz)/amd64", "bad %-escape"),
            // Found by tests/fuzz_parsers.rs: an unknown os with options.
            ("0()", "unknown operating system or architecture"),
            ("foo(1.0)/amd64", "unknown operating system \"foo\""),
            ("linux/arm64/v8/", "too many"),
        ];
        for (input, needle) in table {
            let e = input
                .parse::<Platform>()
                .expect_err(&format!("{input:?} should fail"));
            assert_eq!(e.input, *input);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{input:?}")),
                "error for {input:?} does not name it: {msg}"
            );
            assert!(msg.contains(needle), "error for {input:?}: {msg}");
        }
    }
}
