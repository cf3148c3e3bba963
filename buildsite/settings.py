"""One settings module for every deployment; everything comes from environment variables.

Laptop-safe defaults give the embedded deployment (SQLite, django-q2 ORM broker,
in-memory channel layer). `DATABASE_URL` / `REDIS_URL` switch to the scaled-out one.
`BUILDSITE_PRODUCTION=1` turns on the settings `manage.py check --deploy` asks for.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


PRODUCTION = env_bool("BUILDSITE_PRODUCTION")
DATA_DIR = Path(os.environ.get("BUILDSITE_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# What the server writes is its own: the SQLite file, keys, logs (0600 / 0700). Steps
# run as another user and reach only their workspace (builds/steps/sandbox.py).
os.umask(0o077)


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    if _scaled_out():
        # Jobs are signed with the key: a host with a key of its own would drop every
        # job another host queued (BadSignature) while looking healthy.
        raise SystemExit(
            "Buildsite: DJANGO_SECRET_KEY must be set (the same on every host) when "
            "DATABASE_URL or REDIS_URL points at a shared server"
        )
    # A laptop install keeps a generated key in its data dir so sessions survive restarts.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _scaled_out() -> bool:
    url = os.environ.get("DATABASE_URL", "")
    return bool(os.environ.get("REDIS_URL")) or bool(url and not url.startswith("sqlite"))


def _artifacts_url() -> str:
    if url := os.environ.get("BUILDSITE_ARTIFACTS_URL"):
        if not url.startswith(("file:///", "s3://")):
            raise SystemExit(
                f"Buildsite: BUILDSITE_ARTIFACTS_URL={url!r}: use file:///path or s3://bucket[/prefix]"
            )
        return url
    if _scaled_out():
        # Tasks hand files on through the store: a default under each host's own data
        # dir would leave every dependent on another host without its files.
        raise SystemExit(
            "Buildsite: BUILDSITE_ARTIFACTS_URL must be set (file:///shared/mount or "
            "s3://bucket) when DATABASE_URL or REDIS_URL points at a shared server"
        )
    return (DATA_DIR / "artifacts").as_uri()


SANDBOX = os.environ.get("BUILDSITE_SANDBOX", "auto")
if SANDBOX not in ("auto", "off"):
    raise SystemExit(f"Buildsite: BUILDSITE_SANDBOX={SANDBOX!r}: use auto or off")
SECRET_KEY = _secret_key()
ARTIFACTS_URL = _artifacts_url()
DEBUG = env_bool("DJANGO_DEBUG")  # off unless asked for: this is a server, not a dev tool
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "buildsite",
    "tasks",
    "builds",
    "docs_engine",
    "prompts",
    "vault",
    "repositories",
    "schedules",
    "audit",
    "notifications",
    "evals",
    "search",
    # After builds: its `qcluster` command (graceful stop) takes the place of django-q2's.
    "django_q",
]

MIDDLEWARE = [
    # Outermost, so it counts every response, the 500s inner layers made of exceptions too.
    "buildsite.metrics_http.count_requests",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "buildsite.urls"
ASGI_APPLICATION = "buildsite.asgi.application"
WSGI_APPLICATION = "buildsite.wsgi.application"

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
                "buildsite.context_processors.projects",
                "buildsite.context_processors.sandbox",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            # Django's SQLite backend with a finer wait for the write lock.
            "ENGINE": "buildsite.sqlite_backend",
            "NAME": os.environ.get("BUILDSITE_SQLITE_PATH", str(DATA_DIR / "buildsite.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the
                # busy timeout instead of failing with "database is locked" on upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000;"
                ),
            },
            "TEST": {"NAME": os.environ.get("BUILDSITE_TEST_SQLITE_PATH")},
            # Reopening SQLite per job re-runs the PRAGMAs and checkpoints the WAL.
            "CONN_MAX_AGE": env_int("BUILDSITE_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
        }
    }
IS_SQLITE = DATABASES["default"]["ENGINE"].endswith(("sqlite3", "sqlite_backend"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- queue, channels ------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_WORKERS = env_int("BUILDSITE_WORKERS", max(2, os.cpu_count() or 2))
Q_CLUSTER = {
    "name": os.environ.get("BUILDSITE_Q_NAME", "buildsite"),
    "workers": Q_WORKERS,
    # Our own lease/reaper owns task recovery: django-q2 must not re-run a job by itself,
    # and its timeout only guards against a job that ignores our own timeouts.
    "timeout": env_int("BUILDSITE_Q_TIMEOUT", 6 * 3600),
    "retry": env_int("BUILDSITE_Q_TIMEOUT", 6 * 3600) + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 500,
    "catch_up": False,
    "poll": float(os.environ.get("BUILDSITE_Q_POLL", "0.01")),
    # Jobs a cluster has pulled but not started wait in its queue: keep that to one per
    # worker (django-q2's default is workers squared), so few jobs wait behind a busy
    # cluster; a pulled job not acknowledged within the job lease is offered again.
    "queue_limit": env_int("BUILDSITE_Q_QUEUE_LIMIT", Q_WORKERS),
    # The pusher claims up to this many jobs per write (one lock for ten jobs; claiming
    # two at a time cost a third of the no-op throughput on SQLite), and where clusters
    # share the database never more than it has idle workers (BUILDSITE["PULL"]).
    "bulk": env_int("BUILDSITE_Q_BULK", 10),
    # Steps run in their own subprocesses, so a worker grows little; restarting one
    # every 500 jobs (django-q2's default) left a slot empty for up to a guard cycle.
    "recycle": env_int("BUILDSITE_Q_RECYCLE", 5000),
    "label": "Django Q2",
    # Jobs are rows in our database on every deployment (docs/architecture.md, "Jobs"):
    # written in the transaction that queues their task, and leased, not popped, so a
    # job pulled by a host that dies is pulled again by another. Redis, when set, is
    # only the channel layer.
    "orm": "default",
}
# BUILDSITE_Q_BROKER=orm selects django-q2's own ORM broker (bench/scheduler.py
# measures raw jobs on both).
if os.environ.get("BUILDSITE_Q_BROKER", "sql") == "sql":
    Q_CLUSTER["broker_class"] = "buildsite.broker.SQLBroker"
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("BUILDSITE_CHANNEL_PREFIX", "buildsite"),
                "capacity": 5000,
            },
        }
    }
else:
    # A burst of log chunks must not overflow a socket's queue (default capacity 100).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 5000},
        }
    }

Q_PULL = os.environ.get("BUILDSITE_Q_PULL", "ahead" if IS_SQLITE else "idle")
if Q_PULL not in ("idle", "ahead"):
    raise SystemExit(f"Buildsite: BUILDSITE_Q_PULL={Q_PULL!r}: use idle or ahead")

# --- buildsite ------------------------------------------------------------------------
BUILDSITE = {
    "LEASE_SECONDS": env_int("BUILDSITE_LEASE_SECONDS", 30),
    # What a cluster's pusher pulls (builds/pusher.py): "idle", jobs for its idle workers
    # only, so a busy cluster keeps none from another's idle workers; "ahead", as many as
    # its queue takes (django-q2's way). SQLite has one host, so one cluster: "ahead".
    "PULL": Q_PULL,
    # On PostgreSQL the engine's hot-path statements (tasks/rawsql.py) are prepared per
    # connection. Off (0) behind a pooler that cannot keep prepared statements
    # (PgBouncer in transaction mode without `max_prepared_statements`, 1.21 or later).
    "PG_PREPARE": env_bool("BUILDSITE_PG_PREPARE", default=True),
    "HEARTBEAT_SECONDS": float(os.environ.get("BUILDSITE_HEARTBEAT_SECONDS", "1.0")),
    "TICK_SECONDS": float(os.environ.get("BUILDSITE_TICK_SECONDS", "1.0")),
    "RETRY_BACKOFF_SECONDS": float(os.environ.get("BUILDSITE_RETRY_BACKOFF_SECONDS", "2.0")),
    "RETRY_BACKOFF_MAX_SECONDS": float(os.environ.get("BUILDSITE_RETRY_BACKOFF_MAX", "300")),
    "AGING_PER_MINUTE": float(os.environ.get("BUILDSITE_AGING_PER_MINUTE", "1.0")),
    # Last resort only: a pulled job comes back after the job lease; this re-enqueues a
    # task QUEUED this long (in a deep queue it duplicates jobs, which are harmless).
    "REQUEUE_SECONDS": env_int("BUILDSITE_REQUEUE_SECONDS", 3600),
    "CACHE_TTL_SECONDS": env_int("BUILDSITE_CACHE_TTL_SECONDS", 7 * 24 * 3600),
    "CACHE_MAX_BYTES": env_int("BUILDSITE_CACHE_MAX_BYTES", 2 * 1024**3),  # artifacts included
    "RETENTION_DAYS": env_int("BUILDSITE_RETENTION_DAYS", 30),
    "WORKSPACE_DIR": DATA_DIR / "workspaces",
    # Where people reach this server: links in commit statuses (and notifications).
    "BASE_URL": os.environ.get("BUILDSITE_BASE_URL", "http://localhost:8000").rstrip("/"),
    # Each host's bare mirrors of the repositories it builds (repositories/git.py).
    "MIRROR_DIR": DATA_DIR / "mirrors",
    "GIT_TIMEOUT_SECONDS": env_int("BUILDSITE_GIT_TIMEOUT_SECONDS", 600),
    # file:// repository URLs read the server's own disk: off unless the operator says so.
    "ALLOW_LOCAL_REPOS": env_bool("BUILDSITE_ALLOW_LOCAL_REPOS"),
    "PRODUCTION": PRODUCTION,
    # Shell steps run in bubblewrap: "auto" (when it can run here), or "off" (explicitly
    # unsandboxed; production refuses to run steps without one of the two).
    "SANDBOX": SANDBOX,
    # Steps' user when workers are root: one uid per worker process, STEP_UID_BASE + its
    # pid (so a step's process limit counts its own processes only), or every step as
    # BUILDSITE_STEP_UID when that is set.
    "STEP_UID": env_int("BUILDSITE_STEP_UID", -1),
    "STEP_UID_BASE": env_int("BUILDSITE_STEP_UID_BASE", 0x7000_0000),
    # Where a step's memory limit lives (builds/steps/cgroups.py): "auto" (the worker's
    # own memory cgroup, when it is root), a cgroup directory, or "off" (address space).
    "STEP_CGROUP": os.environ.get("BUILDSITE_STEP_CGROUP", "auto"),
    "STEP_LIMITS": {  # defaults of a task's `limits:`
        "memory_mb": env_int("BUILDSITE_STEP_MEMORY_MB", 4096),
        "processes": env_int("BUILDSITE_STEP_PROCESSES", 512),
        "cpu_seconds": env_int("BUILDSITE_STEP_CPU_SECONDS", 3600),
        "log_mb": env_int("BUILDSITE_STEP_LOG_MB", 64),
        "workspace_mb": env_int("BUILDSITE_STEP_WORKSPACE_MB", 8192),
    },
    "ARTIFACTS_URL": ARTIFACTS_URL,
    "ARTIFACT_MAX_FILE_BYTES": env_int("BUILDSITE_ARTIFACT_MAX_FILE_BYTES", 512 * 1024 * 1024),
    "ARTIFACT_MAX_BUILD_BYTES": env_int("BUILDSITE_ARTIFACT_MAX_BUILD_BYTES", 4 * 1024**3),
    "ARTIFACT_MAX_FILES": env_int("BUILDSITE_ARTIFACT_MAX_FILES", 10_000),
    # A stored blob no artifact or cache entry names is deleted once untouched this long.
    "BLOB_GRACE_SECONDS": env_int("BUILDSITE_BLOB_GRACE_SECONDS", 24 * 3600),
    "STEP_TIMEOUT_SECONDS": env_int("BUILDSITE_STEP_TIMEOUT_SECONDS", 3600),
    "KILL_GRACE_SECONDS": float(os.environ.get("BUILDSITE_KILL_GRACE_SECONDS", "2.0")),
    # The web process relays Event rows to the channel layer when workers cannot reach it.
    "EVENT_RELAY": env_bool("BUILDSITE_EVENT_RELAY", default=not REDIS_URL),
    "RELAY_POLL_SECONDS": float(os.environ.get("BUILDSITE_RELAY_POLL_SECONDS", "0.02")),
    "RELAY_IDLE_SECONDS": float(os.environ.get("BUILDSITE_RELAY_IDLE_SECONDS", "30")),
    "RELAY_GAP_SECONDS": float(os.environ.get("BUILDSITE_RELAY_GAP_SECONDS", "2")),
    # Notifications (docs/notifications.md): per-attempt time limit, attempts, and the
    # first retry's wait (doubled after each further failure).
    "NOTIFY_TIMEOUT_SECONDS": float(os.environ.get("BUILDSITE_NOTIFY_TIMEOUT_SECONDS", "10")),
    "NOTIFY_MAX_ATTEMPTS": env_int("BUILDSITE_NOTIFY_MAX_ATTEMPTS", 5),
    "NOTIFY_BACKOFF_SECONDS": float(os.environ.get("BUILDSITE_NOTIFY_BACKOFF_SECONDS", "2")),
    # How long the outbox reader waits for a hole in event ids to fill (PostgreSQL).
    "NOTIFY_GAP_SECONDS": float(os.environ.get("BUILDSITE_NOTIFY_GAP_SECONDS", "2")),
}

# --- email (notifications): the console by default, so `make run` needs no mail server --
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "buildsite@localhost")


# --- outbound calls and provider keys (prompts/netguard.py, docs/security.md) ---------
def provider_env_keys(raw: str) -> dict[str, list[str]]:
    """BUILDSITE_PROVIDER_ENV_KEYS="OPENAI_API_KEY=demo,research;OTHER_API_KEY=*": which
    projects (slugs, `*` = every project) may send which server variable. Unset: none."""
    import re  # here, to keep this block self-contained

    allowed: dict[str, list[str]] = {}
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        name, _, projects = (part.strip() for part in entry.partition("="))
        slugs = [p.strip() for p in projects.split(",") if p.strip()]
        valid_slugs = slugs and all(re.fullmatch(r"\*|[a-z0-9][a-z0-9-]*", s) for s in slugs)
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*_API_KEY", name) or not valid_slugs:
            raise SystemExit(
                f"Buildsite: BUILDSITE_PROVIDER_ENV_KEYS entry {entry!r}: use "
                "NAME_API_KEY=project,project;OTHER_API_KEY=* (docs/security.md)"
            )
        allowed.setdefault(name, []).extend(slugs)
    return allowed


BUILDSITE["PROVIDER_ENV_KEYS"] = provider_env_keys(
    os.environ.get("BUILDSITE_PROVIDER_ENV_KEYS", "")
)
BUILDSITE["ALLOW_PRIVATE_URLS"] = env_bool("BUILDSITE_ALLOW_PRIVATE_URLS")

# --- auth, static, i18n -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BUILDSITE_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "django-q": {"level": os.environ.get("BUILDSITE_Q_LOG_LEVEL", "WARNING")},
    },
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- API access (buildsite/services.py, buildsite/api.py) --------------------------------
# Who may create projects: "staff" (staff users and superusers; the default) or "all"
# (every active user). Project-scoped API tokens never can.
BUILDSITE_PROJECT_CREATORS = os.environ.get("BUILDSITE_PROJECT_CREATORS", "staff")
if BUILDSITE_PROJECT_CREATORS not in ("staff", "all"):
    raise SystemExit(
        f"Buildsite: BUILDSITE_PROJECT_CREATORS={BUILDSITE_PROJECT_CREATORS!r}: use staff or all"
    )


# --- /metrics (buildsite/metrics_http.py, docs/metrics.md) ------------------------------
def metrics_allow(raw: str) -> list[str]:
    """BUILDSITE_METRICS_ALLOW="127.0.0.1/32,10.0.0.0/8": who may scrape without a token."""
    import ipaddress  # here, to keep this block self-contained

    networks = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise SystemExit(
                f"Buildsite: BUILDSITE_METRICS_ALLOW entry {entry!r}: use IP addresses or "
                "CIDR networks, comma-separated (e.g. 127.0.0.1/32,::1/128,10.0.0.0/8)"
            ) from None
    return networks


BUILDSITE_METRICS_ALLOW = metrics_allow(
    os.environ.get("BUILDSITE_METRICS_ALLOW", "127.0.0.1/32,::1/128")
)
# Behind one reverse proxy that appends the client's address to X-Forwarded-For: take the
# last entry of that header (the one the proxy wrote) instead of REMOTE_ADDR. Off by
# default: without such a proxy anyone could claim to be 127.0.0.1.
BUILDSITE_METRICS_TRUST_FORWARDED = env_bool("BUILDSITE_METRICS_TRUST_FORWARDED")
