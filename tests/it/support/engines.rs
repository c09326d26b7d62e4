//! Real engines for the scale-out tests: a fresh PostgreSQL database per test, and
//! private Redis and Garage (S3) instances on free loopback ports, so a test can stop
//! and restart them without touching anything else. `scripts/engines` installs the
//! engines and exports where they are; without it these tests say they are skipped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;

/// Where the engines are.
#[derive(Debug, Clone)]
pub struct Engines {
    postgres_admin: String,
    redis_server: PathBuf,
    garage: PathBuf,
}

impl Engines {
    /// The engines, or `None` after saying clearly that `test` is skipped.
    pub fn from_env(test: &str) -> Option<Self> {
        let vars = [
            "GRANARY_TEST_POSTGRES",
            "GRANARY_TEST_REDIS_SERVER",
            "GRANARY_TEST_GARAGE",
        ];
        let values: Vec<Option<String>> = vars.iter().map(|v| std::env::var(v).ok()).collect();
        if values.iter().any(Option::is_none) {
            eprintln!("SKIPPED {test}: needs {vars:?} (run `eval \"$(scripts/engines)\"`; scripts/test does)");
            return None;
        }
        let mut values = values.into_iter().flatten();
        Some(Self {
            postgres_admin: values.next().expect("postgres"),
            redis_server: values.next().expect("redis").into(),
            garage: values.next().expect("garage").into(),
        })
    }

    /// A new, empty database; returns its URL.
    pub async fn database(&self) -> String {
        let name = format!("granary_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&self.postgres_admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = self
            .postgres_admin
            .rsplit_once('/')
            .expect("URL has a database")
            .0;
        format!("{base}/{name}")
    }

    pub fn redis(&self) -> RedisServer {
        RedisServer::start(self.redis_server.clone(), free_port())
    }

    pub fn garage(&self) -> Garage {
        Garage::start(&self.garage)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port}");
}

/// A private redis-server.
pub struct RedisServer {
    binary: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start(binary: PathBuf, port: u16) -> Self {
        let mut server = Self {
            binary,
            port,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private single-node Garage with one bucket and one key.
pub struct Garage {
    child: Child,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
}

impl Garage {
    fn start(binary: &PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("garage dir");
        let (s3_port, rpc_port) = (free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret = hex::encode(rand::random::<[u8; 32]>());
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\nroot_domain = \".s3.garage.localhost\"\n",
                dir.path().display()
            ),
        )
        .expect("garage config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage starts");
        wait_for_port(s3_port);
        let cli = |args: &[&str]| -> String {
            for _ in 0..50 {
                let output = Command::new(binary)
                    .arg("-c")
                    .arg(&config)
                    .args(args)
                    .output()
                    .expect("garage cli");
                if output.status.success() {
                    return String::from_utf8_lossy(&output.stdout).into_owned();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            panic!("garage {args:?} kept failing");
        };
        let node = cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().expect("node id").to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        cli(&["layout", "apply", "--version", "1"]);
        let key = cli(&["key", "create", "granary-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|line| line.strip_prefix(name))
                .map_or_else(
                    || panic!("no `{name}` in {key}"),
                    |rest| rest.trim().to_owned(),
                )
        };
        let (key_id, secret) = (field("Key ID:"), field("Secret key:"));
        cli(&["bucket", "create", "granary"]);
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "granary",
            "--key",
            "granary-test",
        ]);
        Self {
            child,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            key_id,
            secret,
            bucket: "granary".to_owned(),
        }
    }

    /// The `[storage]` table for a granary using this Garage under `prefix`.
    pub fn storage_toml(&self, prefix: &str) -> String {
        format!(
            "[storage]\nblob_store = \"s3://{}/{prefix}\"\ns3_endpoint = \"{}\"\ns3_region = \"garage\"\n\
             s3_access_key_id = \"{}\"\ns3_secret_access_key = \"{}\"\ns3_path_style = true\n",
            self.bucket, self.endpoint, self.key_id, self.secret
        )
    }

    /// An `object_store` client on the bucket, to inspect what granary stored.
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region("garage")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("s3 client")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stored_at` (Unix milliseconds) of an index record in Redis: its header line, as
/// the replicas write it.
pub async fn index_stored_at_in_redis(
    redis: &granary::engine::redis::RedisTier,
    key: &str,
) -> Option<i64> {
    let value = redis.get(key).await.ok()??;
    let header = value.split(|b| *b == b'\n').next()?;
    serde_json::from_slice::<serde_json::Value>(header).ok()?["stored_at"].as_i64()
}
