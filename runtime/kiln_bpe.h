/*
 * kiln_bpe.h - byte-level byte-pair encoding (BPE), as GPT-2 does it: text is cut into pieces by GPT-2's
 * pre-tokenisation pattern, each piece starts as its UTF-8 bytes, and ranked merges join adjacent tokens,
 * lowest rank first, until none applies. Decoding concatenates the tokens' bytes.
 *
 * A tokenizer is learned from a corpus (kiln_bpe_learn: the most frequent adjacent pair of the pieces'
 * tokens is merged, again and again) or read from its text form (kiln_bpe_parse), which is what a trained
 * model's weights file keeps in its metadata under "tokenizer":
 *
 *     kiln-bpe 1
 *     specials <pad> <bos> <eos>
 *     merges 2
 *     104 101
 *     259 108
 *
 * Ids: the specials first (0, 1, 2 here), then the 256 bytes (byte b is id S + b with S specials), then one
 * id per merge in rank order: the line "a b" makes the id after the last, whose bytes are a's then b's.
 */
#ifndef KILN_BPE_H
#define KILN_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_rt.h"

#define KILN_BPE_MAX_SPECIALS 16
#define KILN_BPE_MAX_TOKENS (1 << 22)

typedef struct kiln_bpe kiln_bpe;

/* Learns a tokenizer from n texts (texts[i] of lens[i] bytes, valid UTF-8): the specials (names without
 * spaces), the 256 bytes, then merges of the most frequent adjacent pair (ties: the smaller left id, then the
 * smaller right id) until there are vocab_size ids or no pair occurs twice. 0, or -1 with *err set. */
KILN_RT_API int kiln_bpe_learn(const uint8_t *const *texts, const size_t *lens, size_t n, const char *const *specials,
                               int num_specials, int vocab_size, kiln_bpe **out, kiln_error *err);

/* Reads the text form (above); every line is checked. 0, or -1 with *err set. */
KILN_RT_API int kiln_bpe_parse(const char *text, size_t len, kiln_bpe **out, kiln_error *err);

/* GPT-2's tokenizer from its files, with their ids (the ids below are then those of the file):
 *   kiln_bpe_load_tiktoken: a tiktoken ranks file (lines "BASE64 RANK", e.g. gpt2.tiktoken); each token of
 *     two or more bytes must be the merge of the two tokens the lower ranks make of its bytes; the special
 *     "<|endoftext|>" gets the id after the ranks;
 *   kiln_bpe_load_gpt2: vocab.json (token -> id) and merges.txt (one merge per line after "#version"), both
 *     writing bytes as GPT-2's printable stand-ins; vocab.json's other entries are the specials.
 * Every id must belong to one token. kiln_bpe_format refuses these (NULL). 0, or -1 with *err set. */
KILN_RT_API int kiln_bpe_load_tiktoken(const char *text, size_t len, kiln_bpe **out, kiln_error *err);
KILN_RT_API int kiln_bpe_load_gpt2(const char *vocab, size_t vocab_len, const char *merges, size_t merges_len, kiln_bpe **out,
                                   kiln_error *err);

/* A tokenizer file by its name: NAME.tiktoken, NAME.json (with merges.txt in the same folder) or the text
 * form; errors start with the path. */
KILN_RT_API int kiln_bpe_load_file(const char *path, kiln_bpe **out, kiln_error *err);

/* The text form, NUL-terminated (free it); NULL when out of memory or for GPT-2's files. */
KILN_RT_API char *kiln_bpe_format(const kiln_bpe *t);

/* The number of ids. */
KILN_RT_API int kiln_bpe_size(const kiln_bpe *t);

/* The id of a special token, or -1. */
KILN_RT_API int32_t kiln_bpe_special(const kiln_bpe *t, const char *name);

/* Encodes UTF-8 text. Returns the number of ids (writing the first `cap` of them to ids), or -1 with *err set
 * when the text is not valid UTF-8. Pieces longer than KILN_BPE_MAX_PIECE bytes are encoded in parts of at most
 * that many bytes (cut between characters), so that the time stays linear in the text. */
#define KILN_BPE_MAX_PIECE 1024
KILN_RT_API int64_t kiln_bpe_encode(const kiln_bpe *t, const uint8_t *text, size_t len, int32_t *ids, size_t cap,
                                    kiln_error *err);

/* The text of ids (specials and ids out of range left out), NUL-terminated (free it); byte sequences that are
 * not valid UTF-8 become U+FFFD. NULL when out of memory. */
KILN_RT_API char *kiln_bpe_decode(const kiln_bpe *t, const int32_t *ids, size_t n);

/* The bytes of one id (NULL and 0 for a special or an id out of range). */
KILN_RT_API const uint8_t *kiln_bpe_bytes(const kiln_bpe *t, int32_t id, size_t *len);

KILN_RT_API void kiln_bpe_free(kiln_bpe *t);

/* GPT-2's pre-tokenisation, one piece at a time: the length in bytes of the piece that starts at s[0]
 * (s[0, n) valid UTF-8, n > 0). The pattern:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
KILN_RT_API size_t kiln_pretoken_len(const uint8_t *s, size_t n);

#endif /* KILN_BPE_H */
