"""Production mode passes Django's deployment checks; the laptop default stays safe."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, env_extra, tmp_path):
    env = {**os.environ, "BUILDSITE_DATA_DIR": str(tmp_path), **env_extra}
    for leaked in ("DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(leaked, None)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_mode_passes_check_deploy(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        env_extra={
            "BUILDSITE_PRODUCTION": "1",
            "DJANGO_SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-0123456789",
            "DJANGO_ALLOWED_HOSTS": "builds.example.com",
        },
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_default_is_not_debug_and_generates_a_private_secret_key(tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        tmp_path=tmp_path,
        env_extra={"DJANGO_SECRET_KEY": "", "DATABASE_URL": "", "REDIS_URL": ""},
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    key_file = tmp_path / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_a_scaled_out_process_without_a_shared_secret_key_refuses_to_start(tmp_path):
    """A host with a key of its own would silently drop jobs signed by the others."""
    env = {"DJANGO_SECRET_KEY": "", "DATABASE_URL": "postgres://postgres@127.0.0.1:1/none"}
    for extra in ({}, {"DATABASE_URL": "", "REDIS_URL": "redis://127.0.0.1:1/0"}):
        result = run_manage("check", tmp_path=tmp_path, env_extra={**env, **extra})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "Buildsite: DJANGO_SECRET_KEY must be set (the same on every host) when "
            "DATABASE_URL or REDIS_URL points at a shared server"
        ]


def test_a_scaled_out_process_without_an_artifact_store_refuses_to_start(tmp_path):
    """A store under each host's own data dir would leave dependents without their files."""
    env = {
        "DJANGO_SECRET_KEY": "shared",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/none",
        "BUILDSITE_ARTIFACTS_URL": "",
    }
    result = run_manage("check", tmp_path=tmp_path, env_extra=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Buildsite: BUILDSITE_ARTIFACTS_URL must be set (file:///shared/mount or "
        "s3://bucket) when DATABASE_URL or REDIS_URL points at a shared server"
    ]
    bad = run_manage(
        "check", tmp_path=tmp_path, env_extra={**env, "BUILDSITE_ARTIFACTS_URL": "ftp://x/y"}
    )
    assert bad.returncode == 1 and "use file:///path or s3://bucket" in bad.stderr


def test_the_embedded_default_keeps_artifacts_in_the_data_dir(tmp_path):
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.BUILDSITE['ARTIFACTS_URL'])",
        tmp_path=tmp_path,
        env_extra={"DATABASE_URL": "", "REDIS_URL": "", "BUILDSITE_ARTIFACTS_URL": ""},
    )
    assert result.stdout.strip().splitlines()[-1] == (tmp_path / "artifacts").resolve().as_uri()


def test_project_creators_defaults_to_staff_and_refuses_unknown_values(tmp_path):
    show = "from django.conf import settings; print(settings.BUILDSITE_PROJECT_CREATORS)"
    env = {"DATABASE_URL": "", "REDIS_URL": ""}
    default = run_manage("shell", "-c", show, tmp_path=tmp_path, env_extra=env)
    assert default.stdout.strip().splitlines()[-1] == "staff", default.stderr
    bad = run_manage(
        "check",
        tmp_path=tmp_path,
        env_extra={**env, "BUILDSITE_PROJECT_CREATORS": "everyone"},
    )
    assert bad.returncode != 0 and "use staff or all" in bad.stderr
