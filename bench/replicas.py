"""The three-replica stampede (bench/harness.py's `replicas` scenario): three granary
replicas sharing PostgreSQL, Redis and Garage (S3), 50 clients on each asking at once
for one cold 50 MB artifact, run with streaming between replicas (`replica_secret`)
and without it (the others wait for the stored file), alternately.

The engines come from scripts/engines (its exports: GRANARY_TEST_POSTGRES,
GRANARY_TEST_REDIS_SERVER, GRANARY_TEST_GARAGE); without them the scenario says it
is skipped. Everything listens on 127.0.0.1.
"""

import json
import os
import secrets
import statistics
import subprocess
import time

from harness import Granary, Processes, fetch, fmt, free_port, log, upstream_requests

CLIENTS_PER_REPLICA = 50
REPLICAS = 3
SECRET = "bench-replica-secret-" + secrets.token_hex(8)


def garage_cli(binary: str, config: str, args: list[str]) -> str:
    for _ in range(50):
        done = subprocess.run([binary, "-c", config] + args, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return done.stdout
        time.sleep(0.2)
    raise RuntimeError(f"garage {args} kept failing: {done.stderr}")


def start_garage(procs: Processes, work: str, binary: str) -> str:
    """A single-node Garage with one bucket and key; returns granary's `[storage]`
    settings without the prefix (`{prefix}` left to fill in)."""
    home = os.path.join(work, "garage")
    os.makedirs(home, exist_ok=True)
    s3_port, rpc_port = free_port(), free_port()
    config = os.path.join(home, "garage.toml")
    with open(config, "w") as f:
        f.write(f'metadata_dir = "{home}/meta"\ndata_dir = "{home}/data"\ndb_engine = "sqlite"\n'
                f'replication_factor = 1\nrpc_bind_addr = "127.0.0.1:{rpc_port}"\n'
                f'rpc_public_addr = "127.0.0.1:{rpc_port}"\nrpc_secret = "{secrets.token_hex(32)}"\n'
                f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{s3_port}"\n'
                f'root_domain = ".s3.garage.localhost"\n')
    procs.start([binary, "-c", config, "server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = garage_cli(binary, config, ["node", "id", "-q"]).strip().split("@")[0]
    garage_cli(binary, config, ["layout", "assign", "-z", "dc1", "-c", "1G", node])
    garage_cli(binary, config, ["layout", "apply", "--version", "1"])
    key = garage_cli(binary, config, ["key", "create", "granary-bench"])
    fields = {name: line.split(":", 1)[1].strip() for line in key.splitlines()
              for name in ("Key ID", "Secret key") if line.startswith(name + ":")}
    garage_cli(binary, config, ["bucket", "create", "granary"])
    garage_cli(binary, config, ["bucket", "allow", "--read", "--write", "--owner", "granary", "--key", "granary-bench"])
    return (f'[storage]\nblob_store = "s3://granary/{{prefix}}"\ns3_endpoint = "http://127.0.0.1:{s3_port}"\n'
            f's3_region = "garage"\ns3_access_key_id = "{fields["Key ID"]}"\n'
            f's3_secret_access_key = "{fields["Secret key"]}"\ns3_path_style = true\n')


def create_database(admin_url: str, name: str) -> str:
    subprocess.run(["psql", admin_url, "-q", "-c", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=60)
    return admin_url.rsplit("/", 1)[0] + "/" + name


def run_round(procs: Processes, binary: str, work: str, upstream: str, artifact: str, upstream_log: str,
              stampede_client: str, engines: dict, storage: str, redis_url: str, streaming: bool,
              round_number: int) -> dict:
    mode = "streaming" if streaming else "waiting"
    database = create_database(engines["postgres"], f"granary_bench_{mode}_{round_number}")
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHALL"], check=True, capture_output=True, timeout=30)
    top = (f'[metadata]\ndatabase_url = "{database}"\n[redis]\nurl = "{redis_url}"\n'
           + (f'replica_secret = "{SECRET}"\n' if streaming else "")
           + storage.replace("{prefix}", f"{mode}{round_number}"))
    replicas = [Granary(procs, binary, work, upstream, f"replica-{mode}-{round_number}-{i}", top_extra=top)
                for i in range(REPLICAS)]
    for replica in replicas:
        fetch(f"{replica.url}/pypi/simple/bigfiles/")  # the index page is not what is measured
    before = len(upstream_requests(upstream_log, "bigfiles-stampede"))
    # The three groups start together; each client program releases its 50 at once.
    runs = [subprocess.Popen([stampede_client, replica.url + artifact, str(CLIENTS_PER_REPLICA)],
                             stdout=subprocess.PIPE, text=True) for replica in replicas]
    outcomes = []
    for run in runs:
        output, _ = run.communicate(timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"stampede client failed ({run.returncode})")
        outcomes.append(json.loads(output))
    fetched = upstream_requests(upstream_log, "bigfiles-stampede")[before:]
    for replica in replicas:
        replica.stop()
    upstream_start = min(start for start, _ in fetched) if fetched else None
    started = min(outcome["started"] for outcome in outcomes)
    per_replica = []
    for outcome in outcomes:
        results = outcome["results"]
        per_replica.append({
            "behind": [(first - upstream_start) * 1000 for first, _, _ in results] if upstream_start else [],
            "done": max(done for _, done, _ in results) - started,
            "complete": sum(1 for _, _, size in results if size == 50 * 1024 * 1024),
        })
    return {"upstream_requests": len(fetched), "replicas": per_replica}


def scenario(procs: Processes, binary: str, work: str, upstream: str, artifact: str, upstream_log: str,
             stampede_client: str, rounds: int, rows: list, notes: list) -> None:
    engines = {"postgres": os.environ.get("GRANARY_TEST_POSTGRES"),
               "redis": os.environ.get("GRANARY_TEST_REDIS_SERVER"),
               "garage": os.environ.get("GRANARY_TEST_GARAGE")}
    if not all(engines.values()):
        log("replicas: skipped (run scripts/engines and eval its exports)")
        notes.append("The three-replica stampede was skipped: the engines' exports from scripts/engines were missing.")
        return
    storage = start_garage(procs, work, engines["garage"])
    redis_port = free_port()
    procs.start([engines["redis"], "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis_url = f"redis://127.0.0.1:{redis_port}"
    for _ in range(100):
        if subprocess.run(["redis-cli", "-u", redis_url, "PING"], capture_output=True, text=True).stdout.strip() == "PONG":
            break
        time.sleep(0.1)
    results = {True: [], False: []}
    for round_number in range(max(rounds, 1)):
        for streaming in (False, True):
            results[streaming].append(run_round(procs, binary, work, upstream, artifact, upstream_log,
                                                stampede_client, engines, storage, redis_url, streaming,
                                                round_number))
    name = f"{REPLICAS} replicas, {REPLICAS * CLIENTS_PER_REPLICA} clients, cold 50 MB"
    total = REPLICAS * CLIENTS_PER_REPLICA

    def summary(runs: list[dict]) -> dict:
        # The median round by clients within 100 ms of the upstream's first byte.
        def within(run):
            return sum(1 for replica in run["replicas"] for t in replica["behind"] if t <= 100)
        run = sorted(runs, key=within)[len(runs) // 2]
        behind = [t for replica in run["replicas"] for t in replica["behind"]]
        return {
            "requests": run["upstream_requests"],
            "within": within(run),
            "median": statistics.median(behind) if behind else None,
            "max": max(behind) if behind else None,
            "done": [replica["done"] for replica in run["replicas"]],
            "complete": sum(replica["complete"] for replica in run["replicas"]),
        }
    s, w = summary(results[True]), summary(results[False])
    rows.append([name, "upstream requests", str(s["requests"]), f"waiting: {w['requests']}", "", "", ""])
    rows.append([name, "first byte after upstream's, median / max ms", f"{fmt(s['median'], 1)} / {fmt(s['max'], 1)}",
                 f"waiting: {fmt(w['median'], 1)} / {fmt(w['max'], 1)}", "", "", ""])
    rows.append([name, "clients within 100 ms of upstream's first byte", f"{s['within']}/{total}",
                 f"waiting: {w['within']}/{total}", "", "", ""])
    rows.append([name, "last client done per replica, s", " / ".join(f"{d:.2f}" for d in s["done"]),
                 "waiting: " + " / ".join(f"{d:.2f}" for d in w["done"]), "", "", ""])
    rows.append([name, "complete bodies", f"{s['complete']}/{total}", f"waiting: {w['complete']}/{total}", "", "", ""])
    notes.append(f"Replicas: PostgreSQL, Redis and Garage on this machine; 'waiting' is the same cluster without "
                 f"`redis.replica_secret` (other replicas wait for the stored file); median of {rounds} alternating rounds.")
