"""Mixture of experts (tests/models/moe-gpt.kiln) against reference.MoEGPT, a PyTorch transcription of the
papers' equations (float64): Switch routing (top 1, capacity factor 1.0) and top-2 routing (capacity 1.25).
The forward pass (dropless, as every inference function) gives the reference's logits, load-balancing loss,
router z-loss and loads; on a batch where experts overflow and drop tokens, the training step's loss and the
gradients of next-token loss + 0.01 · balance + 0.001 · z-loss match autograd with the capacity; every VJP of a
float64 build against finite differences; KV-cache decoding against the forward pass; training on tiny
Shakespeare with the expert load printed at each evaluation; and the one-line errors."""
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_decoding_matches_forward, assert_gradients_match, ctypes_model, dump_gradients, ROOT, run

MODEL = "tests/models/moe-gpt.kiln"
VOCAB, T = 41, 12
ROUTINGS = {"switch": (1, 1.0), "top2": (2, 1.25)}


@pytest.fixture(scope="module", params=list(ROUTINGS))
def moe(request, kiln, tmp_path_factory):
    """A build of each routing, and weights far from the init: routers that prefer some experts, so that
    their queues overflow."""
    top, capacity = ROUTINGS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    out = tmp / "build"
    r = run([kiln, "build", ROOT / MODEL, "-o", out, "--set", f"top={top}", "--set", f"capacity={capacity}"])
    assert r.returncode == 0, r.stderr
    w = tmp / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 3, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(3)
    weights = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}
    for k in weights:
        if k.endswith("router.weight"):
            weights[k] = 0.6 * torch.randn(weights[k].shape, generator=g) + 0.3
    save_file(weights, str(w))
    return out, w, top, capacity


def tokens_of(B, seed):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(B, T), dtype=np.int32)


def routing_margin(model):
    """The smallest gap between a token's k-th and (k+1)-th router probability: routing that floats could
    flip makes a comparison meaningless, so the tests' batches keep it clear."""
    gaps = []
    for layer in model.layers:
        p = torch.softmax(layer.moe.logits, -1).sort(-1, descending=True).values
        k = layer.moe.top
        gaps.append((p[:, k - 1] - p[:, k]).min().item())
    return min(gaps)


def test_routing_and_auxiliary_losses_match_the_papers_equations(moe, tmp_path):
    """The forward pass routes every token (dropless-routing): the reference with no capacity."""
    out, w, top, _ = moe
    model = reference.load_module(reference.MoEGPT(top=top, capacity=0), w)
    tokens = tokens_of(4, seed=3)
    np.save(tmp_path / "tokens.npy", tokens)
    outputs = ["logits", "balance", "zloss", "expert_load"]
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}"]
            + sum([["--output", f"{o}={tmp_path / o}.npy"] for o in outputs], []))
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = dict(zip(outputs, model(torch.from_numpy(tokens).long())))
    assert routing_margin(model) > 1e-4
    load = want["expert_load"].numpy()
    # every token reaches its k experts, and the routers prefer some experts
    assert np.allclose(load.sum(-1), top) and (load.max(-1) > load.min(-1) + 0.05).all(), load
    for o in outputs:
        got, ref = np.load(tmp_path / f"{o}.npy"), want[o].numpy()
        assert got.shape == ref.shape, o
        scale = max(np.abs(ref).max(), 1e-3)
        assert np.abs(got - ref).max() <= 1e-5 * scale, (o, got, ref)


def test_gradients_of_loss_with_auxiliary_terms_match_autograd(moe, tmp_path):
    """The training step keeps the capacity: on this batch experts overflow and drop tokens in every layer."""
    out, w, top, capacity = moe
    model = reference.load_module(reference.MoEGPT(top=top, capacity=capacity), w)
    tokens, targets = tokens_of(4, seed=7), tokens_of(4, seed=3)
    ours, our_loss = dump_gradients(out, w, tokens, targets, tmp_path)
    logits, balance, z, load = model(torch.from_numpy(tokens).long())
    assert routing_margin(model) > 1e-4
    assert (load.sum(-1) < top - 1e-9).all(), load
    loss = (F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
            + 0.01 * balance + 0.001 * z)
    loss.backward()
    for layer in model.layers:  # every expert weight and router learns
        assert layer.moe.router.weight.grad.abs().max() > 0 and layer.moe.up.weight.grad.abs().max() > 0
    assert_gradients_match(ours, our_loss, model, loss)


@pytest.mark.parametrize("routing", list(ROUTINGS))
def test_every_vjp_against_finite_differences(kiln, tmp_path, routing):
    top, capacity = ROUTINGS[routing]
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / MODEL, "--dtype", "f64", "-o", out, "--set", f"top={top}", "--set", f"capacity={capacity}"])
    assert r.returncode == 0, r.stderr
    for seed, batch, seq in [(1, 2, 5), (2, 3, 9)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", 10])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": ok" in r.stdout


@pytest.mark.parametrize("routing", list(ROUTINGS))
def test_trains_on_tiny_shakespeare_and_reports_the_expert_load(kiln, tmp_path, routing):
    """Byte-level switch and top-2 models learn, and every evaluation prints each layer's load."""
    top, capacity = ROUTINGS[routing]
    model = tmp_path / "m.kiln"
    model.write_text((ROOT / MODEL).read_text().replace("vocab    = 41", "vocab    = 256")
                     .replace("context  = 12", "context  = 32").replace("batch = 3", "batch = 8").replace("seq = 12", "seq = 32"))
    out = tmp_path / "b"
    r = run([kiln, "build", model, "-o", out, "--set", f"top={top}", "--set", f"capacity={capacity}"])
    assert r.returncode == 0, r.stderr
    (tmp_path / "t.txt").write_bytes((ROOT / "examples/data/tinyshakespeare.txt").read_bytes()[:100_000])
    r = run([out / "train", "--data", tmp_path / "t.txt", "--out", tmp_path / "w.safetensors", "--steps", 150,
             "--eval-interval", 75, "--lr", 3e-3, "--seed", 1, "--log", tmp_path / "log.jsonl"])
    assert r.returncode == 0, r.stderr
    val = [float(v) for v in re.findall(r"val loss ([\d.]+)", r.stdout)]
    assert len(val) == 2 and val[-1] < val[0] - 0.1 and val[-1] < 3.5, r.stdout
    loads = re.findall(r"expert load, layer (\d): ((?:[\d.]+ ){5})", r.stdout)
    assert [int(l) for l, _ in loads] == [0, 1, 0, 1], r.stdout
    for _, row in loads:  # the forward pass's loads: every position reaches its k experts
        assert abs(sum(float(v) for v in row.split()) - top) < 0.01, row
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    logged = [o["expert_load"] for o in records if "val_loss" in o]
    assert len(logged) == 2 and all(len(l) == 2 and len(l[0]) == 5 for l in logged)


def test_kv_cache_decoding_gives_the_full_forward(moe):
    """Dropless routing makes each position's experts its own: prefill then decode_step, two rows a position
    apart, give the logits of the forward pass of each prefix."""
    out, w, _, _ = moe
    m = ctypes_model(next(out.glob("lib*.so")), str(w))
    assert_decoding_matches_forward(m, tokens_of(2, seed=5))
    m.close()


BAD = [
    ("h = moe(h, experts: 5, hidden: 8, top: 6)", "top 6 must be at most the 5 experts"),
    ("h = moe(h, experts: 1, hidden: 8)", "experts must be between 2 and 1024, got 1"),
    ("h = moe(h, experts: 4, hidden: 8, capacity: -1)", "capacity must be a factor ≥ 0 (0: no limit), got -1"),
    ("h = moe(h, experts: 4, hidden: 8, activation: swiglu)", "activation must be one of"),
    ("output b = moe_balance(h)", "moe_balance needs a tensor computed by moe layers"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_bad_moe_calls_get_one_line_errors(kiln, tmp_path, line, message):
    src = ("model M\ninput tokens: i32[B, T] where T <= 8\nh = embed(tokens, 16, 8)\n" + line
           + "\noutput logits = linear(h, 16)\n")
    (tmp_path / "m.kiln").write_text(src)
    r = run([kiln, "check", tmp_path / "m.kiln"])
    assert r.returncode != 0
    assert f"m.kiln:4:" in r.stderr and message in r.stderr, r.stderr


def test_stats_count_active_parameters_and_flops_per_token(kiln):
    """kiln stats: all parameters, those one token uses (the routers and k experts' weights of each layer), and
    the forward FLOPs per token, which grow with k and not with the number of experts."""
    def stats(*sets):
        r = run([kiln, "stats", ROOT / MODEL] + sum([["--set", s] for s in sets], []))
        assert r.returncode == 0, r.stderr
        total = int(re.search(r"parameters +([\d,]+) in", r.stdout)[1].replace(",", ""))
        active = int(re.search(r"active +([\d,]+) parameters per token", r.stdout)[1].replace(",", ""))
        per_token = int(re.search(r"forward per token ([\d,]+) FLOPs", r.stdout)[1].replace(",", ""))
        return total, active, per_token
    expert = 2 * 22 * 30  # up and down of one expert
    total, active, flops1 = stats("top=1")
    assert total - active == 2 * 4 * expert  # two layers, four of five experts idle
    total2, active2, flops2 = stats("top=2")
    assert total2 == total and total2 - active2 == 2 * 3 * expert and flops2 > flops1
    total8, active8, flops8 = stats("top=1", "experts=8")
    # three more experts per layer: their weights and router rows; a token uses only the router rows more
    assert total8 == total + 2 * 3 * (expert + 30) and active8 == active + 2 * 3 * 30 and flops1 < flops8 < 1.05 * flops1
