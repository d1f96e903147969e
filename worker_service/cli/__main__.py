"""``python -m worker_service.cli``, as the gunicorn master runs ``check-config`` (:mod:`worker_service.gunicorn.master`)."""

from . import main

main()
