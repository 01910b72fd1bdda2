"""make demo: the walk-through's sweep on this machine, narrated.

Until the local control plane exists, the "pods" are plain local processes: 12 runs of
examples/hpo_digits.py, at most 3 at a time, over one shared HPO directory. One of them
is preempted (SIGTERM) half-way, as when another project claims its GPU; its index runs
again as a new attempt, which picks the preempted trial and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
HPO_DIR = DEMO / "nfs" / "hpo"
LOGS = DEMO / "logs"
JOB, COMPLETIONS, PARALLELISM, EPOCHS = "hpo1", 12, 3, 10
PREEMPT_INDEX, PREEMPT_AFTER_EPOCH = 1, 3


@dataclass
class Pod:
    index: int
    attempt: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return f"{JOB}-{self.index}-{self.attempt}"


def say(text: str) -> None:
    print(text, flush=True)


def start(index: int, attempt: int, uid: str) -> Pod:
    log = LOGS / f"{JOB}-{index}-{attempt}.log"
    env = {**os.environ, "PODSWEEP_JOB_NAME": JOB, "PODSWEEP_JOB_UID": uid,
           "PODSWEEP_POD_INDEX": str(index), "JOB_COMPLETION_INDEX": str(index),
           "PODSWEEP_POD_NAME": f"{JOB}-{index}-{attempt}", "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "hpo_digits.py"), "--hpo-dir",
             str(HPO_DIR), "--epochs", str(EPOCHS), "--epoch-seconds", "0.25"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    pod = Pod(index, attempt, proc, log)
    say(f"  started  {pod.name}")
    return pod


def epochs_done(pod: Pod) -> int:
    return pod.log.read_text(errors="replace").count("validation accuracy")


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    HPO_DIR.mkdir(parents=True)
    LOGS.mkdir()
    uid = uuid.uuid4().hex[:8]
    say(f"podsweep demo: job {JOB}: {COMPLETIONS} pods, at most {PARALLELISM} at a time, "
        f"over the shared HPO directory {HPO_DIR.relative_to(ROOT)}")
    say(f"  each pod runs: python examples/hpo_digits.py  (grid: 3 batch sizes x 4 learning "
        f"rates, {EPOCHS} epochs)\n")

    queue = [(i, 0) for i in range(COMPLETIONS)]
    running: list[Pod] = []
    succeeded: set[int] = set()
    preempted = False
    t0 = time.monotonic()
    while len(succeeded) < COMPLETIONS:
        while queue and len(running) < PARALLELISM:
            running.append(start(*queue.pop(0), uid))
        time.sleep(0.05)
        for pod in list(running):
            if (not preempted and pod.index == PREEMPT_INDEX
                    and epochs_done(pod) > PREEMPT_AFTER_EPOCH):
                say(f"  preempt  {pod.name} after epoch {PREEMPT_AFTER_EPOCH} "
                    f"(SIGTERM: another project needs its GPU)")
                pod.proc.send_signal(signal.SIGTERM)
                preempted = True
            code = pod.proc.poll()
            if code is None:
                continue
            running.remove(pod)
            if code == 0:
                succeeded.add(pod.index)
                say(f"  done     {pod.name} in {time.monotonic() - pod.started:.1f}s "
                    f"({len(succeeded)}/{COMPLETIONS})")
            elif code == -signal.SIGTERM:
                say(f"  stopped  {pod.name}: preempted; index {pod.index} queued again")
                queue.insert(0, (pod.index, pod.attempt + 1))
            else:
                say(f"  failed   {pod.name} (exit {code}); see {pod.log}")
                return 1
    say(f"\nAll {COMPLETIONS} pods succeeded in {time.monotonic() - t0:.1f}s.\n")

    resumed = LOGS / f"{JOB}-{PREEMPT_INDEX}-1.log"
    if resumed.exists():
        say(f"The preempted trial's second attempt ({resumed.relative_to(ROOT)}):")
        for line in resumed.read_text().splitlines():
            if line.startswith(("Picked", "Using", "Resuming")):
                say(f"  > {line}")
        say("")
    experiment = HPO_DIR / f"{JOB}-{uid}"
    journal = (experiment / 'hpo.jsonl').relative_to(ROOT)
    say(f"Every variation and result is in one file: {journal}")
    say(f"$ podsweep hpo show {experiment.relative_to(ROOT)}\n")
    podsweep = Path(sys.executable).with_name("podsweep")
    return subprocess.call([str(podsweep), "hpo", "show", str(experiment)], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
