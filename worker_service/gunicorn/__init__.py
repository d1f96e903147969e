"""gunicorn's side of worker-service: its configuration (conf), the master's hooks (master), the workers' (hooks).

``worker-service serve`` runs ``gunicorn -c python:worker_service.gunicorn.conf
worker_service.wsgi:app``. This package's ``__init__`` (like the top-level one)
imports nothing: the gunicorn master imports it to reach the configuration.
"""
