"""The compose deployment, run for real on this machine: `make compose-test` (as root).

What a user does on two machines, done here with two compose projects that share nothing but
the host's published ports:

1. a private dockerd (its own data root, socket and exec root), a Debian base image made with
   debootstrap (no registry is needed), the dads image built from deploy/Dockerfile with the
   build arguments a user behind a proxy or offline uses (EXTRA_CA_CERT, PIP_FIND_LINKS, ...):
   here pip installs from a wheelhouse this host downloads once and serves on the docker bridge;
2. the cloud project (broker, planner, 2 workers, Prometheus from Debian's package) on remapped
   host ports, and CURVE keys from `dads keys init`;
3. the edge project, which reaches the cloud only through those published ports (CLOUD_HOST
   left unset: the default, this host), streaming synthetic frames with their raw outputs;
4. while it streams, `--scale cloud_worker=3`, until the third worker has answered frames;
5. checks: every frame answered and equal to the model run here (same seed, fp32, relative
   error <= 1e-5); Prometheus scrapes the broker, the planner, the edge and all 3 workers;
6. three tiers (deploy/three-tiers.yml): the planner again in tiers mode, an edge server (a third
   project: its broker and a middle-tier worker, forwarding to the cloud's broker through its
   published port), the device sending to the edge server; a placement with nodes on every tier
   pinned as an operator would: every frame exact, the pinned ones through both tiers' workers;
7. teardown, on success or failure: both projects down with their volumes and networks,
   dockerd stopped, iptables restored to what it was before, leftover bridges removed.

Images and the wheelhouse stay in the cache folder (--cache) so a second run skips the builds;
`--clean` removes it. The run prints each step with its time, and a summary at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "dads-base:bookworm"
PROMETHEUS_IMAGE = "dads-prometheus:local"
MODEL = "googlenet"
PORTS = {"DADS_FRONTEND_PORT": 15555, "DADS_BACKEND_PORT": 15556, "DADS_PLAN_PORT": 15557,
         "DADS_TELEMETRY_PORT": 15558,
         "PROMETHEUS_PORT": 19090, "EDGE_METRICS_PORT": 19104}
WHEELHOUSE_PORT = 38765
CLOUD, EDGE, MIDDLE, WORKERS = "dadscloud", "dadsedge", "dadsmiddle", "dadsworkers"  # machines
PROFILE = {CLOUD: "cloud", EDGE: "edge", MIDDLE: "edge-server", WORKERS: "workers"}
THREE_TIERS = ROOT / "deploy/three-tiers.yml"
EDGE_SERVER_PORT = 15565  # the edge server's broker, published
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[compose-test {time.monotonic() - T0:6.1f}s] {text}", file=sys.stderr, flush=True)


def sh(*cmd: str, env: dict[str, str] | None = None, check: bool = True, quiet: bool = False,
       timeout: float | None = None) -> str:
    """Run a command; its output is returned, and shown unless `quiet`."""
    if not quiet:
        say("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip()[-4000:], file=sys.stderr)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def need_tools() -> None:
    if os.geteuid() != 0:
        raise SystemExit("compose-test runs dockerd and changes iptables: run it as root")
    missing = [p for p, tool in (("docker.io", "dockerd"), ("docker-compose", "docker-compose"),
                                 ("debootstrap", "debootstrap"), ("iptables", "iptables"))
               if shutil.which(tool) is None]
    if missing:
        say(f"installing {', '.join(missing)}")
        sh("apt-get", "update", "-qq", quiet=True)
        sh("apt-get", "install", "-y", "-qq", *missing,
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, quiet=True)


def _links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in sh("ip", "-o", "link", "show", quiet=True).splitlines()}


@contextlib.contextmanager
def dockerd(cache: Path) -> Iterator[dict[str, str]]:
    """A private dockerd; on exit it is stopped and the host's network is as it was."""
    run = Path("/run/dads-compose-test")
    run.mkdir(parents=True, exist_ok=True)
    sock = run / "docker.sock"
    saved = {table: sh("iptables-save", "-t", table, quiet=True) for table in ("filter", "nat")}
    links_before = _links()
    log = open(cache / "dockerd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["dockerd", "--data-root", str(cache / "docker"), "--exec-root",
                             str(run / "exec"), "--pidfile", str(run / "docker.pid"),
                             "-H", f"unix://{sock}"], stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {cache / 'dockerd.log'}")
            time.sleep(0.5)
        say(f"dockerd up (data root {cache / 'docker'})")
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for table, rules in saved.items():  # docker's chains and NAT rules go with it
            subprocess.run(["iptables-restore", "-T", table], input=rules, text=True, check=False)
        for link in _links() - links_before:  # docker0, br-*, veth* left behind
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        say("dockerd stopped; iptables restored; bridges removed")


def base_image(env: dict[str, str], cache: Path) -> None:
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], env=env,
                      capture_output=True).returncode == 0:
        say(f"{BASE_IMAGE}: cached")
        return
    rootfs = cache / "rootfs"
    if not (rootfs / "usr/bin/python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
           "bookworm", str(rootfs), _mirror())
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=env, check=True,
                   capture_output=True)
    tar.wait()
    say(f"{BASE_IMAGE}: imported")


def _mirror() -> str:
    """This host's Debian mirror (the one apt uses for bookworm), for debootstrap."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue  # e.g. *.disabled
        text = path.read_text()
        for stanza in text.split("\n\n"):  # deb822 (.sources)
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith("#"))
            uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
            if uris and "bookworm" in suites:
                return uris[0]
        for line in text.splitlines():  # one-line style (.list), options [..] left out
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if words[:1] == ["deb"] and len(words) > 2 and words[2] == "bookworm":
                return words[1]
    return "http://deb.debian.org/debian"


def wheelhouse(cache: Path) -> Path:
    """Every wheel the image needs, downloaded once by this host's pip (torch from its disk)."""
    house = cache / "wheelhouse"
    stamp = house / ".pyproject-sha256"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        say("wheelhouse: cached")
        return house
    house.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "-d", str(house)]
    sh(*pip, str(ROOT))
    sh(*pip, "setuptools>=77", "wheel")  # the build backend of `pip install .`, offline
    stamp.write_text(digest)
    return house


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """The wheelhouse over HTTP on the docker bridge's address (reachable from builds only)."""
    gateway = sh("ip", "-4", "-o", "addr", "show", "docker0", quiet=True).split()[3].split("/")[0]
    port = WHEELHOUSE_PORT  # fixed: a build argument that changes would rebuild every layer
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", gateway,
                             "--directory", str(directory)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: _listening(gateway, port), 30, f"the wheelhouse on {gateway}:{port}")
        yield f"http://{gateway}:{port}/"
    finally:
        proc.terminate()
        proc.wait()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def build(env: dict[str, str], index: str) -> None:
    host = index.split("/")[2].split(":")[0]
    ca = "".join(p.read_text() for p in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")))
    build_env = {**env, "BASE": BASE_IMAGE, "PIP_FIND_LINKS": index, "PIP_NO_INDEX": "1",
                 "PIP_TRUSTED_HOST": host, "EXTRA_CA_CERT": ca}
    t = time.monotonic()
    sh("docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "cloud", "build",
       "broker", env=build_env)
    say(f"dads image built in {time.monotonic() - t:.0f} s")
    sh("docker", "build", "-q", "--build-arg", f"BASE={BASE_IMAGE}", "-t", PROMETHEUS_IMAGE,
       str(ROOT / "deploy/prometheus"), env=env)


def compose(project: str, env: dict[str, str], *args: str, files: tuple[Path, ...] = (),
            check: bool = True, quiet: bool = False) -> str:
    cmd = ["docker-compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    for f in files:
        cmd += ["-f", str(f)]
    return sh(*cmd, "--profile", PROFILE[project], *args, env=env, check=check, quiet=quiet)


def wait_healthy(project: str, env: dict[str, str], services: list[str], count: int,
                 timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ids = compose(project, env, "ps", "-q", *services, quiet=True).split()
        states = [sh("docker", "inspect", "-f", "{{.State.Health.Status}}", i, env=env,
                     quiet=True, check=False).strip() for i in ids]
        if len(ids) >= count and all(s == "healthy" for s in states):
            say(f"{project}: {len(ids)} containers healthy")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{project}: not healthy after {timeout:.0f} s: {states}")
        time.sleep(2)


def results(path: Path) -> list[dict]:
    from services.edge_agent.results import read_results

    return read_results(path) if path.exists() else []


def prometheus_up(port: int) -> dict[str, list[float]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query=up"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own loopback URL
        data = json.load(r)["data"]["result"]
    jobs: dict[str, list[float]] = {}
    for series in data:
        jobs.setdefault(series["metric"]["job"], []).append(float(series["value"][1]))
    return jobs


def check_exact(lines: list[dict]) -> int:
    """Every frame 0..n-1 answered once, each equal to the whole model run here."""
    import torch

    from common.model.models import input_shape_for, load_served, synthetic_frame
    from common.model.split import relative_error

    ids = sorted(line["frame_id"] for line in lines)
    if ids != list(range(len(ids))):
        raise AssertionError(f"frames missing or repeated: {len(ids)} lines, ids {ids[:5]}...")
    dropped = [line for line in lines if line["dropped"]]
    if dropped:
        reasons = sorted({line["reason"] for line in dropped})
        raise AssertionError(f"{len(dropped)} frame(s) dropped ({', '.join(reasons)}): "
                             f"{[line['frame_id'] for line in dropped][:20]}")
    model, shape = load_served(MODEL).eval(), input_shape_for(MODEL)
    worst = 0.0
    with torch.no_grad():
        for line in lines:
            ref = model(synthetic_frame(line["frame_id"], shape))
            err = relative_error(torch.tensor(line["output"]).reshape(ref.shape), ref)
            worst = max(worst, err)
            if err > 1e-5:
                raise AssertionError(f"frame {line['frame_id']}: relative error {err:.2e}")
    say(f"all {len(lines)} frames answered and exact (worst relative error {worst:.1e})")
    return len(lines)


def run(cache: Path) -> dict:
    summary: dict = {}
    with dockerd(cache) as env, tempfile.TemporaryDirectory(prefix="dads-compose-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        try:
            base_image(env, cache)
            with served(wheelhouse(cache)) as index:
                build(env, index)
            summary["build_s"] = round(time.monotonic() - T0, 1)
            keys, out = work / "keys", work / "out"
            sh(sys.executable, "-m", "cli", "keys", "init", str(keys))
            out.mkdir()
            for path in (keys, out, *keys.iterdir()):
                os.chown(path, 10001, 10001)  # the image's user
            host_ip = sh("hostname", "-I", quiet=True).split()[0]
            cfg = {**env, **{k: str(v) for k, v in PORTS.items()}, "KEYS_DIR": str(keys),
                   "DADS_MODEL": MODEL, "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
                   "DADS_THREADS": "1",  # 2 cores, 3 workers and an edge: no oversubscription
                   "EDGE_HOST": host_ip}
            cfg.pop("CLOUD_HOST", None)  # the edge finds the cloud by the default (this host)

            # the cloud machine
            compose(CLOUD, cfg, "up", "-d", "--scale", "cloud_worker=2",
                    "broker", "planner", "cloud_worker", "prometheus")
            wait_healthy(CLOUD, cfg, ["broker", "planner", "cloud_worker"], 4, timeout=240)
            sh(sys.executable, "-m", "cli", "ctl", "--planner",
               f"tcp://127.0.0.1:{PORTS['DADS_TELEMETRY_PORT']}", "--keys", str(keys),
               "--algorithm", "cloud_only")  # every frame through the pool

            # the edge machine: a project of its own, the cloud only through published ports
            override = work / "edge.yml"
            override.write_text(json.dumps({"services": {"edge_agent": {
                "command": ["edge-agent", "--fps", "2", "--output", "/out/results.jsonl",
                            "--want-output", "--deadline", "120",
                            # a worker that starts takes the CPU for a while: frames wait, and
                            # are not dropped as a live camera's would be
                            "--no-shed", "--queue", "512"],
                "volumes": [f"{out}:/out"]}}}))
            compose(EDGE, cfg, "up", "-d", "edge_agent", files=(override,))
            path = out / "results.jsonl"
            _wait(lambda: len(results(path)) >= 20, 240, "the edge's first 20 results")
            workers = {line.get("worker") for line in results(path)}
            say(f"streaming: {len(results(path))} results from {sorted(workers)}")

            # scale out while streaming
            compose(CLOUD, cfg, "up", "-d", "--no-recreate", "--scale",
                    "cloud_worker=3", "cloud_worker")
            _wait(lambda: len(_workers(results(path))) >= 3, 300, "a third worker's results")
            summary["workers_serving"] = sorted(_workers(results(path)))
            _wait(lambda: _scraped(PORTS["PROMETHEUS_PORT"]), 120,
                  "Prometheus scraping broker, planner, edge and 3 workers")
            summary["prometheus_up"] = prometheus_up(PORTS["PROMETHEUS_PORT"])

            summary["second_machine"] = second_machine(cfg, path)

            compose(EDGE, cfg, "stop", "-t", "60", "edge_agent",
                    files=(override,))  # SIGTERM: it finishes the frames in flight
            summary["frames"] = check_exact(results(path))
            logs = compose(EDGE, cfg, "logs", "--no-color", "edge_agent",
                           files=(override,), quiet=True)
            summary["edge_summary"] = next((line.split("| ", 1)[-1] for line in logs.splitlines()
                                            if "summary:" in line), "")
            summary["three_tiers"] = three_tiers(cfg, work, keys, out)
        except BaseException:
            for project in (CLOUD, MIDDLE, EDGE, WORKERS):
                say(f"logs of {project} (last lines):")
                print(compose(project, env, "logs", "--no-color", "--tail", "40", check=False,
                              quiet=True)[-8000:], file=sys.stderr)
            raise
        finally:
            for project in (EDGE, MIDDLE, WORKERS, CLOUD):
                compose(project, env, "down", "-v", "--remove-orphans",
                        "-t", "5", check=False, quiet=True)
            say("every project down (containers, networks, volumes)")
    summary["seconds"] = round(time.monotonic() - T0, 1)
    return summary


def second_machine(cfg: dict[str, str], path: Path) -> dict:
    """Workers of a second cloud machine (profile workers, a project of its own that reaches
    the cloud only through its published ports) join the pool mid-stream and answer frames;
    when that project goes down, the pool shrinks and the stream goes on: nothing lost."""
    before = _workers(results(path))
    compose(WORKERS, cfg, "up", "-d", "--scale", "remote_worker=2", "remote_worker")
    wait_healthy(WORKERS, cfg, ["remote_worker"], 2, timeout=300)
    joined = lambda: _workers(results(path)) - before  # noqa: E731
    _wait(lambda: len(joined()) >= 1, 300, "frames answered by the second machine's workers")
    served = sorted(joined())
    compose(WORKERS, cfg, "down", "-t", "30")  # SIGTERM: each finishes the request in hand
    gone = len(results(path))
    _wait(lambda: len(results(path)) >= gone + 10, 300, "10 more frames after they left")
    dropped = [line for line in results(path) if line["dropped"]]
    if dropped:  # (exactness of every frame is checked once the edge has stopped)
        raise AssertionError(f"frames dropped around the second machine: {dropped[:3]}")
    say(f"second machine: {served} joined, answered, left; the stream went on")
    return {"joined": served, "frames_after_leaving": len(results(path)) - gone}


def three_tiers(cfg: dict[str, str], work: Path, keys: Path, out: Path) -> dict:
    """Device -> edge server -> cloud with the three-tier overlay, on the running cloud."""
    import networkx as nx

    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame
    from common.planning.dag import transfer
    from launch.testbed import pin_placement

    tiers = (THREE_TIERS,)
    cfg = {**cfg, "DADS_LINKS": "50mbit", "EDGE_SERVER_FRONTEND_PORT": str(EDGE_SERVER_PORT)}
    compose(CLOUD, cfg, "up", "-d", "--no-deps", "planner", files=tiers)  # now over tiers
    wait_healthy(CLOUD, cfg, ["planner"], 1, timeout=120)
    compose(MIDDLE, cfg, "up", "-d", "edge_server_broker", "edge_server_worker", files=tiers)
    wait_healthy(MIDDLE, cfg, ["edge_server_broker", "edge_server_worker"], 2, timeout=300)
    override = work / "device.yml"
    override.write_text(json.dumps({"services": {"edge_agent": {
        "command": ["edge-agent", "--fps", "2", "--output", "/out/tiers.jsonl", "--want-output",
                    "--deadline", "120", "--no-shed", "--queue", "512"],
        "volumes": [f"{out}:/out"]}}}))
    compose(EDGE, cfg, "up", "-d", "--force-recreate", "edge_agent", files=(*tiers, override))
    path = out / "tiers.jsonl"
    _wait(lambda: any(line.get("algorithm") == "tiers" for line in results(path)), 300,
          "a plan over tiers in force at the device")
    # a placement with nodes on every tier and several tensors on each link, as an operator pins
    graph = trace(load_served(MODEL).eval(), synthetic_frame(0, input_shape_for(MODEL)), MODEL)
    order = list(nx.topological_sort(graph.dag))
    wide = [i for i in range(1, len(order)) if len(transfer(graph.dag, set(order[:i]))) >= 2]
    a, b = wide[len(wide) // 3], wide[2 * len(wide) // 3]
    ports = {k: cfg[k] for k in ("DADS_PLAN_PORT", "DADS_TELEMETRY_PORT")}
    plan = pin_placement(f"tcp://127.0.0.1:{ports['DADS_PLAN_PORT']}",
                         f"tcp://127.0.0.1:{ports['DADS_TELEMETRY_PORT']}", str(keys),
                         order[:a], [order[a:b]], timeout=120)
    if plan is None:
        raise RuntimeError("the planner published no plan for the pinned placement")
    pinned = lambda: [x for x in results(path) if x["plan_id"] == plan["plan_id"]]  # noqa: E731
    _wait(lambda: len(pinned()) >= 10, 300, "10 frames answered under the pinned placement")
    compose(EDGE, cfg, "stop", "-t", "60", "edge_agent", files=(*tiers, override))
    relayed = {x["worker"] for x in pinned()}
    if not all(">" in w for w in relayed):  # the edge tier's worker > the cloud's
        raise AssertionError(f"pinned frames not through both tiers' workers: {relayed}")
    return {"frames": check_exact(results(path)), "pinned_frames": len(pinned()),
            "link_bytes": plan["extra"]["link_bytes"], "workers": sorted(relayed)}


def _workers(lines: list[dict]) -> set[str]:
    return {line["worker"] for line in lines if not line["dropped"] and line["worker"] != "edge"}


def _scraped(port: int) -> bool:
    try:
        up = prometheus_up(port)
    except OSError:
        return False
    return (up.get("cloud_worker", []) == [1.0] * 3 and all(up.get(job) == [1.0] for job in
                                                           ("broker", "planner", "edge_agent")))


def _wait(ready, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)
    say(f"ok: {what}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path,
                    default=Path(os.environ.get("DADS_COMPOSE_CACHE", "/var/cache/dads-compose-test")),
                    help="images, rootfs and wheelhouse kept between runs")
    ap.add_argument("--clean", action="store_true", help="remove the cache folder and exit")
    args = ap.parse_args(argv)
    if args.clean:
        shutil.rmtree(args.cache, ignore_errors=True)
        return 0
    need_tools()
    args.cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    summary = run(args.cache)
    print(json.dumps(summary, indent=1))
    say("passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
