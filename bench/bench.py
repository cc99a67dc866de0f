"""Kiln vs PyTorch eager vs ONNX Runtime, side by side in one run.

Each case is timed in rounds that alternate the implementations (Kiln's own
`bench` command, PyTorch, ONNX Runtime, and for the char model's train step
torch.compile), at 1 and 2 threads. PyTorch and torch.compile run the model as its users write it for speed
(bench/idiomatic.py: a fused QKV projection, scaled_dot_product_attention, fused AdamW); ONNX Runtime runs the
export of the parity reference (tests/python/reference.py), whose attention its graph optimiser fuses; the table shows medians over all rounds and
Kiln's time divided by each reference's. Then generation against the memory-bandwidth bound, GEMM
against OpenBLAS, and the peak RSS of one fresh process per implementation (Kiln's binaries, and Python
processes running PyTorch or ONNX Runtime on the same case) against the weights and each other.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import reference  # noqa: E402  (the PyTorch model the parity tests use)
sys.path.insert(0, str(ROOT / "bench"))
import idiomatic  # noqa: E402  (the same model as PyTorch users write it for speed)

KILN = ROOT / ".build" / "debug" / "kiln"

CHAR = dict(file="examples/char-gpt.kiln", set=[], cfg=dict(
    vocab=256, context=256, dim=384, heads=6, layers=6, hidden=1536, norm="pre", activation="gelu",
    positions="learned", final_norm=True, head="tied", eps=1e-5))
GPT2 = dict(file="examples/gpt2-small.kiln", set=[], cfg=dict(
    vocab=50257, context=1024, dim=768, heads=12, layers=12, hidden=3072, norm="pre", activation="gelu_tanh",
    positions="learned", final_norm=True, head="tied", eps=1e-5))


CC = "gcc"
FORWARD_ROUNDS = 5  # forward cases get this many times --rounds
AGAINST_TRAIN_ROUNDS = 4  # and train steps this many times, in --against runs


def build(spec, out, kiln=None):
    args = [kiln or KILN, "build", ROOT / spec["file"], "-o", out]
    for s in spec["set"]:
        args += ["--set", s]
    subprocess.run([str(a) for a in args], check=True, capture_output=True, env=dict(os.environ, CC=CC))
    return out


# The products of a training step (M, N, K, layout; see bench/gemm_main.c): the char model's (B·T = 2048, width
# 384, feed-forward 1536) and GPT-2's at B=4 T=64 (256 rows, 768, 3072), each layer's forward (nt), input
# gradient (nn) and weight gradient (tn), and a square one.
GEMM_SHAPES = [(2048, 1536, 384, "nt"), (2048, 384, 1536, "nt"), (2048, 1536, 384, "nn"), (1536, 384, 2048, "tn"),
               (256, 3072, 768, "nt"), (256, 768, 3072, "nt"), (256, 768, 3072, "nn"), (3072, 768, 256, "tn"),
               (768, 3072, 256, "tn"), (1024, 1024, 1024, "nn")]

# the same product as the reference library runs it: NumPy's (OpenBLAS) and PyTorch's torch.matmul
REFERENCE_GEMM = """
import sys, time
m, n, k = map(int, sys.argv[1:4]); layout, lib = sys.argv[4:6]
if lib == "torch":
    import torch
    torch.set_num_threads(int(sys.argv[6]))
    rand = lambda r, c: torch.rand(r, c)
else:
    import numpy as np
    rand = lambda r, c: np.random.rand(r, c).astype(np.float32)
a = rand(k, m).T if layout == "tn" else rand(m, k)
b = rand(n, k).T if layout == "nt" else rand(k, n)
a @ b
ts = []
for _ in range(9):
    t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)
print(2 * m * n * k / sorted(ts)[4] / 1e9)
"""


# This CPU's roofline, measured at the start of a run (bench/roofline_main.c): FMA peak in FLOP/s and STREAM
# triad bandwidth in bytes/s, by thread count.
PEAK, BANDWIDTH = {}, {}


def measure_roofline(tmp):
    exe = pathlib.Path(tmp) / "roofline"
    subprocess.run([CC, "-O2", "-march=native", "-fopenmp", "-std=c11", str(ROOT / "bench" / "roofline_main.c"), "-o", str(exe)],
                   check=True)
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        measure = lambda what: float(subprocess.run([str(exe), what], env=env, check=True, capture_output=True, text=True).stdout)
        PEAK[threads], BANDWIDTH[threads] = measure("peak") * 1e9, measure("stream") * 1e9
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; FMA peak {PEAK[1] / 1e9:.0f} GFLOP/s on 1 thread, {PEAK[2] / 1e9:.0f} on 2; STREAM triad "
          f"{BANDWIDTH[1] / 1e9:.1f} GB/s on 1 thread, {BANDWIDTH[2] / 1e9:.1f} on 2", flush=True)
    return cpu


def case_flops(spec, kind, B, T):
    """kiln stats's FLOPs of a forward pass or a training step of the case."""
    args = [KILN, "stats", ROOT / spec["file"], "--batch", B, "--seq", T] + [a for s in spec["set"] for a in ("--set", s)]
    totals = re.findall(r"total\s+([\d,]+) FLOPs", subprocess.run([str(a) for a in args], check=True, capture_output=True,
                                                                  text=True).stdout)
    return int(totals[0 if kind == "forward" else 1].replace(",", ""))


GEN_CASES = {  # model -> (label, prompt arguments, new tokens)
    "char": ("char model: 16-byte prompt + 240 new tokens", ["--prompt", "ROMEO: To be, or"], 240),
    "gpt2": ("GPT-2 124M: 16-token prompt + 64 new tokens",
             ["--prompt-ids", "464,2068,7586,21831,18045,625,262,16931,3290,13,464,2068,7586,21831,18045,625"], 64),
}


def generation_rows(model, out, tmp):
    """Decode speed of `infer generate` with the KV cache (its --timing line: the new tokens after the first,
    so neither loading nor the prompt counts), vs reading every weight once per token at STREAM bandwidth."""
    label, prompt, new = GEN_CASES[model]
    w = pathlib.Path(tmp) / f"{model}-w.safetensors"
    subprocess.run([str(out / "infer"), "init", "--seed", "1", "--out", str(w)], check=True, capture_output=True)
    weight_bytes = w.stat().st_size
    rows = []
    for threads in (1, 2):
        rates = []
        for _ in range(3):
            r = subprocess.run([str(out / "infer"), "generate", "--threads", str(threads), "--weights", str(w), *prompt,
                                "--tokens", str(new), "--seed", "1", "--timing"], check=True, capture_output=True)
            rates.append(float(re.search(r"([0-9.]+) tokens/s", r.stderr.decode(errors="replace")).group(1)))
        tps = statistics.median(rates)
        rows.append((label, threads, tps, BANDWIDTH[threads] / weight_bytes))
        print(f"generate {model} threads={threads}: {tps:.1f} tokens/s (bound {rows[-1][3]:.1f})", flush=True)
    return rows, w


def gemm_rows(tmp):
    """Kiln's GEMM (runtime/kernels/gemm.h) vs PyTorch's torch.matmul and NumPy's (OpenBLAS) on the training
    products, GFLOP/s: medians of three alternating runs, each the median of 9 calls."""
    exe = pathlib.Path(tmp) / "gemm_bench"
    subprocess.run([CC, "-O3", "-march=native", "-fopenmp", "-std=c11", f"-I{ROOT / 'runtime' / 'kernels'}",
                    str(ROOT / "bench" / "gemm_main.c"), "-o", str(exe), "-lm"], check=True)
    rows = []
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
        for m, n, k, layout in GEMM_SHAPES:
            runs = {"kiln": [], "torch": [], "openblas": []}
            for _ in range(3):  # alternate
                runs["kiln"].append(float(subprocess.run([str(exe), str(m), str(n), str(k), "9", layout], env=env,
                                                         check=True, capture_output=True, text=True).stdout))
                for lib in ("torch", "openblas"):
                    runs[lib].append(float(subprocess.run(
                        [sys.executable, "-c", REFERENCE_GEMM, str(m), str(n), str(k), layout, lib, str(threads)],
                        env=env, check=True, capture_output=True, text=True).stdout))
            med = {lib: statistics.median(v) for lib, v in runs.items()}
            rows.append((f"{m}x{n}x{k} {layout}", threads, med["kiln"], med["torch"], med["openblas"]))
            print(f"gemm {m}x{n}x{k} {layout} threads={threads}: kiln {med['kiln']:.1f}  torch {med['torch']:.1f}  "
                  f"openblas {med['openblas']:.1f} GFLOP/s", flush=True)
    return rows


def peak_rss_kib(args, env=None):
    """Peak resident set size (KiB) of one fresh process running args to completion, as GNU time reports it.
    (A child's own ru_maxrss would start from this Python process's size: Linux carries the high-water mark
    across fork and exec, so the process must be started from a small one.)"""
    r = subprocess.run(["/usr/bin/time", "-f", "peak-rss-kib %M"] + [str(a) for a in args], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} exited with {r.returncode}: {r.stderr[-500:]}")
    return int(re.findall(r"peak-rss-kib ([0-9]+)", r.stderr)[-1])


# The references' peak memory, each in a fresh Python process: argv = cfg (JSON), B, T, threads, mode, onnx path.
REFERENCE_RSS = """
import json, sys
cfg, B, T, threads, mode, onnx_path = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
if mode == "onnxruntime":
    import numpy as np, onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    feed = {"tokens": np.random.randint(0, cfg["vocab"], size=(B, T)).astype(np.int64)}
    for _ in range(3): sess.run(None, feed)
    sys.exit(0)
import torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[7])
import reference
torch.set_num_threads(threads)
model = reference.GPT(cfg).float()
x, y = torch.randint(0, cfg["vocab"], (B, T)), torch.randint(0, cfg["vocab"], (B, T))
if mode == "forward":
    model.eval()
    with torch.no_grad():
        for _ in range(3): model(x)
else:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    for _ in range(3):
        loss = F.cross_entropy(model(x).reshape(-1, cfg["vocab"]), y.reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
"""


def memory_rows(spec, out, tmp, onnx_path, train_bt, gen_weights=None):
    """Peak RSS at 2 threads of Kiln's forward (B=1 T=256) and train step (B, T = train_bt) against the weights
    and against PyTorch / ONNX Runtime processes doing the same; with gen_weights, also `infer generate`'s
    (loading that weights file, the GPT-2 generation case)."""
    import json
    params = int(re.search(r"([0-9]+) parameters", subprocess.run([str(out / "infer"), "--help"], capture_output=True,
                                                                     text=True).stdout).group(1))
    weight_kib = params * 4 / 1024
    env = dict(os.environ, OMP_NUM_THREADS="2")
    ref = lambda mode, B, T: peak_rss_kib([sys.executable, "-c", REFERENCE_RSS, json.dumps(spec["cfg"]), B, T, 2, mode,
                                           onnx_path or "", ROOT / "tests" / "python"], env=env)
    rows = []
    kiln = peak_rss_kib([out / "infer", "bench", "--threads", 2, "--batch", 1, "--seq", 256, "--iters", 2], env=env)
    refs = {"pytorch": ref("forward", 1, 256)}
    if onnx_path:
        refs["onnxruntime"] = ref("onnxruntime", 1, 256)
    rows.append(("forward B=1 T=256", kiln, weight_kib, refs))
    if gen_weights:
        label, prompt, new = GEN_CASES["gpt2"]
        kiln = peak_rss_kib([out / "infer", "generate", "--threads", 2, "--weights", gen_weights, *prompt,
                             "--tokens", new], env=env)
        rows.append((f"generate (KV cache), {label.split(': ')[1]}", kiln, weight_kib, {}))
    if (out / "train").exists():
        B, T = train_bt
        kiln = peak_rss_kib([out / "train", "bench", "--threads", 2, "--batch", B, "--seq", T, "--iters", 2], env=env)
        rows.append((f"train step B={B} T={T}", kiln, weight_kib, {"pytorch": ref("train", B, T)}))
    for name, k, w, r in rows:
        print(f"peak RSS {name}: kiln {k} KiB (weights {w:.0f} KiB)  " + "  ".join(f"{n} {v} KiB" for n, v in r.items()),
              flush=True)
    return rows


def kiln_time(binary, cmd, B, T, threads, iters):
    r = subprocess.run([str(binary), cmd, "--threads", str(threads), "--batch", str(B), "--seq", str(T),
                        "--iters", str(iters), "--warmup", "1"], capture_output=True, text=True, check=True)
    return float(re.search(r"median ([0-9.]+) ms", r.stdout).group(1))


def kiln_times(binary, cmd, B, T, threads, iters):
    """(median, min) of one `bench` run's iterations, ms."""
    r = subprocess.run([str(binary), cmd, "--threads", str(threads), "--batch", str(B), "--seq", str(T),
                        "--iters", str(iters), "--warmup", "1"], capture_output=True, text=True, check=True)
    return (float(re.search(r"median ([0-9.]+) ms", r.stdout).group(1)),
            float(re.search(r"min ([0-9.]+) ms", r.stdout).group(1)))


def median_ms(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def torch_model(cfg):
    """The parity reference (tests/python/reference.py), which ONNX Runtime runs from its export."""
    torch.manual_seed(0)
    return reference.GPT(cfg).float().eval()


def fast_model(cfg):
    """The same model and weights as PyTorch users write it for speed (bench/idiomatic.py), which the PyTorch and
    torch.compile columns time."""
    return idiomatic.IdiomaticGPT(cfg).copy_from(torch_model(cfg)).float().eval()


def torch_forward(model, B, T, vocab):
    x = torch.randint(0, vocab, (B, T))

    def run():
        with torch.no_grad():
            model(x)
    return run


def torch_train_step(model, B, T, vocab, compiled=False):
    """One AdamW step with clipping; compiled=True runs the model's forward and backward through
    torch.compile (Inductor's C++ CPU backend; the first call, the warm-up, compiles)."""
    model.train()
    opt = idiomatic.adamw(model)
    x = torch.randint(0, vocab, (B, T))
    y = torch.randint(0, vocab, (B, T))
    fwd = torch.compile(model) if compiled else model

    def run():
        logits = fwd(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return run


def ort_session(model, B, T, vocab, threads, tmp):
    import onnxruntime as ort
    path = os.path.join(tmp, f"m{id(model)}.onnx")
    if not os.path.exists(path):
        x = torch.randint(0, vocab, (B, T))
        torch.onnx.export(model, (x,), path, input_names=["tokens"], output_names=["logits"], opset_version=17,
                          dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"tokens": np.random.randint(0, vocab, size=(B, T)).astype(np.int64)}
    return lambda: sess.run(None, feed)


def generation_rate(out, model, weights, threads):
    """Tokens/s of one `infer generate --timing` run (the new tokens after the first)."""
    _, prompt, new = GEN_CASES[model]
    r = subprocess.run([str(out / "infer"), "generate", "--threads", str(threads), "--weights", str(weights), *prompt,
                        "--tokens", str(new), "--seed", "1", "--timing"], check=True, capture_output=True)
    return float(re.search(r"([0-9.]+) tokens/s", r.stderr.decode(errors="replace")).group(1))


def against_main(args):
    """Kiln against another build of Kiln (bench/run.sh --against REV): each case built by both, run in
    alternating rounds (which one goes first alternates too), medians and new/old ratios. Above 1.00 is slower
    for times, faster for tokens/s."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-against-"))
    models = [("char", CHAR)] + ([] if args.quick else [("GPT-2 124M", GPT2)])
    rounds = max(args.rounds, 3)
    rows = []
    for label, spec in models:
        outs = {who: build(spec, tmp / f"{who}-{pathlib.Path(spec['file']).stem}", kiln)
                for who, kiln in (("old", pathlib.Path(args.against)), ("new", KILN))}
        key = "char" if spec is CHAR else "gpt2"
        w = tmp / f"{key}.safetensors"
        subprocess.run([str(outs["new"] / "infer"), "init", "--seed", "1", "--out", str(w)], check=True, capture_output=True)
        cases = [("forward", "infer", 1, 256), ("train step", "train", 8, 256) if spec is CHAR else ("train step", "train", 4, 64)]
        for kind, program, B, T in cases:
            for threads in (1, 2):
                times, mins = {"old": [], "new": []}, {"old": [], "new": []}
                # this machine's neighbours move a train step by up to 10-25% from one round to the next, for
                # minutes at a time: more rounds, and the fastest iteration of each side beside the medians
                n = rounds * (FORWARD_ROUNDS if kind == "forward" else AGAINST_TRAIN_ROUNDS)
                for i in range(n):
                    for who in (("old", "new") if i % 2 == 0 else ("new", "old")):
                        median, fastest = kiln_times(outs[who] / program, "bench", B, T, threads, args.iters)
                        times[who].append(median)
                        mins[who].append(fastest)
                old, new = statistics.median(times["old"]), statistics.median(times["new"])
                best = min(mins["new"]) / min(mins["old"])
                rows.append((f"{label} {kind} B={B} T={T}", threads, "ms", old, new, new / old, best))
                print(f"{rows[-1][0]:36s} threads={threads}  old {old:9.2f} ms  new {new:9.2f} ms  new/old {new / old:.3f}"
                      f"  fastest new/old {best:.3f}", flush=True)
        for threads in (1, 2):
            rates = {"old": [], "new": []}
            for i in range(max(3, rounds)):
                for who in (("old", "new") if i % 2 == 0 else ("new", "old")):
                    rates[who].append(generation_rate(outs[who], key, w, threads))
            old, new = statistics.median(rates["old"]), statistics.median(rates["new"])
            rows.append((GEN_CASES[key][0], threads, "tokens/s", old, new, new / old, max(rates["new"]) / max(rates["old"])))
            print(f"{rows[-1][0]:36s} threads={threads}  old {old:9.1f} tokens/s  new {new:9.1f} tokens/s  new/old {new / old:.3f}",
                  flush=True)
    print(f"\nBoth built with CC={CC} in this run; old = {args.against_label or args.against}, new = this checkout; medians of "
          f"alternating rounds of {args.iters} iterations ({FORWARD_ROUNDS * rounds} rounds for forward cases, "
          f"{AGAINST_TRAIN_ROUNDS * rounds} for train steps, generation: median of {max(3, rounds)} runs).")
    print("\n| case | threads | old (median) | new (median) | unit | new/old | slower? | fastest new/old |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for name, threads, unit, old, new, ratio, best in rows:
        slower = ratio - 1 if unit == "ms" else old / new - 1
        worst = max(worst, slower)
        print(f"| {name} | {threads} | {old:.2f} | {new:.2f} | {unit} | {ratio:.3f} | "
              f"{f'{100 * slower:.1f}% slower' if slower > 0 else 'no'} | {best:.3f} |")
    print(f"\nworst row: {100 * worst:.1f}% slower by its medians" if worst > 0 else "\nno row slower")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the char model only")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--cc", default="gcc", help="C compiler for Kiln's binaries (default gcc: faster GEMM here)")
    ap.add_argument("--no-gemm", action="store_true")
    ap.add_argument("--gemm", action="store_true", help="the roofline and the GEMM table only (about 4 minutes)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (char train step)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    ap.add_argument("--against", metavar="KILN", help="compare with another kiln binary instead of the references")
    ap.add_argument("--against-label", default="", help="what --against is (for the report)")
    args = ap.parse_args()
    global CC
    CC = args.cc
    if args.against:
        return against_main(args)
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    measure_roofline(tmp)
    if args.gemm:
        print_gemm_table(gemm_rows(tmp))
        return
    rows = []
    cases = [("char forward B=1 T=256", CHAR, "forward", 1, 256), ("char train step B=8 T=256", CHAR, "train", 8, 256)]
    if not args.quick:
        cases += [("GPT-2 124M forward B=1 T=256", GPT2, "forward", 1, 256),
                  ("GPT-2 124M train step B=4 T=64", GPT2, "train", 4, 64)]
    builds, onnx_paths = {}, {}
    for name, spec, kind, B, T in cases:
        if spec["file"] not in builds:
            builds[spec["file"]] = build(spec, pathlib.Path(tmp) / pathlib.Path(spec["file"]).stem)
        out = builds[spec["file"]]
        vocab = spec["cfg"]["vocab"]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = fast_model(spec["cfg"])
            times = {"kiln": [], "pytorch": [], "onnxruntime": [], "torch.compile": []}
            compiled = None
            if kind == "train" and spec is CHAR and not args.no_compile:
                torch._dynamo.reset()
                compiled = torch_train_step(fast_model(spec["cfg"]), B, T, vocab, compiled=True)
            ort_model = torch_model(spec["cfg"]) if kind == "forward" else None
            ort_run = ort_session(ort_model, B, T, vocab, threads, tmp) if kind == "forward" else None
            if ort_run:
                onnx_paths[spec["file"]] = os.path.join(tmp, f"m{id(ort_model)}.onnx")
            # a forward round costs little next to a train step; more of them steady the medians, which the
            # other tenants of this machine's cores move by 5-15% from one run to the next
            for _ in range(args.rounds * (FORWARD_ROUNDS if kind == "forward" else 1)):
                if kind == "forward":
                    times["kiln"].append(kiln_time(out / "infer", "bench", B, T, threads, args.iters))
                    times["pytorch"].append(median_ms(torch_forward(model, B, T, vocab), args.iters))
                    times["onnxruntime"].append(median_ms(ort_run, args.iters))
                else:
                    binary = out / "train"
                    if not binary.exists():
                        continue
                    times["kiln"].append(kiln_time(binary, "bench", B, T, threads, args.iters))
                    times["pytorch"].append(median_ms(torch_train_step(model, B, T, vocab), args.iters))
                    if compiled:
                        try:
                            times["torch.compile"].append(median_ms(compiled, args.iters))
                        except Exception as e:  # Inductor needs a working C++ toolchain
                            print(f"torch.compile failed, column left empty: {type(e).__name__}: {e}"[:300], flush=True)
                            compiled = None
            med = {k: statistics.median(v) for k, v in times.items() if v}
            rows.append((name, threads, med, case_flops(spec, kind, B, T)))
            print(f"{name:32s} threads={threads}  " + "  ".join(f"{k} {v:9.1f} ms" for k, v in med.items()), flush=True)

    char_out = builds.get(CHAR["file"]) or build(CHAR, pathlib.Path(tmp) / "char-gpt")
    gen, _ = generation_rows("char", char_out, tmp)
    gen_weights = None
    if not args.quick:
        rows_gpt2, gen_weights = generation_rows("gpt2", builds[GPT2["file"]], tmp)
        gen += rows_gpt2
    gemm = [] if args.no_gemm else gemm_rows(tmp)
    mem_spec = CHAR if args.quick else GPT2
    if not args.no_memory and not os.access("/usr/bin/time", os.X_OK):
        print("no /usr/bin/time (Debian: apt install time): the peak-memory table is skipped", flush=True)
        args.no_memory = True
    memory = [] if args.no_memory else memory_rows(mem_spec, builds[mem_spec["file"]], tmp, onnx_paths.get(mem_spec["file"]),
                                                   (8, 256) if args.quick else (4, 64), gen_weights)
    print(f"\nKiln built with CC={CC}; medians of alternating rounds of {args.iters} iterations "
          f"({FORWARD_ROUNDS * args.rounds} rounds for forward cases, {args.rounds} for train steps).")
    print("\nPyTorch and torch.compile: bench/idiomatic.py (fused QKV, scaled_dot_product_attention, fused AdamW).")
    print("\n| case | threads | Kiln ms | PyTorch ms | ONNX Runtime ms | torch.compile ms | Kiln/PyTorch | Kiln/ORT"
          " | Kiln/torch.compile | Kiln GFLOP/s | share of the FMA peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, threads, med, flops in rows:
        k, p, o, c = med.get("kiln"), med.get("pytorch"), med.get("onnxruntime"), med.get("torch.compile")
        fmt = lambda v: f"{v:.1f}" if v else "–"
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "–"
        rate = flops / (k / 1e3) if k else 0
        print(f"| {name} | {threads} | {fmt(k)} | {fmt(p)} | {fmt(o)} | {fmt(c)} | {ratio(k, p)} | {ratio(k, o)}"
              f" | {ratio(k, c)} | {rate / 1e9:.1f} | {100 * rate / PEAK[threads]:.0f}% |")
    print("\n| generation (KV cache; new tokens after the first) | threads | Kiln tokens/s | bandwidth bound tokens/s"
          " | Kiln/bound |")
    print("|---|---|---|---|---|")
    for label, threads, tps, bound in gen:
        print(f"| {label} | {threads} | {tps:.1f} | {bound:.1f} | {tps / bound:.2f} |")
    if memory:
        print(f"\n| peak RSS, {'char model' if args.quick else 'GPT-2 124M'}, 2 threads | Kiln KiB | weights KiB "
              "| Kiln/weights | PyTorch KiB | ONNX Runtime KiB | Kiln/PyTorch | Kiln/ORT |")
        print("|---|---|---|---|---|---|---|---|")
        for name, k, w, r in memory:
            p, o = r.get("pytorch"), r.get("onnxruntime")
            print(f"| {name} | {k} | {w:.0f} | {k / w:.2f} | {p or '–'} | {o or '–'} | {f'{k / p:.2f}' if p else '–'} | "
                  f"{f'{k / o:.2f}' if o else '–'} |")
    print_gemm_table(gemm)


def print_gemm_table(gemm):
    if gemm:
        print("\n| GEMM M×N×K layout | threads | Kiln GFLOP/s | torch.matmul | OpenBLAS | Kiln/torch | Kiln/OpenBLAS | "
              "Kiln share of peak |")
        print("|---|---|---|---|---|---|---|---|")
        for shape, threads, ours, torch_, blas in gemm:
            share = f"{ours * 1e9 / PEAK[threads]:.0%}" if threads in PEAK else "–"
            print(f"| {shape} | {threads} | {ours:.1f} | {torch_:.1f} | {blas:.1f} | {ours / torch_:.2f} | "
                  f"{ours / blas:.2f} | {share} |")


if __name__ == "__main__":
    main()

