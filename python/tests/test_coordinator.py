"""The old coordinator's API, kept on top of the typed one, on real processes."""

import json

import procfs
import pytest
from conftest import Home
from test_client import tree_command

import wrangle

STATUS_KEYS = {
    "agent_id",
    "process_alive",
    "process_status",
    "exit_code",
    "is_zombie",
    "cpu_percent",
    "memory_mb",
    "runtime_seconds",
    "num_threads",
    "cmdline",
    "health",
    "persistent_status",
    "started_at",
    "progress",
}


def test_spawn_agent_and_its_status(client: wrangle.Client) -> None:
    mark = procfs.marker()
    agent = client.spawn_agent("worker", ["sleep", mark], env={"TASK": "7"})
    assert agent.pid is not None and procfs.alive(agent.pid)
    assert procfs.cmdline(agent.pid) == ["sleep", mark]
    assert procfs.environ(agent.pid)["TASK"] == "7"

    procfs.wait_until("the sampler saw it", lambda: client.inspect("worker").tree is not None)
    status = client.get_agent_status("worker")
    assert status is not None
    assert STATUS_KEYS <= set(status)
    assert status["agent_id"] == agent.id
    assert status["process_alive"] is True and status["is_zombie"] is False
    assert status["process_status"] == "running"
    assert status["health"] == "healthy" and status["persistent_status"] == "running"
    assert status["exit_code"] is None
    assert status["cmdline"] == f"sleep {mark}"
    assert status["memory_mb"] > 0 and status["num_threads"] >= 1
    assert status["runtime_seconds"] >= 0 and status["progress"] == 0
    assert status["started_at"] is not None
    json.dumps(status)  # plain JSON, as the coordinator's was
    assert client.check_process_health("worker") is True
    assert client.get_agent_status("nobody") is None
    assert client.check_process_health("nobody") is False


def test_spawn_agent_raises_with_the_os_error(client: wrangle.Client) -> None:
    with pytest.raises(wrangle.StartFailed) as raised:
        client.spawn_agent("typo", ["claud", "-p", "hi"])
    assert "No such file or directory: claud" in str(raised.value)
    status = client.get_agent_status("typo")
    assert status is not None
    assert status["health"] == "failed" and status["process_status"] == "not_started"
    assert status["process_alive"] is False


def test_status_after_the_end(client: wrangle.Client) -> None:
    client.spawn_agent("done", ["true"])
    client.spawn_agent("broken", ["sh", "-c", "exit 5"])
    client.wait("done")
    client.wait("broken")
    done, broken = client.get_agent_status("done"), client.get_agent_status("broken")
    assert done is not None and broken is not None
    assert (done["health"], done["exit_code"], done["process_status"]) == ("completed", 0, "exited")
    assert (broken["health"], broken["exit_code"]) == ("failed", 5)
    assert done["process_alive"] is False and done["memory_mb"] == 0.0
    assert client.check_process_health("done") is False
    # Cleaning up what has ended already is no error.
    [result] = client.cleanup("done", force=True)
    assert result.already_ended and result.agent.state is wrangle.State.COMPLETED
    assert client.kill_agent("broken") is True


def test_progress_from_the_status_file(client: wrangle.Client) -> None:
    mark = procfs.marker()
    script = (
        f"""echo '{{"progress": 40, "message": "running tests"}}' > "$WRANGLE_STATUS_FILE"; sleep {mark}"""
    )
    client.spawn_agent("reporter", ["sh", "-c", script])
    procfs.wait_until(
        "the progress shows", lambda: (client.get_agent_status("reporter") or {}).get("progress") == 40
    )
    status = client.get_agent_status("reporter")
    assert status is not None and status["message"] == "running tests"


def test_monitor_summary_and_zombies(client: wrangle.Client) -> None:
    marks = [procfs.marker(), procfs.marker()]
    client.spawn_agent("a", ["sleep", marks[0]])
    # Its main process never reaps its child: a zombie in the tree that only
    # its parent could reap, while the main process itself is fine.
    client.spawn_agent("b", ["sh", "-c", f"sleep 0.05 & exec sleep {marks[1]}"])
    client.spawn_agent("c", ["sh", "-c", "exit 2"])
    client.wait("c")
    procfs.wait_until("the sampler saw both", lambda: all(a.tree for a in client.ps()))

    monitored = client.monitor_all_agents()
    assert {status["agent_id"] for status in monitored.values()} == set(monitored)
    assert sorted(status["name"] for status in monitored.values()) == ["a", "b", "c"]

    summary = client.get_process_summary()
    assert summary["total_agents"] == 3
    assert summary["running"] == 2 and summary["failed"] == 1 and summary["zombie"] == 0
    assert summary["healthy"] == 2
    assert summary["total_memory_mb"] > 0
    assert summary["by_state"]["running"] == 2
    assert sorted(entry["name"] for entry in summary["agents"]) == ["a", "b", "c"]

    # The shims reap: no agent's main process is a zombie, so none is found.
    assert client.reap_zombies() == []
    for agent in client.ps():
        assert agent.pid is not None and procfs.state(agent.pid) != "Z"


def test_kill_agent_and_cleanup_leave_nothing(client: wrangle.Client, home: Home) -> None:
    marks = [procfs.marker() for _ in range(2)]
    client.spawn_agent("t0", tree_command(marks[0]), stop_timeout="2s")
    client.spawn_agent("t1", tree_command(marks[1]), stop_timeout="2s")
    for mark in marks:
        procfs.wait_until("the tree runs", lambda: len(procfs.with_marker(mark)) >= 4)
    assert client.kill_agent("t0") is True
    assert procfs.with_marker(marks[0]) == []
    assert client.get_agent_status("t0")["health"] == "stopped"  # type: ignore[index]
    client.cleanup()
    assert procfs.with_marker(marks[1]) == []
    assert all(agent.state.is_ended for agent in client.ps(all=True))
    # Only the daemon is left of the home: no shim, no agent, no descendant.
    assert home.processes() == [home.daemon_pid()]


def test_agent_spawner_is_the_client() -> None:
    assert wrangle.AgentSpawner is wrangle.Client
