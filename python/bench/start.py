"""Starting N agents from Python with the client, as the Rust benchmark's
API start does it (``bench/src/start.rs``): a daemon in a fresh home, then
``--connections`` threads sharing one ``wrangle.Client`` (its pool of
keep-alive connections), each calling ``client.run(["sleep", "3600"],
name=...)`` one after another until N are asked for, with the caller's
environment as ``inherit_env`` (the client's default, as ``wrangle run``);
the clock stops when ``client.ps()`` shows all N ``running``. Then every
agent's pid is checked in /proc to be a live ``sleep`` (after the clock),
and the fleet and its daemon are stopped.

Run: ``python python/bench/start.py --agents 50 --wrangle
target/release/wrangle`` (the Rust benchmark runs it with ``--python``, in
the same run as its own API start, and reports the ratio). Prints one JSON
object: ``n``, ``connections``, ``answered_s``, ``all_running_s``,
``client_cpu_s`` (this process's CPU during the start).
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import wrangle

AGENT_ARGV = ["sleep", "3600"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start(client: wrangle.Client, n: int, connections: int) -> "tuple[float, float, float]":
    """Starts ``n`` agents; returns (answered, all running, client CPU) in seconds."""
    names = [f"bench-{index}" for index in range(n)]
    lock = threading.Lock()
    next_index = [0]
    cwd = "/tmp"

    def worker() -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= n:
                return
            agent = client.run(AGENT_ARGV, name=names[index], cwd=cwd)
            if agent.state is not wrangle.State.RUNNING:
                raise RuntimeError(f"agent {agent.name} is {agent.state}: {agent.reason}")

    cpu = cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for future in [pool.submit(worker) for _ in range(connections)]:
            future.result()
    answered = time.perf_counter() - started
    wanted = set(names)
    deadline = time.monotonic() + 300
    while True:
        running = sum(
            1 for agent in client.ps() if agent.name in wanted and agent.state is wrangle.State.RUNNING
        )
        if running == n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {running} of {n} agents are running")
        time.sleep(0.01)
    return answered, time.perf_counter() - started, cpu_seconds() - cpu


def check_fleet(client: wrangle.Client, n: int) -> None:
    """Every agent's main process is a live ``sleep``, by /proc."""
    agents = client.ps()
    assert len(agents) == n, f"{len(agents)} agents, not {n}"
    for agent in agents:
        with open(f"/proc/{agent.pid}/comm") as comm:
            program = comm.read().strip()
        if program != AGENT_ARGV[0]:
            raise RuntimeError(f"pid {agent.pid} of agent {agent.name} is {program!r}, not sleep")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="how many agents (default 1000)")
    parser.add_argument("--connections", type=int, default=4, help="parallel client threads (default 4)")
    parser.add_argument("--wrangle", help="the wrangle executable (default: $WRANGLE_BIN or PATH)")
    parser.add_argument("--home", help="a fresh home to use (default: a new one under /tmp, removed after)")
    args = parser.parse_args(argv)

    home = args.home or tempfile.mkdtemp(prefix="wpb", dir="/tmp")
    made_home = args.home is None
    client = wrangle.Client(home, wrangle_bin=args.wrangle)
    try:
        client.daemon()  # started before the clock, as the Rust benchmark does
        answered, all_running, cpu = start(client, args.agents, args.connections)
        check_fleet(client, args.agents)
    finally:
        client.stop_daemon(stop_agents=True)
        client.close()
        if made_home:
            shutil.rmtree(home, ignore_errors=True)
    print(
        json.dumps(
            {
                "n": args.agents,
                "connections": args.connections,
                "answered_s": answered,
                "all_running_s": all_running,
                "client_cpu_s": cpu,
                "python": sys.version.split()[0],
                "pid": os.getpid(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
