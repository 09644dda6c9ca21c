"""Compile the C kernels: the compiler, flags, library name and digest, with the standard library only.

Shared by :mod:`hmodels.engine.native` (first use: a build into the cache) and the wheel's build hook
(``hatch_build.py``: a build at install time, shipped in ``hmodels/engine/_prebuilt/``), which loads this
file on its own, without NumPy or the rest of hmodels. So this module imports nothing from hmodels: the
layout constants (``codes.c_defines()``) come in as text.

Examples
--------
>>> from hmodels.engine import codes, toolchain
>>> toolchain.library_name(toolchain.source_text(codes.c_defines())).startswith("kernels-")
True
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

__all__ = ["CFLAGS", "SOURCE", "compiler", "source_text", "library_name", "prebuilt_name", "digest_path", "sha256",
           "damage", "write_digest", "compile_library"]

SOURCE = Path(__file__).with_name("kernels.c")
#: Flags: optimised, position independent, no contraction of a*b+c (the same draws on every CPU).
CFLAGS = ["-O2", "-fPIC", "-shared", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]
COMPILE_TIMEOUT_S = 600.0


def compiler() -> list[str] | None:
    """Return the C compiler command (``$CC``, Python's own, ``cc``, ``gcc`` or ``clang``), or None.

    Examples
    --------
    >>> cc = compiler()
    >>> cc is None or isinstance(cc[0], str)
    True
    """
    candidates = [os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"]
    for cand in candidates:
        if not cand:
            continue
        parts = shlex.split(cand)
        if parts and shutil.which(parts[0]):
            return parts
    return None


def source_text(defines: str) -> str:
    """The C source as compiled: the layout's ``#define`` lines, then ``kernels.c``.

    Examples
    --------
    >>> source_text("#define N 1;").startswith("#define N 1;")
    True
    """
    return defines + SOURCE.read_text()


def _name(text: str, cc: list[str] | None = None) -> str:
    parts = [text, " ".join(CFLAGS), *([] if cc is None else [" ".join(cc)]), sys.platform, sysconfig.get_platform()]
    return f"kernels-{hashlib.sha256(chr(10).join(parts).encode()).hexdigest()[:16]}.so"


def library_name(text: str) -> str:
    """``kernels-<key>.so`` in the cache: the key hashes the source, the flags, the compiler and the platform."""
    return _name(text, compiler() or [])


def prebuilt_name(text: str) -> str:
    """``kernels-<key>.so`` built at install: the key hashes the source, the flags and the platform.

    Not the compiler: the library built at install serves this source on this platform whichever compiler
    (if any) is found at run time, or names ``$CC`` then.
    """
    return _name(text)


def digest_path(path: Path) -> Path:
    """Path of the digest file of a library (``<library>.sha256``).

    Examples
    --------
    >>> digest_path(Path("kernels-0.so")).name
    'kernels-0.so.sha256'
    """
    return path.with_name(path.name + ".sha256")


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def damage(path: Path) -> str | None:
    """Why the library at ``path`` cannot be trusted ("" when it is missing), or None when it is intact.

    Intact: its size and SHA-256 match the digest written beside it when it was built.

    Examples
    --------
    >>> damage(Path("no-such-kernels.so"))
    ''
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return ""
    try:
        text = digest_path(path).read_text()
    except FileNotFoundError:
        return "it has no digest file"
    except (OSError, UnicodeDecodeError):
        return "its digest file is unreadable"
    parts = text.split()
    if (len(parts) != 2 or len(parts[0]) != 64 or not parts[1].isdigit()
            or any(c not in "0123456789abcdef" for c in parts[0])):
        return "its digest file is corrupt"
    if int(parts[1]) != size:
        return f"its size is {size} bytes, not the {parts[1]} recorded when it was built"
    try:
        sha = sha256(path)
    except OSError:
        return "it is unreadable"
    if sha != parts[0]:
        return "its SHA-256 does not match the one recorded when it was built"
    return None


def write_digest(path: Path, sha: str, size: int) -> None:
    """Write ``<sha256> <size>`` beside the library, atomically (temporary file + rename)."""
    target = digest_path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{sha} {size}\n")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def compile_library(text: str, target: Path) -> str | None:
    """Compile ``text`` into ``target`` and write its digest, both atomically; None, or why it failed.

    Why: ``"took over ... s (command)."`` or ``"failed (command): stderr"``. Raises OSError where the
    directory cannot be written.
    """
    cc = compiler()
    if cc is None:
        return "failed: no C compiler (tried $CC, cc, gcc, clang)"
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernels.c"
        src.write_text(text)
        out = Path(tmp) / "kernels.so"
        cmd = [*cc, *CFLAGS, str(src), "-o", str(out), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"took over {COMPILE_TIMEOUT_S:.0f} s ({' '.join(cmd)})."
        if proc.returncode != 0 or not out.is_file():
            return f"failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}"
        sha, size = sha256(out), out.stat().st_size
        with contextlib.suppress(FileNotFoundError):  # a reader never pairs the new library with an old digest
            digest_path(target).unlink()
        os.replace(out, target)  # atomic: concurrent processes never load a half-written file
    with contextlib.suppress(OSError):  # without a digest the library still works here; the next process rebuilds it
        write_digest(target, sha, size)
    return None
