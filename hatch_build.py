"""Wheel build hook: compile hmodels' C kernels when hmodels is installed.

The library goes to ``hmodels/engine/_prebuilt/`` (named by :func:`hmodels.engine.toolchain.prebuilt_name`,
with its digest), where :mod:`hmodels.engine.native` loads it, so the first fit after an install compiles
nothing. Without a C compiler, or if the build fails, the install goes on and the kernels are compiled on first
use instead (where a missing compiler is a clear error). The toolchain and layout modules are loaded from
their files: the build environment has hatchling, not NumPy or the rest of hmodels.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KernelsBuildHook(BuildHookInterface):
    """Compile ``kernels.c`` into the wheel (an editable install: into the source tree it runs from)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:  # noqa: D102 - see BuildHookInterface
        self._scratch = None
        engine = Path(self.root) / "hmodels" / "engine"
        codes = _load("_hmodels_build_codes", engine / "codes.py")
        toolchain = _load("_hmodels_build_toolchain", engine / "toolchain.py")
        text = toolchain.source_text(codes.c_defines())
        name = toolchain.prebuilt_name(text)
        out = engine / "_prebuilt"
        try:
            out.mkdir(exist_ok=True)
            for old in out.glob("kernels-*"):  # libraries of earlier sources
                if not old.name.startswith(name):
                    old.unlink()
            if toolchain.damage(out / name) is not None and not os.access(out, os.W_OK):  # (an empty one left there)
                raise PermissionError(f"{out} is not writable")
        except OSError:  # a read-only source tree: build the wheel's copy elsewhere
            if version == "editable":
                return
            self._scratch = out = Path(tempfile.mkdtemp(prefix="hmodels-kernels-"))
        target = out / name
        try:
            why = None if toolchain.damage(target) is None else toolchain.compile_library(text, target)
        except OSError as exc:
            why = str(exc)
        if why is not None:
            self.app.display_warning(f"hmodels: the C kernels were not compiled at install ({why}); they will be "
                                     "compiled on first use.")
            return
        if version == "editable":  # hmodels runs from the source tree, where the library now is
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for path in (target, toolchain.digest_path(target)):
            build_data["force_include"][str(path)] = f"hmodels/engine/_prebuilt/{path.name}"

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:  # noqa: D102
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
