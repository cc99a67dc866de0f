/*
 * kiln_program_api.h - the model's C API (model.h's KILN(...) names) as a kiln_api table (kiln_seq2seq.h), for
 * the programs of a build directory. Include it after model.h.
 */
#ifndef KILN_PROGRAM_API_H
#define KILN_PROGRAM_API_H

#include "kiln_seq2seq.h"

static kiln_status kiln_api_run(void *ctx, const char *function, const kiln_tensor *inputs, int num_inputs,
                                kiln_tensor *outputs, int num_outputs) {
    return KILN(run)((kiln_ctx *)ctx, function, inputs, num_inputs, outputs, num_outputs);
}
static kiln_status kiln_api_reset_state(void *ctx, int64_t rows) { return KILN(reset_state)((kiln_ctx *)ctx, rows); }
static kiln_status kiln_api_copy_state_row(void *ctx, int64_t from, int64_t to) {
    return KILN(copy_state_row)((kiln_ctx *)ctx, from, to);
}
static const char *kiln_api_error(const void *ctx) { return KILN(error)((const kiln_ctx *)ctx); }

/* The API of the model for one context. */
static kiln_api kiln_model_api(kiln_ctx *ctx) {
    kiln_api a = {ctx, KILN(find_function), kiln_api_run, kiln_api_reset_state, kiln_api_copy_state_row, kiln_api_error};
    return a;
}

#endif /* KILN_PROGRAM_API_H */
