"""The Gradio dashboard: `build_app` lays out the tabs, `launch` serves them (see ui/app.py)."""

from ecg_app.ui.app import App, build_app, launch

__all__ = ["App", "build_app", "launch"]
