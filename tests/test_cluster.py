"""The LocalCluster that the jobs start: quiet background work and worker heaps that are kept, set only for
the cluster's lifetime."""
import os
import sys

import dask
import distributed  # noqa: F401  (its config defaults)
import pytest

from pipelines.cluster import QUIET_CLUSTER_CONFIG, dask_client
from synth_pedes.malloc import MALLOC_ENV, keep_heap


def _worker_settings() -> dict:
    env = {k: os.environ.get(k) for k in MALLOC_ENV}
    return {"env": env, "profile": dask.config.get("distributed.worker.profile.enabled"),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def test_local_cluster_workers_are_quiet_and_keep_their_heap():
    before = {k: dask.config.get(k) for k in [*QUIET_CLUSTER_CONFIG, "distributed.nanny.pre-spawn-environ"]}
    environ = dict(os.environ)
    with dask_client(1) as client:
        (settings,) = client.run(_worker_settings).values()
        # the workers' variables stay theirs: this process keeps its environment (and so its torch threads)
        assert dict(os.environ) == environ
    assert settings["env"] == {k: str(v) for k, v in MALLOC_ENV.items()}
    assert settings["profile"] is False
    assert settings["omp"] == "1"  # dask's own pre-spawn settings are kept, not replaced
    assert dict(os.environ) == environ
    # nothing leaks past the cluster's lifetime (a second cluster still starts)
    assert {k: dask.config.get(k) for k in before} == before
    with dask_client(1) as client:
        assert len(client.scheduler_info()["workers"]) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_heap_sets_the_thresholds_in_a_running_process():
    assert keep_heap() is True


def test_default_job_workers_share_each_gpu_but_never_exceed_the_cores(monkeypatch):
    import torch

    from pipelines import cluster

    monkeypatch.setattr(cluster, "default_workers", lambda: 16)
    assert cluster.default_job_workers("cpu") == 16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cluster.default_job_workers("cuda") == cluster.DEFAULT_WORKERS_PER_GPU
    assert cluster.default_job_workers("cuda", 1) == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert cluster.default_job_workers("cuda") == 16  # 8 GPUs x 4 would be 32 workers on 16 cores
    monkeypatch.setattr(cluster, "default_workers", lambda: 4)
    assert cluster.default_job_workers("cuda") == 8  # at least one per GPU
