"""AsyncClient: the same calls for asyncio, on real processes."""

import asyncio
from typing import List, Union

import procfs
import pytest
from conftest import SAMPLE_INTERVAL, Home, events_of
from test_client import tree_command

import wrangle


def client_of(home: Home) -> wrangle.AsyncClient:
    return wrangle.AsyncClient(home.path, wrangle_bin=home.binary, daemon_options=SAMPLE_INTERVAL)


def test_run_logs_wait_and_stop(home: Home) -> None:
    async def main() -> None:
        async with client_of(home) as client:
            mark = procfs.marker()
            agent = await client.run(["sleep", mark], name="nap")
            assert agent.pid is not None and procfs.cmdline(agent.pid) == ["sleep", mark]
            talker = await client.run(["sh", "-c", "echo one; echo two"], name="talker")
            assert (await client.wait(talker.id)).state is wrangle.State.COMPLETED
            assert [line async for line in client.logs("talker", follow=True)] == ["one", "two"]
            [stopped] = await client.stop("nap")
            assert stopped.agent.state is wrangle.State.STOPPED
            assert procfs.with_marker(mark) == []
            assert [a.name for a in await client.ps(all=True)] == ["nap", "talker"]
            assert (await client.summary()).agents == 2

    asyncio.run(main())


def test_errors_and_the_coordinators_api(home: Home) -> None:
    async def main() -> None:
        async with client_of(home) as client:
            with pytest.raises(wrangle.StartFailed):
                await client.spawn_agent("typo", ["claud"])
            with pytest.raises(wrangle.InvalidArgument):
                await client.run(["sleep", "1"], timeout="soon")
            with pytest.raises(wrangle.NotFound):
                await client.inspect("nobody")
            assert await client.get_agent_status("nobody") is None
            mark = procfs.marker()
            await client.spawn_agent("tree", tree_command(mark), stop_timeout="2s")
            procfs.wait_until("the tree runs", lambda: len(procfs.with_marker(mark)) >= 4)
            status = await client.get_agent_status("tree")
            assert status is not None and status["process_alive"] and status["health"] == "healthy"
            assert await client.check_process_health("tree")
            assert set(await client.monitor_all_agents()) == {a.id for a in await client.ps(all=True)}
            assert (await client.get_process_summary())["total_agents"] == 2
            assert await client.reap_zombies() == []
            assert await client.kill_agent("tree", force=True)
            assert procfs.with_marker(mark) == []
            assert await client.cleanup() == []

    asyncio.run(main())


def test_events_resume_after_a_daemon_sigkill(home: Home) -> None:
    async def main() -> None:
        async with client_of(home) as client:
            await client.run(["true"], name="first")
            await client.wait("first")
            start = max(e.id for e in events_of([e async for e in client.events(since=0, follow=False)]))
            received: List[Union[wrangle.Event, wrangle.Gap]] = []

            async def follow() -> None:
                async for item in client.events(since=start, type="agent.exited"):
                    received.append(item)
                    if len(received) == 2:
                        return

            task = asyncio.ensure_future(follow())
            await client.run(["true"], name="second")
            await client.wait("second")
            while not received:
                await asyncio.sleep(0.01)
            home.kill_daemon()
            await client.run(["true"], name="third")
            await asyncio.wait_for(task, timeout=30)
            assert [e.agent.name for e in received if isinstance(e, wrangle.Event) and e.agent] == [
                "second",
                "third",
            ]

    asyncio.run(main())
