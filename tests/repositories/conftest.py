import json
from pathlib import Path

import pytest

PAYLOADS = Path(__file__).parent / "payloads"

PIPELINE = """\
name: app
tasks:
  test:
    steps:
      - run: cat hello.txt && git rev-parse HEAD
        output: seen
"""


@pytest.fixture
def repo_settings(settings, tmp_path):
    settings.BUILDSITE = {
        **settings.BUILDSITE,
        "ALLOW_PRIVATE_URLS": True,  # the test forge is on 127.0.0.1
        "MIRROR_DIR": tmp_path / "mirrors",
    }
    return settings.BUILDSITE


@pytest.fixture
def forge(tmp_path, repo_settings):
    """A git server on 127.0.0.1 with one repository, `app`, and a clone to push from."""
    from tests.gitserver import GitServer, WorkingCopy

    root = tmp_path / "forge"
    server = GitServer(root)
    server.copy = WorkingCopy(root / "app.git", tmp_path / "work")
    yield server
    server.stop()


def payload(forge_name: str, *, after: str, branch: str = "main") -> bytes:
    """A push payload in the forge's own format (tests/repositories/payloads)."""
    text = (PAYLOADS / f"{forge_name}_push.json").read_text().replace("AFTER", after)
    data = json.loads(text)
    data["ref"] = f"refs/heads/{branch}"
    return json.dumps(data).encode()
