"""The old coordinator's view of an agent, from wrangle's.

wrangle grew out of a Python coordinator whose ``AgentSpawner`` spawned
agent processes with ``subprocess`` and watched them with ``psutil``.
Code written against it calls ``spawn_agent``, ``get_agent_status``,
``cleanup``, ``monitor_all_agents``, ``get_process_summary``,
``check_process_health``, ``kill_agent`` and ``reap_zombies``; ``Client``
and ``AsyncClient`` keep those names and shapes on top of the typed API,
and this module says what each field means now:

- resource use (``cpu_percent``, ``memory_mb``, ``num_threads``) is the
  agent's whole process tree at the daemon's last sampler tick, where the
  coordinator looked at the main process only;
- ``health`` is wrangle's health while the agent runs (``healthy``,
  ``unhealthy``, ``waiting``, ``hung``, ``zombie``, ``unknown``) and its
  state once it is not running: ``completed``, ``failed``, ``stopped``,
  ``queued``, ``starting`` or ``backoff``;
- there is nothing to reap: each agent's shim reaps its main process and
  every orphan of its tree as soon as it exits. ``reap_zombies`` reports
  what the daemon saw instead.
"""

from typing import Any, Dict, List, Optional

from ._types import Agent, Health, State, Summary

MIB = 1024 * 1024

_ALIVE = (State.STARTING, State.RUNNING, State.STOPPING)
"""States in which the agent's main process exists."""


def health_word(agent: Agent) -> str:
    """The coordinator's ``health``: wrangle's health while the agent runs,
    else its state (``completed``, ``failed``, ``stopped``, ``queued``...)."""
    if agent.state in (State.RUNNING, State.STOPPING):
        return str(agent.health.value)
    return str(agent.state.value)


def process_status(agent: Agent) -> str:
    """The coordinator's ``process_status`` (psutil's words where they fit):
    ``running``, ``zombie``, ``stopping``, ``starting``, ``exited`` (it ran
    and ended), ``not_started`` (its exec failed), ``queued`` or
    ``backoff`` (between two runs)."""
    if agent.health is Health.ZOMBIE and agent.state in _ALIVE:
        return "zombie"
    if agent.state in (State.RUNNING, State.STARTING, State.STOPPING, State.QUEUED, State.BACKOFF):
        return str(agent.state.value)
    if agent.started_at is None:
        return "not_started"
    return "exited"


def status(agent: Agent) -> Dict[str, Any]:
    """``get_agent_status``: the coordinator's dict for one agent.

    Keys of the coordinator: ``agent_id``, ``process_alive``,
    ``process_status``, ``exit_code``, ``is_zombie``, ``cpu_percent``,
    ``memory_mb``, ``runtime_seconds``, ``num_threads``, ``cmdline``,
    ``health``, ``persistent_status`` (wrangle's state), ``started_at``
    (ISO 8601), ``progress`` (0-100, 0 when never reported). And wrangle's:
    ``name``, ``pid``, ``state``, ``reason``, ``signal``, ``run``,
    ``restarts``, ``message``, ``cost_usd``. Every value is plain JSON, as
    the coordinator's were.
    """
    tree = agent.tree
    process = agent.process
    running = agent.state in _ALIVE and agent.pid is not None
    progress = agent.progress
    if progress is None and agent.session is not None:
        progress = agent.session.progress
    return {
        "agent_id": agent.id,
        "name": agent.name,
        "pid": agent.pid if running else None,
        "process_alive": running,
        "process_status": process_status(agent),
        "exit_code": agent.exit_code,
        "is_zombie": agent.health is Health.ZOMBIE and running,
        "cpu_percent": tree.cpu_percent
        if tree and running
        else (process.cpu_percent if process and running else 0.0),
        "memory_mb": (tree.rss_bytes / MIB) if tree and running else 0.0,
        "runtime_seconds": agent.runtime_seconds or 0.0,
        "num_threads": tree.threads if tree and running else 0,
        "cmdline": " ".join(agent.command),
        "health": health_word(agent),
        "persistent_status": agent.state.value,
        "state": agent.state.value,
        "started_at": agent.started_at.isoformat() if agent.started_at else None,
        "progress": progress if progress is not None else 0,
        "message": agent.message,
        "reason": agent.reason,
        "signal": agent.signal,
        "run": agent.run,
        "restarts": agent.restarts,
        "cost_usd": agent.total_cost_usd,
    }


def is_healthy(agent: Optional[Agent]) -> bool:
    """``check_process_health``: alive, running, and neither a zombie, hung
    nor failing its health probe."""
    return (
        agent is not None
        and agent.state is State.RUNNING
        and agent.health in (Health.HEALTHY, Health.WAITING, Health.UNKNOWN)
    )


def process_summary(agents: List[Agent], summary: Summary) -> Dict[str, Any]:
    """``get_process_summary``: the coordinator's counts and totals, with
    wrangle's ``by_state`` and ``by_health``.

    ``total_agents`` counts every agent the daemon knows (ended ones
    too, until removed); ``running`` those whose process runs (not a
    zombie); ``zombie``, ``completed``, ``failed`` and every other
    ``health`` word (``healthy``, ``stopped``...) count agents by it;
    ``total_memory_mb`` and ``total_cpu_percent`` are those of every
    running tree together; ``agents`` has one short entry per agent.
    """
    counts: Dict[str, int] = {"running": 0, "zombie": 0, "completed": 0, "failed": 0}
    entries = []
    for agent in agents:
        entry = status(agent)
        health = entry["health"]
        counts[health] = counts.get(health, 0) + 1
        if entry["process_alive"] and not entry["is_zombie"]:
            counts["running"] += 1
        entries.append(
            {
                key: entry[key]
                for key in (
                    "agent_id",
                    "name",
                    "health",
                    "pid",
                    "memory_mb",
                    "cpu_percent",
                    "runtime_seconds",
                )
            }
        )
    result: Dict[str, Any] = {"total_agents": len(agents)}
    result.update(counts)
    result.update(
        {
            "total_memory_mb": summary.rss_bytes / MIB,
            "total_cpu_percent": summary.cpu_percent,
            "processes": summary.processes,
            "by_state": {state.value: count for state, count in summary.by_state.items()},
            "by_health": {health.value: count for health, count in summary.by_health.items()},
            "agents": entries,
        }
    )
    return result


def zombies(agents: List[Agent]) -> List[str]:
    """``reap_zombies``: the ids of agents whose main process the daemon
    saw as a zombie. Their shims reap them as soon as the kernel reports
    the exit, so the list is empty unless a shim is stuck, and nothing is
    left for the caller to reap."""
    return [agent.id for agent in agents if agent.health is Health.ZOMBIE and agent.state in _ALIVE]
