//! The built-in mutational driver: runs a target on its seed corpus, then on random mutations
//! of it (byte edits, splices, JSON/SSE tokens) for a set time, without coverage feedback.
//!
//! It needs no instrumented build, so the test suite can run every target briefly on the
//! ordinary dev build. Panics are caught per input and saved as `crash-<hash>`; an input that
//! runs longer than [`SLOW_INPUT`] is saved as `slow-<hash>`, and one that runs longer than
//! [`HANG_INPUT`] as `hang-<hash>` by a watchdog, which then ends the process.

use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Target;

/// One input slower than this is a finding (`slow-<hash>`).
pub const SLOW_INPUT: Duration = Duration::from_secs(1);
/// One input still running after this is a hang: saved, and the process exits.
pub const HANG_INPUT: Duration = Duration::from_secs(10);
/// Longest generated input.
pub const MAX_LEN: usize = 16 * 1024;
/// Exit status of the process when the watchdog found a hang.
pub const HANG_EXIT: i32 = 3;

/// Bytes that matter to the parsers under test, inserted by the mutator.
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"true", b"false", b"-1", b"0", b"-0", b"1.5", b"1e308",
    b"1e-7", b"2E+3", b"18446744073709551616", b"99999999999999999999999999999", b"0.0000000000000000000000000001",
    b"\"\\u0000\"", b"\\u0065", b"\\\"", b"\xc3\xa9", b"\xf0\x9d\x84\x9e", b"\xff", b"\n", b"\r\n", b"\r", b"\n\n",
    b"data: ", b"event: ", b"id: ", b"retry: 1", b": comment", b"[DONE]", b"message_stop", b"message_start",
    b"message_delta", b"content_block_delta", b"error", b"\"type\":", b"\"usage\":", b"\x04\x22\x4d\x18",
    b"\"schema_version\":1", b"\"events\":[", b"\"quantities\":{", b"\"input_tokens\":", b"\"amount\":",
    b"\"has_more\":true", b"\"next_page\":null", b"\"data\":[", b"\"results\":[", b"\"messages\":[",
    b"\"max_tokens\":", b"\"n\":", b"\"stream\":true", b"\"tools\":[", b"\"image_url\":", b"2026-12-04T00:00:00Z",
    b"2016-12-31T23:59:60Z", b"+14:00", b"9999-12-31T23:59:59Z", b"0190b8e2-8f3a-7c4d-9e2f-1a2b3c4d5e6f",
];

/// A small, fast, seedable generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift has no zero state).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// `input` changed by 1-8 random edits; `corpus` supplies splices.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = (rng.next_u64() & 0xff) as u8;
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                out.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let piece = out[start..end].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, piece);
            }
            4 | 5 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                out.splice(at..at, token.iter().copied());
            }
            6 if len > 0 => {
                // Replace a run with a token (a value for a value, a key for a key).
                let token = TOKENS[rng.below(TOKENS.len())];
                let start = rng.below(len);
                let end = (start + 1 + rng.below(12)).min(len);
                out.splice(start..end, token.iter().copied());
            }
            7 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = (from + 1 + rng.below(256)).min(other.len());
                    let at = rng.below(len + 1);
                    out.splice(at..at, other[from..to].iter().copied());
                }
            }
            _ => {
                // The mode byte(s) the targets read first.
                if let Some(b) = out.first_mut() {
                    *b = (rng.next_u64() & 0xff) as u8;
                }
            }
        }
    }
    out.truncate(MAX_LEN);
    out
}

/// A crash, slow input or hang, with the file that reproduces it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `crash`, `slow` or `hang`.
    pub kind: &'static str,
    /// The saved input.
    pub path: PathBuf,
    /// The panic message or the time taken.
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Inputs run.
    pub execs: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Seed inputs loaded.
    pub seeds: usize,
    /// Findings, in order.
    pub findings: Vec<Finding>,
}

/// The files of a corpus directory (empty when it does not exist), sorted by name.
pub fn load_corpus(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut paths = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    paths.sort();
    paths.iter().map(fs::read).collect()
}

/// A stable name for an input (FNV-1a, 64 bits, hex).
pub fn hash_name(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn save(dir: &Path, kind: &str, data: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{kind}-{}", hash_name(data)));
    fs::write(&path, data)?;
    Ok(path)
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Keep panic messages for the report instead of printing each one.
pub fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = format!("{msg}{at}"));
    }));
}

/// Run `data` through `target` once: `Err(message)` when it panicked.
pub fn run_one(target: Target, data: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| target(data))).map_err(|_| LAST_PANIC.with(|p| p.borrow().clone()))
}

/// Run `target` on every seed, then on mutations of them until `duration` has passed.
/// Findings are saved in `artifacts`; the run goes on after one (each is reported once).
pub fn run(target: Target, seeds: Vec<Vec<u8>>, duration: Duration, seed: u64, artifacts: &Path) -> io::Result<Stats> {
    quiet_panics();
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let started_ms = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clock = Instant::now();
    let watchdog = {
        let (current, started_ms, stop, artifacts) = (current.clone(), started_ms.clone(), stop.clone(), artifacts.to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let began = started_ms.load(Ordering::Relaxed);
                let now = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
                if began > 0 && now.saturating_sub(began) > u64::try_from(HANG_INPUT.as_millis()).unwrap_or(u64::MAX) {
                    let data = current.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    match save(&artifacts, "hang", &data) {
                        Ok(path) => println!("finding: hang {} (still running after {}s)", path.display(), HANG_INPUT.as_secs()),
                        Err(e) => println!("finding: hang (could not save the input: {e})"),
                    }
                    std::process::exit(HANG_EXIT);
                }
            }
        })
    };
    let mut stats = Stats { seeds: seeds.len(), ..Stats::default() };
    let mut seen = std::collections::HashSet::new();
    let mut rng = Rng::new(seed);
    let mut i: usize = 0;
    let result = loop {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else if clock.elapsed() >= duration {
            break Ok(());
        } else if seeds.is_empty() {
            let len = rng.below(64);
            (0..len).map(|_| (rng.next_u64() & 0xff) as u8).collect()
        } else {
            let base = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, base, &seeds)
        };
        i += 1;
        current.lock().unwrap_or_else(PoisonError::into_inner).clone_from(&input);
        started_ms.store(u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        let t = Instant::now();
        let outcome = run_one(target, &input);
        let took = t.elapsed();
        started_ms.store(0, Ordering::Relaxed);
        stats.execs += 1;
        let finding = match outcome {
            Err(message) => Some(("crash", message)),
            Ok(()) if took > SLOW_INPUT => Some(("slow", format!("took {} ms", took.as_millis()))),
            Ok(()) => None,
        };
        if let Some((kind, message)) = finding {
            // One report per distinct message (a bug found by many inputs is one finding).
            let key = format!("{kind}:{}", message.split(" (").next().unwrap_or_default());
            if seen.insert(key) {
                match save(artifacts, kind, &input) {
                    Ok(path) => stats.findings.push(Finding { kind, path, message }),
                    Err(e) => break Err(e),
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    stats.elapsed = clock.elapsed();
    result.map(|()| stats)
}
