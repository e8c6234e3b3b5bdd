"""Build hook: the shipped model, the report templates and the migrations travel inside the wheel.

Why: they live at the top of the repository (model/, templates/, migrations/), outside the package, so
a plain `pip install .` (a wheel, a container build) would leave them behind and the installed app
would find no model. They are copied to `ecg_app/bundled/` in the built package; an editable install
reads them from the repository instead (`ecg_app.config`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("model", "templates", "migrations")


def _not_shipped(folder: str, names: list[str]) -> list[str]:
    """What stays behind: caches, and the networks a training or cross-validation run leaves beside the
    shipped ones (git ignores them too)."""
    return [
        n
        for n in names
        if n in ("__pycache__", "members")
        or n.endswith(".pyc")
        or (n.endswith(".keras") and Path(folder).name != "model")
    ]


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in BUNDLED:
            target = Path(self.build_lib, "ecg_app", "bundled", name)
            shutil.rmtree(target, ignore_errors=True)  # nothing left from an earlier build
            shutil.copytree(
                name,
                target,
                dirs_exist_ok=True,
                ignore=_not_shipped,
            )


setup(cmdclass={"build_py": BuildPyWithBundle})
