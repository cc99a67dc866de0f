/*
 * two_models.c - two compiled models in one program: the encoder of examples/tiny-encoder.kiln
 * (libtiny_encoder.a, symbols tiny_encoder_*) and the character model of examples/char-gpt-small.kiln
 * (libchar_gpt_small.a, symbols char_gpt_small_*).
 *
 *   two_models ENCODER.safetensors CHAR.safetensors PROMPT N
 *
 * Encodes the prompt's bytes (modulo the encoder's vocabulary) into one embedding, and continues the
 * prompt by N bytes with the character model, greedily: one prefill over the prompt, then N - 1 decode
 * steps against the KV cache.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_gpt_small.h"
#include "tiny_encoder.h"

static void die(const char *what, const char *why) {
    fprintf(stderr, "two_models: %s: %s\n", what, why);
    exit(1);
}

static int argmax(const float *x, int64_t n) {
    int best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int)i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: two_models ENCODER.safetensors CHAR.safetensors PROMPT N\n");
        return 2;
    }
    const char *prompt = argv[3];
    const int64_t len = (int64_t)strlen(prompt), steps = atoi(argv[4]);
    if (len == 0) die("prompt", "empty");

    /* The encoder: one sentence, no padding. */
    tiny_encoder_context *enc;
    if (tiny_encoder_open(argv[1], &enc) != KILN_OK) die(argv[1], tiny_encoder_error(enc));
    const kiln_function_desc *encode = tiny_encoder_find_function("forward");
    const int64_t vocab = encode->inputs[0].limit, dim = encode->outputs[0].shape[1];
    const int64_t n = len < encode->inputs[0].bounds[1] ? len : encode->inputs[0].bounds[1];
    int32_t tokens[64], mask[64];
    float embedding[64], logits[64];
    if (dim > 64 || encode->outputs[1].shape[1] > 64) die("encoder", "larger than this example expects");
    for (int64_t t = 0; t < n; t++) {
        tokens[t] = (unsigned char)prompt[t] % vocab;
        mask[t] = 1;
    }
    kiln_tensor ein[2] = {{"tokens", KILN_I32, 2, {1, n}, tokens}, {"mask", KILN_I32, 2, {1, n}, mask}};
    kiln_tensor eout[2] = {{"embedding", KILN_F32, 2, {1, dim}, embedding},
                           {"logits", KILN_F32, 2, {1, encode->outputs[1].shape[1]}, logits}};
    if (tiny_encoder_run(enc, "forward", ein, 2, eout, 2) != KILN_OK) die("encoder", tiny_encoder_error(enc));
    printf("embedding");
    for (int64_t i = 0; i < dim; i++) printf(" %.9g", embedding[i]);
    printf("\n");
    tiny_encoder_free(enc);

    /* The character model: prefill the prompt, then decode one byte at a time. */
    char_gpt_small_context *gpt;
    if (char_gpt_small_open(argv[2], &gpt) != KILN_OK) die(argv[2], char_gpt_small_error(gpt));
    const int64_t context = char_gpt_small_find_function("decode_step")->inputs[1].limit;
    if (len + steps > context) die("prompt", "the prompt and the continuation exceed the model's context");
    int32_t ids[256];
    float next[256];
    for (int64_t t = 0; t < len; t++) ids[t] = (unsigned char)prompt[t];
    kiln_tensor pin = {"tokens", KILN_I32, 2, {1, len}, ids};
    kiln_tensor pout = {"logits", KILN_F32, 2, {1, 256}, next};
    if (char_gpt_small_run(gpt, "prefill", &pin, 1, &pout, 1) != KILN_OK) die("prefill", char_gpt_small_error(gpt));
    printf("continuation ");
    for (int64_t s = 0; s < steps; s++) {
        int32_t token = argmax(next, 256), position = (int32_t)(len + s);
        putchar(token);
        if (s + 1 == steps) break;
        kiln_tensor din[2] = {{"tokens", KILN_I32, 2, {1, 1}, &token}, {"positions", KILN_I32, 2, {1, 1}, &position}};
        kiln_tensor dout = {"logits", KILN_F32, 3, {1, 1, 256}, next};
        if (char_gpt_small_run(gpt, "decode_step", din, 2, &dout, 1) != KILN_OK) die("decode_step", char_gpt_small_error(gpt));
    }
    printf("\n");
    char_gpt_small_free(gpt);
    return 0;
}
