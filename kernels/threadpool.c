/* threadpool.c — see threadpool.h. Generation counter + spin-then-sleep workers. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* ~50-100 us of spinning: long enough to bridge the gaps between the regions of one step,
 * short enough not to burn a core that another process (or test) needs. */
#define SPIN_ITERS 4000

struct rwkv_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* workers sleep here between regions */
    pthread_cond_t done_cv; /* the caller sleeps here until pending == 0 */
    atomic_bool caller_waiting;
    atomic_uint generation;
    atomic_int pending;  /* workers still running the current region */
    atomic_int sleepers;
    atomic_bool quit;
    rwkv_pool_fn fn;
    void *ctx;
};

typedef struct {
    rwkv_pool *pool;
    int tid;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    rwkv_pool *p = wa->pool;
    int tid = wa->tid;
    free(wa);
    unsigned seen = 0; /* the generation at creation; a region may start before we run */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->quit))
            return NULL;
        p->fn(p->ctx, tid, p->n_threads);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

rwkv_pool *rwkv_pool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    rwkv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = p;
            wa->tid = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n_threads = i;
            rwkv_pool_destroy(&p);
            return NULL;
        }
    }
    return p;
}

void rwkv_pool_destroy(rwkv_pool **pp)
{
    if (!pp || !*pp)
        return;
    rwkv_pool *p = *pp;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p);
    *pp = NULL;
}

int rwkv_pool_size(const rwkv_pool *p) { return p->n_threads; }

void rwkv_pool_run(rwkv_pool *p, rwkv_pool_fn fn, void *ctx)
{
    if (p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n_threads - 1);
    /* seq_cst pairs with the worker's sleepers++ then generation check: one of the two
     * always sees the other, so no wake-up is lost. */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n_threads);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS) {
            cpu_relax();
            continue;
        }
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, true);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_waiting, false);
        pthread_mutex_unlock(&p->mu);
    }
}
