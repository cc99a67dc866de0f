/* fake.h - the C API of the fake model (fake_model.c), as kiln generates it for a model with the prefix
 * `fake`: what the runtime tests' programs link against. */
#ifndef FAKE_H
#define FAKE_H

#include "kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The element type of the model's weights and float tensors. */
typedef float fake_real;

/* A model instance: its weights, scratch memory, state and last error. */
typedef struct fake_context fake_context;

/* ---- the model ---- */
const char *fake_model_name(void);
/* The entry points: 0 <= i < fake_num_functions(); NULL out of range. */
int fake_num_functions(void);
const kiln_function_desc *fake_function(int i);
/* The entry point of that name, or NULL. */
const kiln_function_desc *fake_find_function(const char *name);
/* The parameter tensors, in the weights file's order, and the elements of the parameter block. */
int fake_num_params(void);
const kiln_param_desc *fake_param(int i);
size_t fake_param_elements(void);
/* The matrix-product microkernel this CPU runs: "avx512", "avx2" or "portable" (KILN_ISA overrides). */
const char *fake_isa(void);

/* ---- contexts ---- */
/* A context with all weights zero (KILN_ERR_MEMORY, and *ctx NULL, when out of memory). */
kiln_status fake_create(fake_context **ctx);
/* A context with the weights of a safetensors file. Like sqlite3_open, *ctx is set even on failure (unless
 * out of memory): read fake_error(*ctx), then fake_free it. */
kiln_status fake_open(const char *weights_path, fake_context **ctx);
void fake_free(fake_context *ctx);
/* The message of the last failed call ("" after a success). */
const char *fake_error(const fake_context *ctx);
/* OpenMP threads for this context's calls; 0 (the default): OpenMP's default (OMP_NUM_THREADS). */
kiln_status fake_set_threads(fake_context *ctx, int threads);

/* ---- weights ---- */
/* Loads weights from a safetensors file, or from the bytes of one in memory (not retained): every parameter
 * as F32 with its exact shape, nothing else (a training checkpoint's "train.*" tensors are skipped). The
 * file is validated first; on failure the weights are unspecified. */
kiln_status fake_load(fake_context *ctx, const char *path);
kiln_status fake_load_memory(fake_context *ctx, const void *data, size_t size);
/* GPT-2-style initialisation, deterministic for the seed: N(0, std^2) weights, zero biases, unit gains. */
kiln_status fake_init(fake_context *ctx, uint64_t seed);
/* Writes the weights as safetensors, atomically (a temporary file renamed over the path). */
kiln_status fake_save(fake_context *ctx, const char *path);

/* ---- running ---- */
/* Runs an entry point. Inputs and outputs are matched by name; each must have the declared dtype, rank and
 * shape (a symbolic dim the same wherever it appears, and no larger than its bound); token ids, targets and
 * positions must lie in [0, limit), masks hold 0 and 1, float inputs are finite. Outputs are written into
 * the caller's buffers. */
kiln_status fake_run(fake_context *ctx, const char *function, const kiln_tensor *inputs, int num_inputs,
                     kiln_tensor *outputs, int num_outputs);

/* ---- state: the KV cache of prefill and decode_step ---- */
/* Allocates the state for `rows` sequences (its pages are touched as positions are written); a batch of B
 * rows uses rows 0 .. B-1. The first stateful call allocates it for its batch if this was not called. */
kiln_status fake_reset_state(fake_context *ctx, int64_t rows);
int64_t fake_state_rows(const fake_context *ctx);
/* Copies one row's state to another (beam search: a beam continues from another). */
kiln_status fake_copy_state_row(fake_context *ctx, int64_t from, int64_t to);

/* ---- training: the parameter and gradient blocks (fake_param_elements() each, offsets in fake_param) ---- */
/* The weights in weights-file layout (NULL when out of memory); valid until the next call on the context. */
fake_real *fake_params(fake_context *ctx);
/* Where train_step writes each parameter's gradient (allocated on first use; NULL when out of memory). */
fake_real *fake_grads(fake_context *ctx);

#ifdef __cplusplus
}
#endif

#endif
