"""`kiln import` of Hugging Face model folders (issues #19, #14, #13): tiny GPT-2, Llama and BERT models are
random-initialised by `transformers`, and a tiny Marian translation model is trained for a few seconds to copy
its source; each is saved with save_pretrained (offline), imported, built, and run with the folder's
model.safetensors as it is. Their outputs match `transformers` within 1e-5 of their scale. Also: greedy
generation and beam search give the same ids and scores as `generate`, half-precision checkpoints load, and
bad folders and files are refused in one line that names the tensor in both namings or the config key."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kilntest import run

transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 97


def save(model, path):
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Odd sizes, so that no layout mistake hides behind a square matrix."""
    d = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    T = transformers
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=VOCAB, n_positions=24, n_embd=40, n_layer=2, n_head=4,
                                          bos_token_id=0, eos_token_id=0))
    llama = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                             num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=32,
                                             rope_theta=500000.0, bos_token_id=1, eos_token_id=2))
    bert = T.BertModel(T.BertConfig(vocab_size=VOCAB, hidden_size=36, intermediate_size=70, num_hidden_layers=2,
                                    num_attention_heads=6, max_position_embeddings=29, type_vocab_size=2))
    # weights away from their init (LayerNorm gains of 1 and zero biases would hide mistakes)
    with torch.no_grad():
        for m in (gpt2, llama, bert):
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    marian = trained_marian()
    return {name: (save(m.eval(), d / name), m.eval())
            for name, m in [("gpt2", gpt2), ("llama", llama), ("bert", bert), ("marian", marian)]}


MARIAN_PAD, MARIAN_EOS, MARIAN_WORDS = 100, 0, 12


def trained_marian(steps=300):
    """A Marian model (post-norm encoder-decoder, sinusoidal positions in halves, swish, scaled shared
    embeddings, final_logits_bias) trained to copy sequences of ids 1..12: random weights make every search
    repeat one token forever, a half-trained model ends its outputs and gives its beams something to choose."""
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=101, d_model=40, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=5, encoder_ffn_dim=72, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=MARIAN_PAD, decoder_start_token_id=MARIAN_PAD, eos_token_id=MARIAN_EOS, scale_embedding=True,
        activation_function="swish", dropout=0.0)
    model = transformers.MarianMTModel(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        n = 3 + int(torch.randint(0, 6, (1,), generator=g))
        ids = torch.randint(1, MARIAN_WORDS + 1, (32, n), generator=g)
        eos = torch.full((32, 1), MARIAN_EOS)
        loss = model(input_ids=torch.cat([ids, eos], 1), labels=torch.cat([ids, eos], 1)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # a final_logits_bias away from zero
        model.final_logits_bias.add_(0.1 * torch.randn_like(model.final_logits_bias))
    return model


@pytest.fixture(scope="module")
def built(folders, kiln, tmp_path_factory):
    """Each folder imported and built once."""
    out = {}
    for name, (folder, _) in folders.items():
        d = tmp_path_factory.mktemp(f"build-{name}")
        r = run([kiln, "import", folder, "-o", d / f"{name}.kiln"])
        assert r.returncode == 0, r.stderr
        r = run([kiln, "build", d / f"{name}.kiln", "-o", d / "out"])
        assert r.returncode == 0, r.stderr
        out[name] = d / "out"
    return out


def assert_close(got, want, rel=1e-5):
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rel * scale, (err, scale)


def infer_run(out, weights, tmp, inputs, outputs):
    args = [out / "infer", "run", "--weights", weights]
    for k, v in inputs.items():
        np.save(tmp / f"{k}.npy", v)
        args += ["--input", f"{k}={tmp / (k + '.npy')}"]
    for k in outputs:
        args += ["--output", f"{k}={tmp / (k + '.out.npy')}"]
    r = run(args)
    assert r.returncode == 0, r.stderr
    return [np.load(tmp / f"{k}.out.npy") for k in outputs]


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_decoder_logits_match_transformers(name, folders, built, tmp_path):
    folder, model = folders[name]
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(3, 17), dtype=np.int32)
    (logits,) = infer_run(built[name], folder / "model.safetensors", tmp_path, {"tokens": tokens}, ["logits"])
    with torch.no_grad():
        want = model(torch.from_numpy(tokens).long()).logits.numpy()
    assert logits.shape == want.shape
    assert_close(logits, want)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_generation_matches_transformers_generate(name, folders, built):
    folder, model = folders[name]
    prompt = [5, 17, 3, 44]
    r = run([built[name] / "infer", "generate", "--weights", folder / "model.safetensors", "--prompt-ids",
             ",".join(map(str, prompt)), "--tokens", 12, "--temperature", 0])
    assert r.returncode == 0, r.stderr
    got = [int(t) for t in r.stdout.replace(",", " ").split()]
    with torch.no_grad():
        want = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, min_new_tokens=12,
                              pad_token_id=0)[0].tolist()
    assert got[-12:] == want[len(prompt):], (got, want)


def test_bert_hidden_states_and_mean_pooling_match_transformers(folders, built, tmp_path):
    folder, model = folders["bert"]
    rng = np.random.default_rng(2)
    lengths = [29, 13, 4]
    tokens = rng.integers(1, VOCAB, size=(3, 29), dtype=np.int32)
    mask = (np.arange(29)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    tokens = np.where(mask == 1, tokens, 0).astype(np.int32)
    types = (np.arange(29)[None, :] >= 7).astype(np.int32) * mask
    hidden, emb = infer_run(built["bert"], folder / "model.safetensors", tmp_path,
                            {"tokens": tokens, "mask": mask, "token_types": types}, ["hidden", "embedding"])
    with torch.no_grad():
        h = model(input_ids=torch.from_numpy(tokens).long(), attention_mask=torch.from_numpy(mask).long(),
                  token_type_ids=torch.from_numpy(types).long()).last_hidden_state
        m = torch.from_numpy(mask).float()[..., None]
        pooled = (h * m).sum(1) / m.sum(1)
    keep = mask.astype(bool)
    assert_close(hidden[keep], h.numpy()[keep])
    assert_close(emb, pooled.numpy())


def test_marian_logits_match_transformers_on_a_padded_batch(folders, built, tmp_path):
    """Sources of different lengths, padded with the pad id and masked, and targets that start from the
    decoder_start id: the logits at every target position match MarianMTModel's."""
    folder, model = folders["marian"]
    rng = np.random.default_rng(5)
    lengths = [9, 4, 6]
    source = np.full((3, 9), MARIAN_PAD, dtype=np.int32)
    for b, n in enumerate(lengths):
        source[b, :n - 1] = rng.integers(1, 100, size=n - 1)
        source[b, n - 1] = MARIAN_EOS
    mask = (source != MARIAN_PAD).astype(np.int32)
    target = rng.integers(1, 100, size=(3, 7)).astype(np.int32)
    target[:, 0] = MARIAN_PAD
    (logits,) = infer_run(built["marian"], folder / "model.safetensors", tmp_path,
                          {"source": source, "source_mask": mask, "target": target}, ["logits"])
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(source).long(), attention_mask=torch.from_numpy(mask).long(),
                     decoder_input_ids=torch.from_numpy(target).long()).logits.numpy()
    assert_close(logits, want)


@pytest.mark.parametrize("beam, alpha", [(1, 1.0), (4, 1.0), (4, 0.0), (3, 0.6)])
def test_marian_translations_match_transformers_generate(beam, alpha, folders, built, tmp_path):
    """infer translate with transformers' length penalty (--length-style power) gives the ids of
    generate(num_beams=K, length_penalty=A) and its sequence scores, the encoder run once per source."""
    folder, model = folders["marian"]
    rng = np.random.default_rng(6)
    sources = [rng.integers(1, MARIAN_WORDS + 1, size=n).tolist() + [MARIAN_EOS] for n in (2, 3, 5, 6, 8, 4)]
    (tmp_path / "ids.txt").write_text("".join(" ".join(map(str, s)) + "\n" for s in sources))
    r = run([built["marian"] / "infer", "translate", "--weights", folder / "model.safetensors", "--ids-file",
             tmp_path / "ids.txt", "--bos", MARIAN_PAD, "--eos", MARIAN_EOS, "--beam", beam, "--length-penalty", alpha,
             "--length-style", "power", "--max-len", 12, "--scores"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(sources)
    ended = 0
    for source, line in zip(sources, lines):
        scores, _, ids = line.partition("\t")
        got = [int(t) for t in ids.split()]
        with torch.no_grad():
            out = model.generate(torch.tensor([source]), num_beams=beam, do_sample=False, max_new_tokens=12,
                                 length_penalty=alpha, forced_eos_token_id=None, output_scores=True,
                                 return_dict_in_generate=True)
        want = out.sequences[0].tolist()[1:]
        if want[-1] == MARIAN_EOS:
            want, ended = want[:-1], ended + 1
        assert got == want, (source, got, want)
        if beam > 1:
            assert abs(float(scores.split()[1]) - float(out.sequences_scores[0])) < 1e-4, (line, out.sequences_scores)
    assert ended >= len(sources) // 2  # the model ends its translations


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_half_and_double_precision_checkpoints_load(dtype, folders, built, tmp_path):
    """A checkpoint saved in bfloat16, float16 (its small weights include subnormals) or float64 loads into
    the f32 model: the logits are those of transformers' model with the same rounded weights."""
    folder, model = folders["llama"]
    half = {k: v.to(dtype) for k, v in load_file(str(folder / "model.safetensors")).items()}
    if dtype == torch.float16:
        assert any(((v != 0) & (v.abs() < 2 ** -14)).any() for v in half.values())  # subnormal halves
    save_file(half, str(tmp_path / "bf16.safetensors"), metadata={"format": "pt"})
    rounded = transformers.LlamaForCausalLM(model.config).eval()
    rounded.load_state_dict({k: v.float() for k, v in half.items()})
    tokens = np.random.default_rng(3).integers(0, VOCAB, size=(2, 9), dtype=np.int32)
    (logits,) = infer_run(built["llama"], tmp_path / "bf16.safetensors", tmp_path, {"tokens": tokens}, ["logits"])
    with torch.no_grad():
        want = rounded(torch.from_numpy(tokens).long()).logits.numpy()
    assert_close(logits, want)


def test_weights_kiln_writes_load_too(folders, built, tmp_path):
    """A fine-tuned or re-saved model's weights, written by the binaries under Kiln's own names, load into
    the same build: the loader reads either naming."""
    folder, _ = folders["gpt2"]
    out = built["gpt2"]
    tokens = np.random.default_rng(4).integers(0, VOCAB, size=(1, 11), dtype=np.int32)
    (a,) = infer_run(out, folder / "model.safetensors", tmp_path, {"tokens": tokens}, ["logits"])
    r = run([out / "infer", "init", "--out", tmp_path / "own.safetensors"])
    assert r.returncode == 0, r.stderr
    own = load_file(str(tmp_path / "own.safetensors"))
    assert "layers.0.attention.query.weight" in own
    (b,) = infer_run(out, tmp_path / "own.safetensors", tmp_path, {"tokens": tokens}, ["logits"])
    assert not np.allclose(a, b)  # a different (random) model, read under the other naming


def broken(folder, tmp_path, change):
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata={"format": "pt"})
    return tmp_path / "broken.safetensors"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("transformer.h.1.attn.c_attn.weight"),
     "missing tensor 'transformer.h.1.attn.c_attn.weight' (the model's layers.1.attention.query.weight)"),
    (lambda t: t.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(40, 150)}),
     "tensor 'transformer.h.0.mlp.c_fc.weight' (the model's layers.0.ffn.up.weight [160, 40]) has shape [40, 150], expected [40, 160]"),
    (lambda t: t.update({"transformer.h.0.attn.c_attn.bias": torch.zeros(100)}),
     "has shape [100], expected [>=120]"),
    (lambda t: t.update({"transformer.extra.weight": torch.zeros(3)}),
     "unexpected tensor 'transformer.extra.weight'"),
    (lambda t: t.update({"transformer.wpe.weight": torch.zeros(24, 40, dtype=torch.int32)}),
     "tensor 'transformer.wpe.weight' (the model's positions.weight) has dtype I32, expected a float"),
])
def test_bad_weights_are_refused_naming_both_names(change, message, folders, built, tmp_path):
    folder, _ = folders["gpt2"]
    w = broken(folder, tmp_path, change)
    np.save(tmp_path / "tokens.npy", np.zeros((1, 4), dtype=np.int32))
    r = run([built["gpt2"] / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
             "--output", f"logits={tmp_path / 'l.npy'}"])
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "l.npy").exists()


def edited_config(folder, tmp_path, **changes):
    d = tmp_path / "edited"
    d.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (d / "config.json").write_text(json.dumps(config))
    (d / "model.safetensors").symlink_to(folder / "model.safetensors")
    return d


@pytest.mark.parametrize("name, changes, message", [
    ("gpt2", {"activation_function": "quick_gelu"}, "activation_function = \"quick_gelu\" is not supported"),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx = "),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}}, "rope_parameters = {\"factor\":4,\"rope_theta\":10000,\"rope_type\":\"yarn\"} is not supported"),
    ("llama", {"hidden_act": "gelu"}, "hidden_act = \"gelu\" is not supported"),
    ("bert", {"position_embedding_type": "relative_key"}, "position_embedding_type = \"relative_key\" is not supported"),
    ("bert", {"model_type": "roberta"}, "model_type = \"roberta\" is not supported: kiln import knows bert, gpt2, llama, marian"),
    ("marian", {"normalize_before": True}, "normalize_before = true is not supported: Marian is post-norm"),
    ("marian", {"share_encoder_decoder_embeddings": False}, "share_encoder_decoder_embeddings = false is not supported"),
    ("bert", {"hidden_size": "big"}, "'hidden_size' must be an integer, got \"big\""),
])
def test_unsupported_configurations_are_refused_with_their_key(name, changes, message, folders, kiln, tmp_path):
    d = edited_config(folders[name][0], tmp_path, **changes)
    r = run([kiln, "import", d, "-o", tmp_path / "m.kiln"])
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "m.kiln").exists()


def test_folders_without_weights_or_config_are_refused(kiln, tmp_path, folders):
    r = run([kiln, "import", tmp_path, "-o", tmp_path / "m.kiln"])
    assert r.returncode != 0 and "config.json: no such file" in r.stderr
    (tmp_path / "config.json").write_text((folders["bert"][0] / "config.json").read_text())
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    r = run([kiln, "import", tmp_path, "-o", tmp_path / "m.kiln"])
    assert r.returncode != 0 and "sharded" in r.stderr


def test_generate_with_gpt2s_own_tokenizer_matches_transformers(kiln, tmp_path):
    """A GPT-2 model with GPT-2's vocabulary: `infer generate --tokenizer gpt2.tiktoken --prompt TEXT` cuts the
    prompt into GPT-2's ids and writes the text of the tokens transformers' greedy generate chooses (the
    reference's ids come from tiktoken built offline from the same file)."""
    import base64
    import importlib.util
    from pathlib import Path
    tiktoken = pytest.importorskip("tiktoken")
    spec = importlib.util.find_spec("whisper")
    if spec is None:
        pytest.skip("openai-whisper (for gpt2.tiktoken) is not installed")
    ranks_file = Path(spec.submodule_search_locations[0]) / "assets" / "gpt2.tiktoken"
    ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in ranks_file.read_text().splitlines() if line)}
    enc = tiktoken.Encoding(name="gpt2-offline", mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256},
                            pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    torch.manual_seed(3)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2,
                                                                 n_head=4, bos_token_id=50256, eos_token_id=50256)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "gpt2")
    r = run([kiln, "import", tmp_path / "gpt2", "-o", tmp_path / "g.kiln"])
    assert r.returncode == 0, r.stderr
    r = run([kiln, "build", tmp_path / "g.kiln", "-o", tmp_path / "out"])
    assert r.returncode == 0, r.stderr
    prompt = "Hello, my name is Kiln and I compile"
    r = run([tmp_path / "out" / "infer", "generate", "--weights", tmp_path / "gpt2" / "model.safetensors", "--tokenizer",
             ranks_file, "--prompt", prompt, "--tokens", 12, "--temperature", 0])
    assert r.returncode == 0, r.stderr
    ids = enc.encode_ordinary(prompt)
    with torch.no_grad():
        want = model.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                              pad_token_id=50256)[0].tolist()
    assert r.stdout == prompt + enc.decode(want[len(ids):]), (r.stdout, want)
