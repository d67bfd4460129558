"""Start ``slimctr train`` again under ``torchrun``, one process per rank.

``slimctr train --nproc N`` is the same as ``torchrun --standalone
--nproc_per_node N -m slimctr.cli train ...`` without ``--nproc``: the
rendezvous stays on this machine, and every rank runs the same command.
"""

import os
import subprocess
import sys

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


def relaunch(argv: list[str], nproc: int) -> int:
    """Run the command in ``argv`` as ``nproc`` torchrun processes; their exit code."""
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
    return subprocess.run(command, check=False).returncode
