//! The `tally-fuzz` driver as bench/fuzz.sh runs it: replaying the committed seeds, a short
//! run, and a finding reported with its file and a failing exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn driver(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_tally-fuzz")).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("the tally-fuzz binary runs: {e}"),
    }
}

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

#[test]
fn every_committed_seed_replays_cleanly() {
    let listed = driver(&["list"]);
    let names = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(names.lines().count(), 5, "five targets are listed: {names}");
    for name in names.lines() {
        let files: Vec<String> = match std::fs::read_dir(corpus(name)) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path().display().to_string()).collect(),
            Err(e) => panic!("{name} has a corpus: {e}"),
        };
        let mut args = vec!["replay", name];
        args.extend(files.iter().map(String::as_str));
        let out = driver(&args);
        assert!(out.status.success(), "every seed of {name} replays: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_short_run_reports_executions_and_no_finding() {
    let artifacts = std::env::temp_dir().join(format!("tally-fuzz-test-{}", std::process::id()));
    let corpus = corpus("import_report");
    let out = driver(&["run", "import_report", "1", &corpus.display().to_string(), &artifacts.display().to_string(), "42"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "a clean run exits 0: {text}");
    let execs = text.split_whitespace().find_map(|w| w.strip_prefix("execs=")).and_then(|n| n.parse::<u64>().ok());
    assert!(execs.is_some_and(|n| n > 100), "a one-second run executes inputs and says how many: {text}");
    assert!(text.contains("findings=0"), "no finding on a clean run: {text}");
    let _ = std::fs::remove_dir_all(&artifacts);
}

#[test]
fn bad_invocations_fail_with_distinct_statuses() {
    let missing = std::env::temp_dir().join("tally-fuzz-no-such-file");
    let out = driver(&["replay", "ingest", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "a replay that cannot run an input fails");
    let unknown = driver(&["run", "no_such_target", "1", "x", "y"]);
    assert_eq!(unknown.status.code(), Some(2), "an unknown target is a usage error");
}
