"""The C API (docs/c-api.md) through examples/c-api: its Makefile builds the tiny encoder and the character
model into libraries and links them into C programs; the C program and the ctypes script give the encoder's
outputs of a PyTorch float64 reference on a batch with different padding; both models run in one program;
and KV-cache decoding of a batch of rows at different positions, with a row's cache copied to another, gives
each row the logits of the full forward."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import reference
from kilntest import ROOT, run

C_API = ROOT / "examples/c-api"
CHAR_WEIGHTS = ROOT / "examples/weights/char-gpt-small.safetensors"
SENTENCES = [[5, 17, 52, 0, 9, 33, 12, 40, 41, 2, 7, 7, 19, 23, 11, 8, 30, 44, 1], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5],
             [50, 0, 13], [21]]

sys.path.insert(0, str(C_API))
from kiln_ctypes import KilnError, Model  # noqa: E402


@pytest.fixture(scope="module")
def c_api(kiln, tmp_path_factory):
    """examples/c-api built by its Makefile, and encoder weights far from the init."""
    build = tmp_path_factory.mktemp("c-api")
    r = run(["make", "-C", C_API, f"KILN={kiln}", f"BUILD={build}", "CC=gcc"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stdout + r.stderr
    w = build / "encoder.safetensors"
    r = run([build / "tiny_encoder/infer", "init", "--seed", 7, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(7)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return build, w


def reference_outputs(w, sentences):
    tokens = np.zeros((len(sentences), max(map(len, sentences))), np.int64)
    mask = np.zeros_like(tokens)
    for b, s in enumerate(sentences):
        tokens[b, :len(s)], mask[b, :len(s)] = s, 1
    with torch.no_grad():
        e, logits = reference.load_encoder(w)(torch.from_numpy(tokens), torch.from_numpy(mask))
    return e.numpy(), logits.numpy()


def parse(stdout):
    """The embedding and logits lines of encode / encode.py."""
    rows = {"embedding": [], "logits": []}
    for line in stdout.splitlines():
        key, *values = line.split()
        rows[key].append([float(v) for v in values])
    return np.array(rows["embedding"]), np.array(rows["logits"])


def assert_close(got, want):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


def sentences_text(sentences):
    return "".join(" ".join(map(str, s)) + "\n" for s in sentences)


@pytest.mark.parametrize("program", ["c", "ctypes"])
def test_encoder_through_the_c_example_and_ctypes_matches_pytorch(c_api, program):
    build, w = c_api
    if program == "c":
        args = [build / "encode", w]
    else:
        args = [sys.executable, C_API / "encode.py", build / "tiny_encoder/libtiny_encoder.so", w]
    r = run(args, input=sentences_text(SENTENCES))
    assert r.returncode == 0, r.stderr
    e, logits = parse(r.stdout)
    want_e, want_logits = reference_outputs(w, SENTENCES)
    assert_close(e, want_e)
    assert_close(logits, want_logits)
    # each row padded equals the row alone
    for b, s in enumerate(SENTENCES):
        e1, l1 = parse(run(args, input=sentences_text([s])).stdout)
        assert np.abs(e1[0] - e[b]).max() <= 1e-6 and np.abs(l1[0] - logits[b]).max() <= 1e-6


@pytest.mark.parametrize("program", ["c", "ctypes"])
def test_the_examples_report_bad_input_in_one_line(c_api, program):
    build, w = c_api
    if program == "c":
        args = [build / "encode", w]
    else:
        args = [sys.executable, C_API / "encode.py", build / "tiny_encoder/libtiny_encoder.so", w]
    r = run(args, input="1 2 53\n")
    assert r.returncode == 1 and "input 'tokens' holds 53 at [0, 2], outside [0, 53) (the vocabulary)" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    bad = build / "bad.safetensors"
    bad.write_bytes(w.read_bytes()[:-10])
    r = run(args[:-1] + [bad], input="1 2\n")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "outside the data section" in r.stderr, r.stderr


def test_two_models_in_one_program(c_api):
    build, w = c_api
    prompt, n = "ROMEO:", 30
    r = run([build / "two_models", w, CHAR_WEIGHTS, prompt, n])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    embedding = np.array([float(x) for x in lines[0].split()[1:]])
    # the encoder's half: the prompt's bytes modulo its vocabulary
    want, _ = reference_outputs(w, [[ord(c) % 53 for c in prompt]])
    assert_close(embedding, want[0])
    # the character model's half: greedy decoding, as infer generate does it
    continuation = r.stdout.split("continuation ", 1)[1][:n]
    g = run([build / "char_gpt_small/infer", "generate", "--weights", CHAR_WEIGHTS, "--prompt", prompt, "--tokens", n,
             "--temperature", 0])
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith(prompt + continuation), (g.stdout, continuation)
    symbols = subprocess.run(["nm", "--defined-only", "--extern-only", build / "two_models"], capture_output=True,
                             text=True).stdout
    assert "tiny_encoder_run" in symbols and "char_gpt_small_run" in symbols


def test_kv_cache_decoding_of_a_batch_at_different_positions_gives_the_full_forward(c_api):
    build, _ = c_api
    m = Model(build / "char_gpt_small/libchar_gpt_small.so", str(CHAR_WEIGHTS))
    assert m.functions["decode_step"].uses_state and not m.functions["forward"].uses_state
    text = (ROOT / "examples/data/tinyshakespeare.txt").read_bytes()
    rows = [np.frombuffer(text[s:s + 64], np.uint8).astype(np.int32) for s in (0, 1000, 5000, 20000)]
    lengths = [3, 17, 9, 30]  # each row's prompt; then every row decodes one token per step

    def full(row, upto):
        """The logits of the full forward at position upto - 1 of a row's first upto tokens."""
        return m.run("forward", tokens=row[None, :upto])["logits"][0, -1]

    def close(got, want):
        return np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

    m.reset_state(4)
    assert m.state_rows() == 4
    for b in (3, 2, 1, 0):  # prefill writes row 0; copy it to its row
        logits = m.run("prefill", tokens=rows[b][None, :lengths[b]])["logits"][0]
        assert close(logits, full(rows[b], lengths[b]))
        if b:
            m.copy_state_row(0, b)
    assert m.state_rows() == 4
    positions = np.array(lengths)
    for step in range(12):
        if step == 6:  # beam search: row 3 continues from row 1
            m.copy_state_row(1, 3)
            rows[3], positions[3] = rows[1].copy(), positions[1]
        tokens = np.array([[rows[b][positions[b]]] for b in range(4)], np.int32)
        logits = m.run("decode_step", tokens=tokens, positions=positions[:, None].astype(np.int32))["logits"]
        assert logits.shape == (4, 1, 256)
        for b in range(4):
            assert close(logits[b, 0], full(rows[b], positions[b] + 1)), (step, b)
        positions += 1
    with pytest.raises(KilnError, match="positions"):
        m.run("decode_step", tokens=np.zeros((1, 1)), positions=np.full((1, 1), 64))
    with pytest.raises(KilnError):
        m.copy_state_row(0, 4)
    m.close()


def test_weights_read_back_as_loaded_between_forward_calls(c_api):
    """load leaves the weights in the panels forward reads; params gives them back in the file's layout."""
    build, _ = c_api
    want = load_file(str(CHAR_WEIGHTS))
    m = Model(build / "char_gpt_small/libchar_gpt_small.so", str(CHAR_WEIGHTS))
    tokens = np.frombuffer(b"ROMEO: but soft, what light", np.uint8).astype(np.int32)[None, :]
    first = m.run("forward", tokens=tokens)["logits"]
    for _ in range(2):
        got = m.params()
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert np.array_equal(got[k], v.numpy()), k
        assert np.array_equal(m.run("forward", tokens=tokens)["logits"], first)
    m.close()
