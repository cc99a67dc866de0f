"""encode.py - examples/tiny-encoder.kiln from Python, through its shared library and ctypes.

    python3 encode.py build/tiny_encoder/libtiny_encoder.so W.safetensors < sentences

Like build/encode: each line of standard input is a sentence of token ids; the sentences are padded with
id 0 into one batch with a mask, and each one's embedding and class logits are printed, one line each.
"""
import sys

import numpy as np

from kiln_ctypes import KilnError, Model


def encode(model, sentences):
    """Embeddings and logits of a list of token-id lists of different lengths, as one padded batch."""
    longest = max(len(s) for s in sentences)
    tokens = np.zeros((len(sentences), longest), np.int32)
    mask = np.zeros((len(sentences), longest), np.int32)
    for b, s in enumerate(sentences):
        tokens[b, :len(s)], mask[b, :len(s)] = s, 1
    out = model.run("forward", tokens=tokens, mask=mask)
    return out["embedding"], out["logits"]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python3 encode.py LIBTINY_ENCODER.so WEIGHTS.safetensors < sentences")
    sentences = [[int(x) for x in line.split()] for line in sys.stdin if line.strip()]
    if not sentences:
        sys.exit("encode.py: no sentences on standard input")
    try:
        with open(sys.argv[2], "rb") as f, Model(sys.argv[1], f.read()) as model:
            embedding, logits = encode(model, sentences)
    except (KilnError, OSError) as e:
        sys.exit(f"encode.py: {e}")
    for e, l in zip(embedding, logits):
        print("embedding", " ".join(f"{x:.9g}" for x in e))
        print("logits", " ".join(f"{x:.9g}" for x in l))


if __name__ == "__main__":
    main()
