"""Small helper process that spawns and reaps the benchmarked clients for ``bench/run.py``.

Why: on Linux, a child's ``ru_maxrss`` starts at the resident size of the process that
spawned it (``exec`` records the old address space's high-water mark), so children of the
harness, which holds hundreds of MB of expected output, would all report at least that.
This process stays small (it runs with ``-I -S`` and imports only builtin modules plus
``socket``), so ``os.wait4`` reports each client's own peak RSS, above a floor of ~10 MB.

Protocol on the AF_UNIX SOCK_SEQPACKET socket whose fd is ``argv[1]``: each request is a
``marshal``-ed dict ``{"cmds": [[argv...], ...], "timeout": seconds}`` carrying, as
SCM_RIGHTS, the write end of the stdout pipe and one stderr file per command; the commands
run as a pipeline (stdin /dev/null, found on PATH) and the answer is ``{"t0_ns", "t1_ns",
"codes", "cpu_s", "rss_kib", "timed_out"}``, times from ``time.monotonic_ns()``
(system-wide on Linux, so the harness can compare them with its own).
"""

import marshal
import os
import signal
import socket
import sys
import time


def run(cmds: list[list[str]], fds: list[int], timeout: float) -> dict[str, object]:
    out_w, errs = fds[0], fds[1:]
    for fd in fds:
        os.set_inheritable(fd, False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    pids: list[int] = []
    live: set[int] = set()
    timed_out = [False]

    def on_alarm(signum: int, frame: object) -> None:
        timed_out[0] = True
        for pid in list(live):
            try:  # noqa: SIM105 (contextlib would make this process bigger)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGALRM, on_alarm)
    stdin = devnull
    codes: list[int] = []
    t0 = time.monotonic_ns()
    try:
        for i, cmd in enumerate(cmds):
            last = i == len(cmds) - 1
            if last:
                stdout, next_stdin = out_w, -1
            else:
                next_stdin, stdout = os.pipe()
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin, 0),
                (os.POSIX_SPAWN_DUP2, stdout, 1),
                (os.POSIX_SPAWN_DUP2, errs[i], 2),
            ]
            try:
                pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=actions)
            except OSError as e:
                os.write(errs[i], f"spawn {cmd[0]!r} failed: {e}\n".encode())
                codes.append(127)
                if not last:
                    os.close(next_stdin)
                    os.close(stdout)
                break
            finally:
                os.close(stdin)
            pids.append(pid)
            live.add(pid)
            if not last:
                os.close(stdout)
                stdin = next_stdin
    finally:
        for fd in fds:
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass
    signal.setitimer(signal.ITIMER_REAL, timeout)
    cpu = 0.0
    rss = 0
    done: list[int] = []
    try:
        for pid in pids:
            _, status, ru = os.wait4(pid, 0)
            live.discard(pid)
            done.append(os.waitstatus_to_exitcode(status))
            cpu += ru.ru_utime + ru.ru_stime
            rss = max(rss, ru.ru_maxrss)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    t1 = time.monotonic_ns()
    return {
        "t0_ns": t0,
        "t1_ns": t1,
        "codes": done + codes,
        "cpu_s": cpu,
        "rss_kib": rss,
        "timed_out": timed_out[0],
    }


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 64)
        except ConnectionResetError:
            return 0
        if not msg:
            return 0
        req = marshal.loads(msg)
        sock.send(marshal.dumps(run(req["cmds"], list(fds), float(req["timeout"]))))


if __name__ == "__main__":
    sys.exit(main())
