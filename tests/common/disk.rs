//! A small disk for a home: a tmpfs of a few MiB that a test fills, to
//! see what wrangle does when the disk is full.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a home's directory, unmounted when dropped (after
/// the home, declared before it, has stopped its daemon).
#[derive(Default)]
pub struct SmallDisk {
    mounted: Option<PathBuf>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `path`.
    pub fn mount(&mut self, path: &Path, size: &str) {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        self.mounted = Some(path.to_path_buf());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(path) = &self.mounted {
            let _ = Command::new("umount").arg("-l").arg(path).status();
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// Size and free bytes of the file system of `path`.
pub fn free_bytes(path: &Path) -> (u64, u64) {
    let output = Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

/// Fills the file system of `dir` with a file of zeros in it, to the last
/// byte; the file's path (remove it to free the space).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let block = vec![0u8; 64 << 10];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
            Err(error) => panic!("fill {}: {error}", dir.display()),
        }
    }
    // The last blocks, smaller than one write.
    for size in [4096usize, 512, 1] {
        while file.write_all(&block[..size]).is_ok() {}
    }
    path
}
