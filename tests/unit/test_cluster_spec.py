"""engine/cluster.py without running models: --cluster parsing, work units sized by atoms, and the
SLURM job script dask-jobqueue renders from the documented config (docs/cluster/jobqueue.yaml)."""

from __future__ import annotations

import pytest
from support import REPO_DIR

from mliap_tui.engine.cluster import (
    ClusterError,
    ClusterSpec,
    parse_cluster,
    plan_tasks,
)


@pytest.mark.parametrize("text, spec", [
    ("tcp://head:8786", ClusterSpec("address", address="tcp://head:8786")),
    ("head:8786", ClusterSpec("address", address="tcp://head:8786")),
    ("tls://10.0.0.1:8786", ClusterSpec("address", address="tls://10.0.0.1:8786")),
    ("local", ClusterSpec("local")),
    ("local:3", ClusterSpec("local", n=3)),
    ("SLURM", ClusterSpec("slurm")),
    ("pbs:4", ClusterSpec("pbs", n=4)),
    ("lsf", ClusterSpec("lsf")),
])
def test_parse_cluster(text, spec):
    assert parse_cluster(text) == spec


@pytest.mark.parametrize("text", ["", "local:0", "local:x", "slurmm", "head"])
def test_parse_cluster_rejects_with_what_to_type(text):
    with pytest.raises(ClusterError, match=r"--cluster"):
        parse_cluster(text)


def test_work_units_are_whole_shards_balanced_by_atoms():
    groups = [[f"m{s}-{i}" for i in range(4)] for s in range(8)]
    sizes = {m: (40 if m.startswith("m0-") else 5) for g in groups for m in g}  # shard 0 is 8x heavier
    tasks = plan_tasks(groups, sizes, n_workers=2, per_worker=2)
    assert [m for t in tasks for m in t] == [m for g in groups for m in g]  # every id once, in order
    assert all(len(t) % 4 == 0 for t in tasks)  # whole shards only
    loads = [sum(sizes[m] for m in t) for t in tasks]
    assert tasks[0] == groups[0] and loads[0] == 160  # the heavy shard is a task of its own ...
    assert len(tasks) >= 3 and max(loads[1:]) <= 80  # ... the light ones are packed together
    assert plan_tasks([], {}, 2) == []


def test_slurm_job_script_from_the_documented_config_asks_for_the_gpu_and_starts_a_gpu_worker():
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (pip install 'mliap-tui[cluster]')")
    import dask
    import yaml

    from mliap_tui.engine.cluster import jobqueue_cluster

    config = yaml.safe_load((REPO_DIR / "docs" / "cluster" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    with dask.config.set({f"jobqueue.slurm.{k}": v for k, v in config.items()}):
        cluster = jobqueue_cluster("slurm", scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"})
        try:
            script = cluster.job_script()
            address = cluster.scheduler_address
        finally:
            cluster.close()
    lines = script.splitlines()
    assert "#SBATCH -p gpu" in lines
    assert "#SBATCH --gres=gpu:1" in lines
    assert "#SBATCH -n 1" in lines and "#SBATCH --cpus-per-task=8" in lines
    assert "source ~/venvs/mliap/bin/activate" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert address in worker and address.startswith("tcp://127.0.0.1:")
    assert worker.startswith("python -m distributed.cli.dask_worker")  # the venv's python, after the prologue
    assert "--nworkers" not in worker and "--nthreads 8" in worker  # one worker process, the job's cores
    assert "--resources GPU=1" in worker  # the resource mliap-tui's GPU tasks ask for


def test_jobqueue_cluster_without_cores_says_where_to_configure():
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (pip install 'mliap-tui[cluster]')")
    import dask

    from mliap_tui.engine.cluster import jobqueue_cluster

    with dask.config.set({"jobqueue.pbs.cores": None, "jobqueue.pbs.memory": None}):
        with pytest.raises(ClusterError, match=r"jobqueue\.yaml"):
            jobqueue_cluster("pbs")
