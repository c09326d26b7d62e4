#!/usr/bin/env python3
"""Writes the starting inputs of every fuzz target into fuzz/corpus/<target>/seed-*:
small documents of the shapes the upstreams send. The fuzzers grow the corpus from
these; scripts/fuzz minimizes it before it is committed."""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
SHA = "0" * 63 + "1"

SEEDS = {
    "simple_html": [
        f"""<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">
<title>Links for demo</title></head><body><h1>Links for demo</h1>
<a href="https://127.0.0.2/files/demo-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256={SHA}">demo-1.0-py3-none-any.whl</a><br>
<a href="../../files/demo-0.9.tar.gz#md5=0123456789abcdef0123456789abcdef" data-yanked="broken">demo-0.9.tar.gz</a>
<base href="http://127.0.0.3/x/"><a href="demo-0.8.zip">  </a>
</body></html>""",
        "<a href=x>demo-1.whl</a><a href='#sha256=ab'>",
    ],
    "simple_json": [
        json.dumps({
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "versions": ["0.9", "1.0"],
            "files": [
                {"filename": "demo-1.0-py3-none-any.whl", "url": "https://127.0.0.2/f/demo-1.0-py3-none-any.whl",
                 "hashes": {"sha256": SHA}, "requires-python": ">=3.8", "core-metadata": {"sha256": SHA},
                 "size": 1234, "upload-time": "2025-01-01T00:00:00Z", "yanked": False},
                {"filename": "demo-0.9.tar.gz", "url": "../../f/demo-0.9.tar.gz", "hashes": {},
                 "yanked": "broken", "dist-info-metadata": True, "gpg-sig": False},
            ],
        }),
    ],
    "project_list": [
        '<html><body><a href="/simple/demo/">demo</a><a href="/simple/Other_Thing/">Other_Thing</a></body></html>',
        json.dumps({"meta": {"api-version": "1.0"}, "projects": [{"name": "demo"}, {"name": "Other.Thing"}]}),
    ],
    "core_metadata": [
        "Metadata-Version: 2.4\nName: demo\nVersion: 1.0\nRequires-Python: >=3.8\n"
        "Requires-Dist: requests (>=2.0)\nRequires-Dist: idna; extra == 'idna'\n"
        "Requires-Dist: colorama>=0.4; sys_platform == \"win32\" and python_version < \"3.13\"\n"
        "Provides-Extra: idna\nDynamic: Requires-Dist\nLicense-Expression: MIT\n\nlong description\n",
        "Metadata-Version: 1.1\nName: old\nVersion: 0.1\n  continued\n",
    ],
    "packument": [
        json.dumps({
            "name": "demo", "dist-tags": {"latest": "1.0.0"},
            "versions": {
                "1.0.0": {"name": "demo", "version": "1.0.0",
                          "dependencies": {"left-pad": "^1.0.0"}, "optionalDependencies": {"fsevents": "*"},
                          "peerDependencies": {"react": ">=17"}, "peerDependenciesMeta": {"react": {"optional": True}},
                          "bundleDependencies": ["x"], "os": ["darwin"], "cpu": ["!arm"], "engines": {"node": ">=18"},
                          "dist": {"tarball": "https://127.0.0.2/demo/-/demo-1.0.0.tgz", "shasum": "0" * 40,
                                   "integrity": "sha512-" + "A" * 86 + "=="}},
                "0.1.0": {"name": "demo", "version": "0.1.0", "dist": {"tarball": "http://127.0.0.2/demo-0.1.0.tgz"},
                          "bundledDependencies": True},
            },
            "time": {"1.0.0": "2025-01-01T00:00:00.000Z"}, "license": "MIT",
        }),
    ],
    "cargo_index": [
        json.dumps({"name": "demo", "vers": "1.0.0", "cksum": SHA, "yanked": False, "rust_version": "1.70",
                    "deps": [{"name": "serde", "req": "^1", "features": ["derive"], "optional": True,
                              "default_features": False, "target": "cfg(unix)", "kind": "normal", "package": "serde"}],
                    "features": {"default": ["serde"]}, "features2": {"x": ["dep:serde"]}, "v": 2})
        + "\n" + json.dumps({"name": "Demo", "vers": "0.1.0", "cksum": SHA, "yanked": True, "deps": []}) + "\n",
    ],
    "cargo_config": [
        json.dumps({"dl": "https://127.0.0.2/api/v1/crates", "api": "https://127.0.0.2", "auth-required": True}),
        json.dumps({"dl": "https://127.0.0.2/{crate}/{version}/{sha256-checksum}"}),
    ],
    "maven_metadata": [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata><groupId>org.demo</groupId><artifactId>demo</artifactId>"
        "<versioning><latest>1.1</latest><release>1.1</release><versions><version>1.0</version><version>1.1</version>"
        "</versions><lastUpdated>20250101000000</lastUpdated></versioning></metadata>",
    ],
    "maven_checksum": [
        SHA + "\n", SHA + "  demo-1.0.jar\n", "0" * 40, "0123456789abcdef0123456789abcdef",
    ],
    "maven_pom": [
        "<project><modelVersion>4.0.0</modelVersion><parent><groupId>org.demo</groupId><artifactId>parent</artifactId>"
        "<version>1</version></parent><artifactId>demo</artifactId><version>${revision}</version>"
        "<properties><revision>1.0</revision><dep.version>2.${minor}</dep.version><minor>3</minor></properties>"
        "<dependencyManagement><dependencies><dependency><groupId>org.bom</groupId><artifactId>bom</artifactId>"
        "<version>1</version><type>pom</type><scope>import</scope></dependency></dependencies></dependencyManagement>"
        "<dependencies><dependency><groupId>org.lib</groupId><artifactId>lib</artifactId><version>${dep.version}</version>"
        "<classifier>tests</classifier><optional>true</optional><exclusions><exclusion><groupId>x</groupId>"
        "<artifactId>y</artifactId></exclusion></exclusions></dependency></dependencies></project>",
    ],
    "accept": [
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01",
        "*/*", "text/html;q=0", "application/vnd.pypi.simple.latest+json;q=0.999",
    ],
    "range": ["bytes=0-9", "bytes=-10", "bytes=90-", "bytes=5-1", "bytes=0-0,2-3", "items=1-2"],
    "config_file": [
        "listen = \"127.0.0.1:8080\"\ndata_dir = \"/tmp/x\"\n[repos.py]\nformat = \"pypi\"\n"
        "upstream = \"https://127.0.0.2/simple/\"\nindex_ttl = \"10m\"\naccess = \"authenticated\"\n"
        "[storage]\nmax_size = \"1GiB\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n",
        "[repos.web]\nformat = \"http\"\nupstream = \"http://127.0.0.2/\"\n[[repos.web.rules]]\npath = \"^/a\"\n"
        "ttl = \"1m\"\nvary = [\"Accept\"]\n",
    ],
    "request": [
        "GET /py/simple/demo/\nAccept: application/vnd.pypi.simple.v1+json",
        "GET /py/files/demo/demo-1.0.tar.gz\nRange: bytes=0-3",
        "GET /js/@scope%2fname\nAccept: application/vnd.npm.install-v1+json",
        "GET /js/demo/-/demo-1.0.0.tgz",
        "GET /rs/config.json", "GET /rs/de/mo/demo", "GET /rs/api/v1/crates/demo/1.0.0/download",
        "GET /jv/org/demo/demo/maven-metadata.xml.sha1", "GET /jv/org/demo/demo/1.0/demo-1.0.jar",
        "GET /web/a/b?c=d\nCookie: session=1",
        "GET /private/simple/demo/\nAuthorization: Basic YWxpY2U6ZnV6ei1wYXNzd29yZA==",
        "GET /-/badge/py/demo/version.svg?style=flat-square&label=v",
        "GET /-/api/py/demo/1.0/dependencies", "DELETE /-/cache/py/demo\nAuthorization: Bearer fuzz-admin-token",
        "GET /-/status", "GET /-/health", "HEAD /py/simple/../etc/passwd", "PUT /js/demo\n",
    ],
}

for target, seeds in SEEDS.items():
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seeds):
        (folder / f"seed-{number}").write_text(seed)
