/*
 * fuzz_safetensors.c - libFuzzer target for the untrusted-input parsers of
 * kiln_rt.c: the safetensors reader (plus the F32 model-weights check), the
 * .npy reader and the JSON parser. Build (clang only):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I../../runtime \
 *       fuzz_safetensors.c ../../runtime/kiln_rt.c -lm -o fuzz_safetensors
 * The parsers must never crash, leak, hang or read out of bounds, and every
 * error message must be a single non-empty line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_rt.h"

/* Aborts (a fuzzer finding) unless msg is one non-empty line. */
static void check_message(const kiln_error *err) {
    size_t n = strlen(err->msg);
    if (n == 0 || memchr(err->msg, '\n', n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_error err;

    /* safetensors: parse, then check against a tiny two-tensor "model" */
    kiln_safetensors st;
    if (kiln_st_parse(data, size, "fuzz.safetensors", &st, &err) == 0) {
        static const kiln_tensor_spec specs[2] = {{"a", 1, {4}, 0}, {"b", 2, {2, 2}, 4}};
        float dst[8];
        if (kiln_st_load_f32(&st, specs, 2, dst, 8, &err) != 0) check_message(&err);
        if (kiln_st_load_f32_ignoring(&st, specs, 2, dst, 8, "train.", &err) != 0)
            check_message(&err);
        unsigned sum = 0;
        for (size_t i = 0; i < st.num_tensors; i++) {
            const kiln_st_tensor *t = &st.tensors[i];
            if (kiln_st_find(&st, t->name) != t) abort();
            if (t->offset + t->nbytes > st.data_len) abort();
            for (size_t j = 0; j < t->nbytes; j++) sum += t->data[j]; /* touch every byte */
        }
        for (size_t i = 0; i < st.num_meta; i++) sum += (unsigned)strlen(st.meta[i].value);
        (void)kiln_st_meta_get(&st, "format");
        kiln_st_close(&st);
        if (sum == 0xFFFFFFFFu) abort(); /* keep the loop */
    } else {
        check_message(&err);
    }

    /* .npy reader */
    kiln_npy_ints a;
    if (kiln_npy_parse_ints(data, size, "fuzz.npy", &a, &err) == 0) kiln_npy_free_ints(&a);
    else check_message(&err);

    /* JSON on the raw bytes */
    kiln_json v;
    size_t end;
    if (kiln_json_parse((const char *)data, size, &v, &end, &err) == 0) {
        if (end > size) abort();
        kiln_json_free(&v);
    } else {
        check_message(&err);
    }
    return 0;
}
