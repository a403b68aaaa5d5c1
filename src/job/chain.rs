//! Chains of jobs, the pure part: the order a jobs file's jobs are taken in (each after the
//! job it runs after), the names in `after:` made ids, and the output template of a follower
//! (`input_template`). What waits and when it runs is the store's (`store/chains.rs`); the
//! rules are in docs/jobs.md, "Chains and conversations".

use std::collections::BTreeMap;

use super::{JobId, JobSpec};

/// What `input_template` puts the predecessor's output in place of.
pub const OUTPUT_PLACEHOLDER: &str = "{{after.output_text}}";

/// `template` with every `{{after.output_text}}` (spaces inside the braces allowed) replaced
/// by `output`.
pub fn render_template(template: &str, output: &str) -> String {
    let mut out = String::with_capacity(template.len() + output.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        match after_open.find("}}") {
            Some(end) if after_open[..end].trim() == "after.output_text" => {
                out.push_str(output);
                rest = &after_open[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `template` names the predecessor's output at least once.
pub fn has_placeholder(template: &str) -> bool {
    render_template(template, "\u{0}") != template
}

/// Where a jobs-file job's `after` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRef {
    /// The job at this index of the file.
    InFile(usize),
    /// A job already in the ledger (`job_…`), checked when the job is taken in.
    Id(JobId),
}

/// A problem with an `after:` of a jobs file: the entry's index and the message.
pub type AfterError = (usize, String);

/// Resolves each job's `after` among `specs` (a jobs file's jobs, in file order): a name of
/// another job of the file, else a job id. `schedules` are the names of the file's scheduled
/// entries (templates, not jobs: nothing can run after one).
pub fn after_refs(
    specs: &[JobSpec],
    schedules: &[&str],
) -> Result<Vec<Option<AfterRef>>, Vec<AfterError>> {
    let by_name: BTreeMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut refs = Vec::with_capacity(specs.len());
    let mut errors = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let Some(after) = &s.after else {
            refs.push(None);
            continue;
        };
        if let Some(&j) = by_name.get(after.as_str()) {
            if j == i {
                errors.push((i, "a job cannot run after itself".to_string()));
                refs.push(None);
            } else {
                refs.push(Some(AfterRef::InFile(j)));
            }
        } else if let Ok(id) = JobId::parse(after) {
            refs.push(Some(AfterRef::Id(id)));
        } else if schedules.contains(&after.as_str()) {
            errors.push((
                i,
                format!(
                    "`{after}` is a scheduled entry (a template, each tick its own job): nothing can run after it"
                ),
            ));
            refs.push(None);
        } else {
            errors.push((
                i,
                format!(
                    "no job named `{after}` in this file (give a job's `name`, or a job id `job_…`)"
                ),
            ));
            refs.push(None);
        }
    }
    if errors.is_empty() {
        // A cycle of names: every job on it waits for another.
        for cycle_start in cycles(&refs) {
            errors.push((
                cycle_start,
                format!(
                    "`{}` runs after a job that (in the end) runs after it: a chain cannot loop",
                    specs[cycle_start].name
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(refs)
    } else {
        Err(errors)
    }
}

/// The smallest index of each cycle among the in-file references.
fn cycles(refs: &[Option<AfterRef>]) -> Vec<usize> {
    let next = |i: usize| match refs.get(i) {
        Some(Some(AfterRef::InFile(j))) => Some(*j),
        _ => None,
    };
    let mut found = std::collections::BTreeSet::new();
    for start in 0..refs.len() {
        // Follow at most `len` links: still going means a loop; it contains the node reached.
        let mut at = start;
        let mut steps = 0;
        while let Some(j) = next(at) {
            at = j;
            steps += 1;
            if steps > refs.len() {
                break;
            }
        }
        if steps > refs.len() {
            let mut member = at;
            let mut smallest = at;
            loop {
                member = next(member).unwrap_or(member);
                smallest = smallest.min(member);
                if member == at {
                    break;
                }
            }
            found.insert(smallest);
        }
    }
    found.into_iter().collect()
}

/// The order to take a file's jobs in: each after the job it runs after, otherwise as in the
/// file. `refs` from [`after_refs`] (so without cycles).
pub fn intake_order(refs: &[Option<AfterRef>]) -> Vec<usize> {
    let mut placed = vec![false; refs.len()];
    let mut order = Vec::with_capacity(refs.len());
    for i in 0..refs.len() {
        // The chain up from `i`, then placed from its top down.
        let mut up = Vec::new();
        let mut at = Some(i);
        while let Some(j) = at {
            if placed[j] || up.contains(&j) {
                break;
            }
            up.push(j);
            at = match &refs[j] {
                Some(AfterRef::InFile(k)) => Some(*k),
                _ => None,
            };
        }
        for j in up.into_iter().rev() {
            placed[j] = true;
            order.push(j);
        }
    }
    order
}

/// Makes a job's `after` the id of the file's job it names, once that job was taken in
/// (`ids`: name → id). An id, or a name not (yet) taken in, is left as it is.
pub fn resolve_after(spec: &mut JobSpec, ids: &BTreeMap<String, String>) {
    if let Some(after) = &spec.after
        && let Some(id) = ids.get(after)
    {
        spec.after = Some(id.clone());
    }
}

/// A jobs file's jobs in the order to send them (each after the job it runs after), for a
/// client that sends them one by one (`respool submit`, `respool demo`): as each is taken in,
/// [`resolve_after`] gives the next ones its id.
pub fn in_intake_order(specs: Vec<JobSpec>) -> Vec<JobSpec> {
    let order = match after_refs(&specs, &[]) {
        Ok(refs) => intake_order(&refs),
        Err(_) => (0..specs.len()).collect(),
    };
    let mut slots: Vec<Option<JobSpec>> = specs.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn spec(name: &str, after: Option<&str>) -> JobSpec {
        let mut v = json!({"name": name, "model": "gpt-5", "input": "hi"});
        if let Some(a) = after {
            v["after"] = json!(a);
        }
        JobSpec::from_value(v, "#1").unwrap()
    }

    #[test]
    fn templates_take_the_output_where_they_name_it() {
        assert_eq!(
            render_template("Summarise: {{after.output_text}}!", "A B"),
            "Summarise: A B!"
        );
        assert_eq!(
            render_template("{{ after.output_text }} and {{after.output_text}}", "x"),
            "x and x"
        );
        // Other braces stay as they are.
        assert_eq!(render_template("{{other}} {{", "x"), "{{other}} {{");
        assert!(has_placeholder("a {{after.output_text}}"));
        assert!(!has_placeholder("a {{after.output}}"));
        // The output is not read as a template itself.
        assert_eq!(
            render_template("{{after.output_text}}", "{{after.output_text}}"),
            "{{after.output_text}}"
        );
    }

    #[test]
    fn unknown_names_self_references_and_loops_are_refused() {
        let specs = [spec("a", Some("nope")), spec("b", Some("b"))];
        let errs = after_refs(&specs, &[]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].1.contains("no job named `nope`"), "{errs:?}");
        assert!(errs[1].1.contains("itself"), "{errs:?}");
        let specs = [
            spec("a", Some("c")),
            spec("b", Some("a")),
            spec("c", Some("b")),
        ];
        let errs = after_refs(&specs, &[]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("cannot loop"));
        let specs = [spec("a", Some("weekly"))];
        let errs = after_refs(&specs, &["weekly"]).unwrap_err();
        assert!(errs[0].1.contains("scheduled entry"));
    }

    fn ulid(n: u8) -> String {
        format!("job_01K00000000000000000000{:03}", n % 10)
    }

    proptest! {
        /// Whatever the file's order, its names and its unknown names: every job named is
        /// taken in after the job it runs after, each job exactly once, and every name that
        /// is not a job of the file (nor an id) is an error naming it.
        #[test]
        fn a_file_is_taken_in_predecessors_first(
            links in proptest::collection::vec(proptest::option::of(0usize..12), 1..10),
            unknown in proptest::collection::vec(any::<bool>(), 10),
            ids in proptest::collection::vec(any::<bool>(), 10),
        ) {
            let n = links.len();
            let names: Vec<String> = (0..n).map(|i| format!("step-{i}")).collect();
            let specs: Vec<JobSpec> = (0..n)
                .map(|i| {
                    let after = match links[i] {
                        None => None,
                        Some(_) if ids[i] => Some(ulid(i as u8)),
                        Some(_) if unknown[i] => Some(format!("missing-{i}")),
                        Some(j) => Some(names[j % n].clone()),
                    };
                    spec(&names[i], after.as_deref())
                })
                .collect();
            match after_refs(&specs, &[]) {
                Ok(refs) => {
                    let order = intake_order(&refs);
                    let mut seen = order.clone();
                    seen.sort_unstable();
                    prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
                    for (pos, &i) in order.iter().enumerate() {
                        if let Some(AfterRef::InFile(j)) = refs[i] {
                            let before = order.iter().position(|&k| k == j).unwrap();
                            prop_assert!(before < pos, "{} taken in before {}", i, j);
                        }
                    }
                    for (i, s) in specs.iter().enumerate() {
                        if s.after.as_deref().is_some_and(|a| a.starts_with("missing-")) {
                            prop_assert!(false, "unknown name of #{} accepted", i);
                        }
                    }
                }
                Err(errs) => {
                    for (i, s) in specs.iter().enumerate() {
                        if s.after.as_deref().is_some_and(|a| a.starts_with("missing-")) {
                            prop_assert!(
                                errs.iter().any(|(k, m)| *k == i && m.contains("missing-")),
                                "{:?}", errs
                            );
                        }
                    }
                    // Each error is an unknown name, a job after itself, or a loop.
                    for (_, m) in &errs {
                        prop_assert!(
                            m.contains("no job named") || m.contains("itself") || m.contains("loop"),
                            "{}", m
                        );
                    }
                }
            }
        }
    }
}
