"""The delivery process: a Celery worker making one attempt per task."""
