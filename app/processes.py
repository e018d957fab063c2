"""The process tree of `tessera up`: children in their own sessions, stopped in dependency order,
restarted with back-off, and none of them (RQ work-horses included) outliving Tessera.

Linux facts relied on (prctl(2), proc(5)): PR_SET_PDEATHSIG makes the kernel signal a child when the
thread that forked it dies, even by SIGKILL; it is cleared in a fork's child, so every generation sets
its own. PR_SET_CHILD_SUBREAPER makes orphaned descendants (an RQ work-horse whose worker died)
re-parent to the supervisor instead of to init, so it can still find and stop them.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# Stop order: what depends on another part stops before it (workers use the web's database and Redis).
STOP_ORDER = ("worker", "web", "redis")


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """In a freshly forked child (also as a Popen preexec_fn): have the kernel send `signum` when the
    parent dies, even by SIGKILL. If the parent died before this ran, the child is already an orphan,
    so it exits at once. SIGTERM lets each child stop its own way (Redis saves, RQ warm-stops)."""
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, int(signum))
    if os.getppid() != parent:
        os._exit(1)


def become_subreaper() -> bool:
    """Orphaned descendants re-parent to this process (Linux ≥ 3.4); False where unsupported."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may contain ")"; the fields after the last one are fixed.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` in the process tree, read from /proc (empty off Linux)."""
    if not Path("/proc").is_dir():
        return set()
    children, found, todo = _parents(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Backoff:
    """Restart delays 1, 2, 4 … `maximum` seconds; a child that then ran `reset_after` seconds starts
    again from `initial`."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0
    failures: int = 0

    def delay(self, uptime: float) -> float:
        if uptime >= self.reset_after:
            self.failures = 0
        delay = min(self.maximum, self.initial * 2 ** self.failures)
        self.failures += 1
        return delay


@dataclass
class Child:
    name: str
    args: list[str]
    role: str  # "worker", "web" or "redis" (see STOP_ORDER)
    essential: bool = False
    restart: bool = True
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Runs the children of `tessera up` (or of `tessera worker -n N`) until asked to stop.

    Each child runs in its own session, so a terminal's Ctrl+C reaches only the supervisor, which then
    stops the children in STOP_ORDER: SIGTERM to the child's process group, up to `grace` seconds, then
    SIGKILL to the group and to every process still below the supervisor (an RQ work-horse runs in a
    process group of its own). A child that dies is restarted with back-off; an essential one (the web
    server) stops everything. A private Redis that dies is restarted, then the workers too (their
    connections and worker registrations died with it).
    """

    def __init__(self, *, grace: float = 10.0, say: Callable[[str], None] | None = None,
                 redis=None) -> None:
        self.children: dict[str, Child] = {}
        self.grace = grace
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.redis = None
        self.redis_child: Child | None = None
        if redis is not None:
            self.attach_redis(redis)
        self.exit_code = 0
        self._stopping = False
        self._reaper = become_subreaper()
        self._reaped_at = 0.0

    @property
    def stopping(self) -> bool:
        return self._stopping

    def attach_redis(self, redis) -> None:
        """Watch `redis`, an app.redis_server.PrivateRedis already started: restart it when it dies,
        stop it last."""
        self.redis = redis
        self.redis_child = Child("redis", [], "redis", process=redis.process, started_at=time.monotonic())

    # -- starting -----------------------------------------------------------------------------

    def start(self, name: str, args: list[str], *, role: str = "worker", essential: bool = False,
              restart: bool = True) -> Child:
        child = self.children.get(name) or Child(name, args, role, essential, restart)
        self.children[name] = child
        child.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent)
        child.started_at, child.restart_at = time.monotonic(), None
        return child

    # -- running ------------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_stop)

    def run(self, *, until_all_exit: bool = False, tick: float = 0.2) -> None:
        self.install_signal_handlers()
        while not self._stopping:
            now = time.monotonic()
            self._watch_redis(now)
            for child in list(self.children.values()):
                self._watch(child, now, until_all_exit)
            if until_all_exit and not self.children:
                return
            if now - self._reaped_at > 2:
                self._reaped_at = now
                self._reap_orphans()
            time.sleep(tick)

    def _watch(self, child: Child, now: float, until_all_exit: bool) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at and not self._redis_down():
                self.start(child.name, child.args)
                self.say(f"{child.name} restarted.")
            return
        code = child.process.poll()
        if code is None:
            return
        if child.essential:
            self.say(f"{child.name} {_describe_exit(code)}; stopping Tessera.")
            self.exit_code = code or 1
            self._stopping = True
            del self.children[child.name]
        elif until_all_exit or not child.restart:
            if code:
                self.exit_code = code
            del self.children[child.name]
        else:
            delay = child.backoff.delay(now - child.started_at)
            self.say(f"{child.name} {_describe_exit(code)}; restarting it in {delay:g} s.")
            child.restart_at = now + delay

    def _redis_down(self) -> bool:
        return self.redis_child is not None and self.redis_child.restart_at is not None

    def _watch_redis(self, now: float) -> None:
        child = self.redis_child
        if child is None:
            return
        if child.restart_at is None:
            code = child.process.poll()
            if code is None:
                return
            delay = child.backoff.delay(now - child.started_at)
            self.say(f"Redis {_describe_exit(code)}; restarting it in {delay:g} s.")
            child.restart_at = now + delay
            self.redis.mark_restarting(True)  # so the web pages say "restarting", not "start Tessera"
            return
        if now < child.restart_at:
            return
        try:
            self.redis.start()
        except RuntimeError as exc:
            delay = child.backoff.delay(0)
            self.say(f"Redis did not start again ({exc}); trying again in {delay:g} s.")
            child.restart_at = time.monotonic() + delay
            return
        child.process, child.started_at, child.restart_at = self.redis.process, time.monotonic(), None
        self.redis.mark_restarting(False)
        self.say("Redis restarted; restarting the workers.")
        # The workers' connections and their registrations in Redis are gone: start them afresh.
        workers = [c for c in self.children.values() if c.role == "worker" and c.restart_at is None]
        self._stop_children(workers)
        for worker in workers:
            self.start(worker.name, worker.args)

    def _reap_orphans(self) -> None:
        """Collect orphaned descendants that died (re-parented here because this is a subreaper)."""
        if not self._reaper:
            return
        known = {c.process.pid for c in self.children.values() if c.process is not None}
        if self.redis_child is not None and self.redis_child.process is not None:
            known.add(self.redis_child.process.pid)
        for pid in _parents().get(os.getpid(), []):
            if pid not in known:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    # -- stopping -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child in STOP_ORDER, each role given `grace` seconds before SIGKILL."""
        self._stopping = True
        for role in STOP_ORDER[:2]:
            self._stop_children([c for c in self.children.values() if c.role == role])
        leftovers = [c for c in self.children.values() if c.role not in STOP_ORDER[:2]]
        self._stop_children(leftovers)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop(self.grace)
            self.redis.mark_restarting(False)
        self._kill_descendants()

    def _stop_children(self, children: list[Child]) -> None:
        running = [c for c in children if c.process is not None and c.process.poll() is None]
        for child in running:
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in running:
            below = descendants(child.process.pid)
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The whole group, and whatever ran below it in other groups (an RQ work-horse).
            _signal_group(child.process.pid, signal.SIGKILL)
            for pid in below | descendants(child.process.pid):
                _kill(pid)
            child.process.wait()
        for child in children:
            child.restart_at = None

    def _kill_descendants(self) -> None:
        """Last resort: nothing that ran below this supervisor may outlive it."""
        for pid in descendants(os.getpid()):
            _kill(pid)
        if self._reaper:
            self._reap_orphans()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
