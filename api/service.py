"""hurricane.api: the FastAPI service (routes, auth, settings) arrives with the service issue.

This directory is a namespace portion on purpose (no ``__init__.py``): run from the repository
root, Python must never see a top-level ``api`` or ``operator`` *package* that could shadow
anything. The installed import name is ``hurricane.api``; it never imports torch.
"""
