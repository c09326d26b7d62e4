//! The real `granary` binary as a child process, for tests that need it whole
//! (real clients, signals, the process's own memory).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct GranaryProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Everything it logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GranaryProcess {
    pub fn spawn(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("granary binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (address_tx, address_rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().expect("log").push(line.clone());
                if line.contains("granary listening") {
                    let address = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("address="))
                        .map(str::to_owned);
                    let _ = address_tx.send(address);
                }
                if std::env::var_os("GRANARY_TEST_LOG").is_some() {
                    eprintln!("granary: {line}");
                }
            }
        });
        let addr = address_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|error| {
                // Exited (or hung) before listening: say why, from what it logged.
                let said = log.lock().expect("log").join("\n");
                panic!("granary logs its address: {error}; it logged:\n{said}")
            })
            .expect("address field")
            .parse()
            .expect("socket address");
        Self { child, addr, log }
    }

    /// What it has logged so far (stderr), one line per entry.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    pub fn index_url(&self) -> String {
        format!("http://{}/pypi/simple/", self.addr)
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().expect("kill after grace");
        panic!("granary did not stop within 10 s of SIGTERM");
    }
}

impl Drop for GranaryProcess {
    /// Killed and reaped: once dropped, its address is free for the next
    /// granary a test starts there.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GranaryProcess {
    /// SIGKILL: no shutdown, no cleanup (a crash).
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Peak resident set size (`VmHWM`) and current (`VmRSS`), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .expect("memory field")
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

#[cfg(test)]
mod tests {
    use super::GranaryProcess;

    /// CI once failed because a dropped granary was signalled but not yet
    /// gone when the test started the next one at the same address (on an idle
    /// machine the race is rarely lost; an unreaped process is always seen).
    #[test]
    fn a_dropped_granary_frees_its_address_for_the_next_one_at_once() {
        let dir = tempfile::tempdir().expect("scratch");
        let first = dir.path().join("first.toml");
        std::fs::write(
            &first,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
                 [repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:9/simple/\"\n",
                dir.path().join("data-first").display()
            ),
        )
        .expect("config");
        let mut granary = GranaryProcess::spawn(&first);
        let address = granary.addr;
        for round in 0..5 {
            let pid = granary.child.id();
            drop(granary);
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "round {round}: the dropped granary (pid {pid}) is still there"
            );
            let config = dir.path().join(format!("{round}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"{address}\"\ndata_dir = \"{}\"\n\n\
                     [repos.pypi]\nformat = \"pypi\"\nupstream = \"http://127.0.0.1:9/simple/\"\n",
                    dir.path().join(format!("data-{round}")).display()
                ),
            )
            .expect("config");
            granary = GranaryProcess::spawn(&config);
            assert_eq!(granary.addr, address, "round {round}");
        }
    }
}
