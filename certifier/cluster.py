"""The cluster of ``--workers``/``--scheduler``: started in the background, and checked before any task is sent.

``Connection`` makes the client (a new LocalCluster of single-threaded
worker processes, or a running scheduler) in a background thread from the
moment a command starts, so that the workers start while the command
imports the certifier and opens the store; the worker processes of our own
LocalCluster end without the interpreter's slow finalization once closed.

A scheduler or worker that cannot import smoothcert fails while unpickling
a task, which distributed reports as a deserialisation error at best and a
hang at worst; a worker running other smoothcert code could give another
table. ``check_cluster`` asks the scheduler and every worker, with a probe
function sent by value (it needs nothing installed to be unpickled), to
import ``store`` and ``certifier`` and hash their source files, and refuses
the cluster with a one-line ``ClusterError`` unless all of them can import
smoothcert and every worker runs exactly the client's code (the hash taken
when the process imported it, so a worker started before an upgrade is
caught too).
"""
from __future__ import annotations

import os
import sys

WAIT_FOR_WORKERS_S = 60

# Environment of --workers processes: one core each. zarr decodes a block's chunks on a thread pool and the
# numba kernels run in parallel; inside N single-threaded worker processes on N cores that only oversubscribes
# the cores (the threaded scheduler, the default on one machine, keeps both).
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "ZARR_THREADING__MAX_WORKERS": "1"}

# Dask config of --workers processes (a nanny hands its config to the worker it starts; an environment variable
# would come too late, after the worker has read its config). The statistical profiler's thread walks the task
# thread's stack every 10 ms, holding the GIL; nothing here reads its profiles, and with it off a two-step worker
# used 7 % less CPU and finished 8 % sooner (5 alternating runs, 500 inputs).
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def _exit_at_end() -> None:
    """In a worker process: end the process right after its atexit calls begin, without the interpreter's slow
    finalization (1.5-2 s of the 2 s a LocalCluster of 2 took to close, measured)."""
    import atexit

    def leave():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)  # registered last, run first: the worker has closed, nothing is left to keep


class Connection:
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster of ``workers`` processes, made in a
    background thread from the moment it is created (so the cluster starts while the caller imports and opens the
    store) and checked with ``check_cluster``."""

    def __init__(self, scheduler=None, workers=None):
        from concurrent.futures import ThreadPoolExecutor

        self.where = scheduler or f"LocalCluster({workers})"
        self._closed = False
        pool = ThreadPoolExecutor(1, thread_name_prefix="cluster-start")
        self._made = pool.submit(self._connect, scheduler, workers)
        pool.shutdown(wait=False)

    def _connect(self, scheduler, workers):
        from distributed import Client

        cluster = None
        if scheduler is not None:
            client = Client(scheduler)  # connect timeout: dask config distributed.comm.timeouts.connect (30 s)
        else:
            cluster = local_cluster(workers, silence_logs=50)  # errors: one line
            client = Client(cluster)
        try:
            check_cluster(client, self.where)  # fail fast, not hang on a bad worker
            if cluster is not None:  # our own worker processes: they may end fast
                client.run(_exit_at_end)
        except BaseException:
            _disconnect(client, cluster)
            raise
        return client, cluster

    def client(self):
        """The connected client (waits for it; raises the error that stopped it)."""
        return self._made.result()[0]

    def close(self) -> None:
        """Close the client, and the LocalCluster if this started one (once it is up, when it is still starting);
        closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            client, cluster = self._made.result()
        except BaseException:
            return  # it never connected: nothing to close, its error is raised where the client is asked for
        _disconnect(client, cluster)


def _disconnect(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def local_cluster(n_workers: int, **kw):
    """A dask.distributed LocalCluster of ``n_workers`` single-threaded processes as ``--workers`` starts it."""
    import dask
    from distributed import LocalCluster

    kw = {"dashboard_address": "127.0.0.1:0", **kw}          # no clash with a dashboard already on :8787
    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True, env=WORKER_ENV, **kw)

_PROBE_SOURCE = '''
def probe():
    import hashlib, importlib, os
    try:
        mods = [importlib.import_module(n) for n in ("smoothcert.store", "smoothcert.stats", "smoothcert.certifier")]
        loaded = getattr(importlib.import_module("smoothcert.certifier.cluster"), "CODE_HASH", None)
    except BaseException as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if loaded:
        return {"error": None, "code": loaded}  # the code this process loaded, not what is on disk now
    h = hashlib.sha256()
    for mod in mods:
        root = os.path.dirname(mod.__file__)
        for name in sorted(os.listdir(root)):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(mod.__name__.encode() + b"/" + name.encode() + b"\\0" + f.read())
    return {"error": None, "code": h.hexdigest()}
'''


def _hash_sources() -> str:
    """The probe's source hash computed in this process from the files on disk now ("" if it cannot import)."""
    ns = {"__name__": "smoothcert_cluster_probe"}
    exec(compile(_PROBE_SOURCE.replace('getattr(importlib.import_module("smoothcert.certifier.cluster"), "CODE_HASH", None)', "None"),
                 "<smoothcert cluster probe>", "exec"), ns)
    r = ns["probe"]()
    return r["code"] if not r["error"] else ""


# Hash of the sources as this process imported them (the engine imports this module with the package).
CODE_HASH = _hash_sources()


class ClusterError(OSError):
    """The cluster cannot run smoothcert's tasks (an environment failure, reported like a connection error)."""


def _probe():
    """A fresh probe function whose module is not importable, so cloudpickle sends it by value."""
    ns = {"__name__": "smoothcert_cluster_probe"}
    exec(compile(_PROBE_SOURCE, "<smoothcert cluster probe>", "exec"), ns)
    return ns["probe"]


def code_hash() -> str:
    """The hash of this process's ``store``, ``stats`` and ``certifier`` sources as they were when it imported them."""
    return CODE_HASH


def check_cluster(client, where: str, wait_s: float = WAIT_FOR_WORKERS_S) -> int:
    """Return the number of workers when the scheduler imports smoothcert and every worker runs this client's code, else raise ClusterError."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except (TimeoutError, OSError) as e:
        raise ClusterError(f"scheduler {where}: no worker connected within {wait_s:g} s ({type(e).__name__})") from e
    mine = code_hash()
    probe = _probe()
    try:
        results = {"scheduler": client.run_on_scheduler(probe)}
        results.update(client.run(probe))
    except Exception as e:
        raise ClusterError(f"scheduler {where}: cannot run the environment check "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    for who, r in results.items():
        if r.get("error"):
            raise ClusterError(f"scheduler {where}: {who} cannot import smoothcert ({r['error']}); install the same "
                               f"smoothcert in the scheduler's and workers' environment")
        if who != "scheduler" and r.get("code") != mine:  # the scheduler only unpickles the graph
            raise ClusterError(f"scheduler {where}: {who} runs other smoothcert code than this client "
                               f"(source hash {str(r.get('code'))[:12]} vs {mine[:12]}); install the same version everywhere")
    return len(results) - 1
