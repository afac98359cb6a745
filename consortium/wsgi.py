import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "consortium.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # gunicorn prints an AppImportError as one line and stops, where any other exception
    # is logged with its traceback and the next worker fails the same way.
    from gunicorn.errors import AppImportError

    raise AppImportError(f"consortium: {exc}") from None
