/* model.h - the programs' view of the fake model (as kiln generates it for a build directory): its C API
 * under generic names, and the train section's defaults. -DFAKE_NO_TRAIN: a model without a train section. */
#ifndef KILN_PROGRAM_MODEL_H
#define KILN_PROGRAM_MODEL_H
#include "fake.h"
#define KILN(fn) fake_##fn
typedef fake_context kiln_ctx;
typedef fake_real kiln_real;
#define KILN_REAL_IS_DOUBLE 0
#ifndef FAKE_NO_TRAIN
#define KILN_HAS_TRAIN 1
#define KILN_TRAIN_OPTIMIZER 0        /* 0 = AdamW, 1 = SGD with momentum */
#define KILN_TRAIN_LR 1e-2
#define KILN_TRAIN_MIN_LR 1e-3
#define KILN_TRAIN_WARMUP 5           /* warmup steps (linear from lr/warmup to lr) */
#define KILN_TRAIN_SCHEDULE 1         /* 0 = constant, 1 = linear warmup then cosine decay */
#define KILN_TRAIN_STEPS 50           /* default --steps; also the cosine horizon */
#define KILN_TRAIN_BETA1 0.9
#define KILN_TRAIN_BETA2 0.99
#define KILN_TRAIN_EPS 1e-8
#define KILN_TRAIN_WEIGHT_DECAY 0.1
#define KILN_TRAIN_DECAY_EMBEDDINGS 1 /* decay ROLE_WEIGHT, and ROLE_EMBEDDING when 1 */
#define KILN_TRAIN_MOMENTUM 0.9       /* SGD */
#define KILN_TRAIN_CLIP 1.0           /* clip the global gradient norm to this; 0 = off */
#define KILN_TRAIN_BATCH 4
#define KILN_TRAIN_SEQ 16             /* must be <= the context */
#define KILN_TRAIN_ACCUMULATE 1       /* micro-batches per optimiser step */
#define KILN_TRAIN_EVAL_INTERVAL 10
#define KILN_TRAIN_EVAL_ITERS 4       /* validation batches per evaluation */
#endif
#endif
