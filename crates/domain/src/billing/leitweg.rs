//! The Leitweg-ID, the buyer reference (BT-10) of German public buyers (KoSIT Formatspezifikation
//! Leitweg-ID): a coarse address of 2 to 12 digits whose first two are a Land (01 to 16) or the
//! Bund (99), an optional fine address of up to 30 letters and digits, and two check digits, each
//! part separated by `-`. The check digits are ISO/IEC 7064 MOD 97-10 over the parts without the
//! hyphens, letters counted as A = 10 to Z = 35 (as for an IBAN): the whole must leave 1 when
//! divided by 97.
//!
//! Hand-written: the computation is a few lines of arithmetic, and no maintained Rust crate offers
//! ISO 7064 with the Leitweg-ID's shape rules.

/// Whether `reference` has the shape of a Leitweg-ID (and so must pass its check digits): digits,
/// starting with a Land or Bund code, an optional fine address, and two final digits.
pub fn looks_like_leitweg_id(reference: &str) -> bool {
    let parts: Vec<&str> = reference.split('-').collect();
    let (coarse, fine, check) = match parts.as_slice() {
        [c, k] => (*c, None, *k),
        [c, f, k] => (*c, Some(*f), *k),
        _ => return false,
    };
    let land = coarse.get(..2).and_then(|l| l.parse::<u8>().ok());
    (2..=12).contains(&coarse.len())
        && coarse.bytes().all(|b| b.is_ascii_digit())
        && matches!(land, Some(1..=16 | 99))
        && fine.is_none_or(|f| (1..=30).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_alphanumeric()))
        && check.len() == 2
        && check.bytes().all(|b| b.is_ascii_digit())
}

/// The remainder modulo 97 of the number that `chars` spell (digits as themselves, letters as
/// 10 to 35), computed digit by digit so that any length fits. `None` for any other character.
fn mod97(chars: impl Iterator<Item = char>) -> Option<u32> {
    let mut r = 0u32;
    for c in chars {
        let v = c.to_ascii_uppercase().to_digit(36)?;
        r = if v < 10 { (r * 10 + v) % 97 } else { (r * 100 + v) % 97 };
    }
    Some(r)
}

/// The two check digits of a Leitweg-ID without them (`04011000-1234512345` gives `06`).
pub fn check_digits(without_check: &str) -> Option<String> {
    let r = mod97(without_check.chars().filter(|&c| c != '-').chain("00".chars()))?;
    Some(format!("{:02}", 98 - r))
}

/// Checks a reference that looks like a Leitweg-ID; other references pass unchanged.
pub fn validate(reference: &str) -> Result<(), String> {
    if !looks_like_leitweg_id(reference) {
        return Ok(());
    }
    let (body, given) = reference.rsplit_once('-').unwrap_or((reference, ""));
    // The check digits are 98 minus the remainder (02 to 98): the whole then leaves 1 modulo 97.
    let right = check_digits(body).unwrap_or_default();
    if given == right {
        return Ok(());
    }
    Err(format!(
        "{reference:?} is a Leitweg-ID whose check digits are wrong (ISO 7064 MOD 97-10): {given} given, {body}-{right} would be right"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Published Leitweg-IDs: the worked example of the KoSIT format specification, the XRechnung
    /// test ID, Deutsche Bahn, Flughafen Nürnberg, and the e-rechnung test ID.
    const VALID: &[&str] =
        &["04011000-1234512345-06", "991-33333TEST-33", "992-90009-96", "09564000-NUE0001-49", "04011000-900X999-08"];

    #[test]
    fn published_ids_pass_and_their_check_digits_are_recomputed() {
        for id in VALID {
            assert!(looks_like_leitweg_id(id), "{id}");
            assert_eq!(validate(id), Ok(()), "{id}");
            let (body, check) = id.rsplit_once('-').unwrap();
            assert_eq!(check_digits(body).as_deref(), Some(check), "{id}");
        }
    }

    #[test]
    fn a_wrong_check_digit_or_a_swap_is_refused_with_the_right_one() {
        let e = validate("04011000-12345-67").unwrap_err();
        assert!(e.contains("check digits are wrong") && e.contains("04011000-12345-03 would be right"), "{e}");
        for id in ["04011000-1234512345-07", "04011000-1234521345-06", "991-33333TSET-33", "992-90009-69"] {
            assert!(validate(id).is_err(), "{id}");
        }
    }

    #[test]
    fn other_references_are_not_leitweg_ids() {
        for r in ["RB-IT-4711", "FD-2026", "PO-88123", "SEEKR-EU-GPU", "2026-11", "17-4711-03", "04011000-1234-5", "0"]
        {
            assert!(!looks_like_leitweg_id(r), "{r}");
            assert_eq!(validate(r), Ok(()));
        }
    }

    proptest! {
        #[test]
        fn a_computed_check_digit_always_validates(
            land in prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 99]),
            rest in "[0-9]{0,10}",
            fine in proptest::option::of("[0-9A-Za-z]{1,30}"),
        ) {
            let body = match fine {
                Some(f) => format!("{land:02}{rest}-{f}"),
                None => format!("{land:02}{rest}"),
            };
            let id = format!("{body}-{}", check_digits(&body).unwrap());
            prop_assert!(looks_like_leitweg_id(&id), "{}", id);
            prop_assert_eq!(validate(&id), Ok(()));
            prop_assert_eq!(mod97(id.chars().filter(|&c| c != '-')), Some(1));
            // Any other pair of check digits is refused.
            let (_, right) = id.rsplit_once('-').unwrap();
            let wrong = format!("{body}-{:02}", (right.parse::<u32>().unwrap() + 1) % 100);
            prop_assert!(validate(&wrong).is_err(), "{}", wrong);
        }
    }
}
