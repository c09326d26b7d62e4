#!/usr/bin/env python3
"""cargo and Maven through granary vs direct: wall-clock time of the real clients
resolving and downloading a fixture tree with empty client caches.

For each client, alternating rounds of:
  direct        the client against the upstream itself
  cold granary  through a new, empty granary (every file fetched upstream once)
  warm granary  through a granary that has everything (what a CI fleet sees)

The upstreams are nginx (keep-alive, as real registries are) on 127.0.0.1 serving
fixtures built by the test generators (tests/fixtures/{cargo,maven}); Maven's plugins
come from Debian's system repository (/usr/share/maven-repo), served the same way.
bench/run installs nginx; without it Python's static file server (HTTP/1.0, a
connection per request) stands in, which penalises every extra upstream request.

Usage: clients.py --binary target/release/granary [--rounds 5]
Writes the table to stdout and bench/results/clients.md.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import measure_alternating

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEBIAN_REPOSITORY = "/usr/share/maven-repo"
HOT_SECONDS = 5
HOT_ROUNDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, args: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx-{port}.pid;
error_log {work}/nginx-{port}-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {work}/nginx-{port}-body;
    proxy_temp_path {work}/nginx-{port}-proxy;
    fastcgi_temp_path {work}/nginx-{port}-fastcgi;
    uwsgi_temp_path {work}/nginx-{port}-uwsgi;
    scgi_temp_path {work}/nginx-{port}-scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def static_server(procs: Processes, root: str, probe: str, work: str, port: int | None = None,
                  workers: str = "1") -> str:
    """nginx serving `root`, or Python's static file server where nginx is missing."""
    port = port or free_port()
    if shutil.which("nginx"):
        conf = os.path.join(work, f"nginx-{port}.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=work, port=port, root=root, workers=workers))
        procs.start(["nginx", "-c", conf, "-p", work])
    else:
        procs.start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", root])
    url = f"http://127.0.0.1:{port}"
    wait_http(url + probe)
    return url


def granary(procs: Processes, binary: str, work: str, repos: dict[str, tuple[str, str]]):
    port = free_port()
    data = tempfile.mkdtemp(dir=work)
    config = os.path.join(data, "granary.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}/data"\nlog = "warn"\n')
        for name, (fmt, upstream) in repos.items():
            f.write(f'[repos.{name}]\nformat = "{fmt}"\nupstream = "{upstream}/"\n')
    process = procs.start([binary, "serve", "--config", config])
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/health")
    return process, url


def hot_documents(procs: Processes, work: str, granary_url: str, documents: list[tuple[str, str]],
                  seconds: int, rounds: int) -> list[list[str]]:
    """Hot hits on a warm granary against nginx (one worker per core) serving
    granary's exact bytes, wrk with 64 connections, alternating rounds."""
    if not (shutil.which("nginx") and shutil.which("wrk")):
        return [[label, "–", "–", "skipped: nginx or wrk missing"] for label, _ in documents]
    mirror = tempfile.mkdtemp(dir=work)
    os.chmod(mirror, 0o755)  # nginx workers drop privileges
    for _, path in documents:
        body = urllib.request.urlopen(granary_url + path).read()
        target = os.path.join(mirror, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(body)
    static = static_server(procs, mirror, documents[0][1], work, workers="auto")
    rows = []
    for label, path in documents:
        result = measure_alternating({"granary": granary_url + path, "nginx": static + path}, rounds,
                                     connections=64, seconds=seconds)
        g, n = result["granary"], result["nginx"]
        rows.append([label, f'{g["rps"]:,.0f} ({g["p99"]:.2f} ms p99)', f'{n["rps"]:,.0f} ({n["p99"]:.2f} ms p99)',
                     f'{g["rps"] / n["rps"]:.2f}×'])
    return rows


def timed(args: list[str], cwd: str, env: dict) -> float:
    started = time.monotonic()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, timeout=600)
    return time.monotonic() - started


# --- cargo ---------------------------------------------------------------------------

CARGO_MANIFEST = '[package]\nname = "fx-app"\nversion = "0.1.0"\nedition = "2021"\n\n' \
                 '[dependencies]\nfx-util = "0.2"\n\n[workspace]\n'


def cargo_fetch(registry: str, work: str) -> float:
    """`cargo generate-lockfile` + `cargo fetch` with an empty CARGO_HOME."""
    project = tempfile.mkdtemp(dir=work)
    home = os.path.join(project, "cargo-home")
    os.makedirs(os.path.join(project, "src"))
    os.makedirs(home)
    with open(os.path.join(project, "Cargo.toml"), "w") as f:
        f.write(CARGO_MANIFEST)
    with open(os.path.join(project, "src", "main.rs"), "w") as f:
        f.write("fn main() {}\n")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f'[source.crates-io]\nreplace-with = "mirror"\n[source.mirror]\nregistry = "sparse+{registry}"\n')
    env = dict(os.environ, CARGO_HOME=home)
    started = time.monotonic()
    subprocess.run(["cargo", "generate-lockfile"], cwd=project, env=env, check=True, capture_output=True)
    subprocess.run(["cargo", "fetch"], cwd=project, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def cargo_rounds(procs: Processes, binary: str, work: str, rounds: int,
                 hot: list[list[str]]) -> dict[str, list[float]]:
    fixture = os.path.join(work, "cargo-registry")
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/cargo/make_registry.py"), fixture, upstream],
                   check=True, capture_output=True)
    static_server(procs, fixture, "/config.json", work, port)
    warm_process, warm = granary(procs, binary, work, {"crates": ("cargo", upstream)})
    cargo_fetch(f"{warm}/crates/", work)
    times: dict[str, list[float]] = {"direct": [], "cold granary": [], "warm granary": []}
    for _ in range(rounds):
        times["direct"].append(cargo_fetch(upstream + "/", work))
        cold_process, cold = granary(procs, binary, work, {"crates": ("cargo", upstream)})
        times["cold granary"].append(cargo_fetch(f"{cold}/crates/", work))
        procs.stop(cold_process)
        times["warm granary"].append(cargo_fetch(f"{warm}/crates/", work))
    hot += hot_documents(procs, work, warm, [("cargo index file (fx-util)", "/crates/fx/-u/fx-util")],
                         HOT_SECONDS, HOT_ROUNDS)
    procs.stop(warm_process)
    return times


# --- Maven ---------------------------------------------------------------------------

def maven_settings(path: str, central: str, fixture: str) -> None:
    with open(path, "w") as f:
        f.write(f"""<settings>
  <mirrors><mirror><id>m</id><mirrorOf>central</mirrorOf><url>{central}</url></mirror></mirrors>
  <profiles><profile><id>fixture</id><repositories><repository><id>fixture</id><url>{fixture}</url>
    <snapshots><enabled>true</enabled></snapshots></repository></repositories></profile></profiles>
  <activeProfiles><activeProfile>fixture</activeProfile></activeProfiles>
</settings>
""")


MAVEN_POM = """<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>app</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>com.example.fixture</groupId><artifactId>fx-util</artifactId><version>1.0</version></dependency>
    <dependency><groupId>com.example.fixture</groupId><artifactId>fx-core</artifactId><version>1.0</version>
      <classifier>sources</classifier></dependency>
    <dependency><groupId>com.example.fixture</groupId><artifactId>fx-snap</artifactId><version>2.0-SNAPSHOT</version></dependency>
  </dependencies>
</project>
"""


def plugin_version() -> str:
    base = os.path.join(DEBIAN_REPOSITORY, "org/apache/maven/plugins/maven-dependency-plugin")
    return sorted(v for v in os.listdir(base)
                  if os.path.exists(os.path.join(base, v, f"maven-dependency-plugin-{v}.jar")))[-1]


def mvn_resolve(central: str, fixture: str, work: str, plugin: str) -> float:
    """`mvn dependency:resolve` of the fixture project with an empty local repository."""
    project = tempfile.mkdtemp(dir=work)
    with open(os.path.join(project, "pom.xml"), "w") as f:
        f.write(MAVEN_POM)
    settings = os.path.join(project, "settings.xml")
    maven_settings(settings, central, fixture)
    env = dict(os.environ, HOME=project)
    return timed(["mvn", "-B", "-q", "-s", settings, f"-Dmaven.repo.local={project}/m2",
                  f"org.apache.maven.plugins:maven-dependency-plugin:{plugin}:resolve"], project, env)


def maven_rounds(procs: Processes, binary: str, work: str, rounds: int,
                 hot: list[list[str]]) -> dict[str, list[float]]:
    fixture_dir = os.path.join(work, "maven-repository")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/maven/make_repository.py"), fixture_dir],
                   check=True, capture_output=True)
    fixture = static_server(procs, fixture_dir, "/com/example/fixture/fx-core/maven-metadata.xml", work)
    debian = static_server(procs, DEBIAN_REPOSITORY, "/junit/junit/4.13.2/junit-4.13.2.pom", work)
    plugin = plugin_version()
    repos = {"fixture": ("maven", fixture), "debian": ("maven", debian)}
    warm_process, warm = granary(procs, binary, work, repos)
    mvn_resolve(f"{warm}/debian/", f"{warm}/fixture/", work, plugin)
    times: dict[str, list[float]] = {"direct": [], "cold granary": [], "warm granary": []}
    for _ in range(rounds):
        times["direct"].append(mvn_resolve(debian + "/", fixture + "/", work, plugin))
        cold_process, cold = granary(procs, binary, work, repos)
        times["cold granary"].append(mvn_resolve(f"{cold}/debian/", f"{cold}/fixture/", work, plugin))
        procs.stop(cold_process)
        times["warm granary"].append(mvn_resolve(f"{warm}/debian/", f"{warm}/fixture/", work, plugin))
    hot += hot_documents(procs, work, warm,
                         [("maven-metadata.xml (fx-core)", "/fixture/com/example/fixture/fx-core/maven-metadata.xml")],
                         HOT_SECONDS, HOT_ROUNDS)
    procs.stop(warm_process)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="granary-clients-")
    os.chmod(work, 0o755)  # nginx workers drop privileges; they must read the fixtures
    procs = Processes()
    rows = []
    hot: list[list[str]] = []
    try:
        for label, run in (("cargo generate-lockfile + fetch, 5 crates", cargo_rounds),
                           ("mvn dependency:resolve, fixture + plugins", maven_rounds)):
            times = run(procs, args.binary, work, args.rounds, hot)
            direct = statistics.median(times["direct"])
            row = [label, f"{direct:.2f}"]
            for key in ("cold granary", "warm granary"):
                value = statistics.median(times[key])
                row += [f"{value:.2f}", f"{value / direct:.2f}×"]
            rows.append(row)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# cargo and Maven through granary vs direct",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores; median of {args.rounds} "
        "alternating rounds, empty client caches every time; upstreams: "
        + ("nginx" if shutil.which("nginx") else "Python's static file server") + " on 127.0.0.1.",
        "",
        "| client | direct s | cold granary s | cold/direct | warm granary s | warm/direct |",
        "|---|---|---|---|---|---|",
    ] + ["| " + " | ".join(row) + " |" for row in rows] + [
        "",
        f"Hot documents, 64 connections, wrk 2 threads, {HOT_SECONDS} s per run, median of {HOT_ROUNDS} alternating "
        "rounds; nginx serves granary's exact bytes as static files.",
        "",
        "| document | granary requests/s | nginx requests/s | granary/nginx |",
        "|---|---|---|---|",
    ] + ["| " + " | ".join(row) + " |" for row in hot] + [""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "clients.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
