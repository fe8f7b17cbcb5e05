"""The daemon's JSON as Python types: one dataclass per object of the API
(``/openapi.json`` names each one's schema in its docstring's first line),
one ``str`` enum per set of names.

The daemon is the authority: these mirror ``crates/wire`` and a test checks
them against the daemon's own ``/openapi.json``. A field the daemon sends
that is not here is ignored, so an older client reads a newer daemon.
"""

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Dict, List, Optional


class State(str, enum.Enum):
    """Where an agent is in its lifecycle (schema ``State``).

    ``queued -> starting -> running -> stopping -> completed | failed |
    stopped``, with ``backoff`` between runs when a restart policy starts
    it again.
    """

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    BACKOFF = "backoff"

    @property
    def is_ended(self) -> bool:
        """True once the agent has ended for good: completed, failed or stopped."""
        return self in (State.COMPLETED, State.FAILED, State.STOPPED)

    def __str__(self) -> str:
        return self.value


class Health(str, enum.Enum):
    """How an agent is doing, separate from its state (schema ``Health``)."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    WAITING = "waiting"
    HUNG = "hung"
    ZOMBIE = "zombie"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class Cause(str, enum.Enum):
    """Why a run ended, or why it is being stopped (schema ``Cause``)."""

    EXIT = "exit"
    SPAWN_ERROR = "spawn_error"
    USER = "user"
    KILL = "kill"
    TIMEOUT = "timeout"
    HANG = "hang"
    MEMORY = "memory"
    BUDGET = "budget"
    LINGERED = "lingered"
    SHUTDOWN = "shutdown"
    RESTART = "restart"
    REMOVE = "remove"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


class RestartPolicy(str, enum.Enum):
    """When an agent that ended is started again (schema ``RestartPolicy``)."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value


class OnHang(str, enum.Enum):
    """What is done with a hung agent (schema ``OnHang``)."""

    NONE = "none"
    STOP = "stop"
    RESTART = "restart"

    def __str__(self) -> str:
        return self.value


class LogStream(str, enum.Enum):
    """Which output of the agent a log line came from (schema ``LogStream``)."""

    STDOUT = "stdout"
    STDERR = "stderr"

    def __str__(self) -> str:
        return self.value


class AdapterKind(str, enum.Enum):
    """What reads an agent's output into its session (schema ``AdapterKind``)."""

    CLAUDE = "claude"
    CODEX = "codex"
    GEMINI = "gemini"
    OPENCODE = "opencode"
    JSONL = "jsonl"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


class CostSource(str, enum.Enum):
    """Where a session's cost comes from (schema ``CostSource``)."""

    AGENT = "agent"
    PRICES = "prices"

    def __str__(self) -> str:
        return self.value


class Enforcement(str, enum.Enum):
    """What enforces a resource limit (schema ``Enforcement``)."""

    CGROUP_V2 = "cgroup_v2"
    CGROUP_V1 = "cgroup_v1"
    RLIMIT = "rlimit"
    WATCHDOG = "watchdog"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ProcessMetrics:
    """ProcessMetrics: the agent's main process at the sampler's last tick."""

    cpu_percent: float
    """CPU over the last tick; 100 is one core."""
    rss_bytes: int
    """Resident memory in bytes."""
    threads: int
    """Threads."""
    fds: int
    """Open file descriptors (0 where they cannot be read)."""


@dataclass(frozen=True)
class TreeMetrics:
    """TreeMetrics: the agent's whole process tree at the sampler's last tick."""

    cpu_percent: float
    """CPU over the last tick, summed over the tree; 100 is one core."""
    rss_bytes: int
    """Resident memory in bytes, summed over the tree."""
    threads: int
    """Threads in the tree."""
    fds: int
    """Open file descriptors in the tree."""
    processes: int
    """Processes in the tree, the main process included."""
    zombies: int
    """Zombies in the tree (ended, not yet reaped)."""
    cpu_seconds: float = 0.0
    """CPU time the tree has used since the run started, in seconds."""


@dataclass(frozen=True)
class LimitEnforcement:
    """LimitEnforcement: how each limit that is set is enforced."""

    memory: Optional[Enforcement] = None
    cpu: Optional[Enforcement] = None
    pids: Optional[Enforcement] = None
    nofile: Optional[Enforcement] = None


@dataclass(frozen=True)
class Limits:
    """LimitsView: the limits an agent was created with and what enforces each."""

    enforced_by: LimitEnforcement
    """How each limit is enforced by the current run."""
    memory_max_bytes: Optional[int] = None
    """Memory of the whole tree, in bytes."""
    cpu_max_cores: Optional[float] = None
    """CPU of the whole tree, in cores."""
    pids_max: Optional[int] = None
    """Processes (threads included) the tree may hold."""
    nofile: Optional[int] = None
    """Open files per process."""


@dataclass(frozen=True)
class TokenCounts:
    """TokenCounts: tokens of the four kinds a model bills, disjoint."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    @property
    def total(self) -> int:
        """All four together."""
        return self.input + self.output + self.cache_read + self.cache_write


@dataclass(frozen=True)
class SessionResult:
    """ResultView: an agent's final result."""

    success: bool
    """Whether it succeeded, in its own words."""
    message: Optional[str] = None
    """Its final message, or what went wrong."""


@dataclass(frozen=True)
class Retry:
    """RetryView: an API call of the agent being retried."""

    attempt: int
    since: datetime
    max: Optional[int] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Tool:
    """ToolView: the tool an agent is running now."""

    name: str
    since: datetime
    detail: Optional[str] = None


@dataclass(frozen=True)
class Telemetry:
    """TelemetryView: what an agent's own OpenTelemetry says."""

    endpoint: str
    added: List[str]
    calls: int
    tokens: TokenCounts
    cost_usd: Optional[float] = None
    last_at: Optional[datetime] = None
    forwarded_to: Optional[str] = None
    difference: Optional[str] = None
    tools_run: int = 0
    tools_failed: int = 0
    tools_ms: int = 0
    denials: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Session:
    """SessionView: what an agent's own output says about its work."""

    adapter: AdapterKind
    """The adapter that reads the output."""
    adapter_reason: str
    """Why that one."""
    models: List[str]
    """The models it used, main one first."""
    turns: int
    tool_calls: int
    tokens: TokenCounts
    """Tokens so far, all models together."""
    tokens_by_model: Dict[str, TokenCounts]
    lines: int
    """Lines read."""
    other_lines: int
    """Of those, lines that were not the adapter's JSON."""
    session_id: Optional[str] = None
    cost_usd: Optional[float] = None
    """What it cost so far in USD, where that can be had (never a guess)."""
    cost_source: Optional[CostSource] = None
    cost_note: Optional[str] = None
    tool: Optional[Tool] = None
    last_text: Optional[str] = None
    progress: Optional[float] = None
    waiting: Optional[str] = None
    """What the agent waits for (a permission, a question), if it does."""
    rate_limited_until: Optional[datetime] = None
    retrying: Optional[Retry] = None
    result: Optional[SessionResult] = None
    """Its final result, once it gave one."""
    telemetry: Optional[Telemetry] = None
    telemetry_note: Optional[str] = None
    figures_from_telemetry: bool = False


@dataclass(frozen=True)
class Agent:
    """AgentView: one agent and its current (or last) run."""

    id: str
    """Unique id: 32 lowercase hex digits; any unique prefix names it too."""
    name: str
    """Unique name, ``[a-z0-9][a-z0-9._-]{0,62}``."""
    state: State
    health: Health
    health_reason: Optional[str]
    """Why the health is what it is; None when healthy for no particular reason."""
    run: int
    """Number of the current (or last) run, from 1."""
    restarts: int
    restart: RestartPolicy
    max_restarts: int
    timeout_seconds: Optional[float]
    on_hang: OnHang
    group: Optional[str]
    priority: int
    labels: Dict[str, str]
    pid: Optional[int]
    """Pid of the agent's main process while it runs (or of the last run)."""
    shim_pid: Optional[int]
    """Pid of the shim that is the agent's parent."""
    command: List[str]
    """The argv the agent runs."""
    cwd: str
    env: List[str]
    """Names of the environment variables set explicitly."""
    stop_signal: str
    stop_timeout_seconds: float
    created_at: datetime
    started_at: Optional[datetime]
    """When the current run's exec was confirmed."""
    ended_at: Optional[datetime]
    exit_code: Optional[int]
    signal: Optional[str]
    """Name of the signal that ended the main process, e.g. ``SIGKILL``."""
    reason: Optional[str]
    """Why the agent is in its state, in words a person can read."""
    cause: Optional[Cause]
    restart_at: Optional[datetime]
    runtime_seconds: Optional[float]
    containment: Optional[str]
    process: Optional[ProcessMetrics]
    tree: Optional[TreeMetrics]
    progress: Optional[float]
    """Progress 0-100 the agent reported in its status file."""
    message: Optional[str]
    details: Optional[Dict[str, Any]]
    last_output_at: Optional[datetime]
    last_heartbeat_at: Optional[datetime]
    idle_timeout_seconds: Optional[float]
    health_check: Optional[str]
    limits: Optional[Limits]
    stdout_log: str
    stderr_log: str
    session: Optional[Session] = None
    total_cost_usd: Optional[float] = None
    """What all its runs have cost together, in USD."""
    total_tokens: Optional[TokenCounts] = None
    log_max_size_bytes: Optional[int] = None
    """Size at which a log file is rotated (``log_max_size``)."""
    log_max_files: Optional[int] = None
    """Log files kept per stream, the current one included."""

    @property
    def short_id(self) -> str:
        """The first 12 characters of the id, as tables show it."""
        return self.id[:12]

    @property
    def never_started(self) -> bool:
        """True for a run whose exec failed: the agent is failed and never ran."""
        return self.state is State.FAILED and self.started_at is None


@dataclass(frozen=True)
class Run:
    """RunView: one run of an agent (a restart is a new run)."""

    run: int
    state: State
    stdout_log: str
    stderr_log: str
    pid: Optional[int] = None
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    runtime_seconds: Optional[float] = None
    exit_code: Optional[int] = None
    signal: Optional[str] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class StopResult:
    """StopResult: how one agent ended after a stop."""

    agent: Agent
    """The agent after it ended."""
    already_ended: bool
    """True when the agent had already ended before the stop."""
    outcome: str
    """In words: ``stopped by SIGTERM in 0.02s``, ``killed by SIGKILL after 15s``."""


@dataclass(frozen=True)
class LogLine:
    """LogLine: one line of an agent's output."""

    stream: LogStream
    time: datetime
    """When the shim read it from the agent's pipe."""
    text: str
    """The line, without its newline (invalid UTF-8 is replaced)."""
    complete: bool = True
    """False for a last line the agent has not ended with a newline (yet)."""


@dataclass(frozen=True)
class SummaryEntry:
    """SummaryEntry: one agent in a top list of the summary."""

    id: str
    name: str
    cpu_percent: float
    rss_bytes: int


@dataclass(frozen=True)
class CostEntry:
    """CostEntry: one agent in the summary's list of the costliest."""

    id: str
    name: str
    cost_usd: float


@dataclass(frozen=True)
class Summary:
    """Summary: the fleet at a glance."""

    agents: int
    """Agents known (ended ones included)."""
    by_state: Dict[State, int]
    by_health: Dict[Health, int]
    """Agents per health, of those not ended."""
    cpu_percent: float
    """CPU of every running tree together; 100 is one core."""
    rss_bytes: int
    processes: int
    top_cpu: List[SummaryEntry]
    top_memory: List[SummaryEntry]
    sampled_at: Optional[datetime] = None
    spent_today_usd: float = 0.0
    spent_usd: float = 0.0
    top_cost: List[CostEntry] = field(default_factory=list)


@dataclass(frozen=True)
class DaemonInfo:
    """DaemonInfo: who answers."""

    pid: int
    version: str
    home: str
    started_at: datetime
    containment: str
    agents: int
    active: int
    max_running: Optional[int] = None


@dataclass(frozen=True)
class EventAgent:
    """EventAgent: the agent an event is about, named as it was then."""

    id: str
    name: str
    group: Optional[str] = None


@dataclass(frozen=True)
class Event:
    """Event: one recorded change. Each type is a subclass (``AgentExited``...).

    ``id`` only grows and is never reused: ``client.events(since=event.id)``
    goes on after it.
    """

    TYPE: ClassVar[str] = ""

    id: int
    time: datetime
    type: str
    """Its type, e.g. ``agent.exited``."""
    agent: Optional[EventAgent]
    """The agent it is about; None for daemon and group events."""
    run: Optional[int]
    """The agent's run it is about, where it is about one."""


@dataclass(frozen=True)
class AgentCreated(Event):
    """agent.created: an agent was created; its first state follows."""

    TYPE: ClassVar[str] = "agent.created"
    command: List[str]
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentQueued(Event):
    """agent.queued: the agent waits for a slot of a concurrency limit."""

    TYPE: ClassVar[str] = "agent.queued"
    reason: Optional[str] = None


@dataclass(frozen=True)
class AgentStarting(Event):
    """agent.starting: a run is being started, the exec not yet confirmed."""

    TYPE: ClassVar[str] = "agent.starting"


@dataclass(frozen=True)
class AgentRunning(Event):
    """agent.running: the run's exec is confirmed."""

    TYPE: ClassVar[str] = "agent.running"
    pid: Optional[int] = None


@dataclass(frozen=True)
class AgentStopping(Event):
    """agent.stopping: a stop of the run is under way."""

    TYPE: ClassVar[str] = "agent.stopping"
    cause: Optional[Cause] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class AgentExited(Event):
    """agent.exited: the agent ended for good (completed, failed or stopped)."""

    TYPE: ClassVar[str] = "agent.exited"
    state: State
    exit_code: Optional[int] = None
    signal: Optional[str] = None
    cause: Optional[Cause] = None
    reason: Optional[str] = None
    """In words: ``exited with code 3``, ``stopped by SIGTERM in 0.02s``."""
    runtime_seconds: Optional[float] = None


@dataclass(frozen=True)
class AgentBackoff(Event):
    """agent.backoff: the run ended and the restart policy starts it again."""

    TYPE: ClassVar[str] = "agent.backoff"
    exit_code: Optional[int] = None
    signal: Optional[str] = None
    cause: Optional[Cause] = None
    reason: Optional[str] = None
    restart_at: Optional[datetime] = None


@dataclass(frozen=True)
class AgentRemoved(Event):
    """agent.removed: the agent was forgotten; its logs are deleted."""

    TYPE: ClassVar[str] = "agent.removed"
    state: State


@dataclass(frozen=True)
class AgentHealth(Event):
    """agent.health: the agent's health changed (``from_`` is JSON's ``from``)."""

    TYPE: ClassVar[str] = "agent.health"
    from_: Health = field(metadata={"json": "from"})
    to: Health
    reason: Optional[str] = None


@dataclass(frozen=True)
class AgentProgress(Event):
    """agent.progress: the agent reported progress in its status file."""

    TYPE: ClassVar[str] = "agent.progress"
    progress: Optional[float] = None
    message: Optional[str] = None


@dataclass(frozen=True)
class AgentSession(Event):
    """agent.session: the agent's adapter learnt who the session is."""

    TYPE: ClassVar[str] = "agent.session"
    adapter: AdapterKind
    models: List[str]
    session_id: Optional[str] = None


@dataclass(frozen=True)
class AgentUsage(Event):
    """agent.usage: what the agent used so far."""

    TYPE: ClassVar[str] = "agent.usage"
    tokens: TokenCounts
    cost_usd: Optional[float] = None


@dataclass(frozen=True)
class AgentWaiting(Event):
    """agent.waiting: the agent waits for a person, or (None) no longer does."""

    TYPE: ClassVar[str] = "agent.waiting"
    waiting: Optional[str] = None


@dataclass(frozen=True)
class AgentResult(Event):
    """agent.result: the agent gave its final result."""

    TYPE: ClassVar[str] = "agent.result"
    success: bool
    tokens: TokenCounts
    message: Optional[str] = None
    cost_usd: Optional[float] = None


@dataclass(frozen=True)
class AgentBudgetExceeded(Event):
    """agent.budget_exceeded: the agent (or its group) went over its budget."""

    TYPE: ClassVar[str] = "agent.budget_exceeded"
    budget: str
    tokens: TokenCounts
    cost_usd: Optional[float] = None


@dataclass(frozen=True)
class GroupChanged(Event):
    """group.changed: a group's concurrency limit or budget was set or removed."""

    TYPE: ClassVar[str] = "group.changed"
    group: str
    max_running: Optional[int] = None
    budget_usd: Optional[float] = None


@dataclass(frozen=True)
class DaemonStarted(Event):
    """daemon.started: a daemon started and took over the agents of its home."""

    TYPE: ClassVar[str] = "daemon.started"
    pid: int
    version: str
    reattached: int
    agents: int


@dataclass(frozen=True)
class DaemonStopping(Event):
    """daemon.stopping: the daemon is shutting down."""

    TYPE: ClassVar[str] = "daemon.stopping"
    stop_agents: bool


@dataclass(frozen=True)
class UnknownEvent(Event):
    """An event of a type this client does not know (from a newer daemon)."""

    data: Dict[str, Any] = field(default_factory=dict)
    """Every field of it as the daemon sent it."""


EVENT_TYPES: Dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        AgentCreated,
        AgentQueued,
        AgentStarting,
        AgentRunning,
        AgentStopping,
        AgentExited,
        AgentBackoff,
        AgentRemoved,
        AgentHealth,
        AgentProgress,
        AgentSession,
        AgentUsage,
        AgentWaiting,
        AgentResult,
        AgentBudgetExceeded,
        GroupChanged,
        DaemonStarted,
        DaemonStopping,
    )
}
"""Every event type this client knows, by its name."""


@dataclass(frozen=True)
class Gap:
    """A notice of the event stream: events after ``since`` up to ``oldest``
    (excluded) are no longer kept; the stream goes on from ``oldest``."""

    oldest: int
    since: Optional[int] = None


@dataclass(frozen=True)
class UpResult:
    """What ``client.up(path)`` did with one agent the file declares."""

    name: str
    action: str
    """``created``, ``recreated`` or ``unchanged``."""
    agent: Agent
    """The agent now."""
