"""The ``holder`` of an ``assign`` event, for journals written before podsweep.hpo records it.

podsweep.hpo is to record, in every ``assign`` event written in a pod, which pod picked the
trial: ``"holder": {"job": <PODSWEEP_JOB_UID>, "pod": <PODSWEEP_POD_NAME>, "index": <int>}``.
Until the library writes it, tests that need it add it to a real journal here, with the
values the library would have written. Once the library writes it, :func:`add_holders`
changes nothing in a journal whose assign events already have their holder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def add_holders(journal: Path, job_uid: str, pods: Mapping[int, tuple[str, int]]) -> None:
    """Give each ``assign`` event without a holder one: ``pods`` maps a trial to the
    (pod name, index) that picked it. The journal is replaced whole (write, then rename)."""
    lines = []
    for line in journal.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "assign" and "holder" not in event:
            pod, index = pods[event["trial"]]
            event["holder"] = {"job": job_uid, "pod": pod, "index": index}
        lines.append(json.dumps(event, separators=(",", ":")) + "\n")
    tmp = journal.with_name(journal.name + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, journal)
