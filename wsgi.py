"""The source tree's WSGI entry point (``make run``): ``gunicorn -c gunicorn.conf.py wsgi:app``.

The installed service serves :mod:`worker_service.wsgi` (``worker-service serve``); this is the same app.
"""

from worker_service.wsgi import app

__all__ = ["app"]
