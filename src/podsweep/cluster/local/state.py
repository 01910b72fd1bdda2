"""What the local engine keeps of a job in memory, and how much of it a reconcile offers.

Pure data: nothing here reads the store or touches a process, so the scheduler's view of a
job (:class:`JobState`) and the bound on what it is offered (:func:`offer_limit`) are tested
without a control plane (tests/security/test_big_submit.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from ...scheduler import PendingPod
from ...store import Job


@dataclass
class JobState:
    """What the scheduler needs of a job, kept in memory and rebuilt from the store on start.

    Pending indexes are the fresh ones (``next_fresh`` up to completions) and the requeued
    ones: a heap, with ``queued`` the set of indexes it holds for real. An index taken off
    the queue leaves the set at once and the heap lazily (a stale entry), so that no
    operation scans the queue. Every operation costs O(log n) amortized, and
    :meth:`pending` O(k log k) for the k pods it returns, whatever the job's size: a job of
    100,000 completions costs the scheduler per pod what one of 100 does.
    """

    job: Job
    succeeded: set[int] = field(default_factory=set)
    active: dict[int, int] = field(default_factory=dict)      # index -> attempt
    attempts: dict[int, int] = field(default_factory=dict)    # index -> last attempt
    requeued: list[int] = field(default_factory=list)         # heap, stale entries included
    queued: set[int] = field(default_factory=set)             # the indexes requeued for real
    next_fresh: int = 0
    deleting: bool = False                                    # no new pods, ever

    def pending(self, limit: int) -> tuple[PendingPod, ...]:
        """The next ``limit`` pods to run, lowest index first, in O(limit log limit).

        The requeued heap is walked in order without copying it: a second heap holds the
        frontier of the walk (a node's children enter it once the node is taken).
        """
        out: list[PendingPod] = []
        heap = self.requeued
        frontier: list[tuple[int, int]] = [(heap[0], 0)] if heap else []
        fresh = self.next_fresh
        completions = self.job.spec.completions
        last = -1
        while len(out) < limit:
            if frontier and (fresh >= completions or frontier[0][0] < fresh):
                index, at = heapq.heappop(frontier)
                for child in (2 * at + 1, 2 * at + 2):
                    if child < len(heap):
                        heapq.heappush(frontier, (heap[child], child))
                if index == last or index not in self.queued:
                    continue         # a stale entry, or one index in the heap twice
            elif fresh < completions:
                index, fresh = fresh, fresh + 1
            else:
                break
            last = index
            out.append(PendingPod(index, self.attempts.get(index, -1) + 1))
        return tuple(out)

    def pending_count(self) -> int:
        if self.deleting:
            return 0
        remaining = self.job.spec.completions - len(self.succeeded) - len(self.active)
        return max(0, min(self.job.spec.parallelism - len(self.active), remaining))

    def take(self, index: int, attempt: int) -> None:
        if index in self.queued:
            self.queued.discard(index)
            self._compact()
        elif index > self.next_fresh:
            # fresh indexes skipped over stay pending (pods are started in index order, so
            # this does not happen; if it did, they would not be lost)
            for skipped in range(self.next_fresh, index):
                self.requeue(skipped)
        if index >= self.next_fresh:
            self.next_fresh = index + 1
        self.active[index] = attempt
        self.attempts[index] = attempt

    def requeue(self, index: int) -> None:
        self.active.pop(index, None)
        if index not in self.succeeded and index not in self.queued:
            self.queued.add(index)
            heapq.heappush(self.requeued, index)

    def _compact(self) -> None:
        """Drop stale entries: those on top at once, the rest once they are half the heap."""
        heap = self.requeued
        while heap and heap[0] not in self.queued:
            heapq.heappop(heap)
        if len(heap) > 2 * len(self.queued) + 16:
            self.requeued = sorted(self.queued)     # a sorted list is a heap


# a project's quota (and the machine) count towards the pods offered up to this much (more
# could change only the shares shown, never what starts: no machine here is larger)
MAX_OFFERED_QUOTA = 4096


def offer_limit(room: int, needs: Iterable[tuple[int | Fraction, int, int]]) -> int:
    """How many of a job's pending pods one reconcile offers the policy.

    ``needs`` is, for each resource, what one pod of the job takes, its project's quota and
    the machine's amount. The policy's decision, and so the reconcile's work, must not grow
    with the job's size: a job is offered enough for the decision to be the one it would
    make if offered every pod. For each resource a pod takes that is more pods than the
    machine can start (so the first that does not fit still blocks its project, as it
    would), and a demand above its project's quota plus the machine, past which
    water-filling gives the project the same share whatever the demand; the largest of
    these over the resources (pods of 1/2 GPU: twice as many as there are GPUs). Every local
    pod takes at least one CPU, so a reconcile starts at most the machine's CPUs' worth of
    pods, whatever the jobs' sizes.
    """
    bounds = [(min(quota, MAX_OFFERED_QUOTA) + min(machine, MAX_OFFERED_QUOTA)) // need + 1
              for need, quota, machine in needs if need > 0]
    return min(room, max(bounds)) if bounds else room
