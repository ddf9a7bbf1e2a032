"""The LocalCluster that the jobs start: quiet background work and worker heaps that are kept, set only for
the cluster's lifetime; an external scheduler (--scheduler): paths that mean the same on every worker, workers
that cannot see them, and no workers at all, said in a sentence."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import distributed  # noqa: F401  (its config defaults)
import pytest

from pipelines.cli import main
from pipelines.cluster import QUIET_CLUSTER_CONFIG, dask_client
from synth_pedes import open_dataset, write_dataset
from synth_pedes.errors import ShardWriteError
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


# ---- an external scheduler (--scheduler): the paths, the workers and the wait ----------------------------------
DASK = str(Path(sys.executable).parent / "dask")
ROOT = Path(__file__).resolve().parents[1]
RENDER = ["render", "--identities", "2", "--images-per-identity", "2"]


def _can_hide_a_directory() -> bool:
    """A private mount namespace (root on Linux): how a test gives one worker a filesystem of its own."""
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@contextlib.contextmanager
def _external_scheduler(tmp_path: Path):
    """A ``dask scheduler`` subprocess on loopback; yields ``(address, start_worker)``. ``start_worker(cwd,
    hide=DIR)`` starts a one-thread worker process (no nanny to restart it) in ``cwd`` and returns it; ``hide``
    gives it an empty tmpfs at DIR, as a machine without the shared filesystem would see it."""
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                               "--scheduler-file", str(scheduler_file)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]

    def start_worker(cwd: Path, hide: Path | None = None) -> subprocess.Popen:
        worker = [DASK, "worker", "--scheduler-file", str(scheduler_file), "--no-nanny", "--nthreads", "1",
                  "--no-dashboard"]
        if hide is not None:
            worker = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f'mount -t tmpfs none "{hide}" && exec "$@"', "sh", *worker]
        procs.append(subprocess.Popen(worker, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        return procs[-1]

    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        yield json.loads(scheduler_file.read_text())["address"], start_worker
    finally:
        for p in reversed(procs):
            p.kill()  # test processes: nothing to close gracefully
        for p in procs:
            p.wait(timeout=30)


def test_relative_paths_reach_workers_that_run_in_another_directory(tmp_path, monkeypatch):
    client_dir, worker_dir = tmp_path / "client", tmp_path / "worker"
    client_dir.mkdir()
    worker_dir.mkdir()
    with _external_scheduler(tmp_path) as (address, start_worker):
        start_worker(cwd=worker_dir)
        monkeypatch.chdir(client_dir)
        assert main([*RENDER, "--out", "pp", "--scheduler", address]) == 0
    assert open_dataset(client_dir / "pp").manifest.num_rows == 4  # every shard where the client looks
    assert not any(worker_dir.iterdir())  # and nothing next to the worker


@pytest.mark.skipif(not _can_hide_a_directory(), reason="needs a private mount namespace (unshare, as root)")
def test_workers_that_cannot_see_the_output_directory_are_named_before_any_work(tmp_path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    with _external_scheduler(tmp_path) as (address, start_worker):
        start_worker(cwd=tmp_path, hide=shared)
        assert main([*RENDER, "--out", str(shared / "pp"), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert f"{shared / 'pp'}: 1 of 1 Dask workers cannot see this directory (" in err
    assert "the workers need a shared filesystem at the same path; or run without --scheduler" in err
    assert list(shared.iterdir()) == []  # no probe, no half-made dataset left behind


def test_a_scheduler_without_workers_is_said_and_given_up_on(tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert main([*RENDER, "--out", str(tmp_path / "pp"), "--scheduler", address,
                     "--worker-timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert f"waiting for workers on {address} (none connected)" in err  # said at once, not after the wait
    assert (f"no Dask workers connected to the scheduler {address} within 1 s: start workers (dask worker "
            f"{address}), raise --worker-timeout, or run without --scheduler") in err
    assert not (tmp_path / "pp").exists()


def test_an_unreachable_scheduler_is_a_sentence_not_a_traceback(tmp_path, capsys, monkeypatch):
    from pipelines import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    assert main([*RENDER, "--out", str(tmp_path / "pp"), "--scheduler", address]) == 2
    assert (f"cannot reach the Dask scheduler at {address} within 1 s: check the address (and that the scheduler "
            "runs), or run without --scheduler") in capsys.readouterr().err


def test_a_write_whose_workers_all_die_stops_with_a_message_and_resumes(tmp_path, caplog):
    from distributed import Client

    from _fixtures import Records

    out, transform = tmp_path / "ds", Records(delay=0.2)
    with _external_scheduler(tmp_path) as (address, start_worker):
        worker = start_worker(cwd=tmp_path)

        def the_worker_dies_holding_results(stats, done, total):
            if done == 1:
                time.sleep(1)  # meanwhile the worker finishes shards whose results nobody has fetched
                worker.kill()

        with Client(address, timeout=30) as client, dask.config.set({"synth-pedes.worker-timeout": 1}):
            client.wait_for_workers(1, timeout=30)
            with pytest.raises(ShardWriteError, match=r"no Dask workers have been connected to the scheduler "
                                                      r"tcp://127.0.0.1:\d+ for 1 s \(\d+ shards left\).*; the shards "
                                                      r"finished so far are kept"):
                write_dataset(range(12), out, name="t", kind="images", transform=transform, shard_rows=1,
                              client=client, on_progress=the_worker_dies_holding_results)
            assert "no Dask workers are connected to the scheduler" in caplog.text  # said when they went
            kept = len(list((out / "_stats").glob("part-*.json")))
            assert 1 < kept < 12 and not (out / "manifest.json").exists()
            start_worker(cwd=tmp_path)
            client.wait_for_workers(1, timeout=30)
            assert write_dataset(range(12), out, name="t", kind="images", transform=transform, shard_rows=1,
                                 client=client).num_rows == 12


def test_every_job_stops_waiting_when_the_cluster_has_no_workers(caplog):
    """The one wait loop of every job (writer shards, card and filter passes): a cluster without workers is said at
    once and given up on after the worker timeout, the pending tasks cancelled."""
    from distributed import Client, LocalCluster

    from synth_pedes.futures import NoWorkersError, as_finished

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as client, \
            dask.config.set({"synth-pedes.worker-timeout": 0.5}):
        futures = client.map(abs, [-1, -2, -3])
        t0 = time.monotonic()
        with pytest.raises(NoWorkersError, match=r"no Dask workers have been connected to the scheduler \S+ for 0.5 s "
                                                 r"\(3 shards to read left\): start workers"):
            list(as_finished(client, futures, what="shards to read"))
        assert time.monotonic() - t0 < 10
        assert "no Dask workers are connected to the scheduler" in caplog.text
        assert all(f.status == "cancelled" for f in futures)


def test_ctrl_c_while_the_workers_stop_after_the_job_is_no_failure_and_the_nanny_is_quiet(monkeypatch, caplog):
    """Issue 19: Ctrl-C during worker shutdown, after the work finished, made the command report an interrupted
    job (exit 130); Dask printed 'Worker process still alive after 4.0 seconds, killing'."""
    import logging

    from distributed import Client, LocalCluster

    nanny_levels, real_client_close, real_cluster_close = [], Client.close, LocalCluster.close

    def client_close(self, *args, **kwargs):  # the Ctrl-C lands while the client closes
        real_client_close(self, *args, **kwargs)
        raise KeyboardInterrupt

    def cluster_close(self, *args, **kwargs):
        nanny_levels.append(logging.getLogger("distributed.nanny").getEffectiveLevel())
        return real_cluster_close(self, *args, **kwargs)

    monkeypatch.setattr(Client, "close", client_close)
    monkeypatch.setattr(LocalCluster, "close", cluster_close)
    with caplog.at_level(logging.WARNING, logger="pipelines.cluster"):
        with dask_client(1) as client:
            assert client.submit(sum, [1, 2]).result() == 3
            # a Ctrl-C reaches the workers too: they leave stopping to this process, printing nothing
            assert set(client.run(_sigint_handler).values()) == {"SIG_IGN"}
    assert "interrupted while stopping the Dask workers after the job finished" in caplog.text
    assert nanny_levels[0] == logging.ERROR and logging.getLogger("distributed.nanny").level == logging.NOTSET


def test_ctrl_c_after_the_dataset_was_finished_exits_0_saying_so(tmp_path, monkeypatch, capsys):
    import pipelines.commands.validate as command

    def finishes_then_interrupted(args):  # a dataset "d" is written, then Ctrl-C; any other is interrupted
        if args.out.name == "d":
            args.out.mkdir()
            (args.out / "manifest.json").write_text(json.dumps({"id": "sha256:abc"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", finishes_then_interrupted)
    monkeypatch.setattr(command, "add_arguments", lambda parser: parser.add_argument("--out", type=Path))
    assert main(["validate", "--out", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().err == (f"plip validate: finished ({tmp_path / 'd'} complete, id sha256:abc); "
                                       "interrupted during shutdown\n")
    assert main(["validate", "--out", str(tmp_path / "new")]) == 130  # nothing finished: resume
    assert "interrupted; re-run the same command to resume" in capsys.readouterr().err


def _sigint_handler() -> str:
    import signal

    return getattr(signal.getsignal(signal.SIGINT), "name", "other")
