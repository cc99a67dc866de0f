"""`infer attention`: pictures of what the heads of one attention look at (PNG and SVG written by the binary,
with no plotting library), for the shipped character model and the shipped English-French translation model.
The weights they draw are those of the attention_maps function, which test_variants, test_encoder and
test_seq2seq check against PyTorch."""
from collections import Counter
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from kilntest import ROOT, attention_maps, read_png, run

CHAR = "examples/char-gpt-small.kiln"
CHAR_WEIGHTS = ROOT / "examples/weights/char-gpt-small.safetensors"
TRANSLATE = "examples/translate-en-fr.kiln"
TRANSLATE_WEIGHTS = ROOT / "examples/weights/translate-en-fr.safetensors"
SVG = "{http://www.w3.org/2000/svg}"


def pixels_size(stdout):
    w, h = stdout.split(" pixels")[0].rsplit(", ", 1)[1].split(" x ")
    return int(w), int(h)


def test_one_head_is_a_heat_map_of_its_weights(builds, tmp_path):
    out = builds.build(CHAR)
    text = "To be, or not to be"
    r = run([out / "infer", "attention", "--weights", CHAR_WEIGHTS, "--text", text, "--layer", 2, "--head", 1,
             "-o", tmp_path / "map.png", "--npy", tmp_path / "map.npy"])
    assert r.returncode == 0, r.stderr
    assert "attention 2 of 4, head 1, 19 x 19 tokens" in r.stdout
    w, h, rows = read_png(tmp_path / "map.png")
    assert (w, h) == pixels_size(r.stdout) and w >= 19 * 8 and h >= 19 * 8
    colours = {row[x:x + 3] for row in rows for x in range(0, 3 * w, 3)}
    assert len(colours) > 20 and b"\xff\xff\xff" in colours and b"\x00\x00\x00" in colours  # cells, ground, text
    # --npy holds all 4 heads of attention 2, as attention_maps computes them for the bytes of the text
    weights = np.load(tmp_path / "map.npy")
    ids = np.frombuffer(text.encode(), np.uint8).astype(np.int32)[None]
    want = attention_maps(out, CHAR_WEIGHTS, tmp_path, tokens=ids)[2][0]
    assert weights.shape == (4, 19, 19) and np.array_equal(weights, want)
    assert np.abs(weights.sum(-1) - 1).max() <= 1e-5 and (np.triu(weights, 1) == 0).all()
    # the heat map's darkest cell is the largest weight: some cell has the colour of the head's maximum
    assert weights[1].max() > 0.5


def test_all_heads_as_a_grid_in_svg(builds, tmp_path):
    out = builds.build(CHAR)
    r = run([out / "infer", "attention", "--weights", CHAR_WEIGHTS, "--text", "to be or", "--layer", 0,
             "-o", tmp_path / "grid.svg"])
    assert r.returncode == 0, r.stderr
    root = ET.parse(tmp_path / "grid.svg").getroot()
    assert root.tag == f"{SVG}svg" and (int(root.get("width")), int(root.get("height"))) == pixels_size(r.stdout)
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert [t for t in texts if t.startswith("head ")] == [f"head {h}" for h in range(4)]
    # each head's rows and columns are labelled with the bytes, a space as '_'
    assert texts.count("_") == 4 * 2 * 2 and texts.count("t") == 4 * 2
    # a causal map has 8 * 9 / 2 weights above 0 per head, each a cell (the rest is the white ground)
    squares = Counter(e.get("width") for e in root.findall(f"{SVG}rect") if e.get("width") == e.get("height"))
    cell, count = squares.most_common(1)[0]
    assert int(cell) >= 8 and count == 4 * 36
    # and the PNG of the same grid is as large
    r2 = run([out / "infer", "attention", "--weights", CHAR_WEIGHTS, "--text", "to be or", "-o", tmp_path / "grid.png"])
    assert r2.returncode == 0 and read_png(tmp_path / "grid.png")[:2] == pixels_size(r.stdout)


def test_linformer_columns_are_the_projected_rows(builds, tmp_path):
    """Linformer's keys are learned mixtures of the positions (tests/models/linformer-encoder.kiln keeps 5, then 7
    rows): the columns are numbered rows, not tokens, and the picture holds attention_maps' weights."""
    out = builds.build("tests/models/linformer-encoder.kiln")
    w = tmp_path / "w.safetensors"
    assert run([out / "infer", "init", "--seed", 3, "--out", w]).returncode == 0
    r = run([out / "infer", "attention", "--weights", w, "--ids", "3,14,15,9,26,5,35,8", "--layer", 0, "--head", 2,
             "-o", tmp_path / "map.svg", "--npy", tmp_path / "map.npy"])
    assert r.returncode == 0, r.stderr
    root = ET.parse(tmp_path / "map.svg").getroot()
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert [t for t in texts if t.startswith("row ")] == [f"row {k}" for k in range(5)]
    assert texts.count("14") == 1 and "35" in texts  # the rows are the query tokens
    want = attention_maps(out, w, tmp_path, tokens=np.array([[3, 14, 15, 9, 26, 5, 35, 8]], np.int32),
                          mask=np.ones((1, 8), np.int32))[0][0]
    assert want.shape == (6, 8, 5) and np.array_equal(np.load(tmp_path / "map.npy"), want)


def test_cross_attention_of_a_translation(builds, tmp_path):
    """The decoder reads <bos> and its own greedy translation; attention 3 is the first decoder layer's
    cross-attention, target tokens over the source's tokens and <eos>."""
    out = builds.build(TRANSLATE)
    r = run([out / "infer", "attention", "--weights", TRANSLATE_WEIGHTS, "--text", "I am cold.", "--layer", 3,
             "-o", tmp_path / "cross.svg", "--npy", tmp_path / "cross.npy"])
    assert r.returncode == 0, r.stderr
    assert "(cross: target over source)" in ET.parse(tmp_path / "cross.svg").getroot().find(f"{SVG}text").text
    texts = [t.text for t in ET.parse(tmp_path / "cross.svg").getroot().findall(f"{SVG}text")]
    assert "<bos>" in texts and "<eos>" in texts
    translation = run([out / "infer", "translate", "--weights", TRANSLATE_WEIGHTS, "--text", "I am cold.", "--beam", 1])
    assert translation.returncode == 0
    weights = np.load(tmp_path / "cross.npy")
    source = run([out / "infer", "tokenize", "--weights", TRANSLATE_WEIGHTS, "--text", "I am cold."]).stdout.split()
    target = run([out / "infer", "tokenize", "--weights", TRANSLATE_WEIGHTS, "--text", translation.stdout.strip()]).stdout.split()
    assert weights.shape == (4, 1 + len(target), len(source) + 1)
    assert np.abs(weights.sum(-1) - 1).max() <= 1e-5
    # a given target is read instead of the translation
    r = run([out / "infer", "attention", "--weights", TRANSLATE_WEIGHTS, "--text", "I am cold.", "--target", "Bonjour",
             "--layer", 2, "-o", tmp_path / "self.png", "--npy", tmp_path / "self.npy"])
    assert r.returncode == 0, r.stderr
    n = 1 + len(run([out / "infer", "tokenize", "--weights", TRANSLATE_WEIGHTS, "--text", "Bonjour"]).stdout.split())
    assert np.load(tmp_path / "self.npy").shape == (4, n, n)


@pytest.mark.parametrize("args, message", [
    (["--layer", 4], "--layer"),
    (["--head", 4], "--head"),
    (["--ids", "1,2"], "exactly one of --text and --ids"),
    (["--out", "x.png"], "one of -o and --out"),
    (["--target", "x"], "encoder-decoder"),
    (["--vocab", "v.txt", "--tokenizer", "t.json"], "give one"),
])
def test_usage_errors_are_one_line(builds, tmp_path, args, message):
    out = builds.build(CHAR)
    r = run([out / "infer", "attention", "--weights", CHAR_WEIGHTS, "--text", "abc", "-o", tmp_path / "m.png", *args])
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "m.png").exists()


def test_input_errors_are_one_line_and_write_nothing(builds, tmp_path):
    out = builds.build(CHAR)
    infer = out / "infer"
    cases = [
        (["--text", "x" * 100], "at most 64"),
        (["--text", ""], "empty"),
        (["--ids", "1,x"], "token ids"),
        (["--ids", "1,999"], "outside the vocabulary"),
    ]
    for args, message in cases:
        r = run([infer, "attention", "--weights", CHAR_WEIGHTS, "-o", tmp_path / "m.png", *args])
        assert r.returncode == 1 and message in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert not (tmp_path / "m.png").exists()
    r = run([infer, "attention", "--weights", CHAR_WEIGHTS, "--text", "ab", "-o", tmp_path / "no" / "dir" / "m.png"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "m.png" in r.stderr
    # a model without attention says so
    lstm = builds.build("tests/models/lstm.kiln")
    r = run([lstm / "infer", "attention", "--weights", CHAR_WEIGHTS, "--ids", "1", "-o", tmp_path / "m.png"])
    assert r.returncode == 1 and "no attention" in r.stderr
