"""Settings, read from the environment (django-environ).

`DATABASE_URL` unset is the quick start: SQLite in `.data/`, Celery tasks run eagerly in
the web process, DEBUG on, and a throwaway secret. Anything else is treated as a real
deployment: DEBUG off, SECRET_KEY and ALLOWED_HOSTS required, PostgreSQL and a broker.
"""

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
QUICK_START = "DATABASE_URL" not in env
# Where the quick start keeps its SQLite database, and the log's signing key by default.
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / ".data")))

DEBUG = env.bool("DEBUG", default=QUICK_START)
if QUICK_START:
    SECRET_KEY = env("SECRET_KEY", default="quick-start-only-not-secret")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
else:
    # Both named at once, in one line that manage.py and wsgi.py print without a traceback.
    _missing = [name for name in ("SECRET_KEY", "ALLOWED_HOSTS") if not env.str(name, default="")]
    if _missing:
        raise ImproperlyConfigured(
            f"set {' and '.join(_missing)} in the environment "
            "(DATABASE_URL is set, so this is a deployment, not the quick start)"
        )
    SECRET_KEY = env("SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

# API keys are stored as HMAC-SHA256 digests under this key; rotating it invalidates them.
API_KEY_HMAC_KEY = env("API_KEY_HMAC_KEY", default=SECRET_KEY)
# The log's origin line in every checkpoint, and its signing key's name (c2sp.org/tlog-
# checkpoint): the consortium's name, fixed for the log's life.
LOG_ORIGIN = env("LOG_ORIGIN", default="consortium.example/log")
# The log's Ed25519 signing key (Go's note skey text form), outside the database so that a
# database dump cannot sign checkpoints; made on first use, mode 0600. Keep it with backups.
LOG_KEY_FILE = Path(env("LOG_KEY_FILE", default=str(DATA_DIR / "log.key")))
# Seconds between scheduled checkpoint signings (celery beat); writes also queue one.
CHECKPOINT_INTERVAL = env.int("CHECKPOINT_INTERVAL", default=60)
# Outside witnesses each new checkpoint is pushed to (c2sp.org/tlog-witness add-checkpoint),
# comma-separated, each "<witness vkey> <add-checkpoint URL>": the witness's cosignature/v1
# verifier key (its name is the witness's name) and the URL to POST to. Only these URLs are
# ever requested (audit.witnesses). Empty: no pushes.
LOG_WITNESSES = env.list("LOG_WITNESSES", default=[])
# Seconds a push may take, connecting and reading the answer, before it counts as down.
LOG_WITNESS_TIMEOUT = env.float("LOG_WITNESS_TIMEOUT", default=10.0)
# Retries of a push to a witness that is down or answers 5xx, with exponential backoff.
LOG_WITNESS_RETRIES = env.int("LOG_WITNESS_RETRIES", default=5)
# Witness URLs must be https; tests (and a witness on this machine) may allow plain http to
# 127.0.0.1, ::1 or localhost.
LOG_WITNESS_ALLOW_LOCAL_HTTP = env.bool("LOG_WITNESS_ALLOW_LOCAL_HTTP", default=False)

INSTALLED_APPS = [
    # Django's admin on a site that asks staff for a second factor (staff.sites).
    "staff.apps.ConsortiumAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's and Redoc's files, served from here rather than a CDN (works offline).
    "drf_spectacular_sidecar",
    "django_filters",
    "partners",
    "hashes",
    "audit",
    # Two-factor authentication for staff: TOTP devices, and recovery codes (staff.models).
    "django_otp",
    "django_otp.plugins.otp_totp",
    "staff",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Refuses a key that this process has just rate-limited before anything else runs.
    "consortium.throttling.EarlyRefusalMiddleware",
    # Serves collected static files (the API docs' assets, admin) under gunicorn, DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): did this session log in with a second factor?
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Ends staff sessions idle or older than the limits below (needs messages for the notice).
    "staff.middleware.StaffSessionExpiryMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "consortium.urls"
WSGI_APPLICATION = "consortium.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if QUICK_START:
    DATA_DIR.mkdir(exist_ok=True)
    DATABASES = {"default": env.db_url_config(f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
else:
    DATABASES = {"default": env.db("DATABASE_URL")}
    # Keep connections between requests (Django's default opens one per request, which
    # costs more than a whole feed page), checked before reuse.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="" if QUICK_START else "redis://127.0.0.1:6379/0")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=QUICK_START)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "checkpoint-sign": {
        "task": "audit.tasks.checkpoint_sign_task",
        "schedule": float(CHECKPOINT_INTERVAL),
    },
}

# Access-log periods (audit.services.access_period_seal): one sealed every
# ACCESS_PERIOD_SECONDS by Celery beat; a seal waits at most ACCESS_PERIOD_WAIT_SECONDS for
# the transactions that may still commit an access event of the period, then gives up
# (nothing sealed; the next run takes the whole range).
ACCESS_PERIOD_SECONDS = env.int("ACCESS_PERIOD_SECONDS", default=3600)
ACCESS_PERIOD_WAIT_SECONDS = env.float("ACCESS_PERIOD_WAIT_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["access-period-seal"] = {
    "task": "audit.tasks.access_period_seal_task",
    "schedule": float(ACCESS_PERIOD_SECONDS),
}

# Webhooks (webhooks/, docs/webhooks.md). Deliveries go only to public addresses: a URL
# whose host resolves to a private, loopback, link-local, multicast, reserved or unspecified
# address is refused, unless the host (a name, compared exactly, or an IP network) is in
# WEBHOOK_ALLOWED_HOSTS; those hosts may also be plain http. Comma-separated.
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=3.0)
# The whole answer, headers and body, must arrive within this many seconds.
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=10.0)
# Bytes of a receiver's answer read at most; the rest is not read.
WEBHOOK_RESPONSE_MAX_BYTES = env.int("WEBHOOK_RESPONSE_MAX_BYTES", default=64 * 1024)
# Retry n waits min(BASE * 4^(n-1), MAX) seconds, times a random factor in [0.75, 1.25];
# after MAX_ATTEMPTS failures of one message the subscription is disabled. The defaults
# (10 s, 4 h, 12) give up after about a day.
WEBHOOK_RETRY_BASE = env.float("WEBHOOK_RETRY_BASE", default=10.0)
WEBHOOK_RETRY_MAX = env.float("WEBHOOK_RETRY_MAX", default=4 * 3600.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=12)
# Subscriptions per partner.
WEBHOOK_MAX_PER_PARTNER = env.int("WEBHOOK_MAX_PER_PARTNER", default=20)
# Messages one follower task delivers before it queues itself again (fairness between
# subscriptions on a busy log).
WEBHOOK_BATCH = env.int("WEBHOOK_BATCH", default=200)
# The safety net: every WEBHOOK_SWEEP_INTERVAL seconds beat wakes every follower behind.
WEBHOOK_SWEEP_INTERVAL = env.float("WEBHOOK_SWEEP_INTERVAL", default=60.0)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "webhooks.tasks.webhooks_sweep_task",
    "schedule": WEBHOOK_SWEEP_INTERVAL,
}
# The access log's roll-up into daily counts per partner (audit.services.access_rollup),
# which the auditors' overview reads: every ACCESS_ROLLUP_SECONDS by Celery beat. The
# overview counts the events since the last roll-up directly, so it is exact whatever this is.
ACCESS_ROLLUP_SECONDS = env.int("ACCESS_ROLLUP_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["access-rollup"] = {
    "task": "audit.tasks.access_rollup_task",
    "schedule": float(ACCESS_ROLLUP_SECONDS),
}
# How long a partner's auditor stays signed in to the auditors' pages with an API key (the
# key is checked again on every request all the same).
AUDITOR_KEY_SESSION_SECONDS = env.int("AUDITOR_KEY_SESSION_SECONDS", default=8 * 60 * 60)

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `manage.py collectstatic` fills it for a deployment; WhiteNoise serves it.
STATIC_ROOT = BASE_DIR / "staticfiles"

# Envelopes are read whole; this caps the request body (a batch of the maximum size fits).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=8 * 1024 * 1024)
SUBMISSION_MAX_ENTRIES = env.int("SUBMISSION_MAX_ENTRIES", default=10_000)
# A signed statement is accepted only if its signed timestamp is at most ENVELOPE_MAX_AGE
# seconds old and at most ENVELOPE_MAX_SKEW seconds ahead of the server's clock: a partner
# may sign batches offline for a day, and an envelope that leaked unsent expires.
ENVELOPE_MAX_AGE = env.int("ENVELOPE_MAX_AGE", default=24 * 60 * 60)
ENVELOPE_MAX_SKEW = env.int("ENVELOPE_MAX_SKEW", default=5 * 60)
FEED_PAGE_MAX = 10_000
# The hash values one feed page carries stop past this many bytes (a video's value is up to
# 241 KB): the page then ends early, with has_more. The first entry of a page always comes.
FEED_PAGE_MAX_BYTES = env.int("FEED_PAGE_MAX_BYTES", default=8 * 1024 * 1024)

# Staff sessions (the admin, the auditor pages) end after this long without a request, and
# this long after login whatever happens (staff.middleware); the cookie lives no longer.
STAFF_SESSION_IDLE_SECONDS = env.int("STAFF_SESSION_IDLE_SECONDS", default=30 * 60)
STAFF_SESSION_MAX_SECONDS = env.int("STAFF_SESSION_MAX_SECONDS", default=8 * 60 * 60)
SESSION_COOKIE_AGE = STAFF_SESSION_MAX_SECONDS
# No script reads the session cookie, and no other site's page sends it along with a POST.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# The name authenticator apps show beside a staff user's TOTP codes.
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="Consortium")
# A staff user's TOTP key is never shown again after enrolment.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["partners.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["partners.authentication.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["consortium.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "consortium.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Behind N trusted reverse proxies, the client address is read from X-Forwarded-For.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_THROTTLE_CLASSES": [
        "consortium.throttling.ApiKeyRateThrottle",
        "consortium.throttling.PartnerRateThrottle",
    ],
}

# Rate limits (consortium/throttling.py) per API key and per partner (all its keys
# together), for each scope ("any": operations that need none, like /me), counted in Redis
# (in memory, per process, without it): RATE_LIMIT_<KEY|PARTNER>_<SCOPE> = N/s, N/m, N/h,
# N/d or none; for match, N counts hashes matched, not requests. RATE_LIMIT_ENABLED=false
# turns them all off. The defaults are argued in docs/api.md.
RATE_LIMIT_ENABLED = env.bool("RATE_LIMIT_ENABLED", default=True)
RATE_LIMIT_STORAGE_URL = env("RATE_LIMIT_STORAGE_URL", default=REDIS_URL or "memory://")
_RATE_LIMIT_DEFAULTS = {
    "key": {"any": "5/s", "read": "10/s", "match": "1000/s", "submit": "2/s", "audit": "2/s"},
    "partner": {"any": "10/s", "read": "20/s", "match": "2000/s", "submit": "4/s", "audit": "5/s"},
}


def _rate_limit(subject: str, scope: str) -> str | None:
    name = f"RATE_LIMIT_{subject.upper()}_{scope.upper()}"
    value = env.str(name, default=_RATE_LIMIT_DEFAULTS[subject][scope]).strip().lower()
    if value in {"", "none"}:
        return None
    if not re.fullmatch(r"[0-9]+/[smhd]", value):
        raise ImproperlyConfigured(f"{name}={value!r}: expected N/s, N/m, N/h, N/d or none")
    return value


RATE_LIMITS = {
    subject: {scope: _rate_limit(subject, scope) for scope in scopes}
    for subject, scopes in _RATE_LIMIT_DEFAULTS.items()
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Consortium API",
    "DESCRIPTION": (
        "Signed hash sharing between partners: submissions, revocations, feed, audit. "
        "Errors are RFC 9457 application/problem+json."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and docs are public; every operation in them still needs a key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "consortium.schema.problem_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# Matching. PDQ hashes of quality below this floor (flat or tiny images) match unreliably;
# such entries and queries are flagged in match results.
PDQ_QUALITY_FLOOR = env.int("PDQ_QUALITY_FLOOR", default=50)
MATCH_MAX_HASHES = env.int("MATCH_MAX_HASHES", default=1000)
# Frames of vpdq values per match request, over all its videos: one hour-long video.
MATCH_MAX_FRAMES = env.int("MATCH_MAX_FRAMES", default=3600)
# Matches returned per query hash (the nearest first; `limit` in the request), and per request
# (hashes x limit): one partner's near-duplicates cannot make every answer huge.
MATCH_DEFAULT_LIMIT = env.int("MATCH_DEFAULT_LIMIT", default=10)
MATCH_MAX_LIMIT = env.int("MATCH_MAX_LIMIT", default=100)
MATCH_MAX_RESULTS = env.int("MATCH_MAX_RESULTS", default=10_000)
# Images sent for server-side hashing are held in memory only, within these caps.
IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", default=20 * 1024 * 1024)
IMAGE_MAX_PIXELS = env.int("IMAGE_MAX_PIXELS", default=50_000_000)
# Images hashed at once per process (hashing is CPU-bound and a deployment runs about one
# process per core); a request that finds no slot within IMAGE_HASH_WAIT seconds is refused
# (429 hashing-busy), so a burst of images cannot hold every worker thread of a process.
IMAGE_HASH_CONCURRENCY = env.int("IMAGE_HASH_CONCURRENCY", default=1)
IMAGE_HASH_WAIT = env.float("IMAGE_HASH_WAIT", default=2.0)
FILE_UPLOAD_HANDLERS = ["hashes.uploads.InMemoryImageUploadHandler"]
DATA_UPLOAD_MAX_NUMBER_FILES = 1
