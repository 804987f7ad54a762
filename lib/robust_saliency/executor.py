"""Independent jobs (fits, evaluations) run through one executor.

Where the jobs run is decided once per process, from the environment:

* default: one after the other in this process;
* ``ROBUST_SALIENCY_WORKERS=N``: a Dask ``LocalCluster`` of ``N`` worker processes with one
  thread each, started on first use and kept for the process;
* ``ROBUST_SALIENCY_SCHEDULER=tcp://host:port``: an existing Dask scheduler (a lab's cluster,
  e.g. started with dask-jobqueue on SLURM; README says how).  Its workers must have this
  package installed at the same commit: a job's result carries the cache key its worker
  computed, which covers the source of the code, and a mismatch is an error.

``ROBUST_SALIENCY_THREADS=T`` sets the torch threads of one job (default 1 with Dask workers;
unset in this process: torch's own count).  Within one machine, results are bitwise those of
the sequential run at the same threads per job: the jobs are independent and each seeds its
own random draws.

``run(fn, items, labels)`` calls ``fn(item)`` for each item and returns the results in order.
A failing job does not stop the others: every job runs to its end, then ``JobsFailed`` is
raised naming each failed job's label (its configuration) and error.  A progress bar counts the
finished jobs.
"""
from __future__ import annotations

import atexit
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["WORKERS_ENV", "SCHEDULER_ENV", "THREADS_ENV", "Executor", "JobFailure", "JobsFailed",
           "current", "threads_per_job", "run", "shutdown"]

WORKERS_ENV = "ROBUST_SALIENCY_WORKERS"
SCHEDULER_ENV = "ROBUST_SALIENCY_SCHEDULER"
THREADS_ENV = "ROBUST_SALIENCY_THREADS"


@dataclass(frozen=True)
class Executor:
    """Where jobs run: ``kind`` is ``"sequential"``, ``"local"`` (``workers`` Dask worker
    processes on this machine) or ``"scheduler"`` (an existing Dask scheduler at ``address``);
    ``threads`` is the torch thread count of one job (None: the process's own)."""

    kind: str
    workers: int | None = None
    address: str | None = None
    threads: int | None = None

    @property
    def parallel(self) -> bool:
        return self.kind != "sequential"

    def describe(self) -> str:
        threads = "torch's own thread count" if self.threads is None else f"{self.threads} thread(s) per job"
        if self.kind == "local":
            return f"Dask LocalCluster, {self.workers} worker process(es), {threads}"
        if self.kind == "scheduler":
            return f"Dask scheduler at {self.address}, {threads}"
        return f"sequential in this process, {threads}"


def _positive_int(name, value):
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1 or str(n) != value.strip():
        raise ValueError(f"{name}={value!r} is not valid; accepted: an int >= 1")
    return n


def current() -> Executor:
    """The executor the environment asks for (module docstring); ValueError on a bad value."""
    workers, address = os.environ.get(WORKERS_ENV, "").strip(), os.environ.get(SCHEDULER_ENV, "").strip()
    threads = os.environ.get(THREADS_ENV, "").strip()
    threads = _positive_int(THREADS_ENV, threads) if threads else None
    if workers and address:
        raise ValueError(f"{WORKERS_ENV}={workers!r} and {SCHEDULER_ENV}={address!r} are both set; "
                         f"accepted: one of them (a local cluster or an existing scheduler)")
    if address:
        if "://" not in address:
            raise ValueError(f"{SCHEDULER_ENV}={address!r} is not valid; accepted: a scheduler "
                             f"address such as tcp://host:8786")
        return Executor("scheduler", address=address, threads=threads or 1)
    if workers:
        n = _positive_int(WORKERS_ENV, workers)
        return Executor("local", workers=n, threads=threads or 1)
    return Executor("sequential", threads=threads)


def threads_per_job() -> int | None:
    """The torch threads one job runs with (``current().threads``)."""
    return current().threads


_CLIENTS: dict[Executor, Any] = {}


def _client(ex):
    if ex in _CLIENTS:
        return _CLIENTS[ex]
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError(f"{WORKERS_ENV} / {SCHEDULER_ENV} need dask[distributed] "
                          f"(pip install 'dask[distributed]')") from None
    if ex.kind == "local":
        import dask

        # One thread per worker (Dask also sets OMP/MKL thread limits of 1 in them).  Dask's
        # default MALLOC_TRIM_THRESHOLD_=65536 for workers makes glibc hand memory back to the
        # system after every large free: a torch training step then spends half its time in the
        # kernel (measured: one fit 2.1x slower), so the workers keep glibc's default.
        # Nor do they run Dask's statistical profiler (a thread sampling every job's stack).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                              "distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=ex.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(ex.address)
    _CLIENTS[ex] = client
    return client


def shutdown() -> None:
    """Close the Dask clients (and local clusters) this process started."""
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = getattr(client, "cluster", None)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - closing at exit must not raise
            pass


atexit.register(shutdown)


@dataclass(frozen=True)
class JobFailure:
    """A job that raised: its ``label`` (configuration), ``error`` (type: message), ``trace``."""

    label: str
    error: str
    trace: str


class JobsFailed(RuntimeError):
    """Some jobs raised (the others finished): ``failures`` lists them."""

    def __init__(self, failures: Sequence[JobFailure], total: int) -> None:
        self.failures = list(failures)
        lines = [f"{len(self.failures)} of {total} job(s) failed (the others finished):"]
        lines += [f"  {f.label}: {f.error}" for f in self.failures]
        super().__init__("\n".join(lines) + "\n" + "\n".join(f.trace for f in self.failures[:1]))


def _failure(label, err):
    return JobFailure(label, f"{type(err).__name__}: {err}",
                      "".join(traceback.format_exception(type(err), err, err.__traceback__)))


def run(fn: Callable[[Any], Any], items: Sequence[Any], labels: Sequence[str] | None = None,
        desc: str = "jobs", progress: bool = True, executor: Executor | None = None,
        on_result: Callable[[int, Any], object] | None = None, shared: Sequence[Any] = ()) -> list[Any]:
    """``[fn(item, *shared) for item in items]`` through ``executor`` (default ``current()``).

    ``shared``: objects every job reads (datasets), sent to each Dask worker once instead of
    with every job.

    ``labels`` name the jobs in errors (default ``job i``).  ``on_result(i, result)`` is called
    in this process as each job finishes (e.g. to write it to disk, so that a stopped run keeps
    the finished jobs).  Every job runs; if any raised, ``JobsFailed`` lists them afterwards.  ``fn`` and the items must pickle for Dask (a
    module-level function; tensors, models and datasets held in memory do).
    """
    from tqdm import tqdm

    items = list(items)
    labels = [f"job {i}" for i in range(len(items))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(items):
        raise ValueError(f"labels has {len(labels)} entries for {len(items)} items; accepted: one per item")
    ex = current() if executor is None else executor
    results: list[Any] = [None] * len(items)
    failures: dict[int, JobFailure] = {}
    bar = tqdm(total=len(items), desc=desc, file=sys.stderr, disable=not progress or not items,
               dynamic_ncols=True)
    try:
        if not ex.parallel or not items:
            for i, item in enumerate(items):
                try:
                    results[i] = fn(item, *shared)
                except Exception as err:  # noqa: BLE001 - reported with the others below
                    failures[i] = _failure(labels[i], err)
                else:
                    if on_result is not None:
                        on_result(i, results[i])
                bar.update(1)
        else:
            from dask.distributed import as_completed

            client = _client(ex)
            common = client.scatter(list(shared), broadcast=True) if shared else []
            futures = {client.submit(fn, item, *common, pure=False): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                i = futures[fut]
                err = fut.exception()
                if err is None:
                    results[i] = fut.result()
                    if on_result is not None:
                        on_result(i, results[i])
                else:
                    failures[i] = _failure(labels[i], err)
                fut.release()
                bar.update(1)
    finally:
        bar.close()
    if failures:
        raise JobsFailed([failures[i] for i in sorted(failures)], len(items))
    return results
