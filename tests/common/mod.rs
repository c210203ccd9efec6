//! Helpers shared by the tests that run the real binary next to a broker.

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
