//! Baselines and fixtures shared by the criterion benchmarks in `benches/`.
// No unsafe code but `line_flush`'s cache-line flush (x86-64 intrinsics).
#![deny(unsafe_code)]
pub mod cold_single;
pub mod host_pages;
pub mod line_flush;
pub mod nested_fault;
pub mod range;
pub mod shadow_baseline;
pub mod umbra;
pub mod walker_baseline;
pub mod walker_fixture;

/// Whether the command line's filter (criterion's positional argument, a
/// regex criterion matches anywhere in a benchmark's `group/function` id)
/// can select benchmarks of `group`, so the expensive setup of unselected
/// groups (1M entries) is skipped. A group is wanted when the filter
/// matches its name, or names one of its benchmarks (starts with
/// `group/`); a filter naming only a function (`umbra_inline`) selects no
/// group. A filter that is no valid regex selects everything (criterion
/// then reports it).
pub fn wanted(group: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    selects(&args, group)
}

/// [`wanted`] for these arguments (those after the program name).
fn selects(args: &[String], group: &str) -> bool {
    const VALUED: [&str; 15] = [
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--profile-time",
        "--plotting-backend",
        "--format",
    ];
    let filters: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a.as_str())
        .collect();
    filters.is_empty()
        || filters.iter().any(|f| {
            regex::Regex::new(f).map_or(true, |r| r.is_match(group))
                || f.strip_prefix(group)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

#[cfg(test)]
mod tests {
    use super::selects;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn filters_select_groups_as_criterion_matches_ids() {
        let group = "nested_fault_scattered/after_l0_unmap";
        assert!(selects(&args("--bench"), group));
        // A regex matched anywhere, as criterion does (review 20 R20-6).
        assert!(selects(&args("--bench scattered"), group));
        assert!(selects(&args("--bench nested_fault_(scattered|x)"), group));
        // A full id inside the group.
        assert!(selects(
            &args("--bench nested_fault_scattered/after_l0_unmap/umbra"),
            group
        ));
        assert!(!selects(&args("--bench shadow_hit"), group));
        assert!(!selects(
            &args("--bench nested_fault/after_l0_unmap"),
            group
        ));
        // A value of an option is no filter.
        assert!(selects(&args("--bench --plotting-backend gnuplot"), group));
        assert!(!selects(
            &args("--bench --plotting-backend gnuplot shadow_hit"),
            group
        ));
        // Not a regex: criterion will say so; nothing is skipped.
        assert!(selects(&args("--bench ("), group));
    }
}
