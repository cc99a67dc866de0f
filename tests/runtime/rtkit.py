"""Helpers shared by the runtime tests (test_runtime.py, test_train.py) and
the `build` fixture in conftest.py."""

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
RT = HERE.parent.parent / "runtime"
VOCAB = 256
CONTEXT = 32
PARAM_SHAPES = {
    "embed.weight": (VOCAB, VOCAB),
    "bias": (VOCAB,),
    "ln.weight": (VOCAB,),
    "pos.weight": (CONTEXT, VOCAB),
}
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer"]
COMMON_SRCS = [HERE / "fake_model.c", RT / "kiln_rt.c", RT / "kiln_cli.c"]
PROGRAM_SRCS = [RT / f"{n}.c" for n in ("kiln_beam", "kiln_bpe", "kiln_wordpiece", "kiln_metrics", "kiln_pairs", "kiln_seq2seq", "kiln_plot")]
INFER_SRCS = COMMON_SRCS + PROGRAM_SRCS + [RT / "infer_main.c"]
TRAIN_SRCS = COMMON_SRCS + PROGRAM_SRCS + [RT / "kiln_dist.c", RT / "train_main.c"]
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:exitcode=86",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
}


def find_clang():
    """A clang that can build with OpenMP (the Swift toolchain's has no omp.h)."""
    for cc in ("/usr/bin/clang-14", "/usr/bin/clang"):
        if os.path.exists(cc):
            return cc
    return None


def build_jobs():
    """name -> compiler command line (without -o) for every test binary."""
    inc = ["-I", str(HERE), "-I", str(RT), "-I", str(RT / "kernels")]
    gcc = ["gcc", *WARN, "-O2", "-fopenmp", *inc]
    asan = ["gcc", *WARN, "-O1", "-g", "-fopenmp", *SAN_FLAGS, *inc]
    jobs = {
        # infer of a model without a train section (no KILN_HAS_TRAIN in model.h)
        "infer": [*gcc, "-DFAKE_NO_TRAIN", *INFER_SRCS, "-lm"],
        "infer128": [*gcc, "-DFAKE_NO_TRAIN", "-DFAKE_VOCAB=128", *INFER_SRCS, "-lm"],
        "asan": [*asan, *INFER_SRCS, "-lm"],
        "rt_tool": ["gcc", *WARN, "-O2", "-I", str(RT), HERE / "rt_tool.c", RT / "kiln_rt.c", RT / "kiln_plot.c",
                    "-lm"],
        "text_tool": ["gcc", *WARN, "-O2", "-I", str(RT), HERE / "text_tool.c", RT / "kiln_bpe.c", RT / "kiln_wordpiece.c",
                      RT / "kiln_metrics.c", RT / "kiln_rt.c", "-lm"],
        "train": [*gcc, *TRAIN_SRCS, "-lm"],
        "train_drop": [*gcc, "-DFAKE_DROPOUT", *TRAIN_SRCS, "-lm"],
        "train128": [*gcc, "-DFAKE_VOCAB=128", *TRAIN_SRCS, "-lm"],
        "train_asan": [*asan, "-DFAKE_DROPOUT", *TRAIN_SRCS, "-lm"],
    }
    clang = find_clang()
    if clang:
        cl = [clang, *WARN, "-Wpedantic", "-O2", "-fopenmp", *inc]
        jobs["infer_clang"] = [*cl, *INFER_SRCS, "-lm"]  # with the train section in model.h
        jobs["train_clang"] = [*cl, *TRAIN_SRCS, "-lm"]
    return jobs


def run(binary, *args, env=None, timeout=60, **kw):
    """Runs a binary, returning the CompletedProcess (stdout/stderr as bytes)."""
    full_env = dict(os.environ)
    full_env.update(SAN_ENV)
    if env:
        full_env.update(env)
    argv = [str(binary)] + [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run(argv, capture_output=True, env=full_env, timeout=timeout, **kw)


def expect_error(proc, substring, code=1):
    """Asserts a clean failure: exit code, exactly one stderr line, the message."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{err}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line:\n{err}"
    assert ": error: " in err, err
    assert substring in err, f"{substring!r} not in {err!r}"


def expect_ok(proc):
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode(errors="replace")
