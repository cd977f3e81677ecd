"""Background jobs (Celery): post-call metrics, transcript redaction, exports, retention.

This package's top level imports nothing heavy: `admin.settings` reads `admin.jobs.config`.
The Celery app is built by `admin.jobs.celery_app.create_app` from the settings.
"""
