//! Which classes a class-conditional checkpoint is sampled with: `--class K` (an index or a
//! class name) or `--class all` (the same number of each, one grid row per class), and the
//! guidance scale's check. Host-side only; the guided step is diffusion::gaussian's.

use anyhow::{bail, Result};

/// What `--class` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassChoice {
    One(u32),
    All,
}

/// Parses `--class` against a checkpoint's class names (None: the checkpoint is unconditional).
pub fn parse(arg: &str, classes: Option<&[String]>) -> Result<ClassChoice> {
    let Some(classes) = classes else {
        bail!(
            "--class {arg}: this checkpoint was trained without classes (no --class-cond); \
             sample it without --class, or train with --class-cond on labelled data"
        );
    };
    let listing = || {
        let shown: Vec<String> = classes
            .iter()
            .take(20)
            .enumerate()
            .map(|(i, name)| format!("{i}={name}"))
            .collect();
        let more = if classes.len() > 20 { ", ..." } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    let arg = arg.trim();
    if arg == "all" {
        return Ok(ClassChoice::All);
    }
    if let Some(i) = classes.iter().position(|name| name == arg) {
        return Ok(ClassChoice::One(i as u32));
    }
    match arg.parse::<u64>() {
        Ok(k) if (k as usize) < classes.len() => Ok(ClassChoice::One(k as u32)),
        Ok(k) => bail!(
            "--class {k} is out of range: the checkpoint has {} classes, 0 to {} ({}), or use \
             --class all",
            classes.len(),
            classes.len() - 1,
            listing()
        ),
        Err(_) => bail!(
            "--class {arg}: no class has that name or index; the checkpoint's classes are {}, \
             or use --class all",
            listing()
        ),
    }
}

/// The class of each of the `n` samples, and how many of each class a grid row shows: n of
/// class K, or for `All` n / n_classes (at least one) of each class in turn.
pub fn per_sample(choice: &ClassChoice, n: usize, n_classes: usize) -> (Vec<u32>, usize) {
    match choice {
        ClassChoice::One(k) => (vec![*k; n], n),
        ClassChoice::All => {
            let per_class = (n / n_classes).max(1);
            let classes = (0..n_classes as u32)
                .flat_map(|k| std::iter::repeat_n(k, per_class))
                .collect();
            (classes, per_class)
        }
    }
}

/// Refuses a negative or non-finite guidance scale. 0 samples the unconditional model, 1 the
/// conditional one, larger values push samples towards their class.
pub fn check_guidance(w: f32) -> Result<()> {
    if !(w >= 0.0 && w.is_finite()) {
        bail!(
            "--guidance must be a finite number >= 0 (0: unconditional, 1: plain conditional, \
             typically 1 to 5), got {w}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["cat", "dog", "7"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classes_parse_by_name_before_index() {
        let names = names();
        let classes = Some(&names[..]);
        assert_eq!(parse("dog", classes).unwrap(), ClassChoice::One(1));
        assert_eq!(parse("0", classes).unwrap(), ClassChoice::One(0));
        // "7" names class 2, though 7 would be out of range as an index.
        assert_eq!(parse("7", classes).unwrap(), ClassChoice::One(2));
        assert_eq!(parse("all", classes).unwrap(), ClassChoice::All);
        let out_of_range = parse("3", classes).unwrap_err().to_string();
        assert!(out_of_range.contains("out of range") && out_of_range.contains("0=cat"));
        let unknown = parse("bird", classes).unwrap_err().to_string();
        assert!(unknown.contains("bird") && unknown.contains("2=7"));
        let unconditional = parse("1", None).unwrap_err().to_string();
        assert!(unconditional.contains("without classes"));
    }

    #[test]
    fn all_gives_equal_rows_and_guidance_must_be_finite() {
        assert_eq!(
            per_sample(&ClassChoice::All, 7, 3),
            (vec![0, 0, 1, 1, 2, 2], 2)
        );
        assert_eq!(per_sample(&ClassChoice::All, 2, 3), (vec![0, 1, 2], 1));
        assert_eq!(per_sample(&ClassChoice::One(4), 3, 9), (vec![4, 4, 4], 3));
        for bad in [-0.5, f32::NAN, f32::INFINITY] {
            assert!(check_guidance(bad).is_err(), "{bad}");
        }
        assert!(check_guidance(0.0).is_ok() && check_guidance(7.5).is_ok());
    }
}
