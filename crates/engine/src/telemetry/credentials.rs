//! Who a telemetry record is from: each run gets a token of its own,
//! `AGENT.RUN.MAC`, where MAC is an HMAC of `AGENT.RUN` under a key that
//! only the daemon knows (`$WRANGLE_HOME/telemetry.key`, 0600, made once).
//! A record counts for the run its token names only if the MAC is right:
//! an agent runs arbitrary code, and must not be able to move another
//! agent's cost, or its own, by claiming attributes. Nothing is stored
//! per run: the token is made again from the key when needed, after a
//! restart of the daemon too.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The key file in the home.
const KEY_FILE: &str = "telemetry.key";

/// Bytes of the key.
const KEY_LEN: usize = 32;

/// Bytes of a token's MAC (hex-encoded in the token).
const MAC_LEN: usize = 16;

/// The daemon's key for telemetry tokens.
#[derive(Clone)]
pub struct Credentials {
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { key: <hidden> }")
    }
}

impl Credentials {
    /// The key of `home`, made (0600) if there is none yet.
    pub fn of_home(home: &Path) -> io::Result<Credentials> {
        let path = home.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == KEY_LEN => {
                let mut key = [0; KEY_LEN];
                key.copy_from_slice(&bytes);
                return Ok(Credentials { key });
            }
            Ok(_) => tracing::warn!(
                "{} is damaged: a new key is made (running agents' telemetry is refused until they restart)",
                path.display()
            ),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let key: [u8; KEY_LEN] = rand::random();
        let temporary = home.join(format!("{KEY_FILE}.new"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&key)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        Ok(Credentials { key })
    }

    /// The token of run `run` of agent `agent_id`.
    pub fn token(&self, agent_id: &str, run: u32) -> String {
        let subject = format!("{agent_id}.{run}");
        let mac = self.mac(&subject);
        format!("{subject}.{}", hex::encode(mac))
    }

    /// The agent and run a token is for, if its MAC is right (compared in
    /// constant time).
    pub fn verify(&self, token: &str) -> Option<(String, u32)> {
        let (subject, hex) = token.trim().rsplit_once('.')?;
        let (agent_id, run) = subject.rsplit_once('.')?;
        let run: u32 = run.parse().ok()?;
        let given = hex::decode(hex)
            .ok()
            .filter(|given| given.len() == MAC_LEN)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(subject.as_bytes());
        mac.verify_truncated_left(&given).ok()?;
        Some((agent_id.to_string(), run))
    }

    fn mac(&self, subject: &str) -> [u8; MAC_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(subject.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut short = [0; MAC_LEN];
        short.copy_from_slice(&full[..MAC_LEN]);
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_run_and_nothing_else_passes() {
        let home = tempfile::tempdir().unwrap();
        let credentials = Credentials::of_home(home.path()).unwrap();
        let token = credentials.token("ag1", 3);
        assert_eq!(credentials.verify(&token), Some(("ag1".to_string(), 3)));
        // The same key after a restart of the daemon.
        let again = Credentials::of_home(home.path()).unwrap();
        assert_eq!(again.verify(&token), Some(("ag1".to_string(), 3)));
        let mode = std::fs::metadata(home.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Another run, another agent, a cut or changed MAC: refused.
        let mac = token.rsplit_once('.').unwrap().1;
        // The last digit changed (to one it is not).
        let changed = if mac.ends_with('0') { '1' } else { '0' };
        for forged in [
            format!("ag1.4.{mac}"),
            format!("ag2.3.{mac}"),
            format!("ag1.3.{}", &mac[..30]),
            format!("ag1.3.{}{changed}", &mac[..31]),
            "ag1.3".to_string(),
            String::new(),
        ] {
            assert_eq!(credentials.verify(&forged), None, "{forged}");
        }
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            Credentials::of_home(other.path()).unwrap().verify(&token),
            None
        );
    }
}
