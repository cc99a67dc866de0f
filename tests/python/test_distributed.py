"""Data-parallel training over MPI (docs/distributed.md): `mpirun -np N DIR/train-mpi` gives the bits of one
process that accumulates the same global batch, survives a rank being killed, and refuses what it cannot split
with one line from rank 0. Needs Open MPI (`mpirun`, `mpicc`), which CI installs; elsewhere these tests skip."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from kilntest import ROOT, run

HAVE_MPI = shutil.which("mpirun") and shutil.which("mpicc")
if not HAVE_MPI and os.environ.get("CI") == "true":
    raise RuntimeError("CI installs Open MPI (.ci/run), but mpirun or mpicc is missing")
pytestmark = pytest.mark.skipif(not HAVE_MPI, reason="Open MPI is not installed (apt-get install openmpi-bin libopenmpi-dev)")

# root in containers needs these two; one OpenMP thread per rank, so the ranks do not share the cores' threads
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
MPIRUN = ["mpirun", "--oversubscribe", "-np"]


def mpirun(n, *args, **kw):
    return subprocess.run([str(a) for a in [*MPIRUN, n, *args]], capture_output=True, text=True, env=ENV, **kw)


def single(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV)


@pytest.fixture
def data(tmp_path):
    text = tmp_path / "data.txt"
    text.write_bytes(b"".join(p.read_bytes() for p in sorted((ROOT / "runtime").glob("*.c")))[:300_000])
    return text


def losses(log):
    return [json.loads(line)["loss"] for line in log.read_text().splitlines() if '"loss"' in line]


def assert_same_run(a, b, log_a, log_b):
    assert losses(log_a) == losses(log_b)
    assert a.read_bytes() == b.read_bytes(), "the checkpoints differ"


def test_two_ranks_equal_one_process_accumulating_two(builds, tmp_path, data):
    out = builds.build("examples/char-gpt-small.kiln")
    assert (out / "train-mpi").exists() and "mpi: train-mpi" in (out / "Makefile").read_text()
    common = ["--data", data, "--seed", 5, "--batch", 2, "--seq", 32, "--steps", 20, "--eval-interval", 10, "--eval-iters", 2]
    r = mpirun(2, out / "train-mpi", *common, "--accumulate", 1, "--out", tmp_path / "mpi.st", "--log", tmp_path / "mpi.jsonl")
    assert r.returncode == 0, r.stderr
    assert "2 ranks" in r.stdout and "a step is 2 micro-batches of 2" in r.stdout
    assert r.stdout.count("step 20/20") == 1  # rank 0 alone prints
    r = single(out / "train", *common, "--accumulate", 2, "--out", tmp_path / "one.st", "--log", tmp_path / "one.jsonl")
    assert r.returncode == 0, r.stderr
    assert_same_run(tmp_path / "mpi.st", tmp_path / "one.st", tmp_path / "mpi.jsonl", tmp_path / "one.jsonl")
    # the loss actually moved: the runs trained
    assert losses(tmp_path / "one.jsonl")[-1] < losses(tmp_path / "one.jsonl")[0]


def test_dropout_clipping_and_per_rank_accumulation_are_bit_identical(builds, tmp_path, data):
    out = builds.build("examples/char-gpt-small.kiln", "dropout=0.1", "layers=2")
    common = ["--data", data, "--seed", 8, "--batch", 2, "--seq", 32, "--clip", 0.05, "--eval-interval", 0,
              "--schedule", "cosine", "--warmup", 3, "--decay-steps", 20]
    r = mpirun(2, out / "train-mpi", *common, "--steps", 20, "--accumulate", 2, "--out", tmp_path / "mpi.st", "--log", tmp_path / "mpi.jsonl")
    assert r.returncode == 0, r.stderr
    # one process with two threads: the same bits whatever the split of the work
    r = single(out / "train", *common, "--steps", 20, "--accumulate", 4, "--threads", 2, "--out", tmp_path / "one.st", "--log", tmp_path / "one.jsonl")
    assert r.returncode == 0, r.stderr
    assert_same_run(tmp_path / "mpi.st", tmp_path / "one.st", tmp_path / "mpi.jsonl", tmp_path / "one.jsonl")
    # a checkpoint of one process resumes under two ranks (its global batch of 4 micro-batches, 2 per rank)
    r = single(out / "train", *common, "--steps", 10, "--accumulate", 4, "--out", tmp_path / "half.st")
    assert r.returncode == 0, r.stderr
    r = mpirun(2, out / "train-mpi", "--resume", tmp_path / "half.st", "--data", data, "--steps", 20, "--out", tmp_path / "half.st")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "half.st").read_bytes() == (tmp_path / "one.st").read_bytes()


def rank_pid(parent, rank):
    """The pid of the process of MPI rank `rank` started (through orted or directly) under `parent`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"train-mpi" in cmd and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and f"PARENT_TAG={parent}".encode() in env:
            return int(pid)
    return None


def test_killed_rank_leaves_a_checkpoint_that_resumes_exactly(builds, tmp_path, data):
    out = builds.build("examples/char-gpt-small.kiln")
    sched = ["--schedule", "cosine", "--warmup", 3, "--decay-steps", 200]
    common = ["--data", data, "--seed", 3, "--batch", 2, "--seq", 32, "--eval-interval", 0, *sched]
    ckpt = tmp_path / "ckpt.st"
    tag = str(os.getpid())
    proc = subprocess.Popen([str(a) for a in [*MPIRUN, 2, out / "train-mpi", *common, "--accumulate", 1, "--steps", 100000,
                                              "--checkpoint-interval", 5, "--out", ckpt]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(ENV, PARENT_TAG=tag))
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert ckpt.exists(), "no checkpoint appeared"
        pid = rank_pid(tag, 1)
        assert pid, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "signal 9" in err or "Killed" in err, err
    # the last checkpoint loads; resumed by one process it finishes as a run that was never interrupted
    r = single(out / "train", "--resume", ckpt, "--data", data, "--steps", 200, "--out", ckpt)
    assert r.returncode == 0, r.stderr
    step = int(r.stdout.split("resumed from")[1].split("at step")[1].split()[0])
    assert step >= 5 and step % 5 == 0 and step < 200
    r = single(out / "train", *common, "--accumulate", 2, "--steps", 200, "--checkpoint-interval", 5,
               "--out", tmp_path / "straight.st")
    assert r.returncode == 0, r.stderr
    assert ckpt.read_bytes() == (tmp_path / "straight.st").read_bytes()


def test_refusals_are_one_line_from_rank_zero(builds, tmp_path, data):
    out = builds.build("examples/char-gpt-small.kiln")
    three = tmp_path / "three.st"
    common = ["--data", data, "--batch", 2, "--seq", 16, "--eval-interval", 0]
    r = single(out / "train", *common, "--steps", 2, "--accumulate", 3, "--out", three)
    assert r.returncode == 0, r.stderr

    def refused(r, text):
        assert r.returncode != 0
        ours = [line for line in r.stderr.splitlines() if "error:" in line]
        assert len(ours) == 1 and ours[0].startswith("train-mpi: error: ") and text in ours[0], r.stderr

    # a global batch of 3 micro-batches does not split over 2 ranks
    refused(mpirun(2, out / "train-mpi", "--resume", three, "--data", data, "--steps", 4, "--out", tmp_path / "x.st"),
            "3 micro-batches of 2, which 2 ranks cannot share evenly")
    # another model's checkpoint
    other = builds.build("examples/char-gpt-small.kiln", "dropout=0.1", "layers=1")
    refused(mpirun(2, other / "train-mpi", "--resume", three, "--data", data, "--steps", 4, "--out", tmp_path / "x.st"),
            "different model")
    # ranks that read different data
    part = tmp_path / "part.txt"
    part.write_bytes(data.read_bytes()[:200_000])
    args = ["--batch", 2, "--seq", 16, "--steps", 2, "--out", tmp_path / "y.st"]
    r = subprocess.run([str(a) for a in ["mpirun", "--oversubscribe", "-np", 1, out / "train-mpi", "--data", data, *args, ":",
                                         "-np", 1, out / "train-mpi", "--data", part, *args]],
                       capture_output=True, text=True, env=ENV)
    refused(r, "rank 1 read different data")
    assert not (tmp_path / "y.st").exists()
    # an error of one rank alone is still printed, with its rank
    r = subprocess.run([str(a) for a in ["mpirun", "--oversubscribe", "-np", 1, out / "train-mpi", "--data", data, *args, ":",
                                         "-np", 1, out / "train-mpi", "--data", tmp_path / "missing.txt", *args]],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode != 0 and "train-mpi (rank 1): error: no such file" in r.stderr, r.stderr
    # the one-process program under mpirun says which program to run
    r = mpirun(2, out / "train", *common, "--steps", 2, "--out", tmp_path / "z.st")
    assert r.returncode != 0 and "run train-mpi" in r.stderr and r.stderr.count("error:") == 1, r.stderr


def test_the_plain_build_needs_no_mpi(builds):
    """`make` without the mpi target never calls the MPI wrapper: builds without MPI are unchanged."""
    out = builds.build("examples/char-gpt-small.kiln")
    r = run(["make", "-C", out, "-n", "-B", "all", "MPICC=/nonexistent/mpicc"])
    assert r.returncode == 0 and "mpicc" not in r.stdout and "KILN_MPI" not in r.stdout
    r = run(["make", "-C", out, "-n", "-B", "mpi", "MPICC=/nonexistent/mpicc"])
    assert r.returncode == 0 and "/nonexistent/mpicc" in r.stdout and "-DKILN_MPI" in r.stdout


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_the_programs_compile_without_warnings(builds, cc):
    """train_main.c and kiln_dist.c, plain and through the MPI wrapper, under -Wall -Wextra -Werror."""
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    out = builds.build("examples/char-gpt-small.kiln")
    flags = ["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-fopenmp", "-fsyntax-only", "-I", out, "-I", out / "runtime"]
    for source in ("train_main.c", "kiln_dist.c"):
        r = run([cc, *flags, out / "runtime" / source])
        assert r.returncode == 0, r.stderr
    # the wrapper adds its link flags, which clang warns are unused with -fsyntax-only: compile to an object instead
    r = subprocess.run(["mpicc", *[f for f in flags if f != "-fsyntax-only"], "-DKILN_MPI", "-c", "-o", os.devnull,
                        out / "runtime" / "kiln_dist.c"], capture_output=True, text=True, env=dict(ENV, OMPI_CC=cc, MPICH_CC=cc))
    assert r.returncode == 0, r.stderr
