"""Where the time goes: py-spy profiles of the intake and the worker under bench load.

Not part of ``make bench`` (py-spy needs ptrace and adds load). Run
``.venv/bin/python bench/profile.py`` after ``pip install py-spy``; it prints, for a gunicorn
worker under wrk and for the Celery worker's main process and one pool child while draining a
backlog, the functions that hold the most samples (inclusive) with waits on sockets and pipes
listed apart from work. This is what docs/performance.md quotes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load  # noqa: E402
from bench.procs import Backends, Hookfan  # noqa: E402

_WAITS = ("_recv (", "_read_from_socket", "readinto", "Condition.wait", "poll (", "_epoll",
          "select", "close_graceful")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def record(pids: dict[str, int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "-r", "200", "-d", str(seconds), "-f", "raw",
                              "-o", str(out / f"{name}.txt"), "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def summary(path: Path, top: int = 25) -> str:
    """Inclusive share of the busy samples (waits excluded) per function, and the wait share."""
    busy, waits, incl = 0, 0, Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(w in frames[-1] for w in _WAITS):
            waits += int(n)
            continue
        busy += int(n)
        for f in set(frames):
            incl[f] += int(n)
    lines = [f"{path.stem}: {busy} busy samples, {waits} waiting on a socket/pipe/event"]
    # Frames on (nearly) every stack are the process's entry points: skip them.
    deep = [(f, n) for f, n in incl.most_common() if n < 0.9 * busy][:top]
    lines += [f"  {100 * n / max(1, busy):5.1f}%  {f[:110]}" for f, n in deep]
    return "\n".join(lines)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="hookfan-profile-"))
    logdir = work / "logs"
    logdir.mkdir()
    backends = Backends(2, logdir)
    hook = Hookfan(work, logdir)
    try:
        hook.route(load.HOST, backends.urls)
        time.sleep(0.6)
        url = f"http://127.0.0.1:{hook.port}/"
        load.run_wrk(url, 1)
        spies = record({"intake-worker": children(hook.app.proc.pid)[0]}, 5, work)
        load.run_wrk(url, 6)
        for s in spies:
            s.wait()
        hook.clear()
        load.send_many(hook.port, 1500, load.json_body(1024))
        hook.start_worker()
        assert hook.worker is not None
        while backends.count() == 0:
            time.sleep(0.1)
        time.sleep(1)
        main_pid = hook.worker.proc.pid
        spies = record({"worker-main": main_pid, "worker-child": children(main_pid)[0]}, 6,
                       work)
        for s in spies:
            s.wait()
    finally:
        hook.stop()
        backends.stop()
    for name in ("intake-worker", "worker-main", "worker-child"):
        print(summary(work / f"{name}.txt"))


if __name__ == "__main__":
    main()
