//! Writing output files so that a reader never sees half a file and an interrupted write never
//! replaces a good one: write a temporary file beside the target, flush it to disk, rename.

use crate::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` all at once: written to a temporary file in the same
/// directory, synced to disk, then renamed over `path`. On failure the temporary file is
/// removed and whatever was at `path` is untouched.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let io_error =
        |action: &str, e: std::io::Error| Error::Io(format!("{action} {}: {e}", path.display()));
    let temporary = temporary_path(path)?;
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error("cannot write", e));
    }
    Ok(())
}

/// Refuses, before any work is done, an output `path` that could not be written: its directory
/// missing or not a directory, `path` itself a directory, or the directory not writable (found
/// by creating and removing the temporary file `write_atomic` would use). Nothing is left
/// behind either way.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    let temporary = temporary_path(path)?;
    if path.is_dir() {
        return Err(Error::Io(format!(
            "cannot write {}: it is a directory",
            path.display()
        )));
    }
    std::fs::File::create(&temporary)
        .and_then(|_| std::fs::remove_file(&temporary))
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// `.NAME.tmp-PID` beside `path`, after checking that `path`'s directory is one.
fn temporary_path(path: &Path) -> Result<PathBuf, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(Error::Io(format!(
            "cannot write {}: {} {why}",
            path.display(),
            dir.display()
        )));
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("cannot write {}: not a file path", path.display())))?;
    Ok(dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    )))
}
