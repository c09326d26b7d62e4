//! Issue #17, part 1: upstream faults, one scenario each, for an artifact with one
//! client and with fifty, and for index documents. Every client's bytes are hashed:
//! a client gets the right bytes whole, or an error, or a body cut short — never
//! wrong bytes; a failed fetch stores nothing and leaves no temporary file; and the
//! upstream is asked a bounded number of times.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::faults::{Ending, FaultUpstream, RawReply};
use crate::support::{files_under, sha256_hex, TestGranary};

/// What one client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// 200 and exactly the right bytes.
    Complete,
    /// 200 and a whole body with other bytes: must never happen.
    Wrong,
    /// 200, then the body ended early or with an error.
    Aborted,
    /// An error status.
    Error(u16),
}

/// What a scenario must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every client gets the right bytes; one blob is stored.
    Served,
    /// No client gets the bytes; nothing is stored.
    Refused,
}

/// Builds a faulty reply from the true body.
type Fault = fn(&[u8]) -> RawReply;

struct Scenario {
    name: &'static str,
    reply: Fault,
    expect: Expect,
    /// Most upstream requests one cold fetch may make (retries included). A fill
    /// that failed is not remembered: a request arriving after it ends starts
    /// another (never while one is in flight), so fifty clients may make a few.
    max_hits: usize,
}

/// The true artifact of `project`: 256 KiB of a pattern no fault reproduces by
/// chance, different per project (blobs are stored by content).
fn artifact(project: &str) -> Vec<u8> {
    let seed = hex::decode(sha256_hex(project.as_bytes())).expect("hex");
    (0..256 * 1024usize)
        .map(|i| seed[i % 32] ^ u8::try_from((i * 7 + i / 251) % 256).expect("a byte"))
        .collect()
}

fn head(status: &str, extra: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/gzip\r\nConnection: close{extra}")
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "drip-feed",
            reply: |body| {
                RawReply::ok(body, "application/gzip").paced(32, Duration::from_millis(25))
            },
            expect: Expect::Served,
            max_hits: 1,
        },
        Scenario {
            name: "stall-after-headers",
            reply: |body| RawReply::ok(body, "application/gzip").cut(0, Ending::Hang),
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "stall-mid-body",
            reply: |body| RawReply::ok(body, "application/gzip").cut(body.len() / 2, Ending::Hang),
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "reset-mid-body",
            reply: |body| RawReply::ok(body, "application/gzip").cut(body.len() / 2, Ending::Reset),
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "truncated-with-length",
            reply: |body| RawReply::ok(body, "application/gzip").cut(body.len() / 2, Ending::Close),
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "truncated-without-length",
            reply: |body| {
                RawReply::with_head(&head("200 OK", ""), body).cut(body.len() / 2, Ending::Close)
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "length-larger-than-body",
            reply: |body| {
                RawReply::with_head(
                    &head(
                        "200 OK",
                        &format!("\r\nContent-Length: {}", body.len() + 100),
                    ),
                    body,
                )
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "length-smaller-than-body",
            reply: |body| {
                RawReply::with_head(
                    &head(
                        "200 OK",
                        &format!("\r\nContent-Length: {}", body.len() - 100),
                    ),
                    body,
                )
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "longer-than-the-index-says",
            reply: |body| {
                let mut longer = body.to_vec();
                longer.extend_from_slice(&[0u8; 4096]);
                RawReply::ok(&longer, "application/gzip")
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "wrong-hash",
            reply: |body| {
                let mut other = body.to_vec();
                other[body.len() / 3] ^= 0xff;
                RawReply::ok(&other, "application/gzip")
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "broken-chunked-encoding",
            reply: |body| {
                let mut chunked = format!("{:x}\r\n", 1000).into_bytes();
                chunked.extend_from_slice(&body[..1000]);
                chunked.extend_from_slice(b"\r\nzz-not-a-size\r\n");
                chunked.extend_from_slice(&body[1000..2000]);
                RawReply::with_head(&head("200 OK", "\r\nTransfer-Encoding: chunked"), &chunked)
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "503-storm",
            reply: |_| {
                RawReply::with_head(
                    &head("503 Service Unavailable", "\r\nContent-Length: 4"),
                    b"busy",
                )
            },
            expect: Expect::Refused,
            // retries = 2
            max_hits: 3,
        },
        Scenario {
            name: "429-with-retry-after",
            reply: |_| {
                RawReply::with_head(
                    &head(
                        "429 Too Many Requests",
                        "\r\nRetry-After: 1\r\nContent-Length: 4",
                    ),
                    b"slow",
                )
            },
            expect: Expect::Refused,
            max_hits: 3,
        },
        Scenario {
            name: "huge-headers",
            reply: |body| {
                let big = format!(
                    "\r\nX-Padding: {}\r\nContent-Length: {}",
                    "a".repeat(1024 * 1024),
                    body.len()
                );
                RawReply::with_head(&head("200 OK", &big), body)
            },
            expect: Expect::Refused,
            // An unparseable response head is not retried.
            max_hits: 1,
        },
        Scenario {
            name: "non-utf8-header",
            reply: |body| {
                let mut reply = RawReply::ok(body, "application/gzip");
                reply.head.extend_from_slice(b"\r\nX-Odd: caf\xe9 \xff\xfe");
                reply
            },
            expect: Expect::Served,
            max_hits: 1,
        },
        Scenario {
            // S3 and others label a .tar.gz so; the bytes must stay as they are (the
            // digest is of them), never be decompressed.
            name: "gzip-content-encoding-on-an-archive",
            reply: |body| {
                let mut reply = RawReply::ok(body, "application/x-tar");
                reply.head.extend_from_slice(b"\r\nContent-Encoding: gzip");
                reply
            },
            expect: Expect::Served,
            max_hits: 1,
        },
        Scenario {
            name: "html-login-page",
            reply: |_| {
                let page = b"<html><body><form action=/login>Sign in</form></body></html>";
                RawReply::with_head(&format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close", page.len()), page)
            },
            expect: Expect::Refused,
            max_hits: 1,
        },
        Scenario {
            name: "redirect-loop",
            reply: |_| {
                RawReply::with_head(
                    &head(
                        "302 Found",
                        "\r\nLocation: ./redirect-loop-target\r\nContent-Length: 0",
                    ),
                    b"",
                )
            },
            expect: Expect::Refused,
            // The redirect policy stops after 10 hops.
            max_hits: 11,
        },
    ]
}

async fn fetch(
    client: &reqwest::Client,
    granary: &TestGranary,
    path: &str,
    expected: &[u8],
) -> (Got, Option<Duration>) {
    let started = Instant::now();
    let Ok(response) = client.get(granary.url(path)).send().await else {
        return (Got::Error(0), None);
    };
    let status = response.status().as_u16();
    if status != 200 {
        return (Got::Error(status), None);
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    let mut first_byte = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                first_byte.get_or_insert_with(|| started.elapsed());
                body.extend_from_slice(&chunk);
            }
            Err(_) => return (Got::Aborted, first_byte),
        }
    }
    let got = if sha256_hex(&body) == sha256_hex(expected) {
        Got::Complete
    } else if body.len() < expected.len() {
        Got::Aborted
    } else {
        Got::Wrong
    };
    (got, first_byte)
}

/// A PEP 691 page for `project` listing one file with the true artifact's digest and size.
fn page(project: &str, body: &[u8]) -> RawReply {
    let filename = format!("{project}-1.0.tar.gz");
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": project,
        "files": [{"filename": filename, "url": format!("../../dl/{filename}"),
                   "hashes": {"sha256": sha256_hex(body)}, "size": body.len()}]
    })
    .to_string();
    RawReply::ok(page.as_bytes(), "application/vnd.pypi.simple.v1+json")
}

fn stored(granary: &TestGranary) -> (usize, usize) {
    let data = granary.data();
    (
        files_under(&data.join("blobs")).len(),
        files_under(&data.join("tmp")).len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifact_faults_with_one_client_and_with_fifty() {
    let upstream = FaultUpstream::start().await;
    let granary =
        TestGranary::pypi(&upstream.url("simple/"), "retries = 2\ntimeout = \"1s\"").await;
    let mut report = Vec::new();
    // One client for all (building one takes milliseconds: fifty built in turn would
    // stagger the requests).
    let client = TestGranary::client();
    for scenario in scenarios() {
        for clients in [1usize, 50] {
            let project = format!("{}-{clients}", scenario.name);
            let body = artifact(&project);
            upstream.script(&format!("simple/{project}/"), page(&project, &body));
            let file = format!("dl/{project}-1.0.tar.gz");
            upstream.script(&file, (scenario.reply)(&body));
            if scenario.name == "redirect-loop" {
                upstream.script("dl/redirect-loop-target", (scenario.reply)(&body));
            }
            let (blobs_before, _) = stored(&granary);
            let path = format!("pypi/files/{project}/{project}-1.0.tar.gz");
            let started = Instant::now();
            let results = futures::future::join_all(
                (0..clients).map(|_| fetch(&client, &granary, &path, &body)),
            )
            .await;
            let took = started.elapsed();
            granary.settle().await;
            let (blobs, temp) = stored(&granary);
            let gots: Vec<Got> = results.iter().map(|(got, _)| *got).collect();
            let hits = upstream.hits(&file)
                + if scenario.name == "redirect-loop" {
                    upstream.hits("dl/redirect-loop-target")
                } else {
                    0
                };
            report.push(format!(
                "{project}: {gots:?} hits={hits} stored={} temp={temp}",
                blobs - blobs_before
            ));
            let at = format!("{project} ({clients} clients): {gots:?}");
            assert!(!gots.contains(&Got::Wrong), "wrong bytes served: {at}");
            assert_eq!(temp, 0, "a temporary file is left: {at}");
            let most = upstream.most_at_once(&file);
            assert_eq!(most, 1, "{most} fetches of one file at once: {at}");
            let bound = if scenario.expect == Expect::Served || clients == 1 {
                scenario.max_hits
            } else {
                scenario.max_hits * clients
            };
            assert!(
                (1..=bound).contains(&hits),
                "{hits} upstream requests: {at}"
            );
            match scenario.expect {
                Expect::Served => {
                    assert!(gots.iter().all(|g| *g == Got::Complete), "{at}");
                    assert_eq!(blobs - blobs_before, 1, "{at}");
                }
                Expect::Refused => {
                    assert!(!gots.contains(&Got::Complete), "{at}");
                    assert_eq!(blobs, blobs_before, "a failed fetch stored a blob: {at}");
                }
            }
            if scenario.name == "drip-feed" {
                // Streamed through: the first byte long before the last (~0.8 s of pacing).
                let mut firsts: Vec<Duration> =
                    results.iter().filter_map(|(_, first)| *first).collect();
                firsts.sort();
                let first = *firsts.last().expect("bytes came");
                assert!(
                    first * 3 < took,
                    "{at}: first bytes after {firsts:?} of {took:?}"
                );
            }
        }
    }
    // Everyone else keeps being served.
    let body = artifact("healthy");
    upstream.script("simple/healthy/", page("healthy", &body));
    upstream.script(
        "dl/healthy-1.0.tar.gz",
        RawReply::ok(&body, "application/gzip"),
    );
    let (got, _) = fetch(
        &client,
        &granary,
        "pypi/files/healthy/healthy-1.0.tar.gz",
        &body,
    )
    .await;
    assert_eq!(got, Got::Complete, "{}", report.join("\n"));
}

/// 429 and 503 are retried (bounded by `retries`), waiting what `Retry-After` asks
/// when that is short; asked for longer, granary answers at once instead of holding
/// its clients (and asks again on a later request).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_waited_for_when_short_and_answered_at_once_when_long() {
    let upstream = FaultUpstream::start().await;
    let granary =
        TestGranary::pypi(&upstream.url("simple/"), "retries = 2\ntimeout = \"5s\"").await;
    let client = TestGranary::client();
    let cases = [
        ("short", "429 Too Many Requests", "\r\nRetry-After: 1", 3),
        ("none", "429 Too Many Requests", "", 3),
        (
            "long",
            "503 Service Unavailable",
            "\r\nRetry-After: 3600",
            1,
        ),
    ];
    for (name, status, retry_after, expected_hits) in cases {
        let project = format!("retry-after-{name}");
        let body = artifact(&project);
        upstream.script(&format!("simple/{project}/"), page(&project, &body));
        let file = format!("dl/{project}-1.0.tar.gz");
        upstream.script(
            &file,
            RawReply::with_head(
                &head(status, &format!("{retry_after}\r\nContent-Length: 4")),
                b"wait",
            ),
        );
        let path = format!("pypi/files/{project}/{project}-1.0.tar.gz");
        let (got, _) = fetch(&client, &granary, &path, &body).await;
        assert!(matches!(got, Got::Error(_)), "{name}: {got:?}");
        assert_eq!(
            upstream.hits(&file),
            expected_hits,
            "{name}: upstream requests"
        );
        let gaps = upstream.gaps(&file);
        if name == "short" {
            assert!(
                gaps.iter().all(|gap| *gap >= Duration::from_millis(950)),
                "{name}: retried before the second Retry-After asked for: {gaps:?}"
            );
        }
    }
}

fn npm_packument(name: &str, version: &str) -> Vec<u8> {
    serde_json::json!({
        "name": name,
        "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version,
            "dist": {"tarball": format!("http://127.0.0.1/{name}/-/{name}-{version}.tgz"), "shasum": "0".repeat(40)}}}
    })
    .to_string()
    .into_bytes()
}

async fn get_text(client: &reqwest::Client, granary: &TestGranary, path: &str) -> (u16, String) {
    match client.get(granary.url(path)).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, error.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_document_faults_fail_cleanly_cold_and_serve_the_stale_copy_warm() {
    let upstream = FaultUpstream::start().await;
    let granary = TestGranary::npm(
        &upstream.url(""),
        "retries = 2\ntimeout = \"1s\"\nindex_ttl = \"1s\"\nupdate_time = \"1s\"",
    )
    .await;
    let client = TestGranary::client();
    let faults: Vec<(&str, Fault, usize)> = vec![
        (
            "stall-after-headers",
            |b| RawReply::ok(b, "application/json").cut(0, Ending::Hang),
            1,
        ),
        (
            "reset-mid-body",
            |b| RawReply::ok(b, "application/json").cut(b.len() / 2, Ending::Reset),
            1,
        ),
        (
            "truncated-with-length",
            |b| RawReply::ok(b, "application/json").cut(b.len() / 2, Ending::Close),
            1,
        ),
        (
            "503-storm",
            |_| {
                RawReply::with_head(
                    &head("503 Service Unavailable", "\r\nContent-Length: 4"),
                    b"busy",
                )
            },
            3,
        ),
        (
            "html-login-page",
            |_| {
                let page = b"<html><body><form action=/login>Sign in</form></body></html>";
                RawReply::with_head(
                    &format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close", page.len()),
                    page,
                )
            },
            1,
        ),
        (
            "not-json-at-all",
            |_| RawReply::ok(b"{\"name\": \"trunc", "application/json"),
            1,
        ),
    ];
    for (fault, reply, max_hits) in faults {
        // Cold, with one client and with fifty: an error for each, nothing stored.
        for clients in [1usize, 50] {
            let name = format!("cold-{fault}-{clients}");
            upstream.script(&name, reply(&npm_packument(&name, "1.0.0")));
            let path = format!("npm/{name}");
            let results =
                futures::future::join_all((0..clients).map(|_| get_text(&client, &granary, &path)))
                    .await;
            let at = format!(
                "{name}: {:?}",
                results.iter().map(|(s, _)| *s).collect::<Vec<_>>()
            );
            assert!(
                results
                    .iter()
                    .all(|(status, _)| *status == 502 || *status == 504),
                "{at}"
            );
            assert_eq!(upstream.most_at_once(&name), 1, "{at}");
            // One flight at a time; a failed one is not remembered (see `max_hits`).
            let hits = upstream.hits(&name);
            let bound = if clients == 1 {
                max_hits
            } else {
                max_hits * clients
            };
            assert!(
                (1..=bound).contains(&hits),
                "{hits} upstream requests: {at}"
            );
        }
        // Warm and expired: the stale copy is served, whatever the upstream does now.
        let name = format!("warm-{fault}");
        let good = npm_packument(&name, "1.0.0");
        upstream.script(&name, RawReply::ok(&good, "application/json"));
        let (status, _) = get_text(&client, &granary, &format!("npm/{name}")).await;
        assert_eq!(status, 200, "{name}");
        upstream.script(&name, reply(&npm_packument(&name, "2.0.0")));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..3 {
            let (status, body) = get_text(&client, &granary, &format!("npm/{name}")).await;
            assert_eq!(status, 200, "{name}: {body}");
            let value: serde_json::Value = serde_json::from_str(&body).expect("a packument");
            assert_eq!(
                value["dist-tags"]["latest"], "1.0.0",
                "{name}: the stale copy"
            );
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_documents_the_upstream_compressed_anyway_are_decoded_within_bounds() {
    let upstream = FaultUpstream::start().await;
    let granary = TestGranary::npm(&upstream.url(""), "retries = 0").await;
    let client = TestGranary::client();
    let encoded = |body: &[u8], encoding: &str| {
        let mut reply = RawReply::with_head(
            &format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {encoding}\r\nContent-Length: {}\r\nConnection: close",
                body.len()
            ),
            body,
        );
        reply.ending = Ending::Close;
        reply
    };
    // gzip: decoded and served as the packument it is.
    upstream.script(
        "zipped",
        encoded(&gzip(&npm_packument("zipped", "1.0.0")), "gzip"),
    );
    let (status, body) = get_text(&client, &granary, "npm/zipped").await;
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).expect("a packument");
    assert_eq!(value["dist-tags"]["latest"], "1.0.0");
    // A bomb: 129 MiB of zeros in ~130 KiB, over the 128 MiB a packument may be.
    let bomb = gzip(&vec![b' '; 129 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    upstream.script("bomb", encoded(&bomb, "gzip"));
    let (status, body) = get_text(&client, &granary, "npm/bomb").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("once decompressed"), "{body}");
    // Says gzip, is not; an encoding granary does not know.
    upstream.script("liar", encoded(&npm_packument("liar", "1.0.0"), "gzip"));
    let (status, body) = get_text(&client, &granary, "npm/liar").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("does not decode"), "{body}");
    upstream.script("exotic", encoded(&npm_packument("exotic", "1.0.0"), "zstd"));
    let (status, body) = get_text(&client, &granary, "npm/exotic").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("unsupported"), "{body}");
}
