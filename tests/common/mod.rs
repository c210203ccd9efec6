//! Helpers shared by the tests that run the real binary (each test binary uses a part).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a spawned server may take to open its port.
pub const PORT_TIMEOUT: Duration = Duration::from_secs(15);

/// A required environment variable, or a panic saying which script sets it.
pub fn required_env(var: &str, how: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run `{how}` first"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until something listens on `port` (at most [`PORT_TIMEOUT`]).
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + PORT_TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tally serve` on an ephemeral loopback port (open mode, simulated provider); killed when dropped.
pub struct Serving {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, from the banner.
    pub base: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `tally serve` on `db` and wait for its banner.
pub fn serve(db: &str) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", db])
        .env("TALLY_SIM_TOKEN_DELAY_MS", "1")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TALLY_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("tally listening on ").unwrap_or_else(|| panic!("unexpected banner {line:?}")).to_string();
    Serving { child, base }
}
