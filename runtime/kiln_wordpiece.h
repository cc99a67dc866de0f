/*
 * kiln_wordpiece.h - BERT's WordPiece tokenizer (Devlin et al. 2019), as Hugging Face's tokenizers runs it
 * for a BERT vocabulary (vocab.txt: one token per line, its id the line's index from 0).
 *
 * Normalisation, one character at a time: NUL, U+FFFD and the other characters (Cc, Cf, Co, Cs, but not tab,
 * newline or carriage return) are removed and whitespace becomes a space; CJK ideographs get a space on
 * each side; for an uncased vocabulary the accents are stripped (canonical decomposition, then the
 * nonspacing marks removed) and the text lowercased. Pre-tokenisation: words are split at whitespace and
 * every punctuation character (ASCII punctuation or Unicode P*) is a word of its own. WordPiece: each word
 * is cut greedily into the longest tokens of the vocabulary from its start, the pieces after the first
 * written with "##" before them; a word with no such cut, or of more than 100 characters, is [UNK].
 */
#ifndef KILN_WORDPIECE_H
#define KILN_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_rt.h"

#define KILN_WORDPIECE_MAX_TOKENS (1 << 22)
#define KILN_WORDPIECE_MAX_WORD 100 /* characters; longer words are [UNK] */

typedef struct kiln_wordpiece kiln_wordpiece;

/* Reads a vocabulary from the text of vocab.txt (lines ending in \n or \r\n). Every line must be a token:
 * empty lines, repeated tokens, invalid UTF-8 and a vocabulary without [UNK] are refused with the line.
 * lowercase: the vocabulary is uncased (lowercase and strip accents). 0, or -1 with *err set. */
KILN_RT_API int kiln_wordpiece_parse(const char *text, size_t len, int lowercase, kiln_wordpiece **out, kiln_error *err);

/* kiln_wordpiece_parse of a file; errors start with the path. */
KILN_RT_API int kiln_wordpiece_load(const char *path, int lowercase, kiln_wordpiece **out, kiln_error *err);

/* Encodes UTF-8 text without [CLS] and [SEP]. Returns the number of ids (writing the first `cap` of them to
 * ids), or -1 with *err set when the text is not valid UTF-8. */
KILN_RT_API int64_t kiln_wordpiece_encode(const kiln_wordpiece *t, const uint8_t *text, size_t len, int32_t *ids,
                                          size_t cap, kiln_error *err);

/* The id of a token (e.g. "[CLS]"), or -1. */
KILN_RT_API int32_t kiln_wordpiece_id(const kiln_wordpiece *t, const char *token);

/* The number of ids, and the text of one (NULL out of range). */
KILN_RT_API int kiln_wordpiece_size(const kiln_wordpiece *t);
KILN_RT_API const char *kiln_wordpiece_token(const kiln_wordpiece *t, int32_t id);

KILN_RT_API void kiln_wordpiece_free(kiln_wordpiece *t);

#endif /* KILN_WORDPIECE_H */
