"""The typed API on real processes: what each call did is checked in /proc."""

import datetime
import os
import signal
import threading
import time
from typing import Callable, List, Tuple, Type, Union

import procfs
import pytest
from conftest import Home, events_of

import wrangle


def tree_command(mark: str) -> List[str]:
    """A shell that starts a child, a grandchild in its own session and
    then waits: every process of it has ``mark`` in its command line."""
    return [
        "sh",
        "-c",
        f"sleep {mark} & setsid sh -c 'sleep {mark}' & sleep {mark}; wait",
        f"tree-{mark}",
    ]


def test_run_starts_the_command_given(client: wrangle.Client, tmp_path: "os.PathLike[str]") -> None:
    mark = procfs.marker()
    agent = client.run(
        ["sleep", mark], name="napper", env={"GREETING": "hello"}, cwd=tmp_path, labels={"team": "py"}
    )
    assert agent.state is wrangle.State.RUNNING
    assert agent.name == "napper" and agent.labels == {"team": "py"}
    assert agent.pid is not None and procfs.alive(agent.pid)
    assert procfs.cmdline(agent.pid) == ["sleep", mark]
    environment = procfs.environ(agent.pid)
    assert environment["GREETING"] == "hello"
    assert environment["WRANGLE_AGENT_ID"] == agent.id
    # The caller's environment is the base, as with `wrangle run`.
    assert environment.get("PATH") == os.environ.get("PATH")
    assert os.readlink(f"/proc/{agent.pid}/cwd") == os.fspath(tmp_path)
    assert client.inspect("napper").pid == agent.pid
    assert [a.name for a in client.ps()] == ["napper"]
    client.run(["true"], name="quick", labels={"team": "other"})
    client.wait("quick")
    assert [a.name for a in client.ps(all=True)] == ["napper", "quick"]
    assert [a.name for a in client.ps(state=wrangle.State.COMPLETED)] == ["quick"]
    assert [a.name for a in client.ps(state=["running", "completed"], label={"team": None})] == [
        "napper",
        "quick",
    ]
    assert [a.name for a in client.ps(all=True, label="team=py")] == ["napper"]
    assert [a.name for a in client.ps(all=True, limit=1)] == ["napper"]
    with pytest.raises(wrangle.InvalidArgument):
        client.ps(state="sleeping")


def test_a_failed_exec_raises_with_the_os_error(client: wrangle.Client) -> None:
    with pytest.raises(wrangle.StartFailed) as raised:
        client.run(["no-such-program-here"], name="typo")
    error = raised.value
    assert error.errno == 2
    assert "No such file or directory" in str(error)
    assert error.agent.state is wrangle.State.FAILED
    assert error.agent.cause is wrangle.Cause.SPAWN_ERROR
    failed = client.run(["no-such-program-here"], name="typo2", check=False)
    assert failed.never_started and failed.pid is None


def test_bad_input_raises_and_changes_nothing(client: wrangle.Client, home: Home) -> None:
    mark = procfs.marker()
    client.run(["sleep", mark], name="taken")
    before = [(a.id, a.state, a.pid) for a in client.ps(all=True)]
    events_before = [e.id for e in events_of(client.events(since=0, follow=False))]

    cases: List[Tuple[Type[Exception], Callable[[], object]]] = [
        (wrangle.InvalidArgument, lambda: client.run(["sleep", mark], stop_timeout="banana")),
        (wrangle.InvalidArgument, lambda: client.run(["sleep", mark], restart="sometimes")),
        (wrangle.InvalidArgument, lambda: client.run(["sleep", mark], no_such_option=1)),
        (wrangle.InvalidArgument, lambda: client.run(["sleep", mark], name="Not A Name")),
        (wrangle.InvalidArgument, lambda: client.run([])),
        (wrangle.AlreadyExists, lambda: client.run(["sleep", mark], name="taken")),
        (wrangle.NotFound, lambda: client.inspect("nobody")),
        (wrangle.NotFound, lambda: client.stop("nobody")),
        (wrangle.NotFound, lambda: client.kill("nobody")),
        (wrangle.NotFound, lambda: client.wait("nobody")),
        (wrangle.NotFound, lambda: list(client.logs("nobody"))),
        (wrangle.NotFound, lambda: client.remove("nobody")),
        (wrangle.InvalidArgument, lambda: client.kill("taken", signal="NOPE")),
        (wrangle.InvalidArgument, lambda: client.stop("taken", timeout="forever")),
        (wrangle.InvalidArgument, lambda: list(client.events(type="container.die", follow=False))),
        (wrangle.InvalidArgument, lambda: list(client.events(since="yesterday", follow=False))),
        (wrangle.FailedPrecondition, lambda: client.remove("taken")),
        (TypeError, lambda: client.run("sleep 10")),
    ]
    for expected, call in cases:
        with pytest.raises(expected) as raised:
            call()
        if isinstance(raised.value, wrangle.DaemonError):
            assert raised.value.message, "the daemon says what went wrong"
            assert raised.value.code == getattr(expected, "code")

    assert [(a.id, a.state, a.pid) for a in client.ps(all=True)] == before
    assert [e.id for e in events_of(client.events(since=0, follow=False))] == events_before
    assert len(procfs.with_marker(mark)) == 1


def test_stop_ends_the_whole_tree(client: wrangle.Client) -> None:
    mark = procfs.marker()
    agent = client.run(tree_command(mark), name="tree")
    procfs.wait_until("the tree's three sleeps run", lambda: len(procfs.with_marker(mark)) >= 4)
    [result] = client.stop("tree", timeout="2s")
    assert result.agent.state is wrangle.State.STOPPED
    assert "SIGTERM" in result.outcome
    assert procfs.with_marker(mark) == []
    assert agent.pid is not None and not procfs.alive(agent.pid)


def test_cleanup_stops_one_or_all_with_their_trees(client: wrangle.Client) -> None:
    marks = [procfs.marker() for _ in range(3)]
    for index, mark in enumerate(marks):
        client.spawn_agent(f"worker-{index}", tree_command(mark), stop_timeout="2s")
    for mark in marks:
        procfs.wait_until("each tree runs", lambda: len(procfs.with_marker(mark)) >= 4)

    [one] = client.cleanup("worker-0")
    assert one.agent.name == "worker-0" and one.agent.state is wrangle.State.STOPPED
    assert procfs.with_marker(marks[0]) == []
    assert procfs.with_marker(marks[1]) and procfs.with_marker(marks[2])

    results = client.cleanup(force=True)
    assert sorted(r.agent.name for r in results) == ["worker-1", "worker-2"]
    assert all(r.agent.state.is_ended for r in results)
    for mark in marks:
        assert procfs.with_marker(mark) == []
    assert client.ps() == []


def test_kill_signals_and_kill_agent(client: wrangle.Client) -> None:
    mark = procfs.marker()
    # A shell that reports SIGHUP and goes on: a signal other than SIGKILL
    # goes to the main process only.
    script = f"trap 'echo got HUP' HUP; while :; do sleep {mark} & wait $!; done"
    client.run(["sh", "-c", script], name="hup")
    procfs.wait_until("its sleep runs", lambda: len(procfs.with_marker(mark)) >= 1)
    agent = client.kill("hup", signal=signal.SIGHUP)
    assert agent.state is wrangle.State.RUNNING
    procfs.wait_until("the trap ran", lambda: "got HUP" in list(client.logs("hup")))

    assert client.kill_agent("hup", force=True) is True
    assert client.inspect("hup").state is wrangle.State.STOPPED
    assert procfs.with_marker(mark) == []
    assert client.kill_agent("nobody") is False


def test_restart_remove_and_runs(client: wrangle.Client) -> None:
    mark = procfs.marker()
    first = client.run(["sleep", mark], name="again", stop_timeout="1s")
    second = client.restart("again")
    assert second.run == 2 and second.pid != first.pid
    assert first.pid is not None and not procfs.alive(first.pid)
    assert second.pid is not None and procfs.cmdline(second.pid) == ["sleep", mark]
    runs = client.runs("again")
    assert [r.run for r in runs] == [1, 2]
    assert runs[0].state is wrangle.State.STOPPED and runs[0].pid == first.pid
    removed = client.remove("again", force=True)
    assert removed.name == "again"
    assert procfs.with_marker(mark) == []
    with pytest.raises(wrangle.NotFound):
        client.inspect("again")


def test_logs_follow_until_the_agent_ends(client: wrangle.Client) -> None:
    client.run(["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done; echo oops >&2"], name="talker")
    assert list(client.logs("talker", follow=True)) == ["line 1", "line 2", "line 3", "oops"]
    assert list(client.logs("talker", stream="stderr")) == ["oops"]
    assert list(client.logs("talker", tail=2)) == ["line 3", "oops"]
    lines = list(client.log_lines("talker", stream=wrangle.LogStream.STDOUT))
    assert [line.stream for line in lines] == [wrangle.LogStream.STDOUT] * 3
    assert all(line.complete for line in lines)
    # By capture time: a time, or a while ago; a bad bound changes nothing.
    # (A line's time has nanoseconds, Python's microseconds.)
    middle = lines[1].time
    after_middle = middle + datetime.timedelta(microseconds=1)
    assert list(client.logs("talker", stream="stdout", since=middle)) == ["line 2", "line 3"]
    assert list(client.logs("talker", stream="stdout", until=after_middle)) == ["line 1", "line 2"]
    assert len(list(client.logs("talker", since="1h"))) == 4
    assert list(client.logs("talker", since=datetime.timedelta(0))) == []
    with pytest.raises(wrangle.InvalidArgument, match="--since"):
        list(client.logs("talker", since="soonish"))


def test_wait_returns_how_the_agent_ended(client: wrangle.Client) -> None:
    client.run(["sh", "-c", "sleep 0.3; exit 3"], name="three")
    ended = client.wait("three")
    assert ended.state is wrangle.State.FAILED and ended.exit_code == 3
    # An ended agent is returned at once.
    assert client.wait("three").exit_code == 3
    mark = procfs.marker()
    client.run(["sleep", mark], name="long")
    started = time.monotonic()
    with pytest.raises(wrangle.WaitTimeout):
        client.wait("long", timeout=0.5)
    assert time.monotonic() - started < 5


def test_events_in_order_with_filters(client: wrangle.Client) -> None:
    client.run(["true"], name="quick")
    client.wait("quick")
    client.run(["sh", "-c", "exit 4"], name="four")
    client.wait("four")
    everything = events_of(client.events(since=0, follow=False))
    ids = [e.id for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert isinstance(everything[0], wrangle.DaemonStarted)
    mine = events_of(client.events(since=0, agent="four", follow=False))
    assert [e.type for e in mine] == ["agent.created", "agent.starting", "agent.running", "agent.exited"]
    exited = mine[-1]
    assert isinstance(exited, wrangle.AgentExited)
    assert (
        exited.state is wrangle.State.FAILED and exited.exit_code == 4 and exited.cause is wrangle.Cause.EXIT
    )
    assert exited.agent is not None and exited.agent.name == "four"
    only_exits = events_of(client.events(since=0, type=["agent.exited"], follow=False))
    assert [e.agent.name for e in only_exits if e.agent] == ["quick", "four"]
    after = events_of(client.events(since=mine[1].id, agent="four", follow=False))
    assert [e.id for e in after] == [e.id for e in mine[2:]]


def test_events_follow_live_from_where_the_stream_was_opened(client: wrangle.Client) -> None:
    client.run(["true"], name="earlier")
    client.wait("earlier")
    # Opened before the agent starts: none of its events can be missed.
    with client.events(type="agent.") as stream:
        client.run(["true"], name="live")
        seen = []
        for item in stream:
            assert isinstance(item, wrangle.Event) and item.agent is not None
            seen.append((item.type, item.agent.name))
            if isinstance(item, wrangle.AgentExited):
                break
    assert seen == [
        ("agent.created", "live"),
        ("agent.starting", "live"),
        ("agent.running", "live"),
        ("agent.exited", "live"),
    ]


def test_an_event_iterator_survives_a_daemon_sigkill_and_misses_nothing(
    client: wrangle.Client, home: Home
) -> None:
    client.run(["true"], name="before")
    client.wait("before")
    start = max(e.id for e in events_of(client.events(since=0, follow=False)))
    received: List[Union[wrangle.Event, wrangle.Gap]] = []
    done = threading.Event()
    stream = client.events(since=start)

    def follow() -> None:
        for item in stream:
            received.append(item)
            if isinstance(item, wrangle.AgentExited) and item.agent and item.agent.name == "after-2":
                break
        done.set()

    reader = threading.Thread(target=follow)
    reader.start()
    client.run(["true"], name="after-1")
    client.wait("after-1")
    procfs.wait_until(
        "the iterator has after-1's end",
        lambda: any(
            isinstance(e, wrangle.AgentExited) and e.agent and e.agent.name == "after-1" for e in received
        ),
    )
    dead = home.kill_daemon()
    # Events happen while the iterator waits for a daemon: the next request
    # starts one, whose first event is daemon.started.
    agent = client.run(["true"], name="after-2")
    assert client.daemon().pid != dead
    assert done.wait(timeout=30), f"the iterator did not resume: {received}"
    reader.join(timeout=5)
    stream.close()

    got = events_of(received)
    recorded = [e for e in events_of(client.events(since=start, follow=False)) if e.id <= got[-1].id]
    assert [e.id for e in got] == [e.id for e in recorded], "none missed, none twice, in order"
    types = [(e.type, e.agent.name if e.agent else None) for e in got]
    assert ("daemon.started", None) in types
    assert types[-4:] == [
        ("agent.created", "after-2"),
        ("agent.starting", "after-2"),
        ("agent.running", "after-2"),
        ("agent.exited", "after-2"),
    ]
    assert agent.name == "after-2"


def test_summary_and_daemon(client: wrangle.Client) -> None:
    mark = procfs.marker()
    client.run(["sleep", mark], name="one")
    info = client.daemon()
    assert info.home == client.home and procfs.alive(info.pid)
    procfs.wait_until("the sampler saw it", lambda: client.summary().processes >= 1)
    summary = client.summary()
    assert summary.agents == 1
    assert summary.by_state[wrangle.State.RUNNING] == 1
    assert summary.rss_bytes > 0


def test_autostart_and_its_absence(home: Home, wrangle_bin: str, tmp_path: "os.PathLike[str]") -> None:
    with wrangle.Client(home.path, autostart=False) as quiet:
        with pytest.raises(wrangle.DaemonUnreachable):
            quiet.ps()
    assert not os.path.exists(os.path.join(home.path, "wrangle.sock"))
    no_binary = wrangle.Client(home.path, wrangle_bin=os.path.join(os.fspath(tmp_path), "missing"))
    with pytest.raises(wrangle.DaemonUnreachable) as raised:
        no_binary.ps()
    assert "missing" in str(raised.value)
    with wrangle.Client(home.path, wrangle_bin=wrangle_bin) as started:
        assert started.ps() == []
        pid = home.daemon_pid()
        assert "daemon" in (procfs.cmdline(pid) or [])
        # A second client of the same home uses the same daemon.
        with wrangle.Client(home.path, wrangle_bin=wrangle_bin) as other:
            assert other.daemon().pid == pid
        started.stop_daemon()
        assert not procfs.alive(pid)


def test_the_home_is_found_as_the_cli_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from wrangle import _home

    assert _home.resolve_home("/explicit", {"WRANGLE_HOME": "/env"}) == "/explicit"
    assert _home.resolve_home(None, {"WRANGLE_HOME": "/env", "HOME": "/h"}) == "/env"
    assert _home.resolve_home(None, {"XDG_STATE_HOME": "/state", "HOME": "/h"}) == "/state/wrangle"
    assert _home.resolve_home(None, {"XDG_STATE_HOME": "rel", "HOME": "/h"}) == "/h/.local/state/wrangle"
    assert _home.resolve_home(None, {"WRANGLE_HOME": "", "HOME": "/h"}) == "/h/.local/state/wrangle"
    with pytest.raises(wrangle.DaemonUnreachable):
        _home.resolve_home(None, {})
    monkeypatch.setenv("WRANGLE_HOME", "/from/env")
    assert wrangle.Client().home == "/from/env"


def test_up_starts_what_the_file_declares(client: wrangle.Client, tmp_path: "os.PathLike[str]") -> None:
    marks = [procfs.marker(), procfs.marker()]
    path = os.path.join(os.fspath(tmp_path), "wrangle.toml")

    def declare(second: str) -> None:
        with open(path, "w") as file:
            file.write(
                f"""
[agents.web]
command = ["sleep", "{marks[0]}"]
stop_timeout = "1s"

[agents.worker]
command = ["sleep", "{second}"]
env = {{ ROLE = "worker" }}
"""
            )

    declare(marks[1])
    results = client.up(path)
    assert [(r.name, r.action) for r in results] == [("web", "created"), ("worker", "created")]
    for result, mark in zip(results, marks):
        assert result.agent.pid is not None and procfs.cmdline(result.agent.pid) == ["sleep", mark]
        assert result.agent.cwd == os.fspath(tmp_path)
    assert [(r.name, r.action) for r in client.up(path)] == [("web", "unchanged"), ("worker", "unchanged")]

    changed = procfs.marker()
    declare(changed)
    results = client.up(path)
    assert [(r.name, r.action) for r in results] == [("web", "unchanged"), ("worker", "recreated")]
    assert procfs.with_marker(marks[1]) == [] and len(procfs.with_marker(changed)) == 1

    with open(path, "a") as file:
        file.write('\n[agents.broken]\ncommand = ["true"]\nrestart = "sometimes"\n')
    before = [(a.id, a.state) for a in client.ps(all=True)]
    with pytest.raises(wrangle.InvalidArgument) as raised:
        client.up(path)
    assert f"{path}:" in str(raised.value) and "restart" in str(raised.value)
    assert [(a.id, a.state) for a in client.ps(all=True)] == before

    declare(changed)
    client.down(path)
    assert procfs.with_marker(marks[0]) == [] and procfs.with_marker(changed) == []


def test_runs_while_the_daemon_is_killed_each_make_one_agent(client: wrangle.Client, home: Home) -> None:
    # Four threads start agents one after another while the daemon is
    # SIGKILLed twice: each create whose answer is lost is sent again with
    # its key, and makes its agent once.
    made: List[wrangle.Agent] = []
    lock = threading.Lock()

    def start(thread: int) -> None:
        for i in range(8):
            agent = client.run(["sleep", str(7_920_000 + thread * 8 + i)], name=f"k-{thread}-{i}")
            with lock:
                made.append(agent)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    killed = 0
    for _ in range(2):
        time.sleep(0.05)
        if daemon_runs(home):
            home.kill_daemon()
            killed += 1
    for thread in threads:
        thread.join(timeout=60)
    assert killed > 0, "the daemon was killed while agents were started"
    assert len(made) == 32
    assert len({agent.id for agent in made}) == 32
    listed = client.ps(all=True)
    assert sorted(agent.name for agent in listed) == sorted(agent.name for agent in made)
    procfs.wait_until(
        "each agent runs once",
        lambda: sorted(
            " ".join(line)
            for line in (procfs.cmdline(p) for p in procfs.pids())
            if line and " ".join(line).startswith("sleep 792")
        )
        == sorted(f"sleep {7_920_000 + n}" for n in range(32)),
    )


def daemon_runs(home: Home) -> bool:
    """Whether the home's daemon runs (its pid file names a live one)."""
    try:
        home.daemon_pid()
        return True
    except (OSError, ValueError, AssertionError):
        return False
