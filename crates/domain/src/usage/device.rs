//! The optional members of `data` that say which part of a GPU was used and what energy it took:
//! `mig_instance` with `mig_profile` (a MIG slice of the parent GPU `gpu_id`), and `energy_wh`.

use super::*;
use crate::energy::WattHours;

/// A MIG (Multi-Instance GPU) instance of the parent GPU named by the event's `gpu_id`: the
/// dcgm-exporter's `GPU_I_ID` and `GPU_I_PROFILE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MigSlice {
    /// `GPU_I_ID`, 0 to 99; its canonical text has no leading zero.
    pub instance: u8,
    /// `GPU_I_PROFILE`, e.g. `1g.18gb`, `3g.71gb`, `1g.10gb+me`.
    pub profile: String,
}

/// `^[0-9]{1,2}$`: a MIG instance id.
pub fn parse_mig_instance(text: &str) -> Option<u8> {
    ((1..=2).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

/// `^[1-9]g\.[0-9]{1,4}gb(\+[a-z]{1,8})?$`: a MIG profile as the exporter names it.
pub fn is_valid_mig_profile(text: &str) -> bool {
    let (base, extra) = match text.split_once('+') {
        Some((b, x)) => (b, Some(x)),
        None => (text, None),
    };
    let b = base.as_bytes();
    let memory = base.get(3..base.len().saturating_sub(2)).unwrap_or("");
    b.len() >= 6
        && (b'1'..=b'9').contains(&b[0])
        && base[1..].starts_with("g.")
        && base.ends_with("gb")
        && (1..=4).contains(&memory.len())
        && memory.bytes().all(|c| c.is_ascii_digit())
        && extra.is_none_or(|x| (1..=8).contains(&x.len()) && x.bytes().all(|c| c.is_ascii_lowercase()))
}

/// `data.mig_instance` and `data.mig_profile`: both or neither.
pub(super) fn mig_field<O: JsonObject>(data: &O) -> Result<Option<MigSlice>, Rejection> {
    let instance = opt_str(data, "mig_instance", "data")?;
    let profile = opt_str(data, "mig_profile", "data")?;
    let (instance, profile) = match (instance, profile) {
        (None, None) => return Ok(None),
        (Some(i), Some(p)) => (i, p),
        _ => {
            return Err(reject(
                RejectionCode::InvalidMig,
                "data.mig_instance and data.mig_profile come together or not at all",
            ))
        }
    };
    let shown = |s: &str| s.chars().take(40).collect::<String>();
    let instance = parse_mig_instance(instance).ok_or_else(|| {
        reject(RejectionCode::InvalidMig, format!("data.mig_instance {:?} is not 0 to 99", shown(instance)))
    })?;
    if !is_valid_mig_profile(profile) {
        return Err(reject(
            RejectionCode::InvalidMig,
            format!("data.mig_profile {:?} is not a MIG profile such as 1g.18gb", shown(profile)),
        ));
    }
    Ok(Some(MigSlice { instance, profile: profile.to_string() }))
}

/// `data.energy_wh`: absent, or an exact non-negative decimal string of watt-hours.
pub(super) fn energy_field<O: JsonObject>(data: &O) -> Result<Option<WattHours>, Rejection> {
    let Some(text) = opt_str(data, "energy_wh", "data")? else { return Ok(None) };
    WattHours::parse(text).map(Some).ok_or_else(|| {
        let shown: String = text.chars().take(40).collect();
        reject(
            RejectionCode::InvalidEnergy,
            format!("data.energy_wh {shown:?} is not a decimal of at most 20 integer and 6 fractional digits"),
        )
    })
}

impl UsageRecorded {
    /// Which part of its GPU the event held: `None` the whole GPU, else the MIG instance.
    pub fn slot(&self) -> Option<u8> {
        self.mig.as_ref().map(|m| m.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_instances_follow_the_contracts_patterns() {
        for ok in ["1g.18gb", "3g.71gb", "7g.141gb", "1g.10gb+me", "2g.1gb+abcdefgh", "9g.9999gb"] {
            assert!(is_valid_mig_profile(ok), "{ok}");
        }
        for bad in [
            "",
            "0g.18gb",
            "1g18gb",
            "1g.gb",
            "1g.12345gb",
            "1G.18gb",
            "1g.18GB",
            "1g.18gb+",
            "1g.18gb+ME",
            "1g.18gb+abcdefghi",
            "10g.18gb",
            "1g.18gb ",
            "1g.18gb+m+e",
            "g.18gb",
            "1g.18g",
            "1g.-1gb",
        ] {
            assert!(!is_valid_mig_profile(bad), "{bad}");
        }
        assert_eq!(parse_mig_instance("0"), Some(0));
        assert_eq!(parse_mig_instance("07"), Some(7));
        assert_eq!(parse_mig_instance("99"), Some(99));
        for bad in ["", "100", "-1", "+1", " 1", "a", "1.0", "٣"] {
            assert_eq!(parse_mig_instance(bad), None, "{bad:?}");
        }
    }
}
