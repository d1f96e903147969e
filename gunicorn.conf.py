"""The source tree's gunicorn settings (``make run``): worker_service/gunicorn/conf.py's, loaded by path.

One configuration: the installed service runs the same file as
``gunicorn -c python:worker_service.gunicorn.conf`` (``worker-service serve``).
Loaded by path, never through the package: the gunicorn master must not import
worker_service, so that a reload (SIGHUP) brings new code.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_worker_service_gunicorn_conf",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_service", "gunicorn", "conf.py"))
_packaged = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_packaged)
globals().update({name: value for name, value in vars(_packaged).items() if not name.startswith("_")})
