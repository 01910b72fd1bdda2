"""Where pods run, behind one protocol (:class:`Cluster`); the local cluster is the default."""

from .base import Cluster, ClusterInfo, EventInfo, JobDetail, JobInfo, PodInfo, ProjectInfo

__all__ = ["Cluster", "ClusterInfo", "EventInfo", "JobDetail", "JobInfo", "PodInfo",
           "ProjectInfo"]
