"""The WSGI entry point for gunicorn: ``webui.wsgi:app``."""

from webui import create_app

app = create_app()
