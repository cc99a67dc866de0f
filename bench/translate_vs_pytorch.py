"""Kiln against PyTorch on the English–French example (issue #13): the model of examples/translate-en-fr.kiln is
trained by Kiln (`train --data eng-fra.tsv`) and, in the same run, as a PyTorch model of the same shape
(torch.nn.TransformerEncoderLayer / TransformerDecoderLayer, tests/python/reference.Seq2Seq) from the same
initial weights, on the same token ids (Kiln's tokenizer), with the same batching (pairs of similar lengths from a
window of 8 * batch neighbours in length order), steps, optimizer (AdamW, the model file's settings, gradient
clipping 1.0), schedule and label smoothing. Then both translate the held-out pairs (every 10th), greedy and with
beam 4, one sentence at a time: PyTorch with a plain decoding loop (the decoder re-run over the prefix, beams as
a batch), Kiln with `infer translate` (KV cache). Prints training wall time, held-out BLEU and chrF (sacreBLEU)
and sentences per second, with Kiln/PyTorch ratios.

    python3 bench/translate_vs_pytorch.py [--steps N] [--seeds 3] [--threads 2] [--kiln .build/release/kiln]
"""
import argparse
import json
import math
import os
import statistics
import pathlib
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import reference  # noqa: E402

MODEL = ROOT / "examples" / "translate-en-fr.kiln"
PAIRS = ROOT / "examples" / "data" / "eng-fra.tsv"


def run(args, env=None):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env).stdout


def model_settings():
    text = MODEL.read_text()
    get = lambda key: re.search(rf"^\s*{key}\s*=\s*([\w.]+)", text, re.M).group(1)  # noqa: E731
    opt = re.search(r"adamw\(lr: ([\d.e-]+), beta1: ([\d.]+), beta2: ([\d.]+), eps: ([\d.e-]+), weight_decay: ([\d.]+)\)", text)
    return dict(vocab=int(get("vocab")), dim=int(get("dim")), heads=int(get("heads")), layers=int(get("layers")),
                hidden=int(get("hidden")), drop=float(get("drop")), steps=int(get("steps")), batch=int(get("batch")),
                warmup=int(re.search(r"inverse_sqrt\(warmup: (\d+)\)", text).group(1)),
                lr=float(opt.group(1)), betas=(float(opt.group(2)), float(opt.group(3))), eps=float(opt.group(4)),
                weight_decay=float(opt.group(5)), clip=float(get("clip")),
                smoothing=float(re.search(r"smoothing: ([\d.]+)", text).group(1)))


def metadata(path):
    raw = open(path, "rb").read()
    return json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])["__metadata__"]


def ids_of(infer, weights, lines, tmp, name):
    f = tmp / f"{name}.txt"
    f.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return [[int(x) for x in row.split()] for row in run([infer, "tokenize", "--weights", weights, "--file", f]).splitlines()]


def texts_of(infer, weights, id_lists, tmp):
    f = tmp / "hyp-ids.txt"
    f.write_text("".join((" ".join(map(str, ids)) if ids else "0") + "\n" for ids in id_lists))
    return run([infer, "tokenize", "--weights", weights, "--decode", "--file", f]).split("\n")[:-1]


def batches(src, tgt, train, B, steps, seed):
    """Kiln's batching, with numpy's generator: B pairs from a random window of 8B in length order."""
    order = sorted(train, key=lambda i: (len(tgt[i]) * 1024 + len(src[i]), i))
    rng = np.random.default_rng(seed)
    W = min(len(order), 8 * B)
    for _ in range(steps):
        start = rng.integers(0, len(order) - W + 1)
        yield [order[start + j] for j in rng.integers(0, W, B)]


def pad(rows, value):
    n = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (n - len(r)) for r in rows])


def torch_train(model, src, tgt, train, cfg, steps, bos, eos, pad_id, seed):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=cfg["betas"], eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"])
    warmup = cfg["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else math.sqrt(warmup / (s + 1)))
    model.train()
    for pick in batches(src, tgt, train, cfg["batch"], steps, seed):
        source = pad([src[i] + [eos] for i in pick], pad_id)
        labels = pad([tgt[i] + [eos] for i in pick], pad_id)
        target = pad([[bos] + tgt[i] for i in pick], pad_id)
        logits = model(source, (source != pad_id).long(), target)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=pad_id,
                               label_smoothing=cfg["smoothing"])
        opt.zero_grad()
        loss.backward()
        if cfg["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        sched.step()
    return loss.item()


@torch.no_grad()
def torch_loss(model, src, tgt, held, bos, eos, pad_id):
    """Kiln's held-out loss: cross-entropy per target token (eos included), no label smoothing."""
    total, count = 0.0, 0
    for k in range(0, len(held), 64):
        pick = held[k:k + 64]
        source = pad([src[i] + [eos] for i in pick], pad_id)
        labels = pad([tgt[i] + [eos] for i in pick], pad_id)
        logits = model(source, (source != pad_id).long(), pad([[bos] + tgt[i] for i in pick], pad_id))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=pad_id,
                                 reduction="sum").item()
        count += int((labels != pad_id).sum())
    return total / count


@torch.no_grad()
def torch_translate(model, source, K, alpha, max_len, bos, eos):
    """Kiln's search (docs/translation.md) over the PyTorch model: beams as one batch, the decoder re-run over
    the prefix at every step (no KV cache)."""
    src = torch.tensor([source])
    mask = torch.ones_like(src)
    memory = model.encode(src, mask)
    live, finished = [([], 0.0)], []
    for t in range(max_len):
        prefixes = torch.tensor([[bos] + toks for toks, _ in live])
        logp = F.log_softmax(model.decode(memory.expand(len(live), -1, -1), mask.expand(len(live), -1), prefixes)[:, -1], -1)
        cand = (torch.tensor([s for _, s in live], dtype=logp.dtype)[:, None] + logp).flatten()
        new_live = []
        for flat in torch.argsort(-cand, stable=True).tolist():
            h, tok = divmod(flat, logp.shape[1])
            toks, score = live[h][0] + [tok], float(cand[flat])
            if tok == eos:
                finished.append((toks, score, score / ((5 + len(toks)) / 6) ** alpha))
                if len(finished) == K:
                    break
            else:
                new_live.append((toks, score))
                if len(new_live) == K:
                    break
        if len(finished) >= K:
            break
        live = new_live
    if len(finished) < K:
        finished += [(toks, s, s / ((5 + len(toks)) / 6) ** alpha) for toks, s in live]
    best = max(finished, key=lambda f: f[2])
    return [x for x in best[0] if x != eos]


def kiln_run(out, tmp, steps, seed, threads, held, rows):
    """Trains with Kiln; returns (train seconds, held-out loss, {K: (sentences/s, BLEU, chrF)}, checkpoint)."""
    ckpt = tmp / f"kiln-{seed}.safetensors"
    t0 = time.perf_counter()
    log = run([out / "train", "--data", PAIRS, "--out", ckpt, "--steps", steps, "--eval-interval", steps,
               "--seed", seed, "--threads", threads])
    seconds = time.perf_counter() - t0
    loss = float(re.findall(r"eval step \d+: val loss ([\d.]+)", log)[-1])
    refs = [rows[i][1] for i in held]
    res = {}
    for K in (1, 4):
        t0 = time.perf_counter()
        hyps = run([out / "infer", "translate", "--weights", ckpt, "--file", tmp / "src.txt", "--beam", K,
                    "--threads", threads]).split("\n")[:-1]
        res[K] = (len(held) / (time.perf_counter() - t0), sacrebleu.corpus_bleu(hyps, [refs]).score,
                  sacrebleu.corpus_chrf(hyps, [refs]).score)
    return seconds, loss, res, ckpt


def torch_run(out, tmp, cfg, steps, seed, ckpt, held, train, rows):
    """The same with PyTorch, on Kiln's token ids and from Kiln's initial weights for this seed."""
    torch.manual_seed(seed)
    src = ids_of(out / "infer", ckpt, [r[0] for r in rows], tmp, "all-sources")
    tgt = ids_of(out / "infer", ckpt, [r[1] for r in rows], tmp, "all-targets")
    tok = metadata(ckpt)["tokenizer"].splitlines()[1].split()[1:]
    pad_id, bos, eos = (tok.index(s) for s in ("<pad>", "<bos>", "<eos>"))
    init = tmp / "init.safetensors"
    run([out / "infer", "init", "--seed", seed, "--out", init])
    model = reference.Seq2Seq(cfg["vocab"], cfg["dim"], cfg["heads"], cfg["layers"], cfg["hidden"], cfg["drop"])
    model.load(init, dtype=torch.float32)
    t0 = time.perf_counter()
    torch_train(model, src, tgt, train, cfg, steps, bos, eos, pad_id, seed)
    seconds = time.perf_counter() - t0
    model.eval()
    loss = torch_loss(model, src, tgt, held, bos, eos, pad_id)
    refs = [rows[i][1] for i in held]
    res = {}
    for K in (1, 4):
        t0 = time.perf_counter()
        id_lists = [torch_translate(model, src[i] + [eos], K, 0.6, 32, bos, eos) for i in held]
        speed = len(held) / (time.perf_counter() - t0)
        hyps = texts_of(out / "infer", ckpt, id_lists, tmp)
        res[K] = (speed, sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score)
    return seconds, loss, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the model file's)")
    ap.add_argument("--seeds", type=int, default=3, help="runs of each, seeds 1234, 1235, ...")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = model_settings()
    steps = args.steps or cfg["steps"]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-translate-"))
    out = tmp / "build"
    run([args.kiln, "build", MODEL, "-o", out], env={**os.environ, "CC": "gcc"})  # as bench/run.sh builds
    rows = [line.split("\t")[:2] for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    held = [i for i in range(len(rows)) if i % 10 == 0]
    train = [i for i in range(len(rows)) if i % 10 != 0]
    (tmp / "src.txt").write_text("".join(rows[i][0] + "\n" for i in held), encoding="utf-8")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; threads {args.threads}; {steps} steps of {cfg['batch']} pairs; torch {torch.__version__}")
    print("| seed | system | train s | held-out loss | BLEU greedy | chrF greedy | BLEU beam 4 | chrF beam 4 | sent/s greedy | sent/s beam 4 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = {"Kiln": [], "PyTorch": []}
    for seed in range(1234, 1234 + args.seeds):
        seconds, loss, res, ckpt = kiln_run(out, tmp, steps, seed, args.threads, held, rows)
        runs["Kiln"].append((seconds, loss, res))
        runs["PyTorch"].append(torch_run(out, tmp, cfg, steps, seed, ckpt, held, train, rows))
        for name in runs:
            s_, l_, r_ = runs[name][-1]
            print(f"| {seed} | {name} | {s_:.1f} | {l_:.4f} | {r_[1][1]:.2f} | {r_[1][2]:.2f} | {r_[4][1]:.2f} | "
                  f"{r_[4][2]:.2f} | {r_[1][0]:.0f} | {r_[4][0]:.0f} |", flush=True)
    mean = lambda name, f: statistics.mean(f(r) for r in runs[name])  # noqa: E731
    print()
    print(f"| mean of {args.seeds} seeds | Kiln | PyTorch | Kiln vs PyTorch |")
    print("|---|---|---|---|")
    rows_out = [("training wall time, s", lambda r: r[0], "ratio"), ("held-out loss", lambda r: r[1], "diff"),
                ("BLEU greedy", lambda r: r[2][1][1], "diff"), ("chrF greedy", lambda r: r[2][1][2], "diff"),
                ("BLEU beam 4", lambda r: r[2][4][1], "diff"), ("chrF beam 4", lambda r: r[2][4][2], "diff"),
                ("sentences/s greedy", lambda r: r[2][1][0], "ratio"), ("sentences/s beam 4", lambda r: r[2][4][0], "ratio")]
    for label, f, kind in rows_out:
        k, p = mean("Kiln", f), mean("PyTorch", f)
        print(f"| {label} | {k:.2f} | {p:.2f} | {f'{k / p:.2f}×' if kind == 'ratio' else f'{k - p:+.2f}'} |")


if __name__ == "__main__":
    main()
