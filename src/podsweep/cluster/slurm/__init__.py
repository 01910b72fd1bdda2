"""The Slurm cluster: a job is one Slurm job array, a pod one array task, a project an account.

Mapping (``podsweep up --cluster slurm``):

- A **project** is a Slurm account (``<prefix><project>``) with a QOS of its own,
  ``ps-<prefix><project>``, that carries its quotas: ``GrpTRES=gres/gpu=<quota>,cpu=<CPU
  quota>`` (a CPU quota of 0 is no CPU limit; see :func:`.accounts.grp_tres`). The quota
  sits on the QOS, not on the account, because an account's limit binds every job of the
  account whatever its QOS, which would forbid borrowing (below).
- A **job** is ``sbatch --array=0-(C-1)%P --gres=gpu:G --account=... --qos=ps-...`` of a
  small batch script that sets the ``PODSWEEP_*`` variables from ``SLURM_ARRAY_TASK_ID`` and
  ``SLURM_RESTART_COUNT``, sends the task's output to ``<home>/slurm/<uid>/<pod>.log`` and
  execs the command (under podsweep's sandbox when it has volumes, as on the local cluster).
- A share of one GPU (``-g 0.5``) is Slurm's GPU shards (``--gres=shard:N``, N the share
  times the shards a GPU is cut in), where the cluster has them; the QOS then also limits
  ``gres/shard`` to the quota's worth (:func:`.script.shards_of`, :func:`.accounts.grp_tres`).
- A **pod** is an array task's attempt: ``<job>-<index>-<attempt>``, the attempt being
  Slurm's restart count.
- **Borrowing**: a task that waits on its project's quota (reason ``QOSGrpGRES`` or
  ``QOSGrpCpuLimit``) while the GPUs and CPUs it needs are idle is lent them: podsweep
  moves it to the shared QOS ``ps_<prefix>borrow`` (no limit, ``PreemptMode=requeue``) in
  the borrow partition (the same nodes). Every project's QOS lists the borrow QOS in
  ``Preempt``, so when a project within its quota needs the GPUs or CPUs Slurm itself
  preempts the borrowed task: SIGTERM, then requeue; it runs again as the next attempt and
  the HPO library hands it its preempted trial. A borrowed task that waits again once its
  project has room goes back to the project's QOS. The borrow partition is needed because
  Slurm's scheduler skips all other tasks of an array in the partition where one of its
  tasks could not start: the over-quota tasks would hold the lent one back.

Slurm is the truth for what runs. A poller on the event loop reads ``squeue --json`` (a
few milliseconds) each second or when woken, records pods and their ends in the store (the
same tables as the local cluster, so views and logs read the store), retries failed
tasks up to the job's backoff limit (``scontrol requeue``), ends jobs, and lends GPUs and
CPUs. Tasks that Slurm has already forgotten (the control plane was down longer than
``MinJobAge``) are read from ``sacct``.

Nothing slow runs on the event loop's time: ``sacctmgr`` changes (0.3-0.7 s each) are made
in the background after ``create_project`` / ``set_quota`` have stored theirs, and a job's
``sbatch`` runs as a task that first waits for its project to be set up; a job Slurm
refuses ends Failed with Slurm's message.

Limits: the grace period of a preempted or deleted pod is Slurm's ``KillWait`` (one setting
for the cluster), not ``--grace-period``; volumes are set up on the node that runs the task
with the same sandbox command line as here, so a multi-node cluster needs the same paths
everywhere, the sandbox's binary (in the submitting user's cache) included.

The package, one module per part: :mod:`.commands` runs Slurm's commands, :mod:`.accounts`
keeps projects' accounts and QOS, :mod:`.parse` reads squeue/sacct/scontrol, :mod:`.script`
writes the batch script and the sbatch line, :mod:`.sync` is the poller, :mod:`.lend` the
lending decision (a pure function), and :mod:`.cluster` the engine that ties them together.
"""

from ...errors import SlurmError
from .cluster import SlurmCluster

__all__ = ["SlurmCluster", "SlurmError"]
