"""Settings read from the environment in one place, so every entry point agrees."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from ecg_app.serving.intake import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, IntakeLimits

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where an installed wheel keeps the shipped model, report templates and migrations (setup.py copies them);
# an editable install or a checkout has no such folder and reads them from the repository.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def shipped(name: str) -> Path:
    """The folder `name` (model, templates, migrations) inside the installed package, else in the
    repository."""
    return BUNDLED_DIR / name if (BUNDLED_DIR / name).is_dir() else REPO_ROOT / name


DEFAULT_MODEL_DIR = shipped("model")
TEMPLATES_DIR = shipped("templates")
MIGRATIONS_DIR = shipped("migrations")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_flag(name: str) -> bool:
    """An on/off setting: 1, true, yes or on (any case) turn it on; unset or empty leave it off; anything
    else is an error, so that a typo never silently changes what is kept."""
    value = (os.environ.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with `Settings.from_env()`."""

    data_dir: Path
    database_url: str
    model_dir: Path = DEFAULT_MODEL_DIR
    max_upload_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    users: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Keep each upload's own bytes beside its de-identified picture (docs/security.md): off by default.
    keep_originals: bool = False

    @property
    def intake_limits(self) -> IntakeLimits:
        """The upload limits every entry point applies."""
        return IntakeLimits(self.max_upload_bytes, self.max_pixels, self.min_side)

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("ECG_APP_DATA_DIR") or platformdirs.user_data_dir("ecg-app"))
        database_url = os.environ.get("ECG_APP_DATABASE_URL") or f"sqlite:///{data_dir / 'ecg_app.sqlite3'}"
        users = parse_users(os.environ.get("ECG_APP_USERS", ""))
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            model_dir=Path(os.environ.get("ECG_APP_MODEL_DIR") or DEFAULT_MODEL_DIR),
            max_upload_bytes=_env_int("ECG_APP_MAX_UPLOAD_BYTES", DEFAULT_MAX_BYTES),
            max_pixels=_env_int("ECG_APP_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            users=users,
            keep_originals=_env_flag("ECG_APP_KEEP_ORIGINALS"),
        )


def parse_users(value: str) -> tuple[tuple[str, str], ...]:
    """`user:password,user2:password2` as pairs. A malformed entry is an error, never skipped: a typo must
    not silently turn the login off. The message does not repeat the entry (it may hold a password)."""
    users = []
    for entry in value.split(","):
        user, colon, password = entry.strip().partition(":")
        if not (user or colon or password):
            continue  # empty entry, e.g. a trailing comma
        if not (user and colon and password):
            raise ValueError("ECG_APP_USERS must be user:password pairs separated by commas")
        users.append((user, password))
    return tuple(users)


def portable_path(path: str | Path) -> str:
    """A path relative to the repository when it can be (so model.json works from any clone)."""
    resolved = Path(path).resolve()
    try:
        return os.path.relpath(resolved, REPO_ROOT)
    except ValueError:
        return str(resolved)


def resolve_path(path: str | Path) -> Path:
    """Inverse of portable_path: relative paths are taken from the repository root."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (REPO_ROOT / candidate).resolve()
