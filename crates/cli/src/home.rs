//! The wrangle home: where it is and the directory itself.
//!
//! The home holds the daemon's socket, so it must be private: mode 0700,
//! like DESIGN.md asks, whoever created it.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the daemon's socket in the home.
const SOCKET: &str = "wrangle.sock";

/// File name of the log an autostarted daemon writes to.
const DAEMON_LOG: &str = "daemon.log";

/// The home to use: `--home`/`WRANGLE_HOME` when given and not empty, else
/// the XDG default; always absolute, because the daemon runs from another
/// directory.
pub fn resolve(explicit: Option<OsString>) -> Result<PathBuf> {
    let home = match explicit.filter(|path| !path.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => default_home(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
            .context("cannot choose a wrangle home: set WRANGLE_HOME, XDG_STATE_HOME or HOME")?,
    };
    std::path::absolute(&home)
        .with_context(|| format!("cannot make the wrangle home {} absolute", home.display()))
}

/// `$XDG_STATE_HOME/wrangle`, else `$HOME/.local/state/wrangle`. The XDG
/// spec says to ignore a relative `XDG_STATE_HOME`.
fn default_home(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg_state_home
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    if let Some(state) = xdg {
        return Some(state.join("wrangle"));
    }
    home.filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".local/state/wrangle"))
}

/// The daemon's socket in `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// The log an autostarted daemon writes its output to.
pub fn daemon_log_path(home: &Path) -> PathBuf {
    home.join(DAEMON_LOG)
}

/// Creates the home (its parents with the usual mode) and makes it 0700;
/// an existing home that is ours is set to 0700 too, one that is not ours
/// is left alone for the daemon to judge. Fails when the home cannot be
/// written (a read-only file system, a directory of another user).
pub fn ensure(home: &Path) -> Result<()> {
    let cannot_create = || format!("cannot create the wrangle home {}", home.display());
    if let Some(parent) = home.parent() {
        fs::create_dir_all(parent).with_context(cannot_create)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(home) {
        Ok(()) => {}
        // Another CLI may have created it a moment ago.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error).with_context(cannot_create),
    }
    let metadata = fs::metadata(home)
        .with_context(|| format!("cannot read the wrangle home {}", home.display()))?;
    if !metadata.is_dir() {
        bail!(
            "the wrangle home {} exists and is not a directory",
            home.display()
        );
    }
    // The mode given to mkdir is cut by the umask, so set it explicitly.
    let owned = metadata.uid() == nix::unistd::geteuid().as_raw();
    if owned && metadata.mode() & 0o7777 != 0o700 {
        fs::set_permissions(home, fs::Permissions::from_mode(0o700)).with_context(|| {
            format!(
                "cannot make the wrangle home {} private (mode 0700)",
                home.display()
            )
        })?;
    }
    // The daemon's socket, store, log and run directories all live here:
    // say so plainly now, not as a failure to open one of them later.
    nix::unistd::access(
        home,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(io::Error::from)
    .with_context(|| format!("the wrangle home {} is not writable", home.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_xdg() {
        assert_eq!(
            default_home(Some("/state".into()), Some("/home/u".into())),
            Some(PathBuf::from("/state/wrangle"))
        );
        assert_eq!(
            default_home(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/state/wrangle"))
        );
        // Relative or empty XDG_STATE_HOME is ignored, as the spec says.
        assert_eq!(
            default_home(Some("rel".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/state/wrangle"))
        );
        assert_eq!(
            default_home(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/state/wrangle"))
        );
        assert_eq!(default_home(None, None), None);
        assert_eq!(default_home(None, Some("".into())), None);
    }

    #[test]
    fn an_explicit_home_is_made_absolute() {
        let resolved = resolve(Some("some/home".into())).unwrap();
        assert!(resolved.is_absolute());
        assert!(resolved.ends_with("some/home"));
        assert_eq!(
            resolve(Some("/abs/home".into())).unwrap(),
            PathBuf::from("/abs/home")
        );
    }

    #[test]
    fn paths_in_the_home() {
        let home = Path::new("/h");
        assert_eq!(socket_path(home), PathBuf::from("/h/wrangle.sock"));
        assert_eq!(daemon_log_path(home), PathBuf::from("/h/daemon.log"));
    }

    #[test]
    fn ensure_creates_a_private_home_and_fixes_an_open_one() {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join("a/b/home");
        ensure(&home).unwrap();
        let mode = fs::metadata(&home).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);

        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&home).unwrap();
        let mode = fs::metadata(&home).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn ensure_says_what_went_wrong() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("file");
        fs::write(&file, "").unwrap();
        let error = format!("{:#}", ensure(&file).unwrap_err());
        assert!(error.contains("is not a directory"), "{error}");

        let below_file = file.join("home");
        let error = format!("{:#}", ensure(&below_file).unwrap_err());
        assert!(
            error.starts_with(&format!(
                "cannot create the wrangle home {}: ",
                below_file.display()
            )),
            "{error}"
        );
    }
}
