//! A lone `tabnet` node started by a test: `tabnet serve` on a free port with its own state
//! directory, stopped with SIGTERM (and killed if the test ends first).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Node {
    pub fn start(state_dir: &Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tabnet"))
            .args(["serve", "--port", "0", "--state-dir"])
            .arg(state_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("tabnet starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "tabnet listening on http://127.0.0.1:P (state in D)"
        assert!(line.starts_with("tabnet listening on http://127.0.0.1:"), "{line}");
        assert!(line.trim_end().ends_with(&format!("(state in {})", state_dir.display())), "{line}");
        let addr = line.split("http://").nth(1).unwrap().split(' ').next().unwrap().to_string();
        Node { child, addr }
    }

    /// SIGTERM, and wait for the graceful exit.
    #[allow(dead_code)] // (not every test stops its node gracefully)
    pub fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tabnet exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "tabnet did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
