//! A jobs file (YAML, with `${VAR}` interpolation): parsing never panics, every error names the
//! file, and every accepted spec survives the ledger's round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use respool::job::JobSpec;
use respool::job::spec::parse_jobs_file;
use respool_fuzz::{no_env, no_files};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_jobs_file("jobs.yaml", text, &no_env, &no_files) {
        Ok(specs) => {
            let mut names = std::collections::BTreeSet::new();
            for spec in &specs {
                assert!(
                    names.insert(spec.name.clone()),
                    "duplicate name {}",
                    spec.name
                );
                let stored = serde_json::to_string(spec).expect("a spec serializes");
                let back: JobSpec = serde_json::from_str(&stored).expect("a stored spec decodes");
                assert_eq!(&back, spec, "the stored spec decodes to another: {stored}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.to_string().starts_with("jobs.yaml"), "{e}");
            }
        }
    }
});
