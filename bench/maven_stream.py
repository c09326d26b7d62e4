"""Streamed resolution (bench/harness.py's `maven-stream` scenario): a project's
`pom.xml` posted to `POST /-/api/maven/resolve`, over a generated Maven repository of
about 600 artifacts seven levels deep (a shared parent POM with properties and
dependency management, POMs of real size with their `.sha1` files), served by static
nginx. Measured: when the first NDJSON line arrives and when the last one does,
through an empty granary (every POM fetched from the upstream) and from its warm
cache (a new cache key each time: `max_depth` beyond the tree's depth).
"""

import hashlib
import http.client
import os
import random
import statistics
import time
import urllib.parse

from harness import Granary, Processes, free_port, log, start_npm_nginx

GROUP = "org.bench"
# Artifacts per level below the project; each declares DECLARED of the next level.
LEVELS = [24, 60, 120, 150, 150, 100]
DECLARED = 6
WARM_KEYS = 10
LOCATIONS = "location / {{ }}"
# What a published POM carries besides its dependencies (real ones run 3-20 KB).
PADDING = ("  <description>{name}: a generated artifact of realistic size for the streaming benchmark. "
           + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12 + "</description>\n"
           "  <url>http://127.0.0.1/{name}</url>\n"
           "  <licenses><license><name>Apache-2.0</name><url>http://127.0.0.1/license</url></license></licenses>\n"
           "  <developers>" + "".join(f"<developer><id>dev{i}</id><name>Developer {i}</name>"
                                      f"<email>dev{i}@127.0.0.1</email></developer>" for i in range(12))
           + "</developers>\n"
           "  <scm><url>http://127.0.0.1/scm/{name}</url><connection>scm:git:http://127.0.0.1/{name}.git"
           "</connection></scm>\n")


def name_of(level: int, index: int) -> str:
    return f"l{level}-a{index:03d}"


def dependency(artifact: str, version: str | None = None) -> str:
    text = f"<dependency><groupId>{GROUP}</groupId><artifactId>{artifact}</artifactId>"
    if version:
        text += f"<version>{version}</version>"
    return text + "</dependency>"


def write(root: str, path: str, body: bytes) -> None:
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(body)
    with open(full + ".sha1", "w") as f:
        f.write(hashlib.sha1(body).hexdigest())


def make_repository(root: str) -> str:
    """The repository's files; returns the project's pom.xml."""
    rng = random.Random(5)
    group_path = GROUP.replace(".", "/")
    everything = [name_of(level, i) for level, count in enumerate(LEVELS, start=1) for i in range(count)]
    parent = (f"<project><modelVersion>4.0.0</modelVersion><groupId>{GROUP}</groupId>"
              f"<artifactId>parent</artifactId><version>1.0</version><packaging>pom</packaging>\n"
              f"<properties><bench.version>1.0</bench.version></properties>\n"
              "<dependencyManagement><dependencies>"
              + "".join(dependency(a, "${bench.version}") for a in everything)
              + "</dependencies></dependencyManagement></project>\n")
    write(root, f"{group_path}/parent/1.0/parent-1.0.pom", parent.encode())
    for level, count in enumerate(LEVELS, start=1):
        below = LEVELS[level] if level < len(LEVELS) else 0
        for i in range(count):
            name = name_of(level, i)
            declared = sorted(rng.sample(range(below), min(DECLARED, below)))
            pom = (f"<project><modelVersion>4.0.0</modelVersion>\n"
                   f"<parent><groupId>{GROUP}</groupId><artifactId>parent</artifactId><version>1.0</version></parent>\n"
                   f"<artifactId>{name}</artifactId><version>1.0</version>\n"
                   + PADDING.format(name=name)
                   + "<dependencies>" + "".join(dependency(name_of(level + 1, d)) for d in declared)
                   + "</dependencies></project>\n")
            write(root, f"{group_path}/{name}/1.0/{name}-1.0.pom", pom.encode())
    return (f"<project><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId>"
            f"<artifactId>app</artifactId><version>1</version>\n"
            f"<parent><groupId>{GROUP}</groupId><artifactId>parent</artifactId><version>1.0</version></parent>\n"
            "<dependencies>" + "".join(dependency(name_of(1, i)) for i in range(LEVELS[0]))
            + "</dependencies></project>\n")


def timed_post(url: str, body: str) -> tuple[float, float, int]:
    """Milliseconds to the first whole line and to the end of the answer, and its
    node lines."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    started = time.monotonic()
    connection.request("POST", f"{parts.path}?{parts.query}", body=body.encode())
    response = connection.getresponse()
    assert response.status == 200, response.status
    first = None
    text = b""
    while chunk := response.read1(65536):
        text += chunk
        if first is None and b"\n" in text:
            first = time.monotonic()
    ended = time.monotonic()
    connection.close()
    lines = text.decode().splitlines()
    assert lines and '"type":"done"' in lines[-1], lines[-1:]
    nodes = sum(1 for line in lines if '"type":"node"' in line)
    return (first - started) * 1000, (ended - started) * 1000, nodes


def scenario(procs: Processes, binary: str, work: str, rows: list, notes: list) -> None:
    fixture = os.path.join(work, "maven-stream-fixture")
    project = make_repository(fixture)
    port = free_port()
    start_npm_nginx(procs, work, "maven-stream", fixture, port, "/org/bench/parent/1.0/parent-1.0.pom", LOCATIONS)
    granary = Granary(procs, binary, work, f"http://127.0.0.1:{port}/", "maven-stream", fmt="maven")
    post = f"{granary.url}/-/api/maven/resolve"
    cold_first, cold_end, nodes = timed_post(f"{post}?max_depth=999", project)
    log(f"maven-stream: {nodes} nodes, cold first line {cold_first:.1f} ms, end {cold_end:.1f} ms")
    warm = [timed_post(f"{post}?max_depth={1000 + i}", project) for i in range(WARM_KEYS)]
    warm_first = statistics.median(w[0] for w in warm)
    warm_end = statistics.median(w[1] for w in warm)
    label = f"POST pom.xml resolve ({nodes} nodes, 7 levels)"
    rows.append([f"{label}, empty cache", "first line / last line ms", f"{cold_first:.1f} / {cold_end:.1f}", "",
                 "", f"{cold_first / cold_end:.2f}× (first/last)", ""])
    rows.append([f"{label}, warm cache, new key", f"first line / last line ms (median of {WARM_KEYS})",
                 f"{warm_first:.1f} / {warm_end:.1f}", "", "", f"{warm_first / warm_end:.2f}× (first/last)", ""])
    notes.append("maven-stream: the upstream is static nginx on loopback, so every POM arrives in well under a "
                 "millisecond; over a real network each of the 7 levels waits for a round trip and the first "
                 "line's lead grows with it.")
