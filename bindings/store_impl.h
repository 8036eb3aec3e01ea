/* store_impl.h (bindings): what bindings/store.c (moonbert.Store and the
 * module core.store) and bindings/store_run.c (moonbert.Run) share: the two
 * userdata types and the two calls that join them. One module (core.store);
 * nothing here is for other binding files (scripts/check-layers, rule 4).
 */
#ifndef MB_BINDINGS_STORE_IMPL_H
#define MB_BINDINGS_STORE_IMPL_H

#include <stdint.h>

#include "luamb.h"
#include "../runtime/store.h"

#pragma GCC visibility push(hidden)

#define STORE_MT "moonbert.Store"
#define RUN_MT "moonbert.Run"

typedef struct lstore {
    mb_store *s; /* NULL once closed */
} lstore;

typedef struct lrun {
    int64_t id;
    int ended; /* finish() or fail() went through (or the store reported it ended) */
} lrun;

/* Push a new Run for run id of the store at store_index; the store remembers
   it in its weak set of runs (user value 1), which closing the store fails. */
void store_push_run(lua_State *L, int store_index, int64_t id);
/* Create the moonbert.Run metatable (once); leaves the stack as it was. */
void store_run_register(lua_State *L);

#pragma GCC visibility pop

#endif
