"""Start ``slimctr train`` again under ``torchrun``, one process per rank.

``slimctr train --nproc N`` is the same as ``torchrun --standalone
--nproc_per_node N -m slimctr.cli train ...`` without ``--nproc``: the
rendezvous stays on this machine, and every rank runs the same command.
torchrun replaces the ``slimctr`` process (same pid), and each rank asks the
kernel to kill it when its parent dies, so killing that pid, even with
SIGKILL, stops the whole run (a rank blocked in a collective could not act on
a gentler signal; checkpoints are atomic, so nothing half-written is left).
"""

import ctypes
import os
import signal
import sys

# Linux prctl option: a signal for this process when its parent exits
_PR_SET_PDEATHSIG = 1

# set by torchrun in every process it starts
RANK_VARIABLE = "LOCAL_RANK"


def under_torchrun() -> bool:
    return RANK_VARIABLE in os.environ


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` or ``option=VALUE``."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept


def relaunch(argv: list[str], nproc: int, threads: int) -> None:
    """Become torchrun running the command in ``argv`` as ``nproc`` processes.

    ``threads`` goes to each process as ``OMP_NUM_THREADS`` (``--threads``
    sets the same per process). Does not return.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "slimctr.cli",
        *without_option(argv, "--nproc"),
    ]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def stop_with_parent() -> None:
    """Let SIGTERM end this rank at once, and ask for SIGKILL when the parent
    (torchrun) dies (Linux only).

    A rank waits in collectives inside C++, where Python's own SIGTERM handler
    would not run until the other ranks answer; the default action does not
    wait. Checkpoints are atomic, so ending at any moment loses no state.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
