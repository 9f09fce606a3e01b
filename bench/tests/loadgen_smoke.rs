//! A short run of `loadgen`: the demo starts a cluster, commits proposals and writes its
//! JSON summary with every field the issue names.

use std::process::Command;

#[test]
fn a_short_loadgen_run_commits_and_reports() {
    let dir = tempfile::tempdir().expect("directory");
    let json = dir.path().join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--duration",
            "1",
            "--groups",
            "8",
            "--clients",
            "2",
            "--window",
            "8",
        ])
        .arg("--json")
        .arg(&json)
        .current_dir(dir.path())
        .output()
        .expect("loadgen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = std::fs::read_to_string(&json).expect("the summary was written");
    for field in [
        "ops_per_sec",
        "mb_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "wal_syncs_per_sec",
        "entries_per_sync",
        "\"config\"",
    ] {
        assert!(summary.contains(field), "{field} missing from {summary}");
    }
    assert!(number(&summary, "ops_per_sec") > 0.0, "nothing committed");
    // Paced, half reads (ReadIndex): reads and writes both complete.
    let paced = run(
        dir.path(),
        &[
            "--duration",
            "1",
            "--groups",
            "4",
            "--read-ratio",
            "0.5",
            "--rate",
            "2000",
        ],
    );
    assert!(number(&paced, "ops_per_sec") > 0.0, "nothing done: {paced}");
    assert!(paced.contains("\"rate\": 2000"), "{paced}");
    // Idle groups: the memory figures.
    let idle = run(dir.path(), &["--idle-groups", "20"]);
    assert!(number(&idle, "replicas") == 60.0, "{idle}");
    assert!(idle.contains("bytes_per_idle_replica"), "{idle}");
    let bad = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--groups", "0"])
        .output()
        .expect("runs");
    assert!(!bad.status.success(), "an invalid flag value is refused");
}

/// Runs loadgen with `flags` in `dir` and returns its JSON summary.
fn run(dir: &std::path::Path, flags: &[&str]) -> String {
    let json = dir.join("run.json");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(flags)
        .arg("--json")
        .arg(&json)
        .current_dir(dir)
        .output()
        .expect("loadgen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&json).expect("the summary was written")
}

/// The number under `field` in a JSON summary.
fn number(summary: &str, field: &str) -> f64 {
    summary
        .split(&format!("\"{field}\": "))
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no number {field} in {summary}"))
}
