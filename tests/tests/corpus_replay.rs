//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same entry points
//! the fuzz targets call, so every stable test run exercises every seed and every past crash.

use std::fs;
use std::path::Path;

use plait_core::fuzzing::TARGETS;

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"))
}

#[test]
fn targets_list_matches_fuzz_crate() {
    let listed = fs::read_to_string(fuzz_dir().join("targets.txt")).expect("fuzz/targets.txt");
    let mut listed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut known: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    known.sort_unstable();
    assert_eq!(
        listed, known,
        "fuzz/targets.txt and plait_core::fuzzing::TARGETS differ"
    );
}

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            target(&data, std::time::Instant::now());
            count += 1;
        }
        assert!(count > 0, "corpus of {name} is empty");
        replayed += count;
    }
    println!(
        "replayed {replayed} corpus inputs over {} targets",
        TARGETS.len()
    );
}
