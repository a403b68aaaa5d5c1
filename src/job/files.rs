//! Reading the files a jobs file names (`schema_file:`, `attachments:`, `knowledge:`)
//! beside it, as the CLI does (anything the user can read) and as the daemon does for its own
//! jobs file (attachments only under `jobs.attachment_dirs`).

use std::path::{Path, PathBuf};

/// A reader of the files a jobs file names (`schema_file:`, `attachments:`): paths relative
/// to the jobs file's folder, absolute ones as they are. Reads regular files only, and at most
/// one byte past what the caller asks (a larger file is refused by the caller). With `allow`,
/// only files inside those folders (after following links) are read: the daemon reads its own
/// disk for a jobs file only where its config says.
#[derive(Debug, Clone)]
pub struct Beside {
    dir: PathBuf,
    allow: Option<Vec<PathBuf>>,
}

/// A reader for the jobs file at `jobs_file` that reads anything the user can (the CLI).
pub fn beside(jobs_file: &Path) -> Beside {
    Beside {
        dir: jobs_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        allow: None,
    }
}

/// A reader for the daemon's own jobs file: files only under `dirs` (the jobs file's folder
/// when empty).
pub fn beside_within(jobs_file: &Path, dirs: &[PathBuf]) -> Beside {
    let mut b = beside(jobs_file);
    let dirs = if dirs.is_empty() {
        vec![b.dir.clone()]
    } else {
        dirs.to_vec()
    };
    // A folder that does not exist allows nothing (it canonicalizes to nothing).
    b.allow = Some(dirs.iter().filter_map(|d| d.canonicalize().ok()).collect());
    b
}

impl Beside {
    /// Reads `name` (relative to the jobs file's folder), a regular file only, at most
    /// `max + 1` bytes; with `confined`, only a file that is inside the allowed folders as
    /// opened (the check is made on the open file, so a link swapped after it cannot lead
    /// elsewhere).
    fn read_file(&self, name: &str, max: usize, confined: bool) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let path = self.dir.join(name);
        let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
        // Only a regular file: a device, a pipe or `/proc` reports no size and may never end
        // (and a pipe would block the open itself).
        if !std::fs::metadata(&path).map_err(cannot)?.is_file() {
            return Err(format!("`{}` is not a regular file", path.display()));
        }
        let file = std::fs::File::open(&path).map_err(cannot)?;
        if confined && let Some(allow) = &self.allow {
            let real = opened_path(&file, &path).map_err(cannot)?;
            if !allow.iter().any(|d| real.starts_with(d)) {
                return Err(format!(
                    "`{}` is outside the folders the daemon may read attachments from \
                     (`jobs.attachment_dirs`: {})",
                    path.display(),
                    allow
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        // Checked again on the open file: the path may have changed meanwhile.
        if !file.metadata().map_err(cannot)?.is_file() {
            return Err(format!("`{}` is not a regular file", path.display()));
        }
        let mut bytes = Vec::new();
        file.take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() > max {
            return Err(format!(
                "`{}` is over {max} bytes, the most it may have",
                path.display()
            ));
        }
        Ok(bytes)
    }
}

/// Where an open file really is: on Linux, what `/proc/self/fd` says of the handle itself;
/// elsewhere the path, with every link resolved.
fn opened_path(file: &std::fs::File, path: &Path) -> std::io::Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = path;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        path.canonicalize()
    }
}

impl crate::job::spec::JobFiles for Beside {
    fn read(&self, name: &str, max: usize) -> Result<Vec<u8>, String> {
        self.read_file(name, max, false)
    }

    fn base_dir(&self) -> Option<std::path::PathBuf> {
        std::path::absolute(&self.dir).ok()
    }

    fn read_attachment(&self, name: &str, max: usize) -> Result<Vec<u8>, String> {
        self.read_file(name, max, true)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        if self.allow.is_some()
            && (Path::new(pattern).is_absolute()
                || Path::new(pattern)
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            return Err(format!(
                "`{pattern}`: a glob in the daemon's jobs file stays inside the jobs file's \
                 folder (no absolute path, no `..`); name a file outside it by its path"
            ));
        }
        let full = self.dir.join(pattern);
        let full = full
            .to_str()
            .ok_or_else(|| format!("`{pattern}`: the path is not UTF-8"))?;
        let paths = glob::glob(full).map_err(|e| format!("`{pattern}` is not a glob: {e}"))?;
        let mut out = Vec::new();
        for p in paths {
            let p = p.map_err(|e| format!("cannot list `{pattern}`: {e}"))?;
            // Folders a pattern matches are not files to attach.
            if p.is_file() {
                // As `read` takes it: relative to the jobs file's folder when under it.
                let shown = p.strip_prefix(&self.dir).unwrap_or(&p);
                out.push(shown.display().to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_reads_regular_files_next_to_the_jobs_file_within_the_limit() {
        use crate::job::spec::JobFiles;
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(dir.path().join("schemas/a.json"), b"{}").unwrap();
        let max = crate::job::spec::MAX_SCHEMA_FILE_BYTES;
        std::fs::write(dir.path().join("big.json"), vec![b' '; max + 1]).unwrap();
        std::fs::write(dir.path().join("edge.json"), vec![b' '; max]).unwrap();
        let files = beside(&jobs);
        let read = |p: &str| files.read(p, max);
        assert_eq!(read("schemas/a.json").unwrap(), b"{}");
        assert_eq!(read("edge.json").unwrap().len(), max);
        assert!(read("big.json").unwrap_err().contains("over"), "too big");
        assert!(read("missing.json").unwrap_err().starts_with("cannot read"));
        assert!(read("schemas").unwrap_err().contains("not a regular file"));
        // A device reports no size and never ends: refused without reading.
        assert!(
            read("/dev/zero")
                .unwrap_err()
                .contains("not a regular file")
        );
        // An absolute path is taken as it is.
        let abs = dir.path().join("schemas/a.json");
        assert_eq!(read(abs.to_str().unwrap()).unwrap(), b"{}");
        // Globs list files only, sorted.
        std::fs::write(dir.path().join("schemas/b.json"), b"{}").unwrap();
        std::fs::create_dir(dir.path().join("schemas/c.json")).unwrap();
        let found = files.glob("schemas/*.json").unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found, ["schemas/a.json", "schemas/b.json"]);
        assert_eq!(files.read(&found[1], 10).unwrap(), b"{}");
        assert!(files.glob("nothing/*.pdf").unwrap().is_empty());
    }

    #[test]
    fn the_daemon_reads_attachments_only_inside_its_folders() {
        use crate::job::spec::JobFiles;
        let root = tempfile::tempdir().unwrap();
        let here = root.path().join("jobs");
        let elsewhere = root.path().join("secret");
        std::fs::create_dir(&here).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(here.join("ok.txt"), b"ok").unwrap();
        std::fs::write(elsewhere.join("key.txt"), b"secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(elsewhere.join("key.txt"), here.join("link.txt")).unwrap();
        let jobs = here.join("jobs.yaml");
        // By default: the jobs file's folder only.
        let files = beside_within(&jobs, &[]);
        assert_eq!(files.read_attachment("ok.txt", 10).unwrap(), b"ok");
        for path in ["../secret/key.txt", "link.txt"] {
            if path == "link.txt" && !cfg!(unix) {
                continue;
            }
            let e = files.read_attachment(path, 10).unwrap_err();
            assert!(e.contains("outside the folders"), "{path}: {e}");
        }
        let abs = elsewhere.join("key.txt");
        assert!(files.read_attachment(abs.to_str().unwrap(), 10).is_err());
        // A glob stays inside.
        for pattern in ["../secret/*.txt", "/etc/*"] {
            let e = files.glob(pattern).unwrap_err();
            assert!(e.contains("stays inside"), "{pattern}: {e}");
        }
        // A schema file (not an attachment) is read where the jobs file says.
        assert_eq!(files.read("../secret/key.txt", 10).unwrap(), b"secret");
        // Configured folders replace the default.
        let files = beside_within(&jobs, std::slice::from_ref(&elsewhere));
        assert_eq!(
            files.read_attachment("../secret/key.txt", 10).unwrap(),
            b"secret"
        );
        assert!(files.read_attachment("ok.txt", 10).is_err());
        // A folder that does not exist allows nothing.
        let files = beside_within(&jobs, &[root.path().join("nope")]);
        assert!(files.read_attachment("ok.txt", 10).is_err());
    }
}
