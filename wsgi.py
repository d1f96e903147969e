"""The WSGI entry point gunicorn serves: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from worker_service import create_app

app = create_app()
