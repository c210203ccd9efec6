//! `tally-fuzz`: the built-in fuzz driver (no instrumented build needed).
//!
//! `tally-fuzz run TARGET SECONDS CORPUS_DIR ARTIFACT_DIR [SEED]` runs a target for that long
//! and prints `execs=N exec_per_s=X seeds=K findings=F`, then one `finding:` line each; it
//! exits 1 when there was a finding. `tally-fuzz replay TARGET FILE...` runs files once each
//! (to reproduce a finding). `tally-fuzz list` prints the targets.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tally_fuzz::driver;

fn usage() -> ExitCode {
    eprintln!("usage: tally-fuzz list | run TARGET SECONDS CORPUS_DIR ARTIFACT_DIR [SEED] | replay TARGET FILE...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target_of = |name: &str| {
        let t = tally_fuzz::target(name);
        if t.is_none() {
            eprintln!("unknown target {name:?}; targets: {}", tally_fuzz::TARGETS.map(|(n, _)| n).join(", "));
        }
        t
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] => {
            for (name, _) in tally_fuzz::TARGETS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        ["run", name, seconds, corpus, artifacts, rest @ ..] => {
            let Some(target) = target_of(name) else { return ExitCode::from(2) };
            let Ok(seconds) = seconds.parse::<u64>() else { return usage() };
            let seed = match rest.first() {
                Some(s) => match s.parse::<u64>() {
                    Ok(s) => s,
                    Err(_) => return usage(),
                },
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs()),
            };
            let seeds = match driver::load_corpus(Path::new(corpus)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot read the corpus {corpus}: {e}");
                    return ExitCode::from(2);
                }
            };
            match driver::run(target, seeds, Duration::from_secs(seconds), seed, Path::new(artifacts)) {
                Ok(stats) => {
                    let secs = stats.elapsed.as_secs_f64().max(0.001);
                    println!(
                        "execs={} exec_per_s={:.0} seeds={} findings={} seed={seed}",
                        stats.execs,
                        stats.execs as f64 / secs,
                        stats.seeds,
                        stats.findings.len()
                    );
                    for f in &stats.findings {
                        println!("finding: {} {} ({})", f.kind, f.path.display(), f.message);
                    }
                    if stats.findings.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("cannot save a finding under {artifacts}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        ["replay", name, files @ ..] if !files.is_empty() => {
            let Some(target) = target_of(name) else { return ExitCode::from(2) };
            driver::quiet_panics();
            let mut failed = false;
            for file in files {
                match std::fs::read(file) {
                    Ok(data) => match driver::run_one(target, &data) {
                        Ok(()) => println!("ok: {file}"),
                        Err(message) => {
                            failed = true;
                            println!("crash: {file}: {message}");
                        }
                    },
                    Err(e) => {
                        failed = true;
                        println!("unreadable: {file}: {e}");
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => usage(),
    }
}
