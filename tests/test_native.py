"""The compiled-kernel cache survives damage (issue #17): it is verified before loading and rebuilt.

Every load runs in a subprocess, since a damaged library loaded into pytest itself could kill it
(SIGBUS, SIGSEGV); each test works on its own copy of one freshly built cache (``HMODELS_CACHE_DIR``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hmodels.engine import native

# Load the library, prove it computes (Normal(0, 1) log density at 0.5), print its path.
PROBE = """
import math
from hmodels.engine import native
native.library()
lp, dlp = native.prior_logp(0, 0.0, 1.0, 0.0, 0.5)
assert abs(lp - (-0.125 - 0.5 * math.log(2 * math.pi))) < 1e-12 and dlp == -0.5, (lp, dlp)
print(native.library_path())
"""


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HMODELS_CACHE_DIR=str(cache), HMODELS_PREBUILT="0")  # the cache alone (see below)
    env.update(extra)
    return env


def _run(env: dict[str, str], code: str = PROBE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> Path:
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return Path(proc.stdout.strip().splitlines()[-1])


def _digest_matches(so: Path) -> bool:
    sha, size = native.digest_path(so).read_text().split()
    data = so.read_bytes()
    return len(data) == int(size) and hashlib.sha256(data).hexdigest() == sha


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """Build the library once into a cache; return (cache directory, library file name)."""
    cache = tmp_path_factory.mktemp("hmodels-cache")
    so = _ok(_run(_env(cache)))
    assert so.parent == cache and _digest_matches(so)
    return cache, so.name


@pytest.fixture
def cache(built, tmp_path) -> tuple[Path, Path]:
    """Copy the built cache for one test; return (cache directory, library path)."""
    src, name = built
    dst = tmp_path / "cache"
    shutil.copytree(src, dst)
    return dst, dst / name


def _truncate_half(so: Path) -> None:
    with open(so, "r+b") as fh:
        fh.truncate(so.stat().st_size // 2)


def _flip_middle(so: Path) -> None:
    data = bytearray(so.read_bytes())
    mid = len(data) // 2
    for i in range(mid - 256, mid + 256):
        data[i] ^= 0xFF
    so.write_bytes(bytes(data))


def _zero_bytes(so: Path) -> None:
    so.write_bytes(b"")


def _delete_digest(so: Path) -> None:
    native.digest_path(so).unlink()


def _garbage_same_size(so: Path) -> None:
    so.write_bytes(os.urandom(so.stat().st_size))


def _stale_digest(so: Path) -> None:  # a well-formed digest of another build, same size
    native.digest_path(so).write_text(f"{hashlib.sha256(b'another build').hexdigest()} {so.stat().st_size}\n")


def _corrupt_digest(so: Path) -> None:
    native.digest_path(so).write_bytes(b"\x00\xffnot a digest")


DAMAGE = [_truncate_half, _flip_middle, _zero_bytes, _delete_digest, _garbage_same_size, _stale_digest,
          _corrupt_digest]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.lstrip("_"))
def test_damaged_cache_is_rebuilt(cache, damage):
    """Each kind of damage: the next process rebuilds the library (digest matches again) and runs."""
    cache_dir, so = cache
    damage(so)
    assert _ok(_run(_env(cache_dir))) == so
    assert _digest_matches(so)  # the next process loads it as it is (test_intact_cache_is_reused_not_rebuilt)


def test_intact_cache_is_reused_not_rebuilt(cache):
    """A library whose digest matches is loaded as it is (same file, not recompiled)."""
    cache_dir, so = cache
    before = so.stat()
    assert _ok(_run(_env(cache_dir))) == so
    after = so.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_library_without_entry_points_is_rebuilt(cache, tmp_path):
    """A loadable library with a matching digest but not the kernels' symbols: rebuilt once, then loaded."""
    cache_dir, so = cache
    src = tmp_path / "other.c"
    src.write_text("int not_a_kernel(void) { return 1; }\n")
    subprocess.run([*native.compiler(), "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    data = so.read_bytes()
    native.digest_path(so).write_text(f"{hashlib.sha256(data).hexdigest()} {len(data)}\n")
    assert _ok(_run(_env(cache_dir))) == so
    assert _digest_matches(so)


def test_concurrent_processes_on_a_damaged_cache(cache):
    """Processes that find the same damage at once all succeed and leave one consistent pair."""
    cache_dir, so = cache
    _truncate_half(so)
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=_env(cache_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}\n{err}"
    assert _digest_matches(so)
    assert not [p.name for p in cache_dir.iterdir() if p.name.startswith(".") or p.is_dir()]  # no temporaries left


def test_unusable_cache_dir_falls_back(tmp_path):
    """An HMODELS_CACHE_DIR that cannot be created falls back to ~/.cache/hmodels."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = tmp_path / "home"
    so = _ok(_run(_env(blocker / "cache", HOME=str(home))))
    assert so.parent == home / ".cache" / "hmodels" and _digest_matches(so)


def _assert_clean_error(proc: subprocess.CompletedProcess, so: Path) -> None:
    assert proc.returncode == 1, f"exit {proc.returncode} ({'signal' if proc.returncode < 0 else 'code'}):\n" \
                                 f"{proc.stderr}"
    assert proc.returncode not in (-signal.SIGBUS, -signal.SIGSEGV, -signal.SIGILL)
    assert "Traceback" in proc.stderr and "\nhmodels.errors.SamplingError: " in proc.stderr, proc.stderr
    message = proc.stderr.rsplit("\nhmodels.errors.SamplingError: ", 1)[1]  # the last, raised one
    first = message.splitlines()[0]
    assert str(so) in first and "is damaged" in first and "HMODELS_CACHE_DIR" in first, message


def test_damaged_cache_with_a_broken_compiler_is_a_clear_error(tmp_path):
    """Damaged library, compiler now failing: a SamplingError naming the file and the fix, no signal."""
    gcc = native.compiler()
    cc = tmp_path / "bin" / "mycc"
    cc.parent.mkdir()
    cc.write_text(f"#!/bin/sh\nexec {' '.join(gcc)} \"$@\"\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    env = _env(tmp_path / "cache", CC=str(cc))
    so = _ok(_run(env))
    cc.write_text("#!/bin/sh\necho 'mycc: broken' >&2\nexit 1\n")
    _truncate_half(so)
    proc = _run(env)
    _assert_clean_error(proc, so)
    assert "mycc: broken" in proc.stderr
    proc = _run(env)  # the same answer every time, not a crash
    _assert_clean_error(proc, so)


def test_damaged_cache_with_no_compiler_is_a_clear_error(tmp_path):
    """Damaged library, no compiler on PATH: a SamplingError naming the file and the fix, no signal."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {k: v for k, v in _env(tmp_path / "cache", PATH=str(empty)).items() if k != "CC"}
    where = _run(env, "from hmodels.engine import native; print(native.compiler()); print(native.library_path())")
    assert where.returncode == 0, where.stderr
    found, path = where.stdout.strip().splitlines()[-2:]
    if found != "None":
        pytest.skip(f"a compiler is found without PATH ({found})")
    so = Path(path)
    so.write_bytes(os.urandom(4096))
    _assert_clean_error(_run(env), so)


# -- the library compiled at install (hatch_build.py -> hmodels/engine/_prebuilt/) ----------------------------
PREBUILT_PROBE = """
import sys
from pathlib import Path
from hmodels.engine import native
native.PREBUILT_DIR = Path(sys.argv[1])
lp, dlp = native.prior_logp(0, 0.0, 1.0, 0.0, 0.5)
print(native.library()._name)
"""


def _run_prebuilt(cache: Path, prebuilt: Path, env: dict[str, str] | None = None) -> Path:
    env = env or _env(cache, HMODELS_PREBUILT="1")
    proc = subprocess.run([sys.executable, "-c", PREBUILT_PROBE, str(prebuilt)], env=env, capture_output=True,
                          text=True, timeout=300)
    return _ok(proc)


def _install(built: tuple[Path, str], prebuilt: Path) -> str:
    """Put the built library in ``prebuilt`` as the build hook names it; return that name."""
    src, name = built
    prebuilt.mkdir()
    installed = native.toolchain.prebuilt_name(native._source_text())
    for f, g in ((name, installed), (name + ".sha256", installed + ".sha256")):
        shutil.copy(src / f, prebuilt / g)
    return installed


def test_an_intact_install_time_library_is_loaded_and_nothing_is_compiled(built, tmp_path):
    prebuilt, cache = tmp_path / "prebuilt", tmp_path / "cache"
    name = _install(built, prebuilt)
    assert _run_prebuilt(cache, prebuilt) == prebuilt / name
    assert not list(cache.glob("kernels-*.so"))  # the cache stays empty


@pytest.mark.parametrize("damage", [_flip_middle, _delete_digest, _zero_bytes], ids=lambda f: f.__name__.lstrip("_"))
def test_a_damaged_install_time_library_is_passed_over_for_the_cache(built, tmp_path, damage):
    name = built[1]
    prebuilt, cache = tmp_path / "prebuilt", tmp_path / "cache"
    installed = _install(built, prebuilt)
    damage(prebuilt / installed)
    before = (prebuilt / installed).read_bytes()
    assert _run_prebuilt(cache, prebuilt) == cache / name  # built into the cache, and loaded from there
    assert _digest_matches(cache / name)
    assert (prebuilt / installed).read_bytes() == before  # the installed file is never rewritten


def test_the_build_hook_compiles_the_library_the_runtime_looks_for(tmp_path):
    """hatch_build.py (run by pip install): the library named as native.prebuilt_path() will look for it."""
    pytest.importorskip("hatchling")
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "src"
    shutil.copytree(root / "hmodels" / "engine", copy / "hmodels" / "engine",
                    ignore=shutil.ignore_patterns("_prebuilt", "__pycache__"))
    spec = importlib.util.spec_from_file_location("_hatch_build_test", root / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hook = module.KernelsBuildHook(str(copy), {}, None, None, str(tmp_path / "dist"), "wheel")
    build_data = {"force_include": {}}
    hook.initialize("standard", build_data)
    name = native.toolchain.prebuilt_name(native._source_text())  # what native.prebuilt_path() looks for
    built = copy / "hmodels" / "engine" / "_prebuilt" / name
    assert _digest_matches(built)
    assert build_data["force_include"][str(built)] == f"hmodels/engine/_prebuilt/{name}"
    assert build_data["pure_python"] is False


# -- found by the sweep of the install-time build ------------------------------------------------------------
HOOK = """
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("_hatch_build_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
class App:
    def display_warning(self, message):
        print("warning:", message, file=sys.stderr)
hook = module.KernelsBuildHook(sys.argv[2], {}, None, None, sys.argv[3], "wheel", app=App())
build_data = {"force_include": {}}
hook.initialize("standard", build_data)
print(json.dumps(build_data))
"""


def _copy_engine(tmp_path: Path) -> Path:
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "src"
    shutil.copytree(root / "hmodels" / "engine", copy / "hmodels" / "engine",
                    ignore=shutil.ignore_patterns("_prebuilt", "__pycache__"))
    return copy


def _hook(copy: Path, tmp_path: Path, wrap: list[str] = ()) -> dict:
    """Run hatch_build.py on ``copy`` in a subprocess (``wrap``: a command to run it under); its build_data."""
    pytest.importorskip("hatchling")
    import json

    root = Path(__file__).resolve().parents[1]
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    proc = subprocess.run([*wrap, sys.executable, "-c", HOOK, str(root / "hatch_build.py"), str(copy),
                           str(tmp_path / "dist")], env=dict(os.environ, TMPDIR=str(scratch)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hooked(tmp_path_factory) -> Path:
    """The ``_prebuilt`` folder the build hook filled (with the compiler found here)."""
    tmp = tmp_path_factory.mktemp("hook")
    copy = _copy_engine(tmp)
    assert _hook(copy, tmp)["force_include"]
    return copy / "hmodels" / "engine" / "_prebuilt"


@pytest.mark.parametrize("cc", ["false", None], ids=["another-CC", "no-compiler"])
def test_the_install_time_library_serves_whatever_compiler_is_found_at_run_time(hooked, tmp_path, cc):
    """Built at install, loaded also where $CC now names another (here a failing) compiler, or none is found."""
    cache = tmp_path / "cache"
    if cc is None:
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        env = {k: v for k, v in _env(cache, PATH=str(empty), HMODELS_PREBUILT="1").items() if k != "CC"}
        where = _run(env, "from hmodels.engine import native; print(native.compiler())")
        if where.stdout.strip().splitlines()[-1:] != ["None"]:
            pytest.skip(f"a compiler is found without PATH ({where.stdout.strip()})")
    else:
        env = _env(cache, HMODELS_PREBUILT="1", CC=shutil.which(cc) or pytest.skip("no `false` command"))
    (so,) = hooked.glob("kernels-*.so")
    assert _run_prebuilt(cache, hooked, env) == so
    assert not list(cache.glob("kernels-*.so"))  # nothing compiled


def test_the_build_hook_builds_elsewhere_in_a_read_only_source_tree(tmp_path):
    """A read-only tree that holds an empty ``_prebuilt/`` (left by an earlier build): the wheel still gets it."""
    copy = _copy_engine(tmp_path)
    out = copy / "hmodels" / "engine" / "_prebuilt"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only bind mount, in a mount namespace
        wrap = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
                str(copy)]
        probe = subprocess.run([*wrap, "sh", "-c", f"! touch {out}/x"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("no read-only bind mount here (unshare -m needs CAP_SYS_ADMIN)")
    else:
        wrap = []
        for d in (copy / "hmodels" / "engine", out):
            d.chmod(0o555)
    try:
        build_data = _hook(copy, tmp_path, wrap)
    finally:
        for d in (copy / "hmodels" / "engine", out):
            d.chmod(0o755)
    assert not list(out.iterdir())  # the tree is left alone
    assert build_data["force_include"], build_data  # the library ships in the wheel
    shipped = {Path(k).name: Path(k) for k in build_data["force_include"]}
    name = native.toolchain.prebuilt_name(native._source_text())
    assert set(shipped) == {name, name + ".sha256"}, build_data
    assert _digest_matches(shipped[name])
    assert build_data["pure_python"] is False


def test_a_damaged_install_time_library_and_no_compiler_is_a_clear_error(built, tmp_path):
    """Passed over, and the cache cannot be built: the error names the installed file and the fix (reinstall)."""
    prebuilt, cache, empty = tmp_path / "prebuilt", tmp_path / "cache", tmp_path / "empty-bin"
    installed = prebuilt / _install(built, prebuilt)
    _flip_middle(installed)
    empty.mkdir()
    env = {k: v for k, v in _env(cache, PATH=str(empty), HMODELS_PREBUILT="1").items() if k != "CC"}
    where = _run(env, "from hmodels.engine import native; print(native.compiler())")
    if where.stdout.strip().splitlines()[-1:] != ["None"]:
        pytest.skip(f"a compiler is found without PATH ({where.stdout.strip()})")
    proc = subprocess.run([sys.executable, "-c", PREBUILT_PROBE, str(prebuilt)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "\nhmodels.errors.SamplingError: " in proc.stderr, proc.stderr
    message = proc.stderr.rsplit("\nhmodels.errors.SamplingError: ", 1)[1]
    assert str(installed) in message and "is damaged" in message and "reinstall hmodels" in message, message
    assert "none was found" in message, message  # and why the cache could not be used


@pytest.mark.parametrize("value, loaded", [("0", "cache"), ("off", "cache"), ("1", "prebuilt"), ("yes", "prebuilt"),
                                           ("nope", None)])
def test_hmodels_prebuilt_is_read_strictly(built, tmp_path, value, loaded):
    """HMODELS_PREBUILT=0/false/no/off ignores the installed library; a value it cannot read is an error, not "on"."""
    prebuilt, cache = tmp_path / "prebuilt", tmp_path / "cache"
    name = _install(built, prebuilt)
    env = _env(cache, HMODELS_PREBUILT=value)
    proc = subprocess.run([sys.executable, "-c", PREBUILT_PROBE, str(prebuilt)], env=env, capture_output=True,
                          text=True, timeout=300)
    if loaded is None:
        assert proc.returncode == 1 and "SamplingError: HMODELS_PREBUILT is 'nope': set it to 0" in proc.stderr, \
            proc.stderr
    else:
        assert _ok(proc) == (prebuilt / name if loaded == "prebuilt" else cache / built[1])
