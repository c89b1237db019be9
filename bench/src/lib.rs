//! Baselines and fixtures shared by the criterion benchmarks in `benches/`.
#![forbid(unsafe_code)]
pub mod host_pages;
pub mod nested_fault;
pub mod shadow_baseline;
pub mod umbra;
pub mod walker_baseline;

/// Whether the command line's filter (criterion's positional argument, read
/// here as `|`-separated name prefixes) can select benchmarks of `group`,
/// so the expensive setup of unselected groups (1M entries) is skipped.
pub fn wanted(group: &str) -> bool {
    const VALUED: [&str; 13] = [
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
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .flat_map(|(_, a)| a.split('|'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.starts_with(f) || f.starts_with(group))
}
