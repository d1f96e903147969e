"""The WSGI app gunicorn serves: ``worker-service serve`` runs ``gunicorn ... worker_service.wsgi:app``.

Imported in each worker after fork (never in the master: a reload brings new code).
"""

from . import create_app

app = create_app()
