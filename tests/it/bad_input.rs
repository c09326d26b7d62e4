//! Bad input gets a precise 4xx, never a panic, never a file outside `data_dir`, and
//! never a request upstream.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{build_pypi_fixture, files_under, FakeUpstream, TestGranary};

/// Sends `path` verbatim (clients normalize `..`, so a raw socket is needed).
async fn raw_status(addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn traversal_invalid_names_and_oversized_urls_are_rejected() {
    let dir = tempfile::tempdir().expect("dir");
    build_pypi_fixture(dir.path());
    let upstream = FakeUpstream::start(Some(dir.path().to_path_buf())).await;
    let granary = TestGranary::pypi(&upstream.url("simple/"), "").await;
    let long = format!("/pypi/simple/{}/", "a".repeat(3000));
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/pypi/simple/../../etc/passwd", 400),
        ("GET", "/pypi/simple/%2e%2e/%2e%2e/etc/passwd", 400),
        ("GET", "/pypi/simple/%2E%2E/", 400),
        ("GET", "/pypi/files/alpha/..%2f..%2fgranary.db", 400),
        ("GET", "/pypi/files/alpha/%2e%2e", 400),
        ("GET", "/pypi/files/..%5c..%5cx/y", 400),
        ("GET", "/pypi/files/alpha/a%00b.whl", 400),
        ("GET", "/pypi/files//etc/passwd", 404),
        ("GET", "/pypi/files/alpha/.hidden", 400),
        ("GET", "/pypi/simple/bad%20name/", 400),
        ("GET", "/pypi/simple/-leading-dash/", 400),
        ("GET", "/pypi/simple/%ff%fe/", 400),
        ("GET", "/pypi/files/Alpha/alpha-1.0-py3-none-any.whl", 404),
        ("GET", "/nope/simple/", 404),
        ("GET", "/pypi/unknown/thing", 404),
        ("GET", long.as_str(), 414),
        ("POST", "/pypi/simple/alpha/", 405),
        ("DELETE", "/pypi/files/alpha/x.whl", 405),
    ];
    for (method, path, expected) in cases {
        let status = raw_status(granary.addr, method, path).await;
        assert_eq!(
            status,
            *expected,
            "{method} {}",
            &path[..path.len().min(80)]
        );
    }
    assert_eq!(
        upstream.total_hits(),
        0,
        "bad input never reaches the upstream"
    );
    let health = raw_status(granary.addr, "GET", "/-/health").await;
    assert_eq!(health, 200);

    // Nothing but granary's own files exists in data_dir.
    let data = granary.data();
    for file in files_under(&data) {
        let relative = file.strip_prefix(&data).expect("under data_dir");
        let name = relative.to_string_lossy();
        assert!(
            name.starts_with("granary.db") || name == "granary.lock",
            "unexpected file `{name}`"
        );
    }
}
