"""Certify a store on a SLURM cluster with dask-jobqueue (configuration example; needs `pip install dask-jobqueue`).

    python docs/examples/certify-slurm.py /shared/stores/imagenet-sigma0.50.zarr two-step results/two-step.csv

Starts a Dask scheduler here (run this on the login node or in a small job),
submits JOBS SLURM jobs of PROCESSES single-threaded worker processes each,
certifies through them (smoothcert first checks that every worker imports the
same smoothcert code), writes the table and its sidecar, and releases the jobs.
The table is identical to a local run's. The same cluster also serves
`smoothcert certify STORE --scheduler ADDRESS` from another shell while this
script waits (see docs/cluster.md).
"""
import os
import sys

from dask_jobqueue import SLURMCluster
from distributed import Client

from smoothcert.certifier import CertifyOptions, certify
from smoothcert.certifier.table import write_table

JOBS = int(os.environ.get("JOBS", "4"))
PROCESSES = int(os.environ.get("PROCESSES", "8"))   # worker processes per job, one thread each

cluster = SLURMCluster(
    queue=os.environ.get("PARTITION", "cpu"),
    account=os.environ.get("ACCOUNT"),
    cores=PROCESSES,                 # cores / processes = 1 thread per worker process
    processes=PROCESSES,             # processes, not threads: parts of decoding and checksumming hold the GIL
    memory=f"{4 * PROCESSES}GB",     # a task holds ~64 MB of decoded rows; 4 GB per process is ample
    walltime="02:00:00",
    job_script_prologue=[
        "source ~/venvs/smoothcert/bin/activate",   # the same smoothcert as this process
        "export NUMBA_NUM_THREADS=1 ZARR_THREADING__MAX_WORKERS=1 DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",   # one core per worker process
        # S3 stores: credentials reach the workers through their environment (or ~/.aws), never the store
        # "export AWS_PROFILE=smoothcert",
    ],
    log_directory="logs/dask",
)
cluster.scale(jobs=JOBS)

if __name__ == "__main__":
    store, method, out = sys.argv[1:4]
    print(f"scheduler {cluster.scheduler_address}; dashboard {cluster.dashboard_link}", flush=True)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=1800)   # SLURM queueing can take a while
        table, meta = certify(store, method, CertifyOptions(), scheduler=cluster.scheduler_address)
    meta["command"] = " ".join(["certify-slurm.py", *sys.argv[1:]])
    write_table(table, out, meta)
    print(f"{len(table)} certificates -> {out} ({meta['confidence_statement']})")
    cluster.close()
