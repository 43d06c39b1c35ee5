"""Sphinx extension: serve MathJax from the built book itself, so that its pages typeset math offline.

Loaded by the book's ``_config.yml`` (``sphinx: extra_extensions``). It points Sphinx's
``mathjax_path`` at ``_static/mathjax/tex-chtml.js`` and, after a successful HTML build, copies
MathJax 3 (the TeX-to-HTML component with its fonts, TeX extensions, accessibility and menu
components) into ``_static/mathjax/``. The files come from the PyPI package
``django-static-mathjax``, pinned in ``environment.yml``, which ships the official MathJax 3.2.2
distribution; the component's sha256 is checked before anything is copied, and the copy is made
in a temporary folder and moved into place, so a build never holds a partial MathJax.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import shutil
import tempfile
from pathlib import Path
from typing import Any

MATHJAX_VERSION = "3.2.2"
COMPONENT = "tex-chtml.js"
COMPONENT_SHA256 = "9b5ae004241a76ab35468a2b8cc567774cfd919f3788c29de17dc1fba95bbe06"
"""sha256 of MathJax 3.2.2's ``es5/tex-chtml.js`` as shipped by django-static-mathjax 3.2.2.1."""

SUBDIRS: tuple[str, ...] = ("input", "output/chtml", "a11y", "ui", "adaptors", "sre")
"""The parts of MathJax that ``tex-chtml.js`` loads on demand (the other combined components are left out)."""

TARGET = "mathjax"
"""Folder under the site's ``_static/`` that receives MathJax."""


class MathJaxError(RuntimeError):
    """The pinned MathJax files are missing or differ from the pinned release."""


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax distribution, checked against the pinned sha256."""
    try:
        source = Path(str(importlib.resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        raise MathJaxError("MathJax is not installed: `pip install django-static-mathjax==3.2.2.1` "
                           "(listed in environment.yml)") from None
    component = source / COMPONENT
    if not component.is_file():
        raise MathJaxError(f"{component}: not found; the installed 'mathjax' package is not MathJax {MATHJAX_VERSION}")
    digest = hashlib.sha256(component.read_bytes()).hexdigest()
    if digest != COMPONENT_SHA256:
        raise MathJaxError(f"{component}: sha256 {digest} differs from the pinned MathJax {MATHJAX_VERSION} "
                           f"({COMPONENT_SHA256})")
    return source


def copy_mathjax(static_dir: Path) -> Path:
    """Copy the pinned MathJax into ``static_dir/mathjax`` (replacing an older copy); return that folder."""
    source = mathjax_source()
    static_dir = Path(static_dir)
    static_dir.mkdir(parents=True, exist_ok=True)
    target = static_dir / TARGET
    with tempfile.TemporaryDirectory(dir=static_dir, prefix=".mathjax-") as scratch:
        staged = Path(scratch) / TARGET
        staged.mkdir()
        shutil.copy2(source / COMPONENT, staged / COMPONENT)
        for sub in SUBDIRS:
            shutil.copytree(source / sub, staged / sub)
        licence = source.parent / "LICENSE"
        if licence.is_file():
            shutil.copy2(licence, staged / "LICENSE")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def _use_local_mathjax(app: Any, config: Any) -> None:
    config.mathjax_path = f"{TARGET}/{COMPONENT}"


def _copy_after_build(app: Any, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        copy_mathjax(Path(app.outdir) / "_static")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: local ``mathjax_path``, files copied when the HTML build has finished."""
    mathjax_source()  # fail at the start of the build, not after it
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_after_build)
    return {"version": MATHJAX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
