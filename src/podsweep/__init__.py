"""podsweep: hyperparameter sweeps for research teams sharing GPUs.

This module stays importable on Python 3.9 and imports nothing: ``podsweep.hpo`` runs
inside users' training images and must not pull in the rest of the package.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
