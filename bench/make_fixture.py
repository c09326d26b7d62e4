#!/usr/bin/env python3
"""Builds the benchmark's upstream: a static PyPI-style tree for nginx to serve.

- 220 projects; most have 5-60 files, ten have 1,000-2,600 files, so index pages
  range from about 1 KB to about 500 KB, as on large public indexes;
- artifacts of 10 KB, 1 MB, 10 MB and 50 MB (random bytes, correct hashes), plus a
  50 MB artifact used only by the stampede scenario;
- a 20-package tree of real wheels (bench-root depends on bench-pkg-00..18, which
  depend on each other) for the pip/uv cold-miss scenario.

Usage: make_fixture.py OUT_DIR
"""

import hashlib
import html
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pypi"))
from make_index import make_wheel  # noqa: E402  (real wheels, shared with the tests)

SEED = 20261121


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def page(name: str, files: list[dict]) -> str:
    lines = [f"<!DOCTYPE html><html><head><title>Links for {name}</title></head><body>"]
    for f in files:
        attributes = f'href="../../packages/{f["filename"]}#sha256={f["sha256"]}"'
        if f.get("requires_python"):
            attributes += f' data-requires-python="{html.escape(f["requires_python"])}"'
        if f.get("metadata_sha256"):
            attributes += f' data-dist-info-metadata="sha256={f["metadata_sha256"]}"'
        lines.append(f"<a {attributes}>{f['filename']}</a><br/>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def main(out: str) -> None:
    rng = random.Random(SEED)
    manifest = {"projects": [], "artifacts": {}, "tree_root": "bench-root"}

    # Large downloadable artifacts, in one project.
    blobs = []
    for label, size in [("10k", 10 * 1024), ("1m", 1024 * 1024), ("10m", 10 * 1024 * 1024), ("50m", 50 * 1024 * 1024), ("stampede", 50 * 1024 * 1024)]:
        data = rng.randbytes(size)
        filename = f"bigfiles-{label}-1.0.tar.gz"
        write(os.path.join(out, "packages", filename), data)
        blobs.append({"filename": filename, "sha256": hashlib.sha256(data).hexdigest()})
        manifest["artifacts"][label] = f"/pypi/files/bigfiles/{filename}"
    write(os.path.join(out, "simple", "bigfiles", "index.html"), page("bigfiles", blobs).encode())
    manifest["projects"].append("bigfiles")

    # The pip tree: real wheels with dependencies.
    tree = [f"bench-pkg-{i:02d}" for i in range(19)]
    for i, name in enumerate(tree + ["bench-root"]):
        if name == "bench-root":
            requires = tree
        else:
            requires = [tree[j] for j in range(i + 1, min(i + 3, len(tree)))]
        module = name.replace("-", "_")
        filename, data, metadata = make_wheel(name, "1.0", module, requires, ">=3.8")
        write(os.path.join(out, "packages", filename), data)
        write(os.path.join(out, "packages", filename + ".metadata"), metadata)
        entry = {
            "filename": filename,
            "sha256": hashlib.sha256(data).hexdigest(),
            "requires_python": ">=3.8",
            "metadata_sha256": hashlib.sha256(metadata).hexdigest(),
        }
        write(os.path.join(out, "simple", name, "index.html"), page(name, [entry]).encode())
        manifest["projects"].append(name)

    # Index-only projects of realistic shapes (their files are never downloaded).
    for i in range(200):
        name = f"project-{i:03d}"
        count = rng.randint(1000, 2600) if i < 10 else rng.randint(5, 60)
        files = []
        for v in range(count):
            version = f"{v // 100}.{(v // 10) % 10}.{v % 10}"
            for kind in ("tar.gz",) if v % 3 else ("tar.gz", "whl"):
                suffix = f"-py3-none-any.whl" if kind == "whl" else ".tar.gz"
                files.append({
                    "filename": f"{name.replace('-', '_')}-{version}{suffix}",
                    "sha256": hashlib.sha256(f"{name}{version}{kind}".encode()).hexdigest(),
                    "requires_python": ">=3.8" if v % 2 else None,
                })
        write(os.path.join(out, "simple", name, "index.html"), page(name, files).encode())
        manifest["projects"].append(name)

    root = ["<!DOCTYPE html><html><body>"] + [f'<a href="{p}/">{p}</a>' for p in manifest["projects"]] + ["</body></html>"]
    write(os.path.join(out, "simple", "index.html"), "\n".join(root).encode())
    manifest["popular"] = "project-100"
    write(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=1).encode())


if __name__ == "__main__":
    main(sys.argv[1])
