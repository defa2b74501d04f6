//! Files named by a zero-padded number and an extension
//! (`{n:020}.{ext}`), listed in order: the export ledger's generations and
//! the cluster acknowledgements journal's files.

use std::path::{Path, PathBuf};

pub fn file(dir: &Path, n: u64, ext: &str) -> PathBuf {
    dir.join(format!("{n:020}.{ext}"))
}

/// The numbers of `dir`'s files with extension `ext`, ascending.
pub fn list(dir: &Path, ext: &str) -> std::io::Result<Vec<u64>> {
    let suffix = format!(".{ext}");
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(&suffix)?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}
