"""Helpers shared by the Python tests: the kiln binary, running commands,
model builds cached per session."""
import os
import pathlib
import re
import struct
import subprocess
import sys
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def kiln_binary() -> pathlib.Path:
    if os.environ.get("KILN_BIN"):
        return pathlib.Path(os.environ["KILN_BIN"])
    for conf in ("debug", "release"):
        p = ROOT / ".build" / conf / "kiln"
        if p.exists():
            return p
    pytest.skip("kiln is not built (run `swift build` first)")


def run(args, text=True, **kw):
    """Runs a command, returning CompletedProcess with text (or, text=False, bytes) output."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=text, **kw)


def forward_logits(infer, weights, tokens, tmp):
    """Logits of `infer forward` for an int32 token array, via .npy files in tmp."""
    import numpy as np
    np.save(tmp / "tokens.npy", tokens)
    r = run([infer, "forward", "--weights", weights, "--tokens", tmp / "tokens.npy", "--out", tmp / "logits.npy"])
    assert r.returncode == 0, r.stderr
    return np.load(tmp / "logits.npy")


def assert_same_logits(a, b, rel=1e-5):
    """Two builds' logits agree within rel of the logits' scale."""
    import numpy as np
    assert np.abs(a - b).max() <= rel * np.abs(b).max()


def attention_maps(build, weights, tmp, **inputs):
    """Every output of a build's attention_maps function (attention.0, attention.1, ...) for the inputs
    (name=array), through `infer run`."""
    import numpy as np
    listing = run([build / "infer", "run", "--list"])
    assert listing.returncode == 0, listing.stderr
    names = re.findall(r"output\s+(attention\.\d+)", listing.stdout.split("attention_maps", 1)[1])
    assert names == [f"attention.{j}" for j in range(len(names))], names
    args = [build / "infer", "run", "--weights", weights, "--function", "attention_maps"]
    for name, a in inputs.items():
        np.save(tmp / f"{name}.npy", a)
        args += ["--input", f"{name}={tmp / (name + '.npy')}"]
    for name in names:
        args += ["--output", f"{name}={tmp / (name + '.npy')}"]
    r = run(args)
    assert r.returncode == 0, r.stderr
    return [np.load(tmp / f"{name}.npy") for name in names]


def assert_same_maps(got, want, tol=1e-5):
    """The weights of every attention, each within tol of the reference's (they lie in [0, 1])."""
    import numpy as np
    assert len(got) == len(want)
    for j, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, (j, a.shape, b.shape)
        assert np.abs(a - b).max() <= tol, (j, np.abs(a - b).max())


class Builds:
    """Builds each (model file, overrides) once per test session."""

    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        self.cache = {}

    def build(self, model: str, *overrides: str) -> pathlib.Path:
        key = (model, overrides)
        if key not in self.cache:
            out = self.tmp / f"build{len(self.cache)}"
            args = [kiln_binary(), "build", ROOT / model, "-o", out]
            for o in overrides:
                args += ["--set", o]
            r = run(args)
            assert r.returncode == 0, r.stderr
            self.cache[key] = out
        return self.cache[key]




def ctypes_model(library, weights=None):
    """A model's C library through examples/c-api/kiln_ctypes.py (the binding users copy)."""
    if str(ROOT / "examples/c-api") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples/c-api"))
    from kiln_ctypes import Model
    return Model(library, weights)


def dump_gradients(build, weights, tokens, targets, tmp, tag="g"):
    """Kiln's loss and gradients of train_step on one batch (`gradcheck dump`): (gradients by name, loss)."""
    from safetensors.torch import load_file
    import numpy as np
    np.save(tmp / f"{tag}-tok.npy", tokens)
    np.save(tmp / f"{tag}-tgt.npy", targets)
    out = tmp / f"{tag}.safetensors"
    r = run([build / "gradcheck", "dump", "--weights", weights, "--tokens", tmp / f"{tag}-tok.npy", "--targets",
             tmp / f"{tag}-tgt.npy", "--out", out])
    assert r.returncode == 0, r.stderr
    return load_file(str(out)), float(r.stdout.split()[1])


def assert_gradients_match(ours, our_loss, model, loss):
    """Kiln's loss and gradients (from `gradcheck dump`) against a PyTorch model's after loss.backward(): the
    loss within 1e-5 (relative), every parameter's gradient within 1e-4 of its scale (or of a floor of 1e-3
    times the largest gradient, for parameters whose gradients are all near zero), the same parameter names."""
    import numpy as np
    assert abs(our_loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    theirs = dict(model.named_parameters())
    assert set(ours) == set(theirs)
    floor = 1e-3 * max(p.grad.abs().max().item() for p in theirs.values())
    for name, p in theirs.items():
        want, got = p.grad.numpy(), ours[name].numpy().astype(np.float64)
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), floor), name


def assert_decoding_matches_forward(m, tokens):
    """KV-cache decoding against the full forward, for a ctypes_model of a causal model and tokens [2, T]: prefill
    of 3 tokens, row 0 one decode step ahead, then steps at two different positions per call, each row's logits
    equal to those of the forward pass over its prefix (1e-5 of their scale)."""
    import numpy as np
    T = tokens.shape[1]

    def close(got, want):
        return np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

    m.reset_state(2)
    logits = m.run("prefill", tokens=tokens[:, :3])["logits"]
    for b in range(2):
        assert close(logits[b], m.run("forward", tokens=tokens[b:b + 1, :3])["logits"][0, -1])
    m.run("decode_step", tokens=tokens[:1, 3:4], positions=np.array([[3]], np.int32))  # row 0 one ahead
    positions = np.array([4, 3])
    while positions[0] < T:
        step = np.array([[tokens[b, positions[b]]] for b in range(2)], np.int32)
        logits = m.run("decode_step", tokens=step, positions=positions[:, None].astype(np.int32))["logits"]
        for b in range(2):
            want = m.run("forward", tokens=tokens[b:b + 1, :positions[b] + 1])["logits"][0, -1]
            assert close(logits[b, 0], want), (b, positions[b])
        positions += 1


def read_png(path):
    """(width, height, rows of RGB bytes) of an 8-bit RGB PNG, checking its chunks' CRCs and undoing the
    filters a reader must know (none, sub, up)."""
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i, order = {}, 8, []
    while i < len(png):
        n, kind = struct.unpack(">I", png[i:i + 4])[0], png[i + 4:i + 8]
        body = png[i + 8:i + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", png[i + 8 + n:i + 12 + n])[0], kind
        chunks[kind] = chunks.get(kind, b"") + body
        order.append(kind)
        i += 12 + n
    assert order[0] == b"IHDR" and order[-1] == b"IEND"
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 3 * w
    assert len(raw) == h * (stride + 1)
    rows, prev = [], bytearray(stride)
    for y in range(h):
        kind, r = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        assert kind in (0, 1, 2)
        if kind == 1:
            for x in range(3, stride):
                r[x] = (r[x] + r[x - 3]) & 255
        elif kind == 2:
            for x in range(stride):
                r[x] = (r[x] + prev[x]) & 255
        rows.append(bytes(r))
        prev = r
    return w, h, rows


def assert_finite_differences(kiln, source, out, seeds=(3,), batch=2, seq=5, samples=8):
    """Builds `source` in float64 into `out` and checks every VJP of its training graph against central
    differences (`gradcheck fd`) for each seed."""
    r = run([kiln, "build", source, "--dtype", "f64", "-o", out])
    assert r.returncode == 0, r.stderr
    for seed in seeds:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", samples])
        assert r.returncode == 0 and ": ok" in r.stdout, r.stdout + r.stderr


def perturbed_weights(infer, path, seed, scale=0.05):
    """`infer init --seed` weights at `path` with every tensor perturbed by scale · N(0, 1) (a random init has zero
    biases and unit norms, so each tensor then matters); returns them (torch, float32)."""
    import torch
    from safetensors.torch import load_file, save_file
    r = run([infer, "init", "--seed", seed, "--out", path])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(seed)
    weights = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in load_file(str(path)).items()}
    save_file(weights, str(path))
    return weights
