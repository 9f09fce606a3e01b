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
    let ops: f64 = summary
        .split("\"ops_per_sec\": ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|value| value.parse().ok())
        .expect("a number");
    assert!(ops > 0.0, "nothing committed");
    let bad = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--groups", "0"])
        .output()
        .expect("runs");
    assert!(!bad.status.success(), "an invalid flag value is refused");
}
