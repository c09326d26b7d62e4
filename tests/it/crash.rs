//! Issue #17, part 2: `kill -9` at a random moment of a fill with several readers
//! (before headers, mid-body, during publish), again and again: afterwards
//! `granary verify` finds nothing corrupt, no row points at a missing blob, no
//! temporary file is left, and the next request gets the right bytes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{
    files_under, one_file_page, sha256_hex, FakeUpstream, GranaryProcess, Scripted,
};

/// Rounds of start, read, kill (each under a second or two).
const ROUNDS: usize = 16;

fn run(command: &str, config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args([command, "--config"])
        .arg(config)
        .output()
        .expect("granary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "granary {command} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_moments_a_fill_leaves_nothing_corrupt_partial_or_dangling() {
    crash_rounds("", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_s3_and_postgresql() {
    let Some(engines) = crate::support::Engines::from_env("the_same_on_s3_and_postgresql") else {
        return;
    };
    let database = engines.database().await;
    let garage = engines.garage();
    let prefix = format!("crash{:08x}", rand::random::<u32>());
    let shared = format!(
        "[metadata]\ndatabase_url = \"{database}\"\n\n{}",
        garage.storage_toml(&prefix)
    );
    crash_rounds(&shared, false).await;
}

/// The rounds, with `engines` (TOML tables) added to the configuration; `local_blobs`:
/// blobs are files under `data_dir` (each is checked against its name).
async fn crash_rounds(engines: &str, local_blobs: bool) {
    // A file per round, so that every round starts a fill (blobs are stored by
    // content, so each round's bytes differ).
    let body_of = |round: usize| -> Vec<u8> {
        (0..2 * 1024 * 1024u32)
            .map(|i| {
                u8::try_from((i * 31 + i / 4099 + u32::try_from(round).expect("round")) % 251)
                    .expect("a byte")
            })
            .collect()
    };
    let upstream = FakeUpstream::start(None).await;
    for round in 0..=ROUNDS {
        let body = body_of(round);
        let file = format!("crash{round}-1.0.tar.gz");
        upstream.script(
            &format!("simple/crash{round}/"),
            one_file_page(&format!("crash{round}"), &file, &body),
        );
        upstream.script(
            &format!("dl/{file}"),
            Scripted {
                // About half a second from first byte to last.
                pace: Some((64 * 1024, Duration::from_millis(12))),
                ..Scripted::ok(body)
            },
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let config = dir.path().join("granary.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{engines}\n[repos.pypi]\nformat = \"pypi\"\nupstream = \"{}\"\n",
            data.display(),
            upstream.url("simple/")
        ),
    )
    .expect("config");
    let client = reqwest::Client::new();
    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        let granary = GranaryProcess::spawn(&config);
        let url = granary.url(&format!("pypi/files/crash{round}/crash{round}-1.0.tar.gz"));
        let size = body_of(round).len();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let request = client.get(&url).send();
                tokio::spawn(async move {
                    match request.await {
                        Ok(response) => response.bytes().await.map_or(0, |b| b.len()),
                        Err(_) => 0,
                    }
                })
            })
            .collect();
        // Anywhere from before the upstream's headers to after the publish.
        let moment = Duration::from_millis(rand::random::<u64>() % 1000);
        tokio::time::sleep(moment).await;
        granary.kill_hard();
        for reader in readers {
            let got = reader.await.expect("reader");
            assert!(got <= size, "round {round}: {got} bytes");
        }
        // Nothing corrupt (read-only, as beside a server)...
        let verified = run("verify", &config);
        assert!(verified.contains(" 0 corrupt"), "round {round}: {verified}");
        // ...and no row without its blob (gc reports and removes what it finds; a
        // complete blob whose row was not written yet is harmless and counted).
        let collected = run("gc", &config);
        assert!(
            collected.contains("and 0 dangling rows"),
            "round {round}: {collected}"
        );
        outcomes.push(format!("{moment:?}: {}", collected.trim()));
        assert!(
            files_under(&data.join("tmp")).is_empty(),
            "round {round}: temporary files left: {:?}",
            files_under(&data.join("tmp"))
        );
        // Every stored blob is whole (named by its own digest); `verify` above read
        // and hashed every blob of the S3 store.
        for blob in files_under(&data.join("blobs"))
            .into_iter()
            .filter(|_| local_blobs)
        {
            let bytes = std::fs::read(&blob).expect("blob");
            let name = blob
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert_eq!(
                sha256_hex(&bytes),
                name,
                "round {round}: {} is not whole",
                blob.display()
            );
        }
    }
    // Afterwards every file is served whole, killed mid-fill or not.
    let granary = GranaryProcess::spawn(&config);
    for round in 0..=ROUNDS {
        let response = client
            .get(granary.url(&format!("pypi/files/crash{round}/crash{round}-1.0.tar.gz")))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(
            sha256_hex(&response.bytes().await.expect("body")),
            sha256_hex(&body_of(round)),
            "round {round}\n{}",
            outcomes.join("\n")
        );
    }
}
