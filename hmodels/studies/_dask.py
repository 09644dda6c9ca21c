"""Run a study's replicates as Dask tasks and stream their results to Parquet, resumably.

A study is a list of independent tasks, each a module-level function of plain inputs that returns
a small DataFrame (its rows carry the task's key columns). :func:`run_tasks` runs them

- on a ``dask.distributed`` cluster when ``client`` is a Client, a scheduler address, or
  ``"local"`` (a :class:`distributed.LocalCluster` of one single-threaded worker process per core,
  started for the study and closed after it), or when a distributed client is already active;
- otherwise with Dask's local scheduler (``scheduler="threads"`` by default; ``"processes"``,
  ``"synchronous"``), in chunks.

With ``resume=path`` every finished task's rows are written as they arrive (a Parquet part file
per batch, written under a temporary name and renamed, so a part is either complete or absent)
into the folder ``path``, next to ``study.json`` (the study's settings). Run the same call again
after an interruption and only the missing tasks run: finished ones are read back, none is
recomputed or duplicated. A folder made by a study with other settings is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import SpecificationError

__all__ = ["run_tasks", "StudyStore", "fingerprint", "quiet"]

STUDY_FILE = "study.json"
#: Seconds between writes of finished replicates to the resume folder (cluster runs).
FLUSH_SECONDS = 2.0
#: Tasks per batch of the local runner when results stream to a resume folder (each batch is written when it
#: finishes); None: ``max(4, 2 x cores)``.
LOCAL_CHUNK: int | None = None


@contextlib.contextmanager
def quiet():
    """Silence warnings inside a task: a ``catch_warnings`` block in the main thread only.

    Warning filters are process-wide and ``catch_warnings`` is not thread-safe, so in a worker
    thread nothing is changed: the local runner silences warnings around the whole computation,
    and on a cluster's workers hmodels' own warning categories are ignored (others are logged).
    """
    if threading.current_thread() is threading.main_thread():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    else:
        _quiet_cluster_worker()
        yield


_WORKER_FILTERED = False


def _quiet_cluster_worker() -> None:
    """On a dask.distributed worker, ignore hmodels' own warnings for good (each replicate records its problems)."""
    global _WORKER_FILTERED
    if _WORKER_FILTERED:
        return
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    from ..errors import ConvergenceWarning, DataWarning

    for category in (ConvergenceWarning, DataWarning):
        warnings.filterwarnings("ignore", category=category)
    _WORKER_FILTERED = True


def fingerprint(config: dict) -> str:
    """A stable hash of a study's settings (JSON, keys sorted; objects by their ``repr``)."""
    text = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StudyStore:
    """The Parquet folder of a resumable study: ``study.json`` and ``part-*.parquet`` files.

    Parameters
    ----------
    path : str or Path
    kind : str
        ``"sbc"``, ``"power"``, ``"kfold"`` or ``"compare_priors"``.
    config : dict
        The study's settings; a folder made with other settings is refused.
    key_columns : list of str
        Columns that identify a task's rows.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> s = StudyStore(d + "/study", "demo", {"n": 2}, ["replicate"])
    >>> s.write(pd.DataFrame({"replicate": [0], "x": [1.5]}))
    >>> sorted(s.done())
    [(0,)]
    """

    def __init__(self, path, kind: str, config: dict, key_columns: list[str]):
        self.path = Path(path)
        self.key_columns = list(key_columns)
        self.meta = {"kind": kind, "fingerprint": fingerprint(config), "config": json.loads(
            json.dumps(config, sort_keys=True, default=repr))}
        meta_file = self.path / STUDY_FILE
        if meta_file.exists():
            old = json.loads(meta_file.read_text())
            if old.get("kind") != kind or old.get("fingerprint") != self.meta["fingerprint"]:
                changed = sorted(k for k in set(old.get("config", {})) | set(self.meta["config"])
                                 if old.get("config", {}).get(k) != self.meta["config"].get(k))
                raise SpecificationError(
                    f"The folder {str(self.path)!r} holds a {old.get('kind')} study made with other settings "
                    f"(differing: {', '.join(changed) or 'the kind of study'}), so its results cannot be resumed "
                    "here. Use another resume= folder, or the settings of that study."
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = meta_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.meta, indent=1))
            os.replace(tmp, meta_file)

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def read(self) -> pd.DataFrame:
        """Every row written so far (duplicates of a task, if any, dropped)."""
        frames = []
        for p in self.parts():
            try:
                frames.append(pd.read_parquet(p))
            except Exception as exc:  # a damaged part: its tasks simply run again
                warnings.warn(f"Could not read {p.name} ({exc}); its replicates will be recomputed.", stacklevel=2)
        frames = [f.assign(_part=i) for i, f in enumerate(frames) if len(f)]
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        # one task's rows are written together: keep them from the first part that holds the task
        key = df[self.key_columns].astype(str).agg("|".join, axis=1)
        first = df.groupby(key)["_part"].transform("min")
        return df.loc[df["_part"] == first].drop(columns="_part").reset_index(drop=True)

    def done(self) -> set[tuple]:
        """Keys of the tasks whose rows are stored."""
        df = self.read()
        if df.empty:
            return set()
        return {tuple(_plain(v) for v in row) for row in df[self.key_columns].drop_duplicates().itertuples(index=False)}

    def write(self, df: pd.DataFrame) -> None:
        """Append rows as a new part file (written atomically)."""
        if df is None or df.empty:
            return
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.path / (name + ".tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.path / name)


def _plain(v):
    """A key value as a plain Python object (NumPy scalars -> int/float/str), for set membership."""
    if hasattr(v, "item"):
        v = v.item()
    return v


def _distributed_client(client):
    """The distributed Client to use (and whether this call started it), or (None, False)."""
    if client is None:
        try:
            from distributed import default_client

            return default_client(), False
        except (ImportError, ValueError):
            return None, False
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpecificationError("client= needs dask.distributed: pip install distributed") from None
    if isinstance(client, str):
        if client == "local":
            import logging

            quiet_log = logging.getLogger("distributed")
            level = quiet_log.level
            quiet_log.setLevel(logging.CRITICAL)  # a failed start logs pages of tracebacks per worker
            try:
                cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            except RuntimeError as exc:
                raise SpecificationError(
                    f"client='local' could not start its worker processes ({exc}). In a script, the code that "
                    "starts a study must sit under `if __name__ == \"__main__\":` (worker processes re-import the "
                    "script); or leave client out to run the replicates on threads in this process."
                ) from None
            finally:
                quiet_log.setLevel(level)
            return Client(cluster), True
        return Client(client), True
    if isinstance(client, Client):
        return client, False
    raise SpecificationError(f"client must be a dask.distributed Client, a scheduler address or 'local', got "
                             f"{type(client).__name__}.")


def run_tasks(fn: Callable, tasks: Sequence[tuple[tuple, tuple]], *, kind: str, config: dict,
              key_columns: list[str], client=None, scheduler: str | None = None, resume=None,
              progressbar: bool = False, shared=None, flush_seconds: float | None = None) -> pd.DataFrame:
    """Run ``fn(shared, *args)`` for every task, streaming results to ``resume`` (Parquet) when given.

    Parameters
    ----------
    fn : callable
        A module-level function ``fn(shared, *args) -> DataFrame``; the rows must carry the key columns.
    tasks : sequence of (key, args)
        ``key`` is the tuple of the task's key-column values.
    kind, config : str, dict
        What the study is and its settings (recorded in, and checked against, the resume folder).
    key_columns : list of str
    client : optional
        A ``dask.distributed`` Client, a scheduler address (``"tcp://..."``), or ``"local"``.
    scheduler : str, optional
        Dask's local scheduler when no distributed client is used: ``"threads"`` (default),
        ``"processes"`` or ``"synchronous"``.
    resume : str or Path, optional
        Folder for the streamed results; finished tasks found there are not run again.
    progressbar : bool
    shared : optional
        One object every task receives first (sent to a cluster's workers once).

    Returns
    -------
    pandas.DataFrame
        The rows of every task (stored and new), sorted by the key columns.
    """
    store = StudyStore(resume, kind, config, key_columns) if resume is not None else None
    done = store.done() if store is not None else set()
    todo = [(k, a) for k, a in tasks if tuple(_plain(v) for v in k) not in done]
    new: list[pd.DataFrame] = []
    if todo:
        # an explicit local scheduler wins over a distributed client that happens to be active
        dclient, started = (None, False) if client is None and scheduler is not None else _distributed_client(client)
        try:
            if dclient is not None:
                new = _run_distributed(dclient, fn, todo, shared, store, progressbar,
                                       FLUSH_SECONDS if flush_seconds is None else flush_seconds)
            else:
                new = _run_local(fn, todo, shared, store, scheduler or "threads", progressbar)
        finally:
            if started:
                cluster = getattr(dclient, "cluster", None)
                dclient.close()
                if cluster is not None:
                    cluster.close()
    old = store.read() if store is not None else pd.DataFrame()
    if store is not None:
        frames = [old] if not old.empty else []  # everything written, new rows included
    else:
        frames = [f for f in new if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=key_columns)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(key_columns, kind="stable").reset_index(drop=True)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn("replicates"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    p.start()
    p.add_task("run", total=total)
    return p


def _run_local(fn, todo, shared, store, scheduler, progressbar):
    import dask

    if scheduler not in ("threads", "processes", "synchronous", "sync", "single-threaded"):
        raise SpecificationError(f"scheduler must be 'threads', 'processes' or 'synchronous', got {scheduler!r}.")
    workers = os.cpu_count() or 1
    chunk = len(todo) if store is None else (LOCAL_CHUNK or max(4, 2 * workers))
    bar = _progress(len(todo), progressbar)
    out = []
    try:
        for lo in range(0, len(todo), chunk):
            part = todo[lo:lo + chunk]
            # warning filters are process-wide: set them here, not in the worker threads (catch_warnings is not
            # thread-safe); a replicate's problems are recorded in its rows
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = dask.compute(*[dask.delayed(fn, pure=False)(shared, *args) for _, args in part],
                                   scheduler=scheduler)
            frames = [r for r in res if r is not None and len(r)]
            if store is not None and frames:
                store.write(pd.concat(frames, ignore_index=True))
            out.extend(frames)
            if bar is not None:
                bar.advance(bar.task_ids[0], len(part))
    finally:
        if bar is not None:
            bar.stop()
    return out


def _identity(x):
    return x


def _run_distributed(client, fn, todo, shared, store, progressbar, flush_seconds):
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    # the shared inputs as a task of their own (not scattered data): if every worker holding them dies,
    # the scheduler recomputes them from the task instead of failing the study
    shared_f = client.submit(_identity, shared, pure=False) if shared is not None else None
    futures = [client.submit(fn, shared_f, *args, pure=False, retries=2) for _, args in todo]
    bar = _progress(len(todo), progressbar)
    out, buffer, last, failed = [], [], time.monotonic(), 0
    try:
        for fut in as_completed(futures):
            if fut.status != "finished":
                exc = fut.exception() if fut.status == "error" else None
                if exc is not None and not isinstance(exc, KilledWorker):
                    raise exc  # the task itself failed (bad input, a bug): as it would locally
                failed += 1
                continue
            res = fut.result()
            fut.release()
            if res is not None and len(res):
                out.append(res)
                buffer.append(res)
            if bar is not None:
                bar.advance(bar.task_ids[0], 1)
            if store is not None and buffer and time.monotonic() - last >= flush_seconds:
                store.write(pd.concat(buffer, ignore_index=True))
                buffer, last = [], time.monotonic()
    finally:
        if store is not None and buffer:
            store.write(pd.concat(buffer, ignore_index=True))
        if bar is not None:
            bar.stop()
    if failed:
        warnings.warn(f"{failed} of {len(todo)} replicates failed on the cluster (a worker died more than the "
                      "allowed number of times); they are missing from the results. Run again with the same "
                      "resume= folder to compute them.", RuntimeWarning, stacklevel=3)
    return out
