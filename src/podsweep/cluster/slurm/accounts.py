"""Projects in Slurm: each an account ``<prefix><project>`` with a QOS of its own,
``ps-<prefix><project>``, that carries its quotas, and the shared borrow QOS
``ps_<prefix>borrow`` that every project's QOS preempts.

``sacctmgr`` changes take 0.3-0.7 s each, so they are made in the background (:meth:`_set_up`)
after the store has the project; a job's sbatch waits for its project's set-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ...errors import SlurmError
from ...model import JobSpec
from ...store import Store
from .commands import SlurmCommands
from .parse import Node, read_accounts, shards_per_gpu

log = logging.getLogger("podsweep.cluster.slurm")

ASSOCIATION_TIMEOUT = 30.0   # sacctmgr's change to slurmctld knowing it (about a second)


def grp_tres(gpus: int, cpus: int, shards_per_gpu: int = 0) -> str:
    """The project QOS's limit. A CPU quota of 0 is no CPU limit (-1), not ``cpu=0``,
    which would hold back every task of the project, GPU tasks within their GPU quota
    included: a GPU-less job of such a project is submitted to the borrow QOS instead
    (it runs on idle CPUs only), see :meth:`SlurmAccounts._home`. Where Slurm cuts GPUs in
    shards, the quota in GPUs is also one in shards (``shards_per_gpu`` a GPU), for pods
    of a share of one: Slurm counts the two apart, so a project may hold its quota in
    whole GPUs and again in shards (docs/slurm.md)."""
    shards = f",gres/shard={gpus * shards_per_gpu}" if shards_per_gpu else ""
    return f"GrpTRES=gres/gpu={gpus}{shards},cpu={cpus if cpus > 0 else -1}"


class SlurmAccounts(SlurmCommands):
    """Slurm's accounts and QOS for podsweep's projects."""

    store: Store
    loop: asyncio.AbstractEventLoop
    prefix: str
    user: str
    borrow_qos: str
    partition: str | None
    borrow_partition: str | None
    _accounts: dict[str, str]                   # Slurm's accounts -> their descriptions
    _foreign: dict[str, str]                    # project -> why Slurm's account is not ours
    _ready: dict[str, asyncio.Task[None]]       # project -> its Slurm set-up
    _borrow_ready: asyncio.Future[None]
    _nodes: list[Node]
    _wake: asyncio.Event

    def account(self, project: str) -> str:
        return f"{self.prefix}{project}"

    def qos(self, project: str) -> str:
        return f"ps-{self.prefix}{project}"

    async def _ensure_borrow_qos(self) -> None:
        if self.borrow_qos not in (await self._asacctmgr("show", "qos", "format=name")).split():
            await self._asacctmgr("add", "qos", self.borrow_qos)
        await self._asacctmgr("modify", "qos", "where", f"name={self.borrow_qos}", "set",
                              "Priority=0", "PreemptMode=requeue")

    def _foreign_account(self, name: str) -> str | None:
        """Why the project's Slurm account is not podsweep's to use, or None."""
        account = self.account(name)
        found = self._accounts.get(account)
        if found is not None and not found.startswith("podsweep project"):
            return (f"Slurm already has an account {account!r} that is not a podsweep "
                    f"project; choose another name")
        return None

    def _home(self, project: str, spec: JobSpec) -> tuple[str, str]:
        """The QOS and partition a job is submitted to: its project's, or the borrow QOS
        for a GPU-less job of a project with no CPU quota (it may only borrow CPUs)."""
        stored = self.store.project(project)
        if spec.gpus == 0 and stored is not None and stored.cpus == 0:
            return self.borrow_qos, self.borrow_partition or str(self.partition)
        return self.qos(project), str(self.partition)

    async def _ensure_project(self, name: str, gpus: int, cpus: int) -> None:
        """The project's QOS, account and this user's association, as they should be."""
        await self._borrow_ready
        qos, account = self.qos(name), self.account(name)
        self._accounts.update(read_accounts(await self._asacctmgr(
            "show", "account", "format=account,description")))
        foreign = self._foreign_account(name)
        if foreign is not None:     # made by someone else since: never taken over
            self._foreign[name] = foreign
            raise SlurmError(foreign)
        self._foreign.pop(name, None)
        if qos not in (await self._asacctmgr("show", "qos", "format=name")).split():
            await self._asacctmgr("add", "qos", qos)
        await self._asacctmgr("modify", "qos", "where", f"name={qos}", "set",
                              grp_tres(gpus, cpus, shards_per_gpu(self._nodes)),
                              "Priority=10",
                              f"Preempt={self.borrow_qos}")
        if not (await self._asacctmgr("show", "account", account, "format=account")).strip():
            await self._asacctmgr("add", "account", account,
                                  f"Description=podsweep project {name}",
                                  "Organization=podsweep")
        assoc = await self._asacctmgr("show", "assoc", "where", f"account={account}",
                                      f"user={self.user}", "format=user")
        if not assoc.strip():
            await self._asacctmgr("add", "user", self.user, f"Account={account}",
                                  f"QOS={qos},{self.borrow_qos}", f"DefaultQOS={qos}")
        else:
            await self._asacctmgr("modify", "user", "where", f"name={self.user}",
                                  f"account={account}", "set",
                                  f"QOS={qos},{self.borrow_qos}", f"DefaultQOS={qos}")
        await self._association_known(account)

    async def _association_known(self, account: str) -> None:
        """Wait until slurmctld has the user's association with the account: slurmdbd
        passes sacctmgr's changes on asynchronously, and an sbatch before that is refused
        ("Invalid account or account/partition combination specified")."""
        deadline = time.monotonic() + ASSOCIATION_TIMEOUT
        wanted = f"Account={account} UserName={self.user}("
        while wanted not in await self._arun("scontrol", "show", "assoc_mgr",
                                             f"users={self.user}", f"accounts={account}",
                                             "flags=assoc"):
            if time.monotonic() > deadline:
                raise SlurmError(f"slurmctld does not know account {account} for user "
                                 f"{self.user} {ASSOCIATION_TIMEOUT:.0f} s after sacctmgr "
                                 f"added it")
            await asyncio.sleep(0.1)

    def _set_up(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Change a project in Slurm in the background; its jobs' sbatch waits for it."""
        before = self._ready.get(name)

        async def after() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            try:
                await work
            except Exception:   # its jobs' sbatch then fails and says why
                log.exception("setting up project %s in Slurm failed", name)
        self._ready[name] = self.loop.create_task(after())

    async def _set_limit(self, name: str) -> None:
        project = self.store.project(name)      # the latest quotas, when this one runs
        if project is None:
            return
        await self._asacctmgr("modify", "qos", "where", f"name={self.qos(name)}", "set",
                              grp_tres(project.gpus, project.cpus,
                                       shards_per_gpu(self._nodes)))
        self._wake.set()
