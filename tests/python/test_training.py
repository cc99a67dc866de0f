"""The training binary of a real example against PyTorch: a 10-step AdamW run
(warmup + cosine schedule, gradient clipping, weight decay on matrices and
embeddings) on the same initial weights and the same batches must give the
same loss at every step, and the trained weights must load in infer."""
import json

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import run
from train_reference import ref_batches, ref_lr

SMALL = dict(vocab=256, context=64, dim=128, heads=4, layers=4, hidden=512, norm="pre", activation="gelu",
             positions="learned", final_norm=True, head="tied", eps=1e-5)


def test_ten_adamw_steps_match_torch(builds, tmp_path):
    out = builds.build("examples/char-gpt-small.kiln")
    adamw_run_matches_torch(out, tmp_path, SMALL, open(__file__, "rb").read() * 20, B=4, T=32, steps=10)


def adamw_run_matches_torch(out, tmp_path, cfg, src, B, T, steps):
    """`train` from perturbed `infer init` weights on the text src against the same run in PyTorch (float64):
    the loss of every step within 1e-4; then infer scores the checkpoint."""
    w = tmp_path / "init.safetensors"
    assert run([out / "infer", "init", "--seed", 3, "--out", w]).returncode == 0
    state = load_file(str(w))
    g = torch.Generator().manual_seed(5)
    save_file({k: v + 0.02 * torch.randn(v.shape, generator=g) for k, v in state.items()}, str(w))

    text = (tmp_path / "data.txt")
    text.write_bytes(src)
    seed = 77
    hp = dict(lr=3e-3, min_lr=3e-4, warmup=3, decay=10, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1, clip=0.5)
    log = tmp_path / "log.jsonl"
    r = run([out / "train", "--data", text, "--out", tmp_path / "ckpt.safetensors", "--init-from", w,
             "--steps", steps, "--seed", seed, "--batch", B, "--seq", T, "--lr", hp["lr"], "--min-lr", hp["min_lr"],
             "--warmup", hp["warmup"], "--decay-steps", hp["decay"], "--schedule", "cosine", "--optimizer", "adamw",
             "--beta1", hp["beta1"], "--beta2", hp["beta2"], "--eps", hp["eps"], "--weight-decay", hp["wd"],
             "--decay-embeddings", 1, "--clip", hp["clip"], "--eval-interval", 0, "--log", log])
    assert r.returncode == 0, r.stderr
    ours = [json.loads(line)["loss"] for line in log.read_text().splitlines() if '"loss"' in line and "val_loss" not in line]
    assert len(ours) == steps

    model = reference.load(cfg, w, dtype=torch.float64).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["wd"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    theirs = []
    for step, (x, y) in enumerate(ref_batches(src, seed, B, T, steps)):
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        for group in opt.param_groups:
            group["lr"] = ref_lr(step, hp["lr"], hp["min_lr"], hp["warmup"], hp["decay"])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip"])
        opt.step()
        theirs.append(loss.item())
    diffs = [abs(a - b) for a, b in zip(ours, theirs)]
    print("max per-step loss difference", max(diffs), "losses", theirs)
    assert max(diffs) <= 1e-4, f"per-step loss differences {diffs}"
    assert theirs[-1] < theirs[0]  # it learns

    # The checkpoint's weights are what infer runs.
    r = run([out / "infer", "score", "--weights", tmp_path / "ckpt.safetensors", text])
    assert r.returncode == 0 and "perplexity" in r.stdout


def test_resume_is_exact_with_dropout(builds, tmp_path):
    """6 steps straight == 3 steps + --resume + 3 steps: same losses, same bytes (dropout on)."""
    out = builds.build("examples/char-gpt-small.kiln", "dropout=0.1", "layers=2")
    text = tmp_path / "data.txt"
    text.write_bytes(open(__file__, "rb").read() * 10)
    common = ["--data", text, "--seed", 9, "--batch", 2, "--seq", 16, "--eval-interval", 2, "--eval-iters", 2]

    def losses(log):
        return [json.loads(line)["loss"] for line in log.read_text().splitlines() if "val_loss" not in line]

    r = run([out / "train", *common, "--steps", 6, "--out", tmp_path / "a.safetensors", "--log", tmp_path / "a.jsonl"])
    assert r.returncode == 0, r.stderr
    r = run([out / "train", *common, "--steps", 3, "--out", tmp_path / "b.safetensors", "--log", tmp_path / "b.jsonl"])
    assert r.returncode == 0, r.stderr
    r = run([out / "train", "--resume", tmp_path / "b.safetensors", "--data", text, "--steps", 6,
             "--out", tmp_path / "b.safetensors", "--log", tmp_path / "b.jsonl"])
    assert r.returncode == 0, r.stderr
    assert losses(tmp_path / "a.jsonl") == losses(tmp_path / "b.jsonl")
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Another model's checkpoint is refused with one line.
    other = builds.build("examples/char-gpt-small.kiln", "dropout=0.1", "layers=1")
    r = run([other / "train", "--resume", tmp_path / "b.safetensors", "--data", text, "--steps", 8,
             "--out", tmp_path / "c.safetensors"])
    assert r.returncode != 0 and "different model" in r.stderr and len(r.stderr.strip().splitlines()) == 1
