"""th_proc: processes started by a Python test die with it, as tests/harness/th.c does for C.

spawn() runs a command in its own process group, with SIGKILL as its parent-death signal (the
kernel kills it when the test process dies, even by SIGKILL, e.g. a ctest timeout), and the
test process kills every group it started when it exits or gets SIGTERM/SIGINT/SIGHUP. Start
processes from the main thread: the death signal follows the thread that forked.

    import th_proc                        # sys.path: tests/harness
    p = th_proc.spawn([binary, ...], stderr=log)
"""
import atexit
import ctypes
import os
import signal
import subprocess

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_live = set()  # Popen objects not yet known to have exited
_installed = False


def _bind_to_parent(parent):
    def bind():
        # In the child, between fork and exec (process_group=0 already made its own group).
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(127)
    return bind


def kill_all():
    """SIGKILLs the process group of every process spawn() started that is still tracked."""
    for p in list(_live):
        for target in (-p.pid, p.pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(timeout=10)
        except Exception:
            pass
        _live.discard(p)


def _on_signal(sig, frame):
    kill_all()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def _install():
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, _on_signal)


def spawn(argv, **kwargs):
    """subprocess.Popen(argv, **kwargs), bound to this process's life (see the module doc)."""
    _install()
    p = subprocess.Popen(argv, process_group=0, preexec_fn=_bind_to_parent(os.getpid()),
                         **kwargs)
    _live.add(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10):
    """Sends |sig| and waits up to |timeout| s; then SIGKILLs the group. Returns the exit code."""
    try:
        p.send_signal(sig)
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    try:
        os.killpg(p.pid, signal.SIGKILL)  # what the process itself started
    except (ProcessLookupError, PermissionError):
        pass
    if rc is None:
        rc = p.wait()
    _live.discard(p)
    return rc
