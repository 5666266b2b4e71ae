#!/usr/bin/python3
"""th_proc: a Python driver that spawned processes and is then ended by SIGKILL or SIGTERM
leaves none behind. This process is a child subreaper, so anything the driver leaves is
re-parented here, and os.waitpid(-1) reaching ECHILD proves that nothing is left."""
import ctypes
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36
DRIVER = """
import os, sys, time
sys.path.insert(0, %r)
import th_proc
a = th_proc.spawn(["/bin/sh", "-c", "while :; do sleep 0.05; done"])
b = th_proc.spawn(["sleep", "600"])
os.write(1, ("%%d %%d\\n" %% (a.pid, b.pid)).encode())
while True:
    time.sleep(1)
""" % HERE


def driver_ended_by(sig):
    d = subprocess.Popen(["/usr/bin/python3", "-c", DRIVER], stdout=subprocess.PIPE)
    pids = [int(x) for x in d.stdout.readline().split()]
    d.send_signal(sig)
    d.wait()
    end, reaped, left = time.monotonic() + 20, set(), True
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            left = False
            break
        if pid == 0:
            time.sleep(0.01)
        reaped.add(pid)
    if left:
        for p in pids:
            for t in (-p, p):
                try:
                    os.kill(t, signal.SIGKILL)
                except OSError:
                    pass
    gone = []
    for p in pids:  # reaped here, or by the driver's own clean-up before it died
        try:
            os.kill(p, 0)
            gone.append(p in reaped)
        except ProcessLookupError:
            gone.append(True)
    ok = len(pids) == 2 and not left and all(gone)
    print(("ok   " if ok else "FAIL ") + "driver ended by %s leaves nothing (pids %s)"
          % (signal.Signals(sig).name, pids), flush=True)
    return ok


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("cannot become a child subreaper")
    results = [driver_ended_by(signal.SIGKILL), driver_ended_by(signal.SIGTERM)]
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
