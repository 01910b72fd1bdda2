"""The Kubernetes cluster: jobs as Indexed batch/v1 Jobs, queued and preempted by Kueue.

- :mod:`.objects`: podsweep's projects and jobs as the Kubernetes and Kueue objects podsweep
  creates (``podsweep render`` prints them).
- :mod:`.views`: what the API server sends back, read as podsweep's views (statuses, jobs,
  pods, events, quotas, GPUs).
- :mod:`.api`: the calls through the official client, their errors as podsweep's.
- :mod:`.cluster`: :class:`KubernetesCluster`, the engine that joins them.

Only :mod:`.api` and :mod:`.cluster` use the ``kubernetes`` client (an optional extra), and
only once a cluster is opened: the objects and views need none.
"""

from __future__ import annotations

from .cluster import KubernetesCluster
from .objects import job_object, project_objects
from .views import job_info, pod_infos, pod_status

__all__ = ["KubernetesCluster", "job_info", "job_object", "pod_infos", "pod_status",
           "project_objects"]
