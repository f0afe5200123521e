//! Artifact formats the admin API accepts: a `.wasm` component as is, or a process function's
//! code directory packed into a tar archive by [`pack_dir`].
//!
//! Packing is deterministic (entries sorted, times and owners zeroed, modes reduced to 0755 or
//! 0644), so an unchanged directory packs to the same bytes and hence the same digest, and a
//! redeploy uploads nothing new.

use std::io;
use std::path::Path;

/// Directory names never packed: nimbus's own state and version-control metadata.
const SKIPPED: [&str; 3] = [".nimbus", ".git", "__pycache__"];

/// Pack `dir` (recursively) into an uncompressed tar archive.
pub fn pack_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""))?;
    builder.into_inner()
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, root: &Path, relative: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let path = relative.join(&name);
        let kind = entry.file_type()?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, &path, io::empty())?;
            add_dir(builder, root, &path)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, &path, target)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let executable = entry.metadata()?.permissions().mode() & 0o111 != 0;
            let bytes = std::fs::read(entry.path())?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(bytes.len() as u64);
            builder.append_data(&mut header, &path, bytes.as_slice())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_deterministic_and_keeps_exec_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("bootstrap"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/a.py"), "x = 1\n").unwrap();
        std::fs::create_dir(dir.path().join(".nimbus")).unwrap();
        std::fs::write(dir.path().join(".nimbus/state"), "no").unwrap();
        let first = pack_dir(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("lib/a.py"), "x = 1\n").unwrap();
        assert_eq!(first, pack_dir(dir.path()).unwrap());

        let mut archive = tar::Archive::new(first.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("bootstrap".to_owned(), 0o755),
                ("lib".to_owned(), 0o755),
                ("lib/a.py".to_owned(), 0o644)
            ]
        );
    }
}
