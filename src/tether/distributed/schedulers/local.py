"""This machine alone: always detected, asked last."""

from __future__ import annotations

import os
from typing import ClassVar

from .base import Env, Scheduler


def this_host() -> str:
    return os.uname().nodename


class Local(Scheduler):
    priority: ClassVar[int] = 0
    default_launcher: ClassVar[str] = "mpiexec"
    description: ClassVar[str] = "this machine, no job scheduler"

    def detect(self, env: Env) -> bool:
        return True

    def hosts(self, env: Env) -> list[str]:
        return [this_host()]
