"""The only settings module: every value comes from the environment (docs/configuration.md)."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_rate, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_required("DJANGO_SECRET_KEY", unless_debug=DEBUG) or "insecure-dev-only-key"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or (["*"] if DEBUG else ["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "ledger",
    "webhooks",
    "tasks",
    "voting",
    "ops",
    "django_ratelimit",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "voting.context_processors.sandbox",
            ],
        },
    },
]

# Persistent connections: a new PostgreSQL connection per request makes ingest ~6x slower.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally"),
        conn_max_age=600,
        conn_health_checks=True,
    )
}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured(
        "DATABASE_URL must point at PostgreSQL: row locks are part of the design"
    )
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Paystack -------------------------------------------------------------------------
PAYSTACK_SECRET_KEY = env_required("PAYSTACK_SECRET_KEY", unless_debug=DEBUG)
PAYSTACK_SECRET_KEY_PREVIOUS = env_str("PAYSTACK_SECRET_KEY_PREVIOUS")
PAYSTACK_BASE_URL = env_str("PAYSTACK_BASE_URL", "https://api.paystack.co").rstrip("/")
# 1 = the gateway is the sandbox (or another stand-in): its payments are not real money, and
# every page says so. Guarantee 8: with DEBUG=0 no gateway but Paystack over https is used
# unless this says otherwise, so a sandbox left in the configuration cannot mark a payment paid.
TALLY_SANDBOX = env_bool("TALLY_SANDBOX", False)
if not DEBUG and not TALLY_SANDBOX and urlsplit(PAYSTACK_BASE_URL).scheme != "https":
    raise ImproperlyConfigured(
        f"PAYSTACK_BASE_URL must be https with DEBUG=0, not {PAYSTACK_BASE_URL!r}; "
        "set TALLY_SANDBOX=1 if this gateway is the sandbox (its payments are not real)"
    )
PAYSTACK_TIMEOUT = env_int("PAYSTACK_TIMEOUT", 10, minimum=1)
PAYSTACK_WEBHOOK_IPS = env_list("PAYSTACK_WEBHOOK_IPS")
PROXY_HOPS = env_int("PROXY_HOPS", 0)
if PROXY_HOPS:
    # Our proxies terminate TLS; the callback URL we hand Paystack must still say https.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 262144, minimum=1)
STUCK_AFTER_SECONDS = env_int("STUCK_AFTER_SECONDS", 60, minimum=4)
MAX_DELIVERY_ATTEMPTS = env_int("MAX_DELIVERY_ATTEMPTS", 10, minimum=1)
VERIFY_COOLDOWN_SECONDS = env_int("VERIFY_COOLDOWN_SECONDS", 30, minimum=0)
# Batched processing (docs/delivery-engine.md#batched-settlement): a worker takes up to
# SETTLE_BATCH_SIZE delivery messages into one task run, verifies their payments together
# and settles them in one transaction; 1 runs one message at a time. It waits at most
# SETTLE_BATCH_WAIT_MS for a batch to fill: under load batches fill at once, and when quiet
# the wait is what a payment's settlement waits for company.
SETTLE_BATCH_SIZE = env_int("SETTLE_BATCH_SIZE", 32, minimum=1)
SETTLE_BATCH_WAIT_MS = env_int("SETTLE_BATCH_WAIT_MS", 10, minimum=1)
RECONCILE_AFTER_SECONDS = env_int("RECONCILE_AFTER_SECONDS", 900, minimum=0)
PAYMENT_EXPIRES_AFTER_SECONDS = env_int("PAYMENT_EXPIRES_AFTER_SECONDS", 86400, minimum=1)
DELIVERY_RETENTION_DAYS = env_int("DELIVERY_RETENTION_DAYS", 90, minimum=1)
PAYER_EMAIL_RETENTION_DAYS = env_int("PAYER_EMAIL_RETENTION_DAYS", 180, minimum=1)
# Beat certifies a contest this long after it closes: payments made before the close that
# settle late (a slow webhook, reconciliation) still count in the certified result.
CERTIFY_GRACE_SECONDS = env_int("CERTIFY_GRACE_SECONDS", 3600, minimum=0)

# --- Operations ------------------------------------------------------------------------
# /metrics: with a token, a scraper must send "Authorization: Bearer <token>"; without one
# only a request from this host, not through a proxy, is answered (ops/metrics.py).
METRICS_TOKEN = env_str("METRICS_TOKEN")


# --- Celery (read by config/celery_app.py through the CELERY_ namespace) ---------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
# tasks is a Django app, but autodiscovery finds only tasks.py modules: list ours.
CELERY_IMPORTS = [
    "tasks.deliveries",
    "tasks.verification",
    "tasks.reconcile",
    "tasks.sweeps",
    "tasks.audit",
    "tasks.retention",
    "tasks.certification",
]
CELERY_TASK_ACKS_LATE = True
# A batch fills from the messages its worker has taken and not yet acknowledged: each pool
# process may hold a whole batch (1 when batches are off: no message waits behind another).
CELERY_WORKER_PREFETCH_MULTIPLIER = SETTLE_BATCH_SIZE
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# Publishing must fail fast when the broker is down: the webhook still answers 200 and the
# sweeper enqueues the stored delivery later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Above our longest retry countdown, so a scheduled retry is never redelivered early.
    "visibility_timeout": 3600,
}
# Deliveries keep the default queue (messages already queued still resolve); the payer's
# callback verifies and beat's jobs have their own, so neither ever waits behind a backlog of
# deliveries nor delays them. Workers consume all three unless started with -Q.
CELERY_TASK_DEFAULT_QUEUE = "celery"
DELIVERIES_QUEUE, CALLBACKS_QUEUE, PERIODIC_QUEUE = "celery", "callbacks", "periodic"
CELERY_TASK_QUEUES: dict[str, dict[str, str]] = {
    name: {} for name in (DELIVERIES_QUEUE, CALLBACKS_QUEUE, PERIODIC_QUEUE)
}
CELERY_TASK_ROUTES = {
    "tally.verify_payment": {"queue": CALLBACKS_QUEUE},
    "tally.sweep_stuck_deliveries": {"queue": PERIODIC_QUEUE},
    "tally.reconcile_pending_payments": {"queue": PERIODIC_QUEUE},
    "tally.audit_gateway": {"queue": PERIODIC_QUEUE},
    "tally.prune_deliveries": {"queue": PERIODIC_QUEUE},
    "tally.certify_contests": {"queue": PERIODIC_QUEUE},
}
# A task that talks to the gateway must end, hard, before its lease (STUCK_AFTER_SECONDS)
# ends, or the sweeper would hand its delivery to a second worker while the first still runs.
# Two gateway calls (verify, then a refund record) must fit inside the soft limit.
TASK_TIME_LIMIT = STUCK_AFTER_SECONDS - max(1, STUCK_AFTER_SECONDS // 10)
TASK_SOFT_TIME_LIMIT = TASK_TIME_LIMIT - max(1, TASK_TIME_LIMIT // 10)
if 2 * PAYSTACK_TIMEOUT >= TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"PAYSTACK_TIMEOUT={PAYSTACK_TIMEOUT} does not fit: a task makes up to two gateway calls "
        f"and must stop (soft limit {TASK_SOFT_TIME_LIMIT} s) before its lease "
        f"STUCK_AFTER_SECONDS={STUCK_AFTER_SECONDS} ends; lower PAYSTACK_TIMEOUT or raise "
        "STUCK_AFTER_SECONDS"
    )
# Beat's jobs stop taking new work after this and finish the next run where they stopped:
# well inside Redis' visibility timeout and RabbitMQ's consumer timeout (30 min by default).
PERIODIC_BUDGET_SECONDS = 240
# Task events cost a third of a worker's main process and a "sent" event on every webhook
# publish (measured by the bench). Flower switches the workers' events on when it connects.
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
# The sweeper runs every 30 s, or twice per STUCK_AFTER_SECONDS when that is shorter, so lost
# work is picked up within STUCK_AFTER_SECONDS + 30 s (docs/contract.md, guarantee 6).
SWEEP_INTERVAL_SECONDS = min(30.0, STUCK_AFTER_SECONDS / 2)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-deliveries": {
        "task": "tally.sweep_stuck_deliveries",
        "schedule": SWEEP_INTERVAL_SECONDS,
    },
    "reconcile-pending-payments": {"task": "tally.reconcile_pending_payments", "schedule": 300.0},
    "audit-gateway": {"task": "tally.audit_gateway", "schedule": 86400.0},
    "prune-deliveries": {"task": "tally.prune_deliveries", "schedule": 86400.0},
    "certify-contests": {"task": "tally.certify_contests", "schedule": 60.0},
}

# --- The shared cache: rate limits and the live metric gauges ---------------------------
# Redis at REDIS_URL, so every web process on every host counts against the same limit.
# Short timeouts: a Redis outage must not hold a request for long (the rate limit then lets
# requests through, see voting/limits.py). Everything tally keeps here starts with "tally:".
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "tally",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
# Per client address (config/clients.py), on POST /api/payments/ and on the callback, each.
RATE_LIMIT_PAYMENTS = env_rate("RATE_LIMIT_PAYMENTS", "20/m")
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = True  # as for a Redis error (voting/limits.py): let the request through
SILENCED_SYSTEM_CHECKS = [
    # django-ratelimit lists the cache backends it knows; Django's own RedisCache, newer than
    # that list, increments atomically (INCR) like the ones it names.
    "django_ratelimit.W001",
    # TLS ends at the reverse proxy, which redirects http to https; web itself answers http to
    # the proxy and to health probes, which a redirect would break.
    "security.W008",
    # HSTS for every subdomain, or on browsers' preload lists, binds hosts tally does not run
    # on: the domain's owner decides that at the proxy (docs/operations.md).
    "security.W005",
    "security.W021",
]

# --- Security with DEBUG=0 (docs/contract.md, guarantee 8; checked by manage.py check --deploy,
# ops/checks.py adds tally's own checks) ----------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
# Admin logins are throttled by django-axes (attempts recorded in PostgreSQL, so every web
# process sees them): after AXES_FAILURE_LIMIT failures from one client address, or for one
# username from anywhere, logins are refused with 429 for AXES_COOLOFF_TIME. The username
# lock stops guesses spread over many addresses, at the price that anyone can lock an account
# for 15 minutes (`manage.py axes_reset_username NAME` lifts it; docs/operations.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# Failures and lockouts are still logged (logger "axes"); this drops its banner from every
# process's start, manage.py commands included.
AXES_VERBOSE = False
# The client address as everything else reads it: behind PROXY_HOPS, never a client-written
# X-Forwarded-For entry (None when unknown: all unknown clients share one count).
AXES_CLIENT_IP_CALLABLE = "config.clients.client_ip"

# Content-Security-Policy on every response (django-csp): scripts and styles only from our own
# origin or inline with this response's nonce (the pages' templates carry it), no plugins,
# no framing, forms and fetches to our own origin only. An injected <script> does not run.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}

if not DEBUG:
    # Cookies only over https: an admin session must not cross the network in clear.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Sent only on https requests (behind a TLS proxy, with PROXY_HOPS set so Django sees
    # them as https), so a plain-http development or test stack is unaffected.
    SECURE_HSTS_SECONDS = 31536000

# --- Logging ---------------------------------------------------------------------------
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, not {LOG_FORMAT!r}")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "config.logging.JsonFormatter"},
        "console": {"()": "config.logging.ConsoleFormatter"},
    },
    # On the handler, not a logger: a logger's filters miss records propagated from below.
    "filters": {"redact_secrets": {"()": "config.logging.RedactSecrets"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}
