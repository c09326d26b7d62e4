//! `FaultUpstream`: a scriptable upstream on raw TCP, for faults an HTTP framework
//! will not produce: a `Content-Length` that lies, a broken chunked encoding, a
//! connection reset or a stall mid-body, non-UTF-8 or enormous headers. Each request
//! gets one scripted reply on its own connection (`Connection: close`), and requests
//! are counted per path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a reply ends after its last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Close the connection (a clean FIN).
    Close,
    /// Reset it (RST).
    Reset,
    /// Keep it open and send nothing more.
    Hang,
}

/// One scripted reply: the head (status line and header lines, as bytes), the body
/// in chunks with a pause between them, and how it ends.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub head: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
    pub pause: Duration,
    pub ending: Ending,
}

impl RawReply {
    /// `200 OK` with an honest `Content-Length`.
    pub fn ok(body: &[u8], content_type: &str) -> Self {
        Self::with_head(
            &format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close",
                body.len()
            ),
            body,
        )
    }

    /// `head` (without the blank line) and `body` in one chunk.
    pub fn with_head(head: &str, body: &[u8]) -> Self {
        Self {
            head: head.as_bytes().to_vec(),
            chunks: vec![body.to_vec()],
            pause: Duration::ZERO,
            ending: Ending::Close,
        }
    }

    /// The body split into `count` chunks sent `pause` apart.
    pub fn paced(mut self, count: usize, pause: Duration) -> Self {
        let body: Vec<u8> = self.chunks.concat();
        let size = body.len().div_ceil(count.max(1)).max(1);
        self.chunks = body.chunks(size).map(<[u8]>::to_vec).collect();
        self.pause = pause;
        self
    }

    /// Only the first `bytes` of the body are sent, then `ending`.
    pub fn cut(mut self, bytes: usize, ending: Ending) -> Self {
        let body: Vec<u8> = self.chunks.concat();
        self.chunks = vec![body[..bytes.min(body.len())].to_vec()];
        self.ending = ending;
        self
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, RawReply>>,
    hits: Mutex<HashMap<String, usize>>,
    /// When each request of a path arrived.
    arrivals: Mutex<HashMap<String, Vec<std::time::Instant>>>,
    /// Requests of each path being answered now, and the most there ever were.
    active: Mutex<HashMap<String, (usize, usize)>>,
}

/// Counts a request of `path` as active until dropped.
struct Active {
    state: Arc<State>,
    path: String,
}

impl Active {
    fn new(state: &Arc<State>, path: &str) -> Self {
        let mut active = state.active.lock().expect("active");
        let entry = active.entry(path.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        Self {
            state: Arc::clone(state),
            path: path.to_owned(),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(entry) = self
            .state
            .active
            .lock()
            .expect("active")
            .get_mut(&self.path)
        {
            entry.0 -= 1;
        }
    }
}

/// A running fault upstream on 127.0.0.1.
pub struct FaultUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn script(&self, path: &str, reply: RawReply) {
        self.state
            .routes
            .lock()
            .expect("routes")
            .insert(format!("/{}", path.trim_start_matches('/')), reply);
    }

    /// The most requests of `path` that were ever answered at the same time.
    pub fn most_at_once(&self, path: &str) -> usize {
        self.state
            .active
            .lock()
            .expect("active")
            .get(&format!("/{}", path.trim_start_matches('/')))
            .map_or(0, |(_, most)| *most)
    }

    /// The time between consecutive requests of `path`.
    pub fn gaps(&self, path: &str) -> Vec<Duration> {
        let arrivals = self.state.arrivals.lock().expect("arrivals");
        arrivals
            .get(&format!("/{}", path.trim_start_matches('/')))
            .map(|times| times.windows(2).map(|w| w[1] - w[0]).collect())
            .unwrap_or_default()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .expect("hits")
            .get(&format!("/{}", path.trim_start_matches('/')))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<State>) {
    // The request head, up to its blank line (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let path = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    *state
        .hits
        .lock()
        .expect("hits")
        .entry(path.clone())
        .or_default() += 1;
    state
        .arrivals
        .lock()
        .expect("arrivals")
        .entry(path.clone())
        .or_default()
        .push(std::time::Instant::now());
    let _active = Active::new(&state, &path);
    let reply = state.routes.lock().expect("routes").get(&path).cloned();
    let reply = reply.unwrap_or_else(|| {
        RawReply::with_head(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close",
            b"not found",
        )
    });
    let mut out = reply.head.clone();
    out.extend_from_slice(b"\r\n\r\n");
    if socket.write_all(&out).await.is_err() {
        return;
    }
    for (index, chunk) in reply.chunks.iter().enumerate() {
        if index > 0 && !reply.pause.is_zero() {
            tokio::time::sleep(reply.pause).await;
        }
        if socket.write_all(chunk).await.is_err() {
            return;
        }
    }
    match reply.ending {
        Ending::Close => {
            let _ = socket.shutdown().await;
        }
        Ending::Reset => {
            // Closing with a zero linger sends RST instead of FIN.
            let _ = socket.set_zero_linger();
            drop(socket);
        }
        Ending::Hang => {
            // Silent until the client gives up (or ten minutes pass).
            let _ = tokio::time::timeout(Duration::from_secs(600), async {
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}
