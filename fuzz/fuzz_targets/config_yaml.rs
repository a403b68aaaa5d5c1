//! The config file (YAML, `${VAR}` interpolation, credentials, validation): never panics, and an
//! error always says what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use respool::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A variable set and one unset, so both sides of `${VAR:-default}` are reached.
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    match Config::from_yaml("respool.yaml", text, &env) {
        Ok(cfg) => {
            let _ = cfg.secrets();
            let _ = cfg.database_url(&env);
        }
        Err(ConfigError::Invalid(errors)) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.to_string().starts_with("respool.yaml"), "{e}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
