//! The data directory of `hookmesh standalone`: where the embedded bus (`bus/`) and store
//! (`store/`) keep everything the process accepted, so a restart (after SIGTERM, SIGKILL or a
//! power loss) finds it again.
//!
//! # What it guarantees
//! - **One process per directory**: `LOCK` is held locked (an advisory `flock`) for the life of
//!   the process; a second process on the same directory is refused with an error naming the
//!   directory and, when it can be read, the holder's pid. The lock goes with the process,
//!   whatever kills it, so there is nothing stale to clean up.
//! - **A format version**: `FORMAT` names the directory's layout (`hookmesh-data 1`); a
//!   binary that does not know the version refuses to start and says which file and which
//!   versions. The bus and the store keep their own `FORMAT` files as well.
//! - Errors name the file or directory at fault; nothing here panics. When the embedded bus or
//!   store cannot open its engine, [`damaged_file`] names the file to blame where one can be
//!   found from outside the engine (an unreadable file, a damaged version marker); damage
//!   inside a table or journal is reported with the engine directory.
//!
//! Where it is: `--data-dir` or `HOOKMESH_DATA_DIR`, else `$XDG_DATA_HOME/hookmesh`, else
//! `$HOME/.local/share/hookmesh`, else `./hookmesh-data`. `--ephemeral` keeps everything in
//! memory instead (demos, fast tests: nothing survives the process).

use anyhow::{bail, Context};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The layout this binary reads and writes.
pub const FORMAT: &str = "hookmesh-data 1";

/// The default data directory (see the module docs).
pub fn default_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return xdg.join("hookmesh");
    }
    if let Some(home) = non_empty("HOME") {
        return home.join(".local").join("share").join("hookmesh");
    }
    PathBuf::from("hookmesh-data")
}

/// An open, locked data directory; the lock is released when this is dropped (or the process
/// ends).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl DataDir {
    /// Creates `path` when missing, takes its lock and checks its format.
    pub fn open(path: &Path) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(path).with_context(|| format!("data_dir: cannot create {}", path.display()))?;
        let path = path.canonicalize().with_context(|| format!("data_dir: cannot resolve {}", path.display()))?;
        let lock_path = path.join("LOCK");
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("data_dir: cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
                bail!(
                    "data_dir: {} is in use by another hookmesh process{who}; one process per data directory \
                     (stop it, or give this one another --data-dir)",
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("data_dir: cannot lock {}", lock_path.display()))
            }
        }
        // The holder's pid, for the message above (best effort: the lock is what counts).
        let _ = lock.set_len(0).and_then(|_| lock.rewind()).and_then(|_| writeln!(lock, "{}", std::process::id()));

        let format_path = path.join("FORMAT");
        match std::fs::read(&format_path) {
            Ok(bytes) => {
                let found = String::from_utf8_lossy(&bytes).trim().to_string();
                if found != FORMAT {
                    bail!(
                        "data_dir: {} says `{found}`; this hookmesh reads `{FORMAT}` only (the directory was written \
                         by another version, or is not a hookmesh data directory)",
                        format_path.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let others = std::fs::read_dir(&path)
                    .with_context(|| format!("data_dir: cannot list {}", path.display()))?
                    .filter_map(Result::ok)
                    .any(|e| e.file_name() != "LOCK");
                if others {
                    bail!(
                        "data_dir: {} has no FORMAT file but holds other files: not a hookmesh data directory \
                         (or a damaged one); give an empty or new directory",
                        path.display()
                    );
                }
                let tmp = path.join("FORMAT.tmp");
                let write = || -> std::io::Result<()> {
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(format!("{FORMAT}\n").as_bytes())?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &format_path)?;
                    std::fs::File::open(&path)?.sync_all()
                };
                write().with_context(|| format!("data_dir: cannot write {}", format_path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("data_dir: cannot read {}", format_path.display())),
        }
        Ok(DataDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The embedded bus's directory.
    pub fn bus(&self) -> PathBuf {
        self.path.join("bus")
    }

    /// The embedded store's directory.
    pub fn store(&self) -> PathBuf {
        self.path.join("store")
    }
}

/// After the embedded bus or store in `dir` failed to open: the file to blame, when one can be
/// named. The engine's own errors name no file (`InvalidVersion(None)`, say), so this looks
/// for what it can check from outside: a file that cannot be read (an I/O error, a directory
/// where a file belongs), and the engine's version marker (`engine/version`, which starts with
/// `FJL`). Damage inside a table or journal is not found here: the error then names the
/// engine directory.
pub fn damaged_file(dir: &Path) -> Option<String> {
    let engine = dir.join("engine");
    let version = engine.join("version");
    match std::fs::read(&version) {
        Ok(bytes) if !bytes.starts_with(b"FJL") => {
            return Some(format!("{}: not the engine's version marker (damaged)", version.display()))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Some(format!("{}: cannot be read: {e}", version.display()))
        }
        _ => {}
    }
    let mut dirs = vec![engine];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
                continue;
            }
            let readable = std::fs::File::open(&path).and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()));
            if let Err(e) = readable {
                return Some(format!("{}: cannot be read: {e}", path.display()));
            }
        }
    }
    None
}

/// `error` of opening the embedded bus or store in `dir`, with the damaged file when one can be
/// named.
pub fn open_error(dir: &Path, error: impl std::fmt::Display) -> anyhow::Error {
    match damaged_file(dir) {
        Some(file) => anyhow::anyhow!("data_dir: {error}; the damaged file: {file}"),
        None => anyhow::anyhow!("data_dir: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookmesh-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_open_is_refused_naming_the_directory() {
        let dir = temp("lock");
        let first = DataDir::open(&dir).unwrap();
        let err = format!("{:#}", DataDir::open(&dir).unwrap_err());
        assert!(err.contains(&first.path().display().to_string()), "{err}");
        assert!(err.contains("in use by another hookmesh process"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        DataDir::open(&dir).expect("the lock goes with its holder");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unknown_format_is_refused_naming_the_file() {
        let dir = temp("format");
        drop(DataDir::open(&dir).unwrap());
        std::fs::write(dir.join("FORMAT"), "hookmesh-data 9\n").unwrap();
        let err = format!("{:#}", DataDir::open(&dir).unwrap_err());
        assert!(err.contains("FORMAT") && err.contains("hookmesh-data 9") && err.contains(FORMAT), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_foreign_directory_is_refused() {
        let dir = temp("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = format!("{:#}", DataDir::open(&dir).unwrap_err());
        assert!(err.contains("not a hookmesh data directory"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
