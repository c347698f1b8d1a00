/* threadpool.h — a fixed set of worker threads that run one parallel region at a time.
 *
 * rwkv_pool_run() calls fn(ctx, tid, n) on every thread (the caller is tid 0) and returns
 * when all have finished. Work splitting is the callee's business (usually an atomic
 * counter over blocks), so which thread runs which block never changes results. Workers
 * spin briefly between regions (a step issues hundreds of them) and then sleep.
 * Not thread-safe: one caller thread per pool.
 */
#ifndef RWKV_THREADPOOL_H
#define RWKV_THREADPOOL_H

typedef struct rwkv_pool rwkv_pool;
typedef void (*rwkv_pool_fn)(void *ctx, int tid, int n_threads);

/* n_threads >= 1 (1 = no workers). Returns NULL on failure. */
rwkv_pool *rwkv_pool_new(int n_threads);
void rwkv_pool_destroy(rwkv_pool **p);
int rwkv_pool_size(const rwkv_pool *p);
void rwkv_pool_run(rwkv_pool *p, rwkv_pool_fn fn, void *ctx);

#endif
