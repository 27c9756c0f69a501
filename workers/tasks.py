"""hurricane.workers: the Celery app and thin pipeline tasks arrive with the service issue."""
