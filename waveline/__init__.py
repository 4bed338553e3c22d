"""Waveline: a GitOps promotion engine.

Import names live under this namespace: ``waveline.services.<name>`` for each service and
``waveline.shared`` for cross-service code (both are the repository's top-level folders).
"""

__version__ = "0.1.0"
