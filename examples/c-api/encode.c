/*
 * encode.c - a program with a Kiln model linked in: examples/tiny-encoder.kiln as libtiny_encoder.a.
 *
 *   encode WEIGHTS.safetensors < sentences
 *
 * Each line of standard input is one sentence of token ids ("12 7 40"). The sentences are padded with
 * id 0 to the longest one and run as one batch, with a mask of 1 for each token and 0 for each pad; for
 * each sentence the program prints its embedding (36 numbers) and its class logits (5 numbers), one line
 * each. The weights are read into memory and loaded from there (tiny_encoder_load_memory), as a program
 * that carries its weights inside itself would.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_encoder.h"

#define MAX_SENTENCES 1024

static void die(const char *what) {
    fprintf(stderr, "encode: %s\n", what);
    exit(1);
}

/* The whole file in a malloc'd buffer. */
static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the weights file");
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek the weights file");
    long n = ftell(f);
    if (n < 0) die("cannot size the weights file");
    rewind(f);
    void *data = malloc(n > 0 ? (size_t)n : 1);
    if (!data || fread(data, 1, (size_t)n, f) != (size_t)n) die("cannot read the weights file");
    fclose(f);
    *size = (size_t)n;
    return data;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: encode WEIGHTS.safetensors < sentences (one line of token ids each)\n");
        return 2;
    }

    /* The bounds come from the model's description: the forward function's input "tokens" is i32[B, T]
     * with T no larger than its bound (the model's context). */
    const kiln_function_desc *forward = tiny_encoder_find_function("forward");
    const int64_t max_len = forward->inputs[0].bounds[1];
    const int64_t dim = forward->outputs[0].shape[1], classes = forward->outputs[1].shape[1];

    /* Read the sentences. */
    static int32_t ids[MAX_SENTENCES][64];
    int64_t lengths[MAX_SENTENCES], batch = 0, longest = 0;
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        if (batch == MAX_SENTENCES) die("too many sentences");
        int64_t n = 0;
        for (char *p = strtok(line, " \t\r\n"); p; p = strtok(NULL, " \t\r\n")) {
            if (n == max_len || n == 64) die("a sentence is longer than the model's context");
            char *end;
            long v = strtol(p, &end, 10);
            if (*end) die("a token id is not a number");
            ids[batch][n++] = (int32_t)v; /* the library checks that it lies inside the vocabulary */
        }
        if (n == 0) die("an empty sentence");
        lengths[batch++] = n;
        if (n > longest) longest = n;
    }
    if (batch == 0) die("no sentences on standard input");

    /* Pad into one batch [batch, longest] with its mask. */
    int32_t *tokens = calloc((size_t)(batch * longest), sizeof *tokens);
    int32_t *mask = calloc((size_t)(batch * longest), sizeof *mask);
    float *embedding = malloc((size_t)(batch * dim) * sizeof *embedding);
    float *logits = malloc((size_t)(batch * classes) * sizeof *logits);
    if (!tokens || !mask || !embedding || !logits) die("out of memory");
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < lengths[b]; t++) {
            tokens[b * longest + t] = ids[b][t];
            mask[b * longest + t] = 1;
        }

    /* A context with the weights loaded from memory. */
    size_t size;
    void *weights = read_file(argv[1], &size);
    tiny_encoder_context *ctx;
    if (tiny_encoder_create(&ctx) != KILN_OK) die("out of memory");
    if (tiny_encoder_load_memory(ctx, weights, size) != KILN_OK) die(tiny_encoder_error(ctx));
    free(weights); /* the library keeps its own copy */

    kiln_tensor in[2] = {
        {"tokens", KILN_I32, 2, {batch, longest}, tokens},
        {"mask", KILN_I32, 2, {batch, longest}, mask},
    };
    kiln_tensor out[2] = {
        {"embedding", KILN_F32, 2, {batch, dim}, embedding},
        {"logits", KILN_F32, 2, {batch, classes}, logits},
    };
    if (tiny_encoder_run(ctx, "forward", in, 2, out, 2) != KILN_OK) die(tiny_encoder_error(ctx));

    for (int64_t b = 0; b < batch; b++) {
        printf("embedding");
        for (int64_t i = 0; i < dim; i++) printf(" %.9g", embedding[b * dim + i]);
        printf("\nlogits");
        for (int64_t i = 0; i < classes; i++) printf(" %.9g", logits[b * classes + i]);
        printf("\n");
    }
    tiny_encoder_free(ctx);
    free(tokens);
    free(mask);
    free(embedding);
    free(logits);
    return 0;
}
