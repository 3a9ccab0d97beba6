//! [`ModelId`]: which model a solve ran on, as a trace's provenance records it (a name and the
//! model file's sha256). It sits in the model layer, which every other part already uses, so
//! that the backends (which know their model) and the traces (which record it) both reach it
//! without reaching each other.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which model a solve ran on, as a trace's provenance records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    /// The model file's name; for a served model `remote:` and the name the server gives it.
    pub name: String,
    /// The model file's sha256, lower-case hex; for a served model the sha256 of the file the
    /// server says it loaded when that file is readable here, else empty.
    pub sha256: String,
}

impl ModelId {
    /// The model file at `path`, hashed (a second or two for a large model).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            name: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            sha256: sha256_file(path)?,
        })
    }
}

/// The sha256 of a file, lower-case hex.
///
/// # Errors
/// The file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
