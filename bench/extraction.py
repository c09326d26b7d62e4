"""Dependency extraction throughput (bench/harness.py's `extraction` scenario): 1,000
real wheels (a zip with `.dist-info/METADATA` declaring 4-24 `Requires-Dist` each, no
PEP 658 file, so every one is opened) fetched through an empty granary 32 at a time;
extraction runs off the request path on each published artifact. Measured: artifacts
extracted per second from the first request to the last extraction (and when the
fetches ended, to show whether extraction kept up), and, on PostgreSQL,
statements per artifact, counted by statement-level triggers on the two tables.
Runs on the embedded SQLite store and, when scripts/engines' exports are present,
on PostgreSQL.
"""

import concurrent.futures
import hashlib
import io
import os
import random
import re
import subprocess
import time
import urllib.request
import zipfile

from harness import Granary, Processes, fetch, free_port, log, start_npm_nginx

WHEELS = 1000
PROJECTS = 200
PARALLEL = 32
LOCATIONS = "location /simple/ {{ default_type text/html; try_files $uri $uri/index.html =404; }}"
COUNT_STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS statement_count (tbl TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE OR REPLACE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO statement_count VALUES (TG_TABLE_NAME, 1) ON CONFLICT (tbl) DO UPDATE SET n = statement_count.n + 1; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER count_extractions AFTER INSERT ON extractions FOR EACH STATEMENT EXECUTE FUNCTION count_statement()",
    "CREATE TRIGGER count_dependencies AFTER INSERT ON dependencies FOR EACH STATEMENT EXECUTE FUNCTION count_statement()",
]


def wheel(name: str, version: str, requires: list[str]) -> bytes:
    module = name.replace("-", "_")
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
                + "".join(f"Requires-Dist: {r}\n" for r in requires))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{module}/__init__.py", f"VERSION = {version!r}\n" + "# padding\n" * 200)
        info = f"{module}-{version}.dist-info"
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


def make_index(root: str) -> list[str]:
    """The wheels and their project pages; returns each wheel's path on granary."""
    rng = random.Random(11)
    files = os.path.join(root, "files")
    os.makedirs(files, exist_ok=True)
    paths = []
    per_project = WHEELS // PROJECTS
    for p in range(PROJECTS):
        name = f"ex-{p:03d}"
        anchors = []
        for v in range(per_project):
            version = f"1.{v}"
            requires = [f"dep-{rng.randrange(5000)}{rng.choice(['', '>=1.0', '<3', '~=2.1'])}"
                        + rng.choice(["", "; python_version < '3.11'", "; extra == 'fast'"])
                        for _ in range(rng.randint(4, 24))]
            filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            data = wheel(name, version, requires)
            with open(os.path.join(files, filename), "wb") as f:
                f.write(data)
            anchors.append(f'<a href="../../files/{filename}#sha256={hashlib.sha256(data).hexdigest()}">{filename}</a>')
            paths.append(f"/pypi/files/{name}/{filename}")
        os.makedirs(os.path.join(root, "simple", name), exist_ok=True)
        with open(os.path.join(root, "simple", name, "index.html"), "w") as f:
            f.write("<!DOCTYPE html><html><body>\n" + "<br/>\n".join(anchors) + "\n</body></html>\n")
    return paths


def extractions(url: str) -> int:
    metrics = fetch(url + "/-/metrics", "text/plain").decode()
    return sum(int(float(n)) for n in re.findall(r"^granary_dependency_extractions_total\{[^}]*\} (\S+)$",
                                                   metrics, re.M))


def run(procs: Processes, binary: str, work: str, upstream: str, paths: list[str], name: str,
        top_extra: str = "", database: str | None = None) -> dict:
    granary = Granary(procs, binary, work, upstream, f"extraction-{name}", top_extra=top_extra)
    if database:
        for statement in COUNT_STATEMENTS:
            subprocess.run(["psql", database, "-q", "-c", statement], check=True, capture_output=True, timeout=60)
    for project in sorted({path.split("/")[3] for path in paths}):
        fetch(f"{granary.url}/pypi/simple/{project}/")  # the pages are not what is measured
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda path: fetch(granary.url + path, "*/*"), paths))
    fetched = time.monotonic() - started
    deadline = time.monotonic() + 300
    while extractions(granary.url) < len(paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    done = extractions(granary.url)
    elapsed = time.monotonic() - started
    outcome = {"fetched_s": fetched, "elapsed_s": elapsed, "extracted": done, "statements": None}
    if database:
        counts = subprocess.run(["psql", database, "-At", "-F", " ", "-c", "SELECT tbl, n FROM statement_count"],
                                check=True, capture_output=True, text=True, timeout=60).stdout.split("\n")
        outcome["statements"] = dict((line.split()[0], int(line.split()[1])) for line in counts if line.strip())
    granary.stop()
    return outcome


def scenario(procs: Processes, binary: str, work: str, rows: list, notes: list) -> None:
    root = os.path.join(work, "extraction-fixture")
    paths = make_index(root)
    port = free_port()
    start_npm_nginx(procs, work, "extraction-upstream", root, port, f"/simple/ex-000/", LOCATIONS)
    upstream = f"http://127.0.0.1:{port}/simple/"
    targets = [("SQLite (embedded)", {})]
    admin = os.environ.get("GRANARY_TEST_POSTGRES")
    if admin:
        from replicas import create_database
        database = create_database(admin, "granary_bench_extraction")
        targets.append(("PostgreSQL", {"top_extra": f'[metadata]\ndatabase_url = "{database}"\n',
                                       "database": database}))
    else:
        log("extraction: PostgreSQL skipped (run scripts/engines and eval its exports)")
    for label, options in targets:
        result = run(procs, binary, work, upstream, paths, label.split()[0].lower(), **options)
        name = f"dependency extraction, {WHEELS} wheels, {label}"
        rate = result["extracted"] / result["elapsed_s"]
        rows.append([name, "artifacts/s (first request to last extraction)", f"{rate:,.0f}", "", "", "", ""])
        rows.append([name, "fetches done / extraction done, s",
                     f"{result['fetched_s']:.2f} / {result['elapsed_s']:.2f}", "", "", "", ""])
        rows.append([name, "extracted", f"{result['extracted']}/{WHEELS}", "", "", "", ""])
        if result["statements"] is not None:
            per = {table: n / max(result["extracted"], 1) for table, n in result["statements"].items()}
            rows.append([name, "statements per artifact on `extractions` / `dependencies` (statement triggers)",
                         f"{per.get('extractions', 0):.2f} / {per.get('dependencies', 0):.2f}", "", "", "", ""])
    notes.append(f"Extraction: {WHEELS} wheels with 4-24 Requires-Dist each and no PEP 658 file, fetched "
                 f"{PARALLEL} at a time through an empty granary; extraction follows the published-artifact "
                 "events off the request path, 4 artifacts at a time. On PostgreSQL one SQL statement (a data-modifying CTE) "
                 "writes both tables, so each table's statement trigger fires once per artifact.")
