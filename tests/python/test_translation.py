"""Translation from text (issue #13): `train --data pairs.tsv` on examples/translate-en-fr.kiln at a small size
(the byte-level BPE learned from the training pairs only, every 10th pair held out, exact resume), `infer
translate --text/--file` and `infer score --pairs`, whose BLEU and chrF equal sacreBLEU's on the same
translations, and one-line errors for bad pairs files, tokenizers and flags. The shipped weights are scored on
the held-out pairs as docs/translation.md reports."""
import json
import re
import struct

import pytest

import bpe_reference
from kilntest import ROOT, run

MODEL = "examples/translate-en-fr.kiln"
PAIRS = ROOT / "examples" / "data" / "eng-fra.tsv"
WEIGHTS = ROOT / "examples" / "weights" / "translate-en-fr.safetensors"
SMALL = ["vocab=300", "dim=32", "heads=2", "layers=1", "hidden=48"]


def metadata(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n])["__metadata__"]


def tensors(path):
    from safetensors.numpy import load_file
    return {k: v for k, v in load_file(str(path)).items()}


def evals(stdout):
    return re.findall(r"eval step (\d+): val loss ([\d.]+)  perplexity ([\d.]+)  BLEU ([\d.]+)  chrF ([\d.]+)", stdout)


@pytest.fixture(scope="module")
def small(builds, tmp_path_factory):
    """A small build, 400 pairs, and a model trained on them for 40 steps."""
    out = builds.build(MODEL, *SMALL)
    tmp = tmp_path_factory.mktemp("translation")
    pairs = tmp / "pairs.tsv"
    pairs.write_text("".join(PAIRS.read_text(encoding="utf-8").splitlines(keepends=True)[:400]), encoding="utf-8")
    ckpt = tmp / "full.safetensors"
    r = run([out / "train", "--data", pairs, "--out", ckpt, "--steps", 40, "--eval-interval", 20, "--batch", 16])
    assert r.returncode == 0, r.stderr
    return out, pairs, ckpt, r.stdout


def test_tokenizer_is_learned_from_the_training_pairs_only_and_saved(small):
    out, pairs, ckpt, stdout = small
    assert "400 sentence pairs (train 360, held out 40), tokenizer of 300 ids" in stdout
    text = metadata(ckpt)["tokenizer"]
    lines = text.splitlines()
    assert lines[:2] == ["kiln-bpe 1", "specials <pad> <bos> <eos>"]
    rows = [line.split("\t") for line in pairs.read_text(encoding="utf-8").splitlines()]
    words = bpe_reference.pieces([side for i, r in enumerate(rows) if i % 10 != 0 for side in r[:2]])
    assert [tuple(map(int, line.split())) for line in lines[3:]] == bpe_reference.learn(words, 300)


def test_train_help_describes_sentence_pairs_not_a_byte_vocabulary(small):
    out = small[0]
    r = run([out / "train", "--help"])
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[3:5]
    assert first.startswith("train the Kiln-compiled model 'TranslateEnFr' (context ") and "vocab" not in first, first
    assert second.startswith("on sentence pairs or a directory of .npy inputs"), second


def test_trains_evaluates_and_resumes_exactly(small, tmp_path):
    out, pairs, full, stdout = small
    e = evals(stdout)
    assert [s for s, *_ in e] == ["20", "40"]
    assert float(e[1][1]) < float(e[0][1]) < 6.0  # the held-out loss falls (log 300 = 5.7 at the start)
    assert "40 held-out pairs, greedy" in stdout
    half = tmp_path / "half.safetensors"
    base = [out / "train", "--data", pairs, "--eval-interval", 20, "--batch", 16]
    r = run(base + ["--out", half, "--steps", 20])
    assert r.returncode == 0, r.stderr
    r = run(base + ["--out", half, "--steps", 40, "--resume", half])
    assert r.returncode == 0, r.stderr
    assert evals(r.stdout) == e[1:]
    a, b = tensors(full), tensors(half)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert metadata(half)["tokenizer"] == metadata(full)["tokenizer"]


def test_score_and_translate_agree_with_sacrebleu_and_each_other(small, tmp_path):
    import sacrebleu
    out, pairs, ckpt, stdout = small
    held = tmp_path / "held.tsv"
    rows = pairs.read_text(encoding="utf-8").splitlines()
    held.write_text("".join(r + "\n" for i, r in enumerate(rows) if i % 10 == 0), encoding="utf-8")
    r = run([out / "infer", "score", "--weights", ckpt, "--pairs", held, "--hypotheses", tmp_path / "hyp.txt"])
    assert r.returncode == 0, r.stderr
    m = re.match(r"pairs 40  tokens (\d+)  loss ([\d.]+) nats  perplexity ([\d.]+)  BLEU ([\d.]+)  chrF ([\d.]+)", r.stdout)
    assert m, r.stdout
    # the same numbers as train's last evaluation of the held-out pairs
    assert (m.group(2), m.group(4), m.group(5)) == (evals(stdout)[-1][1], evals(stdout)[-1][3], evals(stdout)[-1][4])
    hyps = (tmp_path / "hyp.txt").read_text(encoding="utf-8").split("\n")[:-1]
    refs = [row.split("\t")[1] for row in held.read_text(encoding="utf-8").splitlines()]
    assert abs(float(m.group(4)) - sacrebleu.corpus_bleu(hyps, [refs]).score) < 0.01
    assert abs(float(m.group(5)) - sacrebleu.corpus_chrf(hyps, [refs]).score) < 0.01
    # translate --file gives the same greedy translations, one line per source
    (tmp_path / "src.txt").write_text("".join(row.split("\t")[0] + "\n" for row in held.read_text().splitlines()))
    r = run([out / "infer", "translate", "--weights", ckpt, "--file", tmp_path / "src.txt", "--beam", 1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:-1] == hyps
    first_source = held.read_text(encoding="utf-8").split("\t")[0]
    r = run([out / "infer", "translate", "--weights", ckpt, "--text", first_source, "--beam", 1])
    assert r.returncode == 0 and r.stdout == hyps[0] + "\n", r.stderr


def test_the_shipped_weights_translate_held_out_pairs(builds, tmp_path):
    """examples/weights/translate-en-fr.safetensors scores what docs/translation.md says, equal to sacreBLEU."""
    import sacrebleu
    out = builds.build(MODEL)
    held = tmp_path / "held.tsv"
    rows = PAIRS.read_text(encoding="utf-8").splitlines()
    held.write_text("".join(r + "\n" for i, r in enumerate(rows) if i % 10 == 0), encoding="utf-8")
    r = run([out / "infer", "score", "--weights", WEIGHTS, "--pairs", held, "--hypotheses", tmp_path / "hyp.txt"])
    assert r.returncode == 0, r.stderr
    bleu, chrf = map(float, re.search(r"BLEU ([\d.]+)  chrF ([\d.]+)", r.stdout).groups())
    hyps = (tmp_path / "hyp.txt").read_text(encoding="utf-8").split("\n")[:-1]
    refs = [row.split("\t")[1] for row in rows[::10]]
    assert abs(bleu - sacrebleu.corpus_bleu(hyps, [refs]).score) < 0.01
    assert abs(chrf - sacrebleu.corpus_chrf(hyps, [refs]).score) < 0.01
    doc = (ROOT / "docs" / "translation.md").read_text()
    assert f"BLEU {bleu:.2f}" in doc and f"chrF {chrf:.2f}" in doc, r.stdout
    assert bleu > 15


@pytest.mark.parametrize("content, message", [
    (b"Hi.\tSalut.\nno tab here\n", "pairs.tsv:2: no tab between the source and the target"),
    (b"Hi.\tSalut.\n\tSalut.\n", "pairs.tsv:2: the source is empty"),
    (b"Hi.\tSalut.\nHi.\t\tattribution\n", "pairs.tsv:2: the target is empty"),
    (b"Hi.\tSalut.\nHi.\tSal\xffut.\n", "pairs.tsv:2: invalid UTF-8 at byte 8 of the line"),
    (b"Hi.\tSalut.\n" + "Hi.\t".encode() + " ".join(["mot"] * 40).encode() + b"\n",
     r"pairs.tsv:2: the target is \d+ tokens; with <eos> that is \d+, and the model takes at most 32"),
    (b"", "no sentence pairs"),
])
def test_bad_pairs_files_get_one_line_naming_the_line(small, tmp_path, content, message):
    out, *_ = small
    f = tmp_path / "pairs.tsv"
    f.write_bytes(content)
    r = run([out / "train", "--data", f, "--out", tmp_path / "c.safetensors", "--steps", 1])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and re.search(message, r.stderr), r.stderr
    if content:
        r = run([out / "infer", "score", "--weights", small[2], "--pairs", f])
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and re.search(message, r.stderr), r.stderr


def test_bad_tokenizers_and_flags_get_one_line(small, tmp_path):
    out, pairs, ckpt, _ = small
    other = tmp_path / "other.bpe"
    other.write_text("kiln-bpe 1\nspecials <pad> <bos> <eos>\nmerges 1\n3 4\n")
    cases = [
        ([out / "infer", "translate", "--weights", ckpt, "--text", "Hi.", "--tokenizer", other],
         "is not the one saved with the weights"),
        ([out / "infer", "translate", "--weights", ckpt, "--text", "Hi.", "--beam", 0], "--beam"),
        ([out / "infer", "translate", "--weights", ckpt, "--text", "Hi.", "--ids", "3"], "exactly one of"),
        ([out / "infer", "translate", "--weights", ckpt, "--text", "", "--beam", 1], "an empty source"),
        ([out / "infer", "score", "--weights", ckpt, pairs, "--beam", 2], "--beam goes with --pairs"),
    ]
    big = tmp_path / "big.bpe"
    big.write_text("kiln-bpe 1\nspecials <pad> <bos> <eos>\nmerges 60\n" + "".join(f"3 {4 + i}\n" for i in range(60)))
    cases.append(([out / "train", "--data", pairs, "--out", tmp_path / "c.safetensors", "--tokenizer", big],
                   "the tokenizer has 319 ids, but the model's vocabulary has 300"))
    nopad = tmp_path / "nopad.bpe"
    nopad.write_text("kiln-bpe 1\nspecials <bos> <eos>\nmerges 0\n")
    cases.append(([out / "train", "--data", pairs, "--out", tmp_path / "c.safetensors", "--tokenizer", nopad],
                  "the tokenizer has no <pad> token"))
    broken = tmp_path / "broken.bpe"
    broken.write_text("kiln-bpe 1\nspecials <pad> <bos> <eos>\nmerges 2\n3 4\n")
    cases.append(([out / "train", "--data", pairs, "--out", tmp_path / "c.safetensors", "--tokenizer", broken],
                  "broken.bpe: line 5"))
    init = tmp_path / "init.safetensors"
    assert run([out / "infer", "init", "--out", init]).returncode == 0
    cases.append(([out / "infer", "translate", "--weights", init, "--text", "Hi."], "has no tokenizer"))
    for args, message in cases:
        r = run(args)
        assert r.returncode in (1, 2) and r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)


def test_a_given_tokenizer_is_used_and_saved_and_weights_out_ships_it(small, tmp_path):
    out, pairs, ckpt, _ = small
    tok = tmp_path / "tok.bpe"
    tok.write_text(metadata(ckpt)["tokenizer"])
    c = tmp_path / "c.safetensors"
    w = tmp_path / "w.safetensors"
    r = run([out / "train", "--data", pairs, "--out", c, "--steps", 2, "--tokenizer", tok, "--weights-out", w])
    assert r.returncode == 0 and "learned" not in r.stdout, r.stderr
    assert metadata(c)["tokenizer"] == tok.read_text() == metadata(w)["tokenizer"]
    # --weights-out: the parameters of the checkpoint alone, which translate the same
    cw, ww = tensors(c), tensors(w)
    assert set(ww) == {k for k in cw if not k.startswith("train.")} and all((ww[k] == cw[k]).all() for k in ww)
    outs = []
    for weights in (c, w):
        r = run([out / "infer", "translate", "--weights", weights, "--tokenizer", tok, "--text", "Hi.", "--beam", 2])
        assert r.returncode == 0 and r.stdout.count("\n") == 1, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1]
    # and from a finished run's checkpoint
    w2 = tmp_path / "w2.safetensors"
    r = run([out / "train", "--data", pairs, "--out", c, "--steps", 2, "--resume", c, "--weights-out", w2])
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr
    assert tensors(w2).keys() == ww.keys() and all((tensors(w2)[k] == ww[k]).all() for k in ww)


def test_tokenize_round_trips_and_names_bad_lines(small, tmp_path):
    out, pairs, ckpt, _ = small
    lines = [row.split("\t")[1] for row in pairs.read_text(encoding="utf-8").splitlines()[:50]]
    (tmp_path / "text.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    r = run([out / "infer", "tokenize", "--weights", ckpt, "--file", tmp_path / "text.txt"])
    assert r.returncode == 0, r.stderr
    ids = r.stdout.splitlines()
    assert len(ids) == 50 and all(int(x) < 300 for row in ids for x in row.split())
    (tmp_path / "ids.txt").write_text(r.stdout)
    r = run([out / "infer", "tokenize", "--weights", ckpt, "--decode", "--file", tmp_path / "ids.txt"])
    assert r.returncode == 0 and r.stdout.splitlines() == lines, r.stderr
    (tmp_path / "bad.txt").write_text("3 4\n5 999\n")
    r = run([out / "infer", "tokenize", "--weights", ckpt, "--decode", "--file", tmp_path / "bad.txt"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "bad.txt:2: id 999 is outside the vocabulary" in r.stderr
