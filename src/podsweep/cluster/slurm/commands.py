"""Running Slurm's commands: blocking ones for start-up, others on the event loop without
blocking it, each with a timeout and a one-line :class:`~podsweep.errors.SlurmError`."""

from __future__ import annotations

import asyncio
import os
import subprocess

from ...errors import SlurmError
from .parse import Node, max_array_size, parse_nodes, partitions

COMMAND_TIMEOUT = 30.0       # a Slurm command that takes longer has failed
PRIVATE_ENV = {"PODSWEEP_TOKEN", "PODSWEEP_URL"}


class SlurmCommands:
    """The engine's Slurm commands; the engine's other parts run every one through these
    (tests replace ``_arun`` to stop the engine between two of its steps)."""

    _accounting: asyncio.Semaphore      # sacctmgr at once: slurmdbd is one
    _nodes: list[Node]

    @staticmethod
    def _env() -> dict[str, str]:
        return {k: v for k, v in os.environ.items()
                if k not in PRIVATE_ENV and not k.startswith("SLURM_")}

    def _run(self, *argv: str, ok: tuple[str, ...] = ()) -> str:
        """Run a Slurm command (short: the controller answers in milliseconds). A failure
        whose output contains one of ``ok`` counts as success (sacctmgr's "Nothing new")."""
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self._env(),
                                  timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{argv[0]}: {exc}") from exc
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 and not any(s in out for s in ok):
            detail = " ".join(out.split()) or f"exit code {proc.returncode}"
            raise SlurmError(f"{' '.join(argv[:3])}: {detail}")
        return proc.stdout

    async def _arun(self, *argv: str, check: bool = True, ok: tuple[str, ...] = ()) -> str:
        """A Slurm command on the event loop without blocking it."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self._env())
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"{argv[0]}: no answer in {COMMAND_TIMEOUT:.0f} s") from None
        text = out.decode() + err.decode()
        if check and proc.returncode != 0 and not any(s in text for s in ok):
            raise SlurmError(f"{' '.join(argv[:3])}: {' '.join(err.decode().split())}")
        return out.decode()

    def _partitions(self) -> dict[str, bool]:
        return partitions(self._run("sinfo", "-h", "-o", "%P"))

    def _sacctmgr(self, *args: str) -> str:
        """A short query of Slurm's accounting (about 0.2 s here)."""
        return self._run("sacctmgr", "-i", "-n", "-P", *args)

    async def _asacctmgr(self, *args: str) -> str:
        """A change to Slurm's accounting: 0.3-0.7 s each here, so never on the loop's time."""
        async with self._accounting:
            return await self._arun("sacctmgr", "-i", "-n", "-P", *args,
                                    ok=("Nothing new added", "Nothing modified",
                                        "Nothing deleted"))

    def _max_array_size(self) -> int:
        return max_array_size(self._run("scontrol", "show", "config"))

    def _read_nodes(self) -> list[Node]:
        self._nodes = parse_nodes(self._run("scontrol", "-o", "show", "node"))
        return self._nodes
