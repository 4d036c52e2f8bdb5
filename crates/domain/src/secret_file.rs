//! Files that hold key material: created once with mode 0600 in a 0700 directory, never
//! overwritten (two processes starting at once keep the first one's key), read back whole.

use std::io::Write as _;
use std::path::Path;

use zeroize::Zeroizing;

/// Creates `dir` and its parents with mode 0700 where they are missing.
///
/// # Errors
/// The directory cannot be created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The contents of the file at `path`, or — when it does not exist — `generate()`'s output,
/// written there first with mode 0600. Returns whether the file was created.
///
/// # Errors
/// The file cannot be read or created.
pub fn read_or_create(
    path: &Path,
    generate: impl FnOnce() -> Zeroizing<Vec<u8>>,
) -> std::io::Result<(Zeroizing<Vec<u8>>, bool)> {
    if path.exists() {
        return Ok((Zeroizing::new(std::fs::read(path)?), false));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let contents = generate();
    // Write a complete private temporary file, then link it into place: a second process
    // starting at the same moment either links first (and we read its key) or finds ours
    // complete; nobody ever reads a half-written key.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A unique name per attempt, created new: two threads of one process never share it.
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        uuid::Uuid::now_v7().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(&contents)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok((contents, true)),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((Zeroizing::new(std::fs::read(path)?), false))
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k");
        let (first, created) = read_or_create(&path, || Zeroizing::new(b"one".to_vec())).unwrap();
        assert!(created);
        let (second, created) = read_or_create(&path, || Zeroizing::new(b"two".to_vec())).unwrap();
        assert!(!created);
        assert_eq!(*first, *second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("keys")), 0o700);
        }
    }
}
