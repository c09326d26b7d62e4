//! Benchmark client for the stampede scenario (`bench/run`): N concurrent GETs of one
//! URL, started together; prints one JSON object with each client's wall-clock time of
//! first body byte and of completion, and the bytes it received.
//!
//! Usage: `stampede_client URL CLIENTS`

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: stampede_client URL CLIENTS")?;
    let clients: usize = args
        .next()
        .ok_or("usage: stampede_client URL CLIENTS")?
        .parse()?;
    let barrier = Arc::new(tokio::sync::Barrier::new(clients));
    // HTTP/1.1 with no idle reuse: every concurrent request opens its own connection.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (url, barrier, client) = (url.clone(), Arc::clone(&barrier), client.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let response = client.get(&url).send().await?;
            let mut body = response.bytes_stream();
            let mut first_byte = None;
            let mut received = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if first_byte.is_none() && !chunk.is_empty() {
                    first_byte = Some(unix_seconds());
                }
                received += chunk.len() as u64;
            }
            Ok::<_, reqwest::Error>((
                first_byte.unwrap_or_else(unix_seconds),
                unix_seconds(),
                received,
            ))
        }));
    }
    let started = unix_seconds();
    let mut results = Vec::with_capacity(clients);
    for task in tasks {
        let (first_byte, done, received) = task.await??;
        results.push(format!("[{first_byte:.6},{done:.6},{received}]"));
    }
    let line = format!(
        "{{\"started\":{started:.6},\"results\":[{}]}}\n",
        results.join(",")
    );
    std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes())?;
    Ok(())
}
