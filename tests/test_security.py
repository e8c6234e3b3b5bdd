"""Security settings that need no server: no secrets in the repository, bounded dependency ranges, the
serve command's localhost default and the login configuration. The running app's checks (file route,
uploads, bind address, login) are in tests/integration/test_app_security.py; see docs/security.md."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from ecg_app.cli import build_parser, main
from ecg_app.config import REPO_ROOT, Settings, parse_users
from ecg_app.ui import launch

# What a leaked credential looks like. The patterns are written so that this file does not match them.
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*\S{20,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "password literal": re.compile(
        r"(?i)\b(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token)\b\s*[=:]\s*[\"'][^\"'\s]{6,}[\"']"
    ),
    # A database URL with a real-looking password (not a placeholder such as "secret" or "<password>"),
    # for a host other than this machine (throwaway test servers) or a documentation domain ("example").
    "database URL with password": re.compile(
        r"\b(?:postgres(?:ql)?|mysql|mariadb)(?:\+\w+)?://[^:/@\s\"']+:"
        r"(?!(?:secret|password|changeme|pass|\*+|x+|<[^>@]*>|\$\{?\w+\}?)@)[^@/\s\"']+@"
        r"(?!localhost\b|127\.0\.0\.1\b|[\w.-]*example\b)"
    ),
}
SECRET_FILES = re.compile(
    r"(^|/)(\.env(\..*)?|\.netrc|\.pgpass|id_(rsa|dsa|ecdsa|ed25519))$|\.(pem|key|p12|pfx)$"
)


def repository_files() -> list[str]:
    """Tracked files plus new ones git would add (not ignored): what a commit could publish."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({name for name in out.decode().split("\0") if name and (REPO_ROOT / name).is_file()})


def test_no_secrets_in_the_repository():
    files = repository_files()
    assert "pyproject.toml" in files and "tests/test_security.py" in files  # the scan sees the checkout
    assert [name for name in files if SECRET_FILES.search(name)] == []
    found = []
    for name in files:
        data = (REPO_ROOT / name).read_bytes()
        if b"\0" in data[:8192]:  # binary: images, the model
            continue
        text = data.decode("utf-8", errors="replace")
        found += [f"{name}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert found == []


@pytest.mark.parametrize(
    "leak",
    [
        # Assembled from pieces, so that this file itself holds no match.
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
        "aws_key = 'AKIA" + "ABCDEFGHIJKLMNOP'",
        "token: ghp_" + "a" * 36,
        "password" + ' = "hunter22"',
        "DB = 'postgresql+psycopg://ecg:s3cret" + "@db.internal.corp/ecg'",
    ],
)
def test_secret_patterns_catch_typical_leaks(leak):
    assert any(pattern.search(leak) for pattern in SECRET_PATTERNS.values())


def test_secret_patterns_leave_local_test_settings_alone():
    harmless = [
        "postgresql+psycopg://ecg:ecg@localhost/ecg",
        "postgresql+psycopg://ecg:s3cret@db.example:5432/ecg",
        "postgresql+psycopg://ecg:secret@db.internal:5432/ecg",
        "postgresql://ecg:<password>@db.internal/ecg",
        "ECG_APP_USERS='alice:correct-horse'",
    ]
    assert not any(pattern.search(text) for pattern in SECRET_PATTERNS.values() for text in harmless)


def test_every_dependency_has_an_upper_bound():
    """Ranges known to work: a new major version (or a new minor, where the project says so) is opt-in."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    unbounded = [
        spec
        for spec in requirements
        if Requirement(spec).name != project["name"]  # an extra of the project itself ("ecg-app[train]")
        and not any(s.operator in ("<", "<=", "==", "~=", "===") for s in Requirement(spec).specifier)
    ]
    assert requirements and unbounded == []


def test_serve_listens_on_localhost_unless_told_otherwise():
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
    assert build_parser().parse_args(["serve", "--host", "0.0.0.0"]).host == "0.0.0.0"


def test_login_users_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECG_APP_USERS", "alice:correct:horse, bob:battery-staple,")
    assert Settings.from_env().users == (("alice", "correct:horse"), ("bob", "battery-staple"))
    monkeypatch.delenv("ECG_APP_USERS")
    assert Settings.from_env().users == ()  # no login: the default, for localhost use
    assert parse_users("") == ()


@pytest.mark.parametrize("value", ["alice", "alice:", ":secret-pw", "alice:pw,bob"])
def test_malformed_login_users_are_refused_not_skipped(monkeypatch, tmp_path, capsys, value):
    """A typo must not silently serve the app without a login; the message never echoes a password."""
    with pytest.raises(ValueError, match="user:password pairs") as refused:
        parse_users(value)
    assert "secret-pw" not in str(refused.value)
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECG_APP_USERS", value)
    assert main(["serve", "--port", "0"]) == 2
    assert "ECG_APP_USERS must be user:password pairs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "kept"),
    [(None, False), ("", False), ("0", False), ("off", False), ("1", True), (" Yes ", True)],
)
def test_keeping_originals_is_off_unless_asked_for(monkeypatch, tmp_path, value, kept):
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path))
    if value is None:
        monkeypatch.delenv("ECG_APP_KEEP_ORIGINALS", raising=False)
    else:
        monkeypatch.setenv("ECG_APP_KEEP_ORIGINALS", value)
    assert Settings.from_env().keep_originals is kept


def test_a_typo_in_keep_originals_is_an_error_not_a_silent_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("ECG_APP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECG_APP_KEEP_ORIGINALS", "ture")
    with pytest.raises(ValueError, match="ECG_APP_KEEP_ORIGINALS"):
        Settings.from_env()
