#!/usr/bin/env python3
"""granary's benchmark harness: granary against nginx (static files) and Varnish, on
127.0.0.1 only, every loop bounded in count and time. Called by bench/run.

Targets, all serving the same fixture:
- upstream: nginx serving the fixture as a static PyPI index (granary's upstream);
- nginx:    nginx serving the exact bytes granary serves, as static files (the
            "as fast as a static file server" baseline);
- varnish:  Varnish (malloc storage) caching the upstream (the caching-peer baseline);
- granary:  the release build, warm.

Prints one markdown table and writes it to bench/results/latest.md.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "text/html"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def fetch(url: str, accept: str = HTML_ACCEPT) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


class Processes:
    """Every process the harness starts, stopped in reverse order at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, **kwargs)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                stop(process)


RESOLVE_PACKAGES = 400
RESOLVE_VERSIONS = 40


def resolution_registry(fixture: str, upstream: str) -> None:
    """A registry the shape of a real project's dependency tree: RESOLVE_PACKAGES
    packages of RESOLVE_VERSIONS versions each (packuments of ~20-30 KB), every version
    depending on up to five packages further down the list with caret ranges, a few
    of them pinned to older versions (so copies nest), and `rs-root` depending on
    twelve. Deterministic."""
    rng = random.Random(7)
    names = [f"rs-{index:03d}" for index in range(RESOLVE_PACKAGES)]
    for index, name in enumerate(names):
        versions = {}
        for v in range(RESOLVE_VERSIONS):
            version = f"{1 + v // 20}.{(v // 4) % 5}.{v % 4}"
            later = names[index + 1:]
            deps = {}
            for dep in rng.sample(later, min(len(later), rng.randint(0, 5))):
                deps[dep] = "1.0.0" if rng.random() < 0.05 else f"^{rng.choice(['1.0.0', '1.2.0', '2.0.0'])}"
            versions[version] = {
                "name": name, "version": version, "description": f"{name} for the resolution benchmark",
                "license": "MIT", "dependencies": deps,
                "dist": {"tarball": f"{upstream}/{name}/-/{name}-{version}.tgz",
                         "shasum": f"{index * 1000 + v:040x}",
                         "integrity": "sha512-" + hashlib.sha512(f"{name}@{version}".encode()).hexdigest()[:86] + "=="},
            }
        document = {"name": name, "dist-tags": {"latest": version}, "versions": versions}
        os.makedirs(os.path.join(fixture, name), exist_ok=True)
        with open(os.path.join(fixture, name, "index.json"), "w") as f:
            json.dump(document, f)
    root = {"name": "rs-root", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
        "name": "rs-root", "version": "1.0.0",
        "dependencies": {name: "^1.0.0" for name in names[:12]},
        "dist": {"tarball": f"{upstream}/rs-root/-/rs-root-1.0.0.tgz", "shasum": "0" * 40,
                 "integrity": "sha512-" + hashlib.sha512(b"rs-root").hexdigest()[:86] + "=="}}}}
    os.makedirs(os.path.join(fixture, "rs-root"), exist_ok=True)
    with open(os.path.join(fixture, "rs-root", "index.json"), "w") as f:
        json.dump(root, f)


PYPI_RESOLVE_LOCATIONS = "location /simple/ {{ default_type text/html; try_files $uri $uri/index.html =404; }}"


def pypi_resolution_registry(fixture: str, projects: int = 300) -> None:
    """A PyPI index of `projects` projects with 4-8 versions each, PEP 658 metadata
    files and a random acyclic tree of specifiers (some ruling out the newest
    versions), under one root `pr-root` 1.0 asking for 25 of them. Only the metadata
    files are real: resolvers read nothing else."""
    rng = random.Random(7)
    simple = os.path.join(fixture, "simple")
    files = os.path.join(fixture, "files")
    os.makedirs(files, exist_ok=True)

    def write_project(name: str, releases: list[tuple[str, list[str]]]) -> None:
        anchors = []
        for version, requires in releases:
            wheel = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            data = f"placeholder {name} {version}".encode()
            metadata = ("Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                        + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
            with open(os.path.join(files, wheel), "wb") as f:
                f.write(data)
            with open(os.path.join(files, wheel + ".metadata"), "wb") as f:
                f.write(metadata)
            anchors.append(f'<a href="../../files/{wheel}#sha256={hashlib.sha256(data).hexdigest()}" '
                           f'data-dist-info-metadata="sha256={hashlib.sha256(metadata).hexdigest()}">{wheel}</a>')
        os.makedirs(os.path.join(simple, name), exist_ok=True)
        with open(os.path.join(simple, name, "index.html"), "w") as f:
            f.write("<!DOCTYPE html><html><body>\n" + "<br/>\n".join(anchors) + "\n</body></html>\n")

    for i in range(projects):
        releases = []
        for minor in range(rng.randint(4, 8)):
            requires = []
            for j in sorted(rng.sample(range(i + 1, projects), k=min(3, projects - i - 1))):
                if rng.random() < 0.5:
                    continue
                spec = rng.choice(["", ">=1.0", ">=1.1", "<1.5", ">=1.0,<1.4", "!=1.2"])
                requires.append(f"pr-{j}{spec}")
            releases.append((f"1.{minor}", requires))
        write_project(f"pr-{i}", releases)
    write_project("pr-root", [("1.0", [f"pr-{i}" for i in range(0, projects, projects // 25)])])


def uv_compile(index: str, scratch: str, requirements: str) -> float:
    """`uv pip compile` through `index` with an empty uv cache; seconds."""
    work = tempfile.mkdtemp(dir=scratch)
    source = os.path.join(work, "requirements.in")
    with open(source, "w") as f:
        f.write(requirements)
    uv = os.environ.get("GRANARY_TEST_UV") or os.path.expanduser("~/.cache/granary-ci/venv/bin/uv")
    started = time.monotonic()
    subprocess.run([uv, "pip", "compile", "--no-config", "--python-version", "3.12", "--python-platform",
                    "x86_64-unknown-linux-gnu", "--index-url", index, "--output-file",
                    os.path.join(work, "requirements.txt"), source],
                   env=dict(os.environ, UV_CACHE_DIR=os.path.join(work, "cache")), check=True,
                   capture_output=True, timeout=600)
    return time.monotonic() - started


def npm_lock_only(registry: str, scratch: str) -> float:
    project = tempfile.mkdtemp(dir=scratch)
    home = tempfile.mkdtemp(dir=scratch)
    with open(os.path.join(project, "package.json"), "w") as f:
        json.dump({"name": "bench", "version": "1.0.0", "private": True, "dependencies": {"rs-root": "1.0.0"}}, f)
    env = dict(os.environ, HOME=home, npm_config_userconfig=os.path.join(home, ".npmrc"), npm_config_registry=registry,
               npm_config_cache=os.path.join(home, "cache"), npm_config_audit="false", npm_config_fund="false",
               npm_config_update_notifier="false")
    started = time.monotonic()
    subprocess.run(["npm", "install", "--package-lock-only", "--ignore-scripts"], cwd=project, env=env, check=True,
                   capture_output=True, timeout=600)
    return time.monotonic() - started


def keyed_latencies_ms(request, keys: int = 20) -> list[float]:
    """Milliseconds of `request(depth)` for `keys` values of max_depth beyond any
    tree's depth: each a new cache key with the same answer. Sorted."""
    times = []
    for depth in range(1000, 1000 + keys):
        started = time.monotonic()
        request(depth)
        times.append((time.monotonic() - started) * 1000)
    return sorted(times)


def resolution_scenarios(procs: "Processes", binary: str, work: str, seconds: int, rounds: int, rows: list) -> None:
    """Resolution: granary resolving a ~400-package npm tree from its warm cache (each
    request a new cache key), the cached answer under load, and npm's own
    `install --package-lock-only` through the same warm granary."""
    fixture = os.path.join(work, "resolve-fixture")
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    resolution_registry(fixture, upstream)
    start_npm_nginx(procs, work, "resolve-upstream", fixture, port, "/rs-root")
    granary = Granary(procs, binary, work, upstream + "/", "resolve", fmt="npm")
    api = f"{granary.url}/-/api/npm/rs-root/1.0.0/resolve"
    first = json.loads(fetch(api, "application/json"))
    nodes = len(first["nodes"])
    # From the warm cache: a max_depth beyond the tree's depth changes the key, not the answer.
    cold = keyed_latencies_ms(lambda depth: fetch(f"{api}?max_depth={depth}", "application/json"))
    scratch = os.path.join(work, "resolve-npm")
    os.makedirs(scratch, exist_ok=True)
    npm_lock_only(f"{granary.url}/npm/", scratch)  # npm's cache stays empty; granary's is warm
    npm_times = sorted(npm_lock_only(f"{granary.url}/npm/", scratch) * 1000 for _ in range(3))
    label = f"resolve {nodes} npm packages from a warm cache"
    p50 = statistics.median(cold)
    rows.append([label, "ms p50 / p99 (20 keys)", f"{p50:.1f} / {cold[-1]:.1f}",
                 f"{statistics.median(npm_times):.0f} (npm --package-lock-only, median of 3)", "",
                 ratio(p50, statistics.median(npm_times)), ""])

    # PyPI: PubGrub over core metadata, against uv's own resolution through the same
    # warm granary.
    fixture = os.path.join(work, "resolve-pypi-fixture")
    pypi_resolution_registry(fixture)
    port = free_port()
    start_npm_nginx(procs, work, "resolve-pypi", fixture, port, "/simple/pr-root/", PYPI_RESOLVE_LOCATIONS)
    pypi = Granary(procs, binary, work, f"http://127.0.0.1:{port}/simple/", "resolve-pypi", fmt="pypi")
    post = f"{pypi.url}/-/api/pypi/resolve?target=3.12-linux-x86_64"
    answer = urllib.request.urlopen(urllib.request.Request(post, data=b"pr-root\n", method="POST"),
                                    timeout=600).read().decode()
    pypi_nodes = sum(1 for line in answer.splitlines() if '"type":"node"' in line) - 1
    pypi_scratch = os.path.join(work, "resolve-uv")
    os.makedirs(pypi_scratch, exist_ok=True)
    uv_compile(f"{pypi.url}/pypi/simple/", pypi_scratch, "pr-root\n")  # granary holds everything uv reads
    pypi_cold = keyed_latencies_ms(lambda depth: urllib.request.urlopen(urllib.request.Request(
        f"{post}&max_depth={depth}", data=b"pr-root\n", method="POST"), timeout=600).read())
    uv_times = sorted(uv_compile(f"{pypi.url}/pypi/simple/", pypi_scratch, "pr-root\n") * 1000 for _ in range(3))
    p50 = statistics.median(pypi_cold)
    rows.append([f"resolve {pypi_nodes} PyPI projects from a warm cache", "ms p50 / p99 (20 keys)",
                 f"{p50:.1f} / {pypi_cold[-1]:.1f}",
                 f"{statistics.median(uv_times):.0f} (uv pip compile, median of 3)", "",
                 ratio(p50, statistics.median(uv_times)), ""])

    result = measure_alternating({"granary": api}, rounds, connections=16, seconds=seconds)
    g = result["granary"]
    rows.append([f"cached resolution ({nodes} packages), 16 conn", "p50 / p99 ms",
                 f'{g["p50"]:.2f} / {g["p99"]:.2f}', "", "", "", ""])
    rows.append([f"cached resolution ({nodes} packages), 16 conn", "requests/s", fmt(g["rps"]), "", "", "", ""])


NPM_LOCATIONS = ("location ~ \\.tgz$ {{ }}\n"
                 "        location / {{ default_type application/json; try_files $uri/index.json =404; }}")
# A static server for generated registries; `locations` says how paths map to files.
NPM_NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx-{name}.pid;
error_log {work}/nginx-{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    access_log off;
    client_body_temp_path {work}/nginx-{name}-body;
    proxy_temp_path {work}/nginx-{name}-proxy;
    fastcgi_temp_path {work}/nginx-{name}-fastcgi;
    uwsgi_temp_path {work}/nginx-{name}-uwsgi;
    scgi_temp_path {work}/nginx-{name}-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        {locations}
    }}
}}
"""

NPM_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
NPM_PROJECT = {"name": "bench", "version": "1.0.0", "private": True,
               "dependencies": {"@granary/core": "^1.0.0", "dep-t": "^1.0.0", "dep-b": "next"}}


def start_npm_nginx(procs: "Processes", work: str, name: str, root: str, port: int, probe: str,
                    locations: str = NPM_LOCATIONS) -> None:
    conf = os.path.join(work, f"nginx-{name}.conf")
    with open(conf, "w") as f:
        f.write(NPM_NGINX_CONF.format(workers=os.cpu_count() or 2, work=work, name=name, port=port, root=root,
                                      locations=locations.replace("{{", "{").replace("}}", "}")))
    procs.start(["nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}{probe}")


def npm_install(registry: str, scratch: str) -> float:
    project = tempfile.mkdtemp(dir=scratch)
    home = tempfile.mkdtemp(dir=scratch)
    with open(os.path.join(project, "package.json"), "w") as f:
        json.dump(NPM_PROJECT, f)
    env = dict(os.environ, HOME=home, npm_config_userconfig=os.path.join(home, ".npmrc"), npm_config_registry=registry,
               npm_config_cache=os.path.join(home, "cache"), npm_config_audit="false", npm_config_fund="false",
               npm_config_update_notifier="false")
    started = time.monotonic()
    subprocess.run(["npm", "install"], cwd=project, env=env, check=True, capture_output=True, timeout=300)
    return time.monotonic() - started


BIG_VERSIONS = 700


def big_packument(fixture: str, upstream: str) -> None:
    """A packument the size of a popular package's (about 600 KB, 700 versions, each
    with its tarball link and the fields real ones carry), next to the fixture's."""
    versions, times = {}, {}
    for index in range(BIG_VERSIONS):
        version = f"1.{index // 100}.{index % 100}"
        versions[version] = {
            "name": "big-pkg", "version": version, "description": "A package with a long history " * 2,
            "main": "index.js", "license": "MIT", "scripts": {"test": "node test.js"},
            "dependencies": {"dep-a": "^1.0.0", "dep-b": "^2.0.0-beta.1"},
            "engines": {"node": ">=14"}, "keywords": ["bench", "granary", "large"],
            "repository": {"type": "git", "url": "git+https://git.invalid/big-pkg.git"},
            "maintainers": [{"name": "someone", "email": "someone@example.invalid"}],
            "dist": {"tarball": f"{upstream}/big-pkg/-/big-pkg-{version}.tgz",
                     "shasum": "0" * 40, "integrity": "sha512-" + "A" * 86 + "==",
                     "fileCount": 12, "unpackedSize": 48213},
        }
        times[version] = "2024-01-01T00:00:00.000Z"
    document = {"name": "big-pkg", "dist-tags": {"latest": version}, "versions": versions, "time": times,
                "readme": "# big-pkg\n" + "Documentation. " * 2000}
    os.makedirs(os.path.join(fixture, "big-pkg"), exist_ok=True)
    with open(os.path.join(fixture, "big-pkg", "index.json"), "w") as f:
        json.dump(document, f)


def npm_scenarios(procs: "Processes", binary: str, work: str, seconds: int, rounds: int, install_rounds: int,
                  rows: list, memory: list) -> None:
    """npm: cold `npm install` through an empty granary vs direct, and hot packument and
    tarball requests vs static nginx serving granary's exact bytes."""
    fixture = os.path.join(work, "npm-fixture")
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    subprocess.run(["node", os.path.join(ROOT, "tests", "fixtures", "npm", "make_registry.js"), fixture, upstream],
                   check=True, capture_output=True, env=dict(os.environ, HOME=work))
    big_packument(fixture, upstream)
    start_npm_nginx(procs, work, "npm-upstream", fixture, upstream_port, "/dep-a")
    scratch = os.path.join(work, "npm-installs")
    os.makedirs(scratch, exist_ok=True)
    through, direct = [], []
    for index in range(install_rounds):
        cold = Granary(procs, binary, work, upstream + "/", f"npm-cold-{index}", fmt="npm")
        through.append(npm_install(f"{cold.url}/npm/", scratch))
        cold.stop()
        direct.append(npm_install(upstream + "/", scratch))
    t, d = statistics.median(through), statistics.median(direct)
    rows.append(["cold miss: npm install, 22 packages", "seconds (median)", f"{t:.2f}", f"{d:.2f} (direct)", "", ratio(t, d), ""])

    warm = Granary(procs, binary, work, upstream + "/", "npm-warm", fmt="npm")
    npm_install(f"{warm.url}/npm/", scratch)
    mirror = os.path.join(work, "npm-mirror")
    packument = fetch(f"{warm.url}/npm/@granary/core", NPM_ACCEPT)
    tarball = fetch(f"{warm.url}/npm/@granary/core/-/core-1.1.0.tgz")
    big = fetch(f"{warm.url}/npm/big-pkg", "application/json")
    for relative, body in ((os.path.join("npm", "@granary", "core", "index.json"), packument),
                           (os.path.join("npm", "@granary", "core", "-", "core-1.1.0.tgz"), tarball),
                           (os.path.join("npm", "big-pkg", "index.json"), big)):
        path = os.path.join(mirror, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
    static_port = free_port()
    start_npm_nginx(procs, work, "npm-static", mirror, static_port, "/npm/@granary/core")
    static = f"http://127.0.0.1:{static_port}"
    for label, path, accept in (("npm packument (abbreviated), 64 conn", "/npm/@granary/core", NPM_ACCEPT),
                                (f"npm full packument, {BIG_VERSIONS} versions ({len(big) // 1024} KB), 64 conn",
                                 "/npm/big-pkg", "application/json"),
                                ("npm tarball, 64 conn", "/npm/@granary/core/-/core-1.1.0.tgz", None)):
        warm.reset_peak_rss()
        result = measure_alternating({"granary": warm.url + path, "nginx": static + path}, rounds,
                                     connections=64, seconds=seconds, accept=accept)
        g, n = result["granary"], result["nginx"]
        rows.append([label, "requests/s", fmt(g["rps"]), fmt(n["rps"]), "–", ratio(g["rps"], n["rps"]), ""])
        memory.append([label, "", fmt(warm.rss_kib()[0] / 1024, 1)])


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx-{name}.pid;
error_log {work}/nginx-{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; application/vnd.pypi.simple.v1+json json; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    gzip_static on;
    gzip_vary on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/nginx-{name}-body;
    proxy_temp_path {work}/nginx-{name}-proxy;
    fastcgi_temp_path {work}/nginx-{name}-fastcgi;
    uwsgi_temp_path {work}/nginx-{name}-uwsgi;
    scgi_temp_path {work}/nginx-{name}-scgi;
    log_format timing '$msec $request_time $status $body_bytes_sent $uri';
    access_log {access_log};
    map $http_accept $index_file {{
        ~vnd\\.pypi\\.simple\\.v1\\+json index.json;
        default index.html;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index $index_file index.html;
        location ~ bigfiles-stampede {{ limit_rate {stampede_rate}; }}
    }}
}}
"""


def start_nginx(procs: Processes, work: str, name: str, root: str, access_log: str, probe: str, stampede_rate: str = "0") -> int:
    port = free_port()
    conf = os.path.join(work, f"nginx-{name}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=os.cpu_count() or 2, work=work, name=name, port=port, root=root,
                                  access_log="off" if access_log == "off" else f"{access_log} timing",
                                  stampede_rate=stampede_rate))
    procs.start(["nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/{probe}")
    return port


PROXY_CACHE_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx-{name}.pid;
error_log {work}/nginx-{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-{name}-body;
    proxy_temp_path {work}/nginx-{name}-proxy;
    fastcgi_temp_path {work}/nginx-{name}-fastcgi;
    uwsgi_temp_path {work}/nginx-{name}-uwsgi;
    scgi_temp_path {work}/nginx-{name}-scgi;
    proxy_cache_path {work}/nginx-{name}-cache levels=1:2 keys_zone={name}:64m max_size=20g inactive=1d use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    map $http_accept $form {{
        ~vnd\\.pypi\\.simple\\.v1\\+json json;
        default html;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache {name};
            proxy_cache_key $uri$form;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_lock_age 60s;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            proxy_buffering on;
        }}
    }}
}}
"""


def start_proxy_cache(procs: Processes, work: str, name: str, upstream_port: int) -> tuple[int, subprocess.Popen]:
    """nginx `proxy_cache` in front of the upstream, in its strongest configuration for
    a registry: one upstream request per key (`proxy_cache_lock`), stale copies while
    one request updates (`use_stale updating`, `background_update`), keep-alive to the
    upstream, and the page's form (HTML or PEP 691 JSON, by `Accept`) in the key. The
    fixture's links are relative, so it needs no rewriting. Starts with an empty cache."""
    port = free_port()
    shutil.rmtree(os.path.join(work, f"nginx-{name}-cache"), ignore_errors=True)
    conf = os.path.join(work, f"nginx-{name}.conf")
    with open(conf, "w") as f:
        f.write(PROXY_CACHE_CONF.format(workers=os.cpu_count() or 2, work=work, name=name, port=port,
                                        upstream_port=upstream_port))
    process = procs.start(["nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port, process
        time.sleep(0.05)
    raise RuntimeError("nginx proxy_cache did not come up")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def cold_closure_scenario(procs: Processes, binary: str, work: str, uv: str, upstream_port: int, manifest: dict,
                          rounds: int, rows: list, memory: list) -> None:
    """The cold install at real size: `pip install` and `uv pip install` of the 32-project
    closure whose pages run to 5.6 MB, each client with an empty cache, through an
    empty granary vs. the upstream directly vs. an empty nginx `proxy_cache`, in
    alternating rounds; then each page fetched alone, cold, through granary vs. direct."""
    upstream = f"http://127.0.0.1:{upstream_port}/simple/"
    scratch = os.path.join(work, "closure-installs")
    os.makedirs(scratch, exist_ok=True)
    sizes = manifest["closure_page_bytes"]
    label = (f"cold install, {len(sizes)}-project closure, pages {min(sizes.values()) // 1024} KB-"
             f"{max(sizes.values()) / 1e6:.1f} MB")
    for tool in (["uv", uv], ["pip"]):
        through, direct, nginx = [], [], []
        peak = 0
        for index in range(rounds):
            cold = Granary(procs, binary, work, upstream, f"closure-{tool[0]}-{index}")
            through.append(run_install(tool, f"{cold.url}/pypi/simple/", scratch, manifest["closure_root"]))
            peak = max(peak, cold.rss_kib()[0])
            cold.stop()
            direct.append(run_install(tool, upstream, scratch, manifest["closure_root"]))
            port, cache = start_proxy_cache(procs, work, f"pc-{tool[0]}-{index}", upstream_port)
            nginx.append(run_install(tool, f"http://127.0.0.1:{port}/simple/", scratch, manifest["closure_root"]))
            stop(cache)
        t, d, n = statistics.median(through), statistics.median(direct), statistics.median(nginx)
        spread = f" ({min(through):.2f}-{max(through):.2f})"
        rows.append([f"{label}: {tool[0]}", "seconds (median)", f"{t:.2f}{spread}", f"{d:.2f} (direct)",
                     f"{n:.2f} (nginx proxy_cache)", ratio(t, d), ratio(t, n)])
        memory.append([f"cold closure, {tool[0]} install", "", fmt(peak / 1024, 1)])
    # Each big page alone: what one client waits for on a miss.
    cold = Granary(procs, binary, work, upstream, "closure-pages")
    biggest = sorted(sizes, key=sizes.get)[-3:]
    for name in biggest:
        for accept, form in ((JSON_ACCEPT, "JSON"), (HTML_ACCEPT, "HTML")):
            started = time.monotonic()
            fetch(f"{upstream}{name}/", accept)
            d = time.monotonic() - started
            started = time.monotonic()
            fetch(f"{cold.url}/pypi/simple/{name}/", accept if form == "JSON" else HTML_ACCEPT)
            t = time.monotonic() - started
            rows.append([f"cold page alone, {sizes[name] / 1e6:.1f} MB JSON upstream, {form} asked", "ms",
                         f"{t * 1000:.0f}", f"{d * 1000:.0f} (direct)", "", ratio(t, d), ""])
            cold.stop()
            cold = Granary(procs, binary, work, upstream, f"closure-pages-{name}-{form}")
    cold.stop()


def start_varnish(procs: Processes, work: str, backend_port: int) -> int:
    port = free_port()
    instance = os.path.join(work, "varnish")
    os.makedirs(instance, exist_ok=True)
    procs.start(["varnishd", "-F", "-a", f"127.0.0.1:{port}", "-b", f"127.0.0.1:{backend_port}",
                 "-s", "malloc,1G", "-n", instance, "-p", "default_ttl=3600"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/simple/")
    return port


class Granary:
    def __init__(self, procs: Processes, binary: str, work: str, upstream: str, name: str, fmt: str = "pypi",
                 repo_extra: str = "", top_extra: str = "") -> None:
        self.port = free_port()
        self.data = os.path.join(work, f"granary-{name}")
        shutil.rmtree(self.data, ignore_errors=True)
        config = os.path.join(work, f"granary-{name}.toml")
        with open(config, "w") as f:
            # Request logs off, as nginx's and Varnish's are for the load targets.
            f.write(f'listen = "127.0.0.1:{self.port}"\ndata_dir = "{self.data}"\nlog = "warn"\n{top_extra}\n'
                    f'[repos.{fmt}]\nformat = "{fmt}"\nupstream = "{upstream}"\n{repo_extra}')
        # GRANARY_BENCH_LOGS=DIR keeps each granary's log there (warnings and errors).
        logs = os.environ.get("GRANARY_BENCH_LOGS")
        stderr = open(os.path.join(logs, f"{name}.log"), "w") if logs else subprocess.DEVNULL
        self.process = procs.start([binary, "serve", "--config", config], stderr=stderr)
        wait_http(f"http://127.0.0.1:{self.port}/-/health")
        self.url = f"http://127.0.0.1:{self.port}"

    def reset_peak_rss(self) -> None:
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as f:
            f.write("5")

    def rss_kib(self) -> tuple[int, int]:
        fields = {}
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: int, accept: str | None = None, script: str | None = None,
        encoding: str | None = None) -> dict:
    args = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    if accept:
        args += ["-H", f"Accept: {accept}"]
    if encoding:
        args += ["-H", f"Accept-Encoding: {encoding}"]
    if script:
        args += ["-s", script]
    output = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[transfer.group(2)]
    latencies = {p: to_ms(v, u) for p, v, u in WRK_LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses from {url}")
    return {"rps": requests, "mbps": float(transfer.group(1)) * scale, "p50": latencies.get("50"), "p99": latencies.get("99")}


def best_of(runs: list[dict], key: str) -> dict:
    return max(runs, key=lambda r: r[key])


def measure_alternating(targets: dict[str, str], rounds: int, **wrk_args) -> dict[str, dict]:
    """Runs wrk against each target in turn, `rounds` times, and keeps each target's
    median run (by requests/s), so no target benefits from running first or last."""
    results: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, url in targets.items():
            results[name].append(wrk(url, **wrk_args))
    return {name: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] for name, runs in results.items()}


def run_install(tool: list[str], index_url: str, scratch: str, package: str) -> float:
    target = tempfile.mkdtemp(dir=scratch)
    cache = tempfile.mkdtemp(dir=scratch)
    if tool[0] == "pip":
        args = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                "--index-url", index_url, "--cache-dir", cache, "--target", target, package]
        env = dict(os.environ, PIP_CONFIG_FILE="/dev/null")
    else:
        args = [tool[1], "pip", "install", "--no-config", "--python", sys.executable, "--index-url", index_url,
                "--cache-dir", cache, "--target", target, package]
        env = dict(os.environ)
    started = time.monotonic()
    subprocess.run(args, check=True, capture_output=True, env=env, timeout=300)
    return time.monotonic() - started


def stampede(client_binary: str, url: str, clients: int) -> dict:
    """`clients` concurrent GETs from the compiled stampede client (tokio, one
    connection each): wall-clock first-body-byte and completion times per client."""
    output = subprocess.run([client_binary, url, str(clients)], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(output.stdout)


def upstream_requests(access_log: str, uri_part: str) -> list[tuple[float, float]]:
    """(start, end) of each upstream request for `uri_part`, from nginx's timing log."""
    requests = []
    with open(access_log) as f:
        for line in f:
            msec, request_time, _status, _bytes, uri = line.split()
            if uri_part in uri:
                end = float(msec)
                requests.append((end - float(request_time), end))
    return requests


def fmt(value, digits=0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--uv", required=True)
    parser.add_argument("--stampede-client", required=True)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per scenario")
    parser.add_argument("--install-rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated scenarios to run (index, artifacts, installs, "
                        "stampede, replicas, extraction, closure, npm, resolve, maven-stream, web, badges); default: all, and only then is results/latest.md written")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}

    def want(name: str) -> bool:
        return not only or name in only

    work = tempfile.mkdtemp(prefix="granary-bench-")
    # nginx and Varnish workers drop root privileges; they must be able to read it.
    os.chmod(work, 0o755)
    procs = Processes()
    rows: list[list[str]] = []
    memory: list[list[str]] = []
    notes: list[str] = []
    try:
        fixture = os.path.join(work, "fixture")
        subprocess.run([sys.executable, os.path.join(HERE, "make_fixture.py"), fixture], check=True)
        manifest = json.load(open(os.path.join(fixture, "manifest.json")))
        upstream_log = os.path.join(work, "upstream-access.log")
        upstream_port = start_nginx(procs, work, "upstream", fixture, upstream_log, "simple/", stampede_rate="100m")
        upstream = f"http://127.0.0.1:{upstream_port}/simple/"
        varnish_port = start_varnish(procs, work, upstream_port)
        granary = Granary(procs, args.binary, work, upstream, "warm")
        idle_peak, idle_rss = granary.rss_kib()
        memory.append(["idle (started, nothing cached)", fmt(idle_rss / 1024, 1), fmt(idle_peak / 1024, 1)])

        # Warm granary and Varnish; mirror granary's exact bytes for static nginx.
        mirror = os.path.join(work, "mirror")
        projects = manifest["projects"]
        for project in projects:
            for accept, name in ((HTML_ACCEPT, "index.html"), (JSON_ACCEPT, "index.json")):
                body = fetch(f"{granary.url}/pypi/simple/{project}/", accept)
                path = os.path.join(mirror, "pypi", "simple", project, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(body)
                # nginx's `gzip_static` serves this to clients that take gzip.
                with open(path + ".gz", "wb") as f:
                    f.write(gzip.compress(body, 6))
            fetch(f"http://127.0.0.1:{varnish_port}/simple/{project}/")
        for label in ("10m", "50m"):
            artifact = manifest["artifacts"][label]
            body = fetch(granary.url + artifact)
            path = os.path.join(mirror, artifact.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            fetch(f"http://127.0.0.1:{varnish_port}/packages/{os.path.basename(artifact)}")
        stampede_copy = os.path.join(mirror, manifest["artifacts"]["stampede"].lstrip("/"))
        os.makedirs(os.path.dirname(stampede_copy), exist_ok=True)
        shutil.copyfile(os.path.join(fixture, "packages", os.path.basename(stampede_copy)), stampede_copy)
        static_port = start_nginx(procs, work, "static", mirror, "off", f"pypi/simple/{manifest['popular']}/", stampede_rate="100m")
        static = f"http://127.0.0.1:{static_port}"
        varnish = f"http://127.0.0.1:{varnish_port}"

        popular = manifest["popular"]
        if want("index"):
            # 1. Hot index hit.
            for label, accept in (("HTML", HTML_ACCEPT), ("JSON", JSON_ACCEPT)):
                granary.reset_peak_rss()
                targets = {"granary": f"{granary.url}/pypi/simple/{popular}/", "nginx": f"{static}/pypi/simple/{popular}/",
                           "varnish": f"{varnish}/simple/{popular}/"}
                if accept == JSON_ACCEPT:
                    del targets["varnish"]  # the upstream has no JSON form for Varnish to cache
                result = measure_alternating(targets, args.rounds, connections=64, seconds=args.seconds, accept=accept)
                g, n, v = result["granary"], result["nginx"], result.get("varnish")
                rows.append([f"hot index hit, {label}, 64 conn", "requests/s", fmt(g["rps"]), fmt(n["rps"]), fmt(v and v["rps"]),
                             ratio(g["rps"], n["rps"]), ratio(g["rps"], v and v["rps"])])
                rows.append([f"hot index hit, {label}, 64 conn", "p50 / p99 ms", f'{g["p50"]:.2f} / {g["p99"]:.2f}',
                             f'{n["p50"]:.2f} / {n["p99"]:.2f}', v and f'{v["p50"]:.2f} / {v["p99"]:.2f}' or "–", "", ""])
                peak, _ = granary.rss_kib()
                memory.append([f"hot index hit, {label}", "", fmt(peak / 1024, 1)])

            # 1b. Hot index hit as pip, uv and npm ask: with `Accept-Encoding: gzip`,
            # against nginx serving a precompressed copy (`gzip_static`).
            granary.reset_peak_rss()
            path = f"/pypi/simple/{popular}/"
            fetch(f"{granary.url}{path}", JSON_ACCEPT)
            result = measure_alternating({"granary": granary.url + path, "nginx": static + path}, args.rounds,
                                         connections=64, seconds=args.seconds, accept=JSON_ACCEPT, encoding="gzip")
            g, n = result["granary"], result["nginx"]
            rows.append(["hot index hit, JSON, gzip, 64 conn", "requests/s", fmt(g["rps"]), fmt(n["rps"]) + " (gzip_static)", "–",
                         ratio(g["rps"], n["rps"]), ""])
            rows.append(["hot index hit, JSON, gzip, 64 conn", "p50 / p99 ms", f'{g["p50"]:.2f} / {g["p99"]:.2f}',
                         f'{n["p50"]:.2f} / {n["p99"]:.2f}', "–", "", ""])

            # 2. Hot index, many keys: the pages to 500 KB, then with the closure's
            # pages to 5.6 MB too (a working set larger than the default 64 MiB tier).
            small = [p for p in projects if p not in manifest["closure_page_bytes"]]
            for keys, label in ((small, f"hot index, {len(small)} keys random, HTML"),
                                (projects, f"hot index, {len(projects)} keys random incl. pages to 5.6 MB, HTML")):
                granary.reset_peak_rss()
                scripts = {}
                for name, prefix in (("granary", "/pypi/simple/"), ("nginx", "/pypi/simple/"), ("varnish", "/simple/")):
                    script = os.path.join(work, f"random-{name}-{len(keys)}.lua")
                    paths = ",".join(f'"{prefix}{p}/"' for p in keys)
                    with open(script, "w") as f:
                        f.write(f"math.randomseed(42)\nlocal paths = {{{paths}}}\n"
                                "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n")
                    scripts[name] = script
                results = {}
                for _ in range(args.rounds):
                    for name, base in (("granary", granary.url), ("nginx", static), ("varnish", varnish)):
                        results.setdefault(name, []).append(wrk(base, 64, args.seconds, HTML_ACCEPT, scripts[name]))
                result = {name: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] for name, runs in results.items()}
                g, n, v = result["granary"], result["nginx"], result["varnish"]
                rows.append([label, "requests/s", fmt(g["rps"]), fmt(n["rps"]), fmt(v["rps"]),
                             ratio(g["rps"], n["rps"]), ratio(g["rps"], v["rps"])])
                rows.append([label, "MB/s", fmt(g["mbps"]), fmt(n["mbps"]), fmt(v["mbps"]),
                             ratio(g["mbps"], n["mbps"]), ratio(g["mbps"], v["mbps"])])
                peak, _ = granary.rss_kib()
                memory.append([f"hot index, {len(keys)} keys", "", fmt(peak / 1024, 1)])

        if want("artifacts"):
            # 3. Hot artifacts.
            for label in ("10m", "50m"):
                granary.reset_peak_rss()
                artifact = manifest["artifacts"][label]
                targets = {"granary": granary.url + artifact, "nginx": static + artifact,
                           "varnish": f"{varnish}/packages/{os.path.basename(artifact)}"}
                result = measure_alternating(targets, args.rounds, connections=8, seconds=args.seconds)
                g, n, v = result["granary"], result["nginx"], result["varnish"]
                rows.append([f"hot artifact {label.upper()}B, 8 conn", "MB/s", fmt(g["mbps"]), fmt(n["mbps"]), fmt(v["mbps"]),
                             ratio(g["mbps"], n["mbps"]), ratio(g["mbps"], v["mbps"])])
                peak, _ = granary.rss_kib()
                memory.append([f"hot artifact {label.upper()}B", "", fmt(peak / 1024, 1)])

        if want("installs"):
            # 4. Cold miss: pip / uv install of the 20-package tree, empty granary vs direct.
            scratch = os.path.join(work, "installs")
            os.makedirs(scratch)
            for tool in (["pip"], ["uv", args.uv]):
                through, direct = [], []
                peak_cold = 0
                for round_index in range(args.install_rounds):
                    cold = Granary(procs, args.binary, work, upstream, f"cold-{tool[0]}-{round_index}")
                    through.append(run_install(tool, f"{cold.url}/pypi/simple/", scratch, manifest["tree_root"]))
                    peak_cold = max(peak_cold, cold.rss_kib()[0])
                    cold.stop()
                    direct.append(run_install(tool, upstream, scratch, manifest["tree_root"]))
                t, d = statistics.median(through), statistics.median(direct)
                rows.append([f"cold miss: {tool[0]} install, 20 packages", "seconds (median)", f"{t:.2f}", f"{d:.2f} (direct)", "",
                             ratio(t, d), ""])
                memory.append([f"cold miss, {tool[0]} install", "", fmt(peak_cold / 1024, 1)])

        if want("stampede"):
            # 5. Stampede: 200 concurrent requests for one cold 50 MB artifact.
            cold = Granary(procs, args.binary, work, upstream, "stampede")
            artifact = manifest["artifacts"]["stampede"]
            fetch(f"{cold.url}/pypi/simple/bigfiles/")  # the index page is not what is measured
            before = len(upstream_requests(upstream_log, "bigfiles-stampede"))
            outcome = stampede(args.stampede_client, cold.url + artifact, 200)
            fetched = upstream_requests(upstream_log, "bigfiles-stampede")[before:]
            first_bytes = sorted(r[0] for r in outcome["results"])
            complete = [r for r in outcome["results"] if r[2] == 50 * 1024 * 1024]
            upstream_start = fetched[0][0] if fetched else None
            ttfb = [(t - outcome["started"]) * 1000 for t in first_bytes]
            behind_upstream = [(t - upstream_start) * 1000 for t in first_bytes] if upstream_start else []
            total = max(r[1] for r in outcome["results"]) - outcome["started"]
            # Baseline: the same 200 clients fetching the same bytes from static nginx, at
            # the same 100 MB/s per connection: what this machine does for 200 first bytes.
            baseline = stampede(args.stampede_client, static + artifact, 200)
            base_ttfb = sorted((r[0] - baseline["started"]) * 1000 for r in baseline["results"])
            base_total = max(r[1] for r in baseline["results"]) - baseline["started"]
            name = "stampede: 200 clients, cold 50 MB"
            rows.append([name, "upstream requests", str(len(fetched)), "–", "", "", ""])
            rows.append([name, "TTFB median / max ms", f"{statistics.median(ttfb):.1f} / {max(ttfb):.1f}",
                         f"{statistics.median(base_ttfb):.1f} / {max(base_ttfb):.1f}", "", ratio(statistics.median(ttfb), statistics.median(base_ttfb)), ""])
            if behind_upstream:
                within = sum(1 for t in behind_upstream if t <= 50)
                rows.append([name, "first byte after upstream's, median / max ms",
                             f"{statistics.median(behind_upstream):.1f} / {max(behind_upstream):.1f}", "", "", "", ""])
                rows.append([name, "clients within 50 ms of upstream's first byte", f"{within}/200", "", "", "", ""])
            rows.append([name, "total s (100 MB/s per upstream connection)", f"{total:.2f}", f"{base_total:.2f}", "", ratio(total, base_total), ""])
            rows.append([name, "complete bodies", f"{len(complete)}/200", "", "", "", ""])
            memory.append(["stampede", "", fmt(cold.rss_kib()[0] / 1024, 1)])
        if want("replicas"):
            # 5b. The same stampede spread over three replicas sharing PostgreSQL,
            # Redis and S3, with and without streaming between replicas.
            import replicas  # here, not at the top: it imports this module
            replicas.scenario(procs, args.binary, work, upstream, manifest["artifacts"]["stampede"], upstream_log,
                              args.stampede_client, args.install_rounds, rows, notes)
        if want("extraction"):
            import extraction  # here, not at the top: it imports this module
            extraction.scenario(procs, args.binary, work, rows, notes)
        if want("closure"):
            cold_closure_scenario(procs, args.binary, work, args.uv, upstream_port, manifest, args.install_rounds,
                                  rows, memory)
        if want("npm"):
            npm_scenarios(procs, args.binary, work, args.seconds, args.rounds, args.install_rounds, rows, memory)
        if want("resolve"):
            resolution_scenarios(procs, args.binary, work, args.seconds, args.rounds, rows)
        if want("maven-stream"):
            import maven_stream  # here, not at the top: it imports this module
            maven_stream.scenario(procs, args.binary, work, rows, notes)

        if want("web"):
            # 6. Whole-response cache (`http` format): a page cached whole, hit by
            # anonymous visitors, against static nginx serving the same bytes.
            rule = '[[repos.http.rules]]\npath = "^/pypi/simple/"\nttl = "1h"\nvary = ["Accept"]\n'
            web = Granary(procs, args.binary, work, static + "/", "web", fmt="http", repo_extra=rule)
            page = f"/pypi/simple/{popular}/"
            fetch(f"{web.url}/http{page}")
            web.reset_peak_rss()
            result = measure_alternating({"granary": f"{web.url}/http{page}", "nginx": static + page}, args.rounds,
                                         connections=64, seconds=args.seconds, accept=HTML_ACCEPT)
            g, n = result["granary"], result["nginx"]
            rows.append(["whole-response hit (http format), 64 conn", "requests/s", fmt(g["rps"]), fmt(n["rps"]), "–",
                         ratio(g["rps"], n["rps"]), ""])
            rows.append(["whole-response hit (http format), 64 conn", "p50 / p99 ms", f'{g["p50"]:.2f} / {g["p99"]:.2f}',
                         f'{n["p50"]:.2f} / {n["p99"]:.2f}', "–", "", ""])
            memory.append(["whole-response hit", "", fmt(web.rss_kib()[0] / 1024, 1)])
        # 7. Hot badge: the version badge of the popular project (facts and image
        # cached), against static nginx serving the same SVG bytes.
        if want("badges"):
            badge = f"/-/badge/pypi/{popular}/version.svg"
            body = fetch(granary.url + badge)
            path = os.path.join(mirror, badge.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            granary.reset_peak_rss()
            result = measure_alternating({"granary": granary.url + badge, "nginx": static + badge}, args.rounds,
                                         connections=64, seconds=args.seconds)
            g, n = result["granary"], result["nginx"]
            rows.append(["hot badge (SVG), 64 conn", "requests/s", fmt(g["rps"]), fmt(n["rps"]), "–",
                         ratio(g["rps"], n["rps"]), ""])
            rows.append(["hot badge (SVG), 64 conn", "p50 / p99 ms", f'{g["p50"]:.2f} / {g["p99"]:.2f}',
                         f'{n["p50"]:.2f} / {n["p99"]:.2f}', "–", "", ""])
            memory.append(["hot badge", "", fmt(granary.rss_kib()[0] / 1024, 1)])
        notes.append("nginx's timing log gives the upstream request's start; the upstream's first byte follows it by well under a millisecond on loopback.")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    machine = f"{os.cpu_count()} cores, {subprocess.run(['uname', '-sr'], capture_output=True, text=True).stdout.strip()}"
    lines = [
        "# granary benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine}; wrk 2 threads, {args.seconds} s per run, "
        f"median of {args.rounds} alternating rounds; every target on 127.0.0.1 on the same machine as the load generator.",
        "",
        "| scenario | metric | granary | nginx (static, same bytes) | Varnish (malloc) | granary/nginx | granary/Varnish |",
        "|---|---|---|---|---|---|---|",
    ] + ["| " + " | ".join(row) + " |" for row in rows] + [
        "",
        "| granary memory | RSS MiB | peak RSS MiB |",
        "|---|---|---|",
    ] + ["| " + " | ".join(row) + " |" for row in memory] + [""] + [f"- {n}" for n in notes] + [""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "latest.md" if not only else f"only-{'-'.join(sorted(only))}.md"
    with open(os.path.join(HERE, "results", name), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
