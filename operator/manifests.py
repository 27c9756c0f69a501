"""hurricane.operator: Kubernetes Job/Service manifests as pure functions (cluster issue).

No ``__init__.py`` here on purpose: a regular package named ``operator`` at the repository root
would shadow the standard library's ``operator`` for any Python started from the root.
"""
