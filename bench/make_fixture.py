#!/usr/bin/env python3
"""Builds the benchmark's upstream: a static PyPI-style tree for nginx to serve.

- 220 projects; most have 5-60 files, ten have 1,000-2,600 files, so index pages
  range from about 1 KB to about 500 KB, as on large public indexes;
- artifacts of 10 KB, 1 MB, 10 MB and 50 MB (random bytes, correct hashes), plus a
  50 MB artifact used only by the stampede scenario;
- a 20-package tree of real wheels (bench-root depends on bench-pkg-00..18, which
  depend on each other) for the pip/uv cold-miss scenario;
- a 32-project closure of real wheels whose pages are real-world sized (see
  `big_closure`), in HTML and PEP 691 JSON, for the cold-install scenario at real size.

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


# Files per page in the real-size closure: its JSON pages run from about 8 KB to about
# 6 MB, as the largest public projects' do (a binary package publishes dozens of
# wheels per release over hundreds of releases).
CLOSURE_FILES = [8, 10, 12, 16, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400,
                 500, 600, 800, 1000, 1200, 1500, 1800, 2200, 2600, 3000, 4000, 5000, 7000, 10000]
PLATFORMS = ["manylinux_2_17_x86_64.manylinux2014_x86_64", "manylinux_2_17_aarch64.manylinux2014_aarch64",
             "musllinux_1_1_x86_64", "macosx_10_12_x86_64", "macosx_11_0_arm64", "win_amd64", "win32",
             "manylinux_2_17_i686.manylinux2014_i686", "manylinux_2_17_ppc64le.manylinux2014_ppc64le",
             "manylinux_2_17_s390x.manylinux2014_s390x"]
PYTHONS = ["cp38", "cp39", "cp310", "cp311", "cp312", "cp313", "pp39", "pp310"]


def big_closure(out: str, rng: random.Random, manifest: dict) -> None:
    """`closure-root` and the 31 projects it needs (closure-00..30, depending on each
    other), each installable as one real pure-Python wheel, version 99.0, whose page
    also lists the CLOSURE_FILES binary wheels and sdists of its earlier releases (never
    downloaded: the installed version is the newest). Written as HTML and as PEP 691
    JSON with relative URLs, so a plain reverse-proxy cache serves them unchanged."""
    names = [f"closure-{i:02d}" for i in range(31)] + ["closure-root"]
    sizes = {}
    for index, name in enumerate(names):
        requires = names[:31] if name == "closure-root" else names[index + 1:index + 3][: 2 if index < 30 else 0]
        requires = [r for r in requires if r != "closure-root"]
        dist = name.replace("-", "_")
        filename, data, metadata = make_wheel(name, "99.0", dist, requires, ">=3.8")
        write(os.path.join(out, "packages", filename), data)
        write(os.path.join(out, "packages", filename + ".metadata"), metadata)
        files = []
        count = CLOSURE_FILES[(index * 13) % len(CLOSURE_FILES)] if name != "closure-root" else 4
        version_number = 0
        while len(files) < count - 1:
            version = f"{version_number // 50}.{(version_number // 5) % 10}.{version_number % 5}"
            version_number += 1
            for python in PYTHONS:
                for platform in PLATFORMS:
                    if len(files) >= count - 1:
                        break
                    files.append({"filename": f"{dist}-{version}-{python}-{python}-{platform}.whl",
                                  "sha256": hashlib.sha256(f"{name}{version}{python}{platform}".encode()).hexdigest(),
                                  "requires_python": ">=3.8", "size": rng.randint(200_000, 2_000_000),
                                  "metadata_sha256": hashlib.sha256(f"m{name}{version}{python}{platform}".encode()).hexdigest()})
            files.append({"filename": f"{dist}-{version}.tar.gz",
                          "sha256": hashlib.sha256(f"{name}{version}sdist".encode()).hexdigest(),
                          "requires_python": ">=3.8", "size": rng.randint(50_000, 500_000)})
        files.append({"filename": filename, "sha256": hashlib.sha256(data).hexdigest(), "requires_python": ">=3.8",
                      "size": len(data), "metadata_sha256": hashlib.sha256(metadata).hexdigest()})
        write(os.path.join(out, "simple", name, "index.html"), page(name, files).encode())
        document = {
            "meta": {"api-version": "1.1"}, "name": name,
            "versions": sorted({f["filename"].split("-")[1].removesuffix(".tar.gz") for f in files}),
            "files": [{"filename": f["filename"], "url": f"../../packages/{f['filename']}",
                       "hashes": {"sha256": f["sha256"]}, "requires-python": f["requires_python"],
                       "size": f["size"], "upload-time": "2024-05-01T12:34:56.789012Z", "yanked": False,
                       **({"core-metadata": {"sha256": f["metadata_sha256"]},
                           "data-dist-info-metadata": {"sha256": f["metadata_sha256"]}} if f.get("metadata_sha256") else {})}
                      for f in files],
        }
        body = json.dumps(document).encode()
        write(os.path.join(out, "simple", name, "index.json"), body)
        sizes[name] = len(body)
        manifest["projects"].append(name)
    manifest["closure_root"] = "closure-root"
    manifest["closure_page_bytes"] = sizes


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

    big_closure(out, rng, manifest)

    root = ["<!DOCTYPE html><html><body>"] + [f'<a href="{p}/">{p}</a>' for p in manifest["projects"]] + ["</body></html>"]
    write(os.path.join(out, "simple", "index.html"), "\n".join(root).encode())
    manifest["popular"] = "project-100"
    write(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=1).encode())


if __name__ == "__main__":
    main(sys.argv[1])
