/* bio.c — see bio.h. Two lanes (urgent, normal), each a ring of `cap` slots and three
 * counters: submitted (loop), done (I/O thread) and collected (loop), with collected <= done
 * <= submitted; slot i % cap holds the lane's job i. The thread takes the urgent lane's next
 * job whenever there is one. The counters move under one mutex; the job runs outside it. */
#include "bio.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    rwkvd_bio_fn fn;
    void *arg;
    int rc;
} slot;

typedef struct {
    slot *ring;           /* (cap) */
    uint64_t submitted, done, collected;
} lane;

struct rwkvd_bio {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;  /* the thread waits for jobs */
    pthread_cond_t done_cv; /* the loop waits in rwkvd_bio_wait */
    lane lanes[2];        /* [0] urgent, [1] normal */
    uint32_t cap;
    bool stop;
    int efd;
    uint64_t max_job_ns;
};

static void *run(void *p)
{
    rwkvd_bio *b = p;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        lane *l = NULL;
        for (;;) {
            l = b->lanes[0].done < b->lanes[0].submitted ? &b->lanes[0]
                : b->lanes[1].done < b->lanes[1].submitted ? &b->lanes[1] : NULL;
            if (l || b->stop)
                break;
            pthread_cond_wait(&b->work, &b->mu);
        }
        if (!l)
            break; /* stop, and nothing left */
        slot *s = &l->ring[l->done % b->cap];
        pthread_mutex_unlock(&b->mu);
        uint64_t t0 = rwkvd_now_ns();
        s->rc = s->fn(s->arg);
        uint64_t dt = rwkvd_now_ns() - t0;
        pthread_mutex_lock(&b->mu);
        if (dt > b->max_job_ns)
            b->max_job_ns = dt;
        l->done++;
        pthread_cond_broadcast(&b->done_cv);
        uint64_t one = 1;
        ssize_t w = write(b->efd, &one, sizeof one);
        (void)w; /* only fails when the counter would overflow: it is readable anyway */
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int rwkvd_bio_new(uint32_t cap, rwkvd_bio **out)
{
    rwkvd_bio *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->cap = cap ? cap : 1;
    b->efd = -1;
    b->lanes[0].ring = calloc(b->cap, sizeof(slot));
    b->lanes[1].ring = calloc(b->cap, sizeof(slot));
    if (!b->lanes[0].ring || !b->lanes[1].ring) {
        free(b->lanes[0].ring);
        free(b->lanes[1].ring);
        free(b);
        return -ENOMEM;
    }
    if ((b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        int e = -errno;
        free(b->lanes[0].ring);
        free(b->lanes[1].ring);
        free(b);
        return e;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done_cv, NULL);
    int e = pthread_create(&b->thread, NULL, run, b);
    if (e) {
        close(b->efd);
        free(b->lanes[0].ring);
        free(b->lanes[1].ring);
        free(b);
        return -e;
    }
    *out = b;
    return 0;
}

void rwkvd_bio_destroy(rwkvd_bio **pb)
{
    if (!pb || !*pb)
        return;
    rwkvd_bio *b = *pb;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->done_cv);
    close(b->efd);
    free(b->lanes[0].ring);
    free(b->lanes[1].ring);
    free(b);
    *pb = NULL;
}

int rwkvd_bio_submit(rwkvd_bio *b, rwkvd_bio_fn fn, void *arg, bool urgent)
{
    lane *l = &b->lanes[urgent ? 0 : 1];
    pthread_mutex_lock(&b->mu);
    if (l->submitted - l->collected >= b->cap) {
        pthread_mutex_unlock(&b->mu);
        return -EAGAIN;
    }
    l->ring[l->submitted % b->cap] = (slot){fn, arg, 0};
    l->submitted++;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int rwkvd_bio_collect(rwkvd_bio *b, void **arg, int *rc)
{
    pthread_mutex_lock(&b->mu);
    lane *l = b->lanes[0].collected < b->lanes[0].done ? &b->lanes[0]
              : b->lanes[1].collected < b->lanes[1].done ? &b->lanes[1] : NULL;
    if (!l) {
        uint64_t v;
        ssize_t r = read(b->efd, &v, sizeof v); /* drain: nothing is left to collect */
        (void)r;
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
    slot *s = &l->ring[l->collected % b->cap];
    *arg = s->arg;
    *rc = s->rc;
    l->collected++;
    pthread_mutex_unlock(&b->mu);
    return 1;
}

static bool finished_waiting(const rwkvd_bio *b)
{
    return b->lanes[0].collected < b->lanes[0].done || b->lanes[1].collected < b->lanes[1].done;
}

static bool all_done(const rwkvd_bio *b)
{
    return b->lanes[0].done == b->lanes[0].submitted && b->lanes[1].done == b->lanes[1].submitted;
}

void rwkvd_bio_wait(rwkvd_bio *b)
{
    pthread_mutex_lock(&b->mu);
    while (!finished_waiting(b) && !all_done(b))
        pthread_cond_wait(&b->done_cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

int rwkvd_bio_fd(const rwkvd_bio *b) { return b->efd; }

uint32_t rwkvd_bio_outstanding(const rwkvd_bio *b)
{
    rwkvd_bio *m = (rwkvd_bio *)b;
    pthread_mutex_lock(&m->mu);
    uint32_t n = (uint32_t)(b->lanes[0].submitted - b->lanes[0].collected + b->lanes[1].submitted -
                            b->lanes[1].collected);
    pthread_mutex_unlock(&m->mu);
    return n;
}

bool rwkvd_bio_full(const rwkvd_bio *b)
{
    rwkvd_bio *m = (rwkvd_bio *)b;
    pthread_mutex_lock(&m->mu);
    bool full = b->lanes[1].submitted - b->lanes[1].collected >= b->cap;
    pthread_mutex_unlock(&m->mu);
    return full;
}

uint64_t rwkvd_bio_max_job_ns(const rwkvd_bio *b)
{
    rwkvd_bio *m = (rwkvd_bio *)b;
    pthread_mutex_lock(&m->mu);
    uint64_t v = b->max_job_ns;
    pthread_mutex_unlock(&m->mu);
    return v;
}
