//! Bandwidth rates (`--egress-rate`, `--ingress-rate`) in tc's spelling: bits per second
//! (`bit`, `kbit`, `mbit`, `gbit`, `tbit`; k = 1000) or bytes per second (`bps`, `kbps`,
//! `mbps`, `gbps`, `tbps`).

/// Parses a rate into bits per second; anything else is refused with one line.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let bad = || {
        format!(
            "invalid rate {s:?}: use a number and a unit, e.g. 500kbit, 10mbit, 1gbit (bits/s) or 2mbps (bytes/s)"
        )
    };
    let units: [(&str, f64); 10] = [
        ("tbit", 1e12),
        ("gbit", 1e9),
        ("mbit", 1e6),
        ("kbit", 1e3),
        ("bit", 1.0),
        ("tbps", 8e12),
        ("gbps", 8e9),
        ("mbps", 8e6),
        ("kbps", 8e3),
        ("bps", 8.0),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n, *m)))
        .ok_or_else(bad)?;
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bits = n * mult;
    if !(8.0..1e14).contains(&bits) {
        return Err(format!(
            "invalid rate {s:?}: must be between 8bit and 100tbit"
        ));
    }
    Ok(bits as u64)
}

/// The burst (bits) given with `rate`: 20 ms worth, at least 64 KiB (a few full-size
/// packets at any rate).
pub fn burst_for(rate: u64) -> u64 {
    (rate / 50).max(64 * 1024 * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("2mbps").unwrap(), 16_000_000);
        assert_eq!(parse_rate("1.5Mbit").unwrap(), 1_500_000);
        for bad in [
            "",
            "10",
            "10mb",
            "fast",
            "-5mbit",
            "mbit",
            "1e3kbit",
            "10 mbit x",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
