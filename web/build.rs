//! Builds the browser UI (web/ui, Vite) when its assets are missing or older than its sources,
//! so `cargo run` on a fresh machine serves a current UI. Needs Node and npm; installs the npm
//! dependencies from the lockfile (`npm ci`). Set TALLY_SKIP_UI_BUILD=1 to skip (a placeholder
//! page is embedded instead).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    let mut best = None;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let t = newest(&entry.path());
        if t > best {
            best = t;
        }
    }
    best
}

fn run(dir: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run npm (install Node.js 20+): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`npm {}` failed with {status}", args.join(" ")))
    }
}

fn placeholder(dist: &Path, why: &str) {
    let _ = std::fs::create_dir_all(dist);
    let page = format!(
        "<!doctype html><title>Tally</title><h1>Tally</h1><p>The web UI was not built: {why}</p>\
         <p>The API is served under <code>/api</code>.</p>"
    );
    let _ = std::fs::write(dist.join("index.html"), page);
}

fn main() {
    let ui = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into())).join("ui");
    let dist = ui.join("dist");
    for p in ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"] {
        println!("cargo:rerun-if-changed={}", ui.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=TALLY_SKIP_UI_BUILD");
    if std::env::var("TALLY_SKIP_UI_BUILD").is_ok_and(|v| v == "1") {
        if !dist.join("index.html").exists() {
            placeholder(&dist, "TALLY_SKIP_UI_BUILD=1 was set");
        }
        return;
    }
    let sources = ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts"]
        .iter()
        .filter_map(|p| newest(&ui.join(p)))
        .max();
    let built = newest(&dist.join("index.html"));
    if built.is_some() && built >= sources {
        return;
    }
    let lock = newest(&ui.join("package-lock.json"));
    let installed = newest(&ui.join("node_modules/.package-lock.json"));
    let result = (if installed.is_none() || installed < lock { run(&ui, &["ci", "--no-audit", "--no-fund"]) } else { Ok(()) })
        .and_then(|_| run(&ui, &["run", "build"]));
    if let Err(e) = result {
        // Without Node the API still works; say so loudly instead of failing the whole build.
        println!("cargo:warning=web UI not built: {e}");
        placeholder(&dist, &e);
    }
}
