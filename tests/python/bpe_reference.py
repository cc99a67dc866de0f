"""The textbook byte-level BPE learner (Sennrich et al. 2016) over GPT-2's pre-tokenisation pattern: the
independent reference for the runtime's learner (tests/runtime/test_text.py) and for the tokenizer `train`
learns from sentence pairs (tests/python/test_translation.py)."""

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def pieces(lines):
    """GPT-2's pre-tokenisation pieces of every line, with the `regex` module."""
    import regex
    pat = regex.compile(GPT2_PATTERN)
    return [p for line in lines for p in pat.findall(line)]


def learn(words, vocab_size, specials=3):
    """Merges of byte tokens (ids: the specials, then the 256 bytes, then one per merge): the most frequent
    adjacent pair (ties: smaller left id, then smaller right id) while it occurs at least twice."""
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    seqs = {w: [specials + b for b in w.encode()] for w in counts}
    merges, next_id = [], specials + 256
    while next_id < vocab_size:
        pairs = {}
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + counts[w]
        best = min(pairs, key=lambda p: (-pairs[p], p), default=None)
        if best is None or pairs[best] < 2:
            break
        merges.append(best)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(next_id)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
        next_id += 1
    return merges
