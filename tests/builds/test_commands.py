"""manage.py commands: tokens, admin, demo seed, build --follow."""

import io

import pytest
from django.core.management import CommandError, call_command

from buildsite.models import ApiToken
from buildsite.selectors import user_for_token


def run(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_create_token_prints_a_working_token_on_its_last_line(user, project):
    out, err = run("create_token", "alice", "--project", "acme")
    raw = out.strip().splitlines()[-1]
    assert raw.startswith("bst_") and "not shown again" in err
    token = ApiToken.objects.get()
    assert token.digest != raw and raw not in token.digest, "only the hash is stored"
    assert user_for_token(raw) == user and token.project == project


def test_create_token_refuses_unknown_users_and_projects(user):
    with pytest.raises(CommandError):
        run("create_token", "nobody")
    with pytest.raises(CommandError):
        run("create_token", "alice", "--project", "nope")


def test_ensure_admin_uses_the_password_from_the_environment(db, monkeypatch):
    from django.contrib.auth import authenticate

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass")
    run("ensure_admin")
    run("ensure_admin")  # idempotent
    assert authenticate(username="admin", password="s3cret-pass").is_superuser


def test_ensure_admin_generates_and_prints_a_password_once(db, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    out, _ = run("ensure_admin")
    assert "password:" in out
    assert run("ensure_admin")[0] == ""


def test_build_command_reports_bad_params(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-123456")
    run("ensure_admin")
    run("seed_demo")
    with pytest.raises(CommandError, match="unknown parameter"):
        run("build", "demo", "demo", "--param", "versoin=1")
    with pytest.raises(CommandError, match="key=value"):
        run("build", "demo", "demo", "--param", "oops")
