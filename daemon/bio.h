/* bio.h — the daemon's one background I/O thread: disk work handed off by the loop thread so
 * that the loop never waits on the disk (fdatasync of the input log, snapshot writes, log
 * truncation and directory fsyncs; durable.c defines the jobs).
 *
 * What it is: two bounded FIFOs of jobs (a function and its argument), urgent and normal, run
 * one at a time by one thread, which takes the next urgent job whenever there is one (a log
 * sync that ACKs wait for does not queue behind snapshot writes) and otherwise the next
 * normal one; within a lane jobs run and are handed back (rwkvd_bio_collect) in submission
 * order. An eventfd (rwkvd_bio_fd, for the loop's zmq_poll) becomes readable whenever
 * finished jobs wait to be collected. No allocation after rwkvd_bio_new.
 * What it is not: a thread pool (one thread keeps the file operations in order: a snapshot
 * written after a log sync sees that sync done) or the owner of the jobs' memory.
 * Threads: submit, collect, wait and destroy belong to one thread (the loop); job functions
 * run on the I/O thread. */
#ifndef RWKVD_BIO_H
#define RWKVD_BIO_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rwkvd_bio rwkvd_bio;
/* A job: runs on the I/O thread; its return value comes back with the job. */
typedef int (*rwkvd_bio_fn)(void *arg);

/* Start the thread with room for `cap` jobs submitted and not yet collected. 0 or a negative
 * errno. */
int rwkvd_bio_new(uint32_t cap, rwkvd_bio **out);
/* Let the thread finish the jobs submitted, join it and free everything; jobs finished and
 * not collected are dropped (collect them first when their arguments own memory).
 * NULL-safe. */
void rwkvd_bio_destroy(rwkvd_bio **b);

/* Queue a job on a lane. 0, or -EAGAIN when `cap` jobs of that lane are outstanding
 * (collect, or wait first). */
int rwkvd_bio_submit(rwkvd_bio *b, rwkvd_bio_fn fn, void *arg, bool urgent);
/* The oldest finished job not yet collected: 1 with *arg and *rc, 0 when none has finished.
 * Also clears the eventfd once nothing finished is left. */
int rwkvd_bio_collect(rwkvd_bio *b, void **arg, int *rc);
/* Block until a submitted job has finished and is ready to collect (returns at once when one
 * is, or when nothing is outstanding). */
void rwkvd_bio_wait(rwkvd_bio *b);

int rwkvd_bio_fd(const rwkvd_bio *b);          /* readable while finished jobs wait */
uint32_t rwkvd_bio_outstanding(const rwkvd_bio *b); /* submitted and not yet collected, both lanes */
bool rwkvd_bio_full(const rwkvd_bio *b);           /* the normal lane is full */
/* Longest single job so far (ns), for the metrics. */
uint64_t rwkvd_bio_max_job_ns(const rwkvd_bio *b);

#endif
