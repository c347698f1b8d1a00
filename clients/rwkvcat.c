/* rwkvcat — send lines (stdin or files) to an rwkvd channel as events (PROTOCOL.md §6-§8).
 *
 *   tail -F app.log | rwkvcat -c app
 *   rwkvcat -c chat --gen '{"max_tokens":32}' prompt.txt
 *
 * What it is: one DEALER producer that follows the protocol's producer algorithm. Every
 * message gets the next seq of one counter and stays in a bounded window until the daemon
 * answers ACK or DUP (at-least-once: after a timeout everything unanswered is resent with
 * its original seq, and the daemon's duplicate check makes that safe). Credit (§8.1), in
 * tokens, bounds the summed costs of what is in flight (a line costs its octets plus the
 * separator's tokens, --separator-tokens), and a SYNC asks for more when the next message does
 * not fit; 429 pauses until CREDIT (or 1 s), 409/423/500/503/507 pause with a back-off,
 * 425 is expected while paused (§8.2). Nothing is ever dropped for lack of credit: when the
 * window is full, input is not read, so the writer of the pipe blocks.
 *
 * What it is not: a subscriber (use rwkvsub for results) or a PUSH producer.
 *
 * Key invariant: seqs are assigned in input order and sent in seq order; an entry leaves the
 * window only when a reply covers it (ACK/DUP/CREDIT acked >= seq) or a non-retryable error
 * rejects it (reported on stderr with file:line).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "rwkvc.h"
#include "rwkvp_json.h"

enum { EXIT_REJECTED = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_LOCAL = 4, EXIT_VERSION = 5 };

static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    g_signals++;
}

static void usage(FILE *f)
{
    fputs("usage: rwkvcat -c CHANNEL [options] [FILE...]\n"
          "\n"
          "Send each line of the FILEs (or stdin; '-' is stdin) to CHANNEL as one TEXT event.\n"
          "\n"
          "options:\n"
          "  -c, --channel NAME      channel (required)\n"
          "  -e, --endpoint EP       ingest endpoint (default: $RWKVD_INGEST, else\n"
          "                          ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/ingest.sock)\n"
          "  -p, --producer ID       producer id (default: the state file's, else HOST:PID)\n"
          "  -s, --seq N             seq of the first message (default: one above the\n"
          "                          daemon's and the state file's acknowledged seq)\n"
          "  -S, --state FILE        keep the acknowledged seq (and producer id) in FILE, so a\n"
          "                          restart resumes the numbering\n"
          "      --tokens            lines are token ids (\"34 105,110\"), sent as TOKENS\n"
          "      --task PROFILE      select the channel's task profile first\n"
          "      --reset             reset the channel's state first\n"
          "      --gen JSON          after the input, request a continuation; JSON holds the\n"
          "                          generation parameters, e.g. '{\"max_tokens\":32}' or ''\n"
          "  -w, --window N          most unacknowledged messages kept (default 1024; at most\n"
          "                          the daemon's limits.ingest_reply_hwm, PROTOCOL.md §8.3)\n"
          "      --separator-tokens N  tokens the daemon's event separator adds to each line\n"
          "                          (STATUS limits.separator_tokens; default 1, as for \"\\n\")\n"
          "  -t, --timeout DUR       resend what is unanswered after DUR without a reply\n"
          "                          (default 2s; units ms s m h)\n"
          "      --connect-timeout DUR  give up when the daemon does not answer at start\n"
          "                          (default 30s; 0 = wait forever)\n"
          "      --drain-timeout DUR longest wait for the last acknowledgements after the end\n"
          "                          of input (default 30s; 0 = forever)\n"
          "      --max-bytes SIZE    the daemon's limits.max_message_bytes (default 1048576)\n"
          "  -v, --verbose           report retries and progress on stderr\n"
          "  -h, --help              this text\n"
          "\n"
          "Invalid UTF-8 octets are replaced by U+FFFD. A trailing \\r\\n or \\n ends a line.\n"
          "exit status: 0 every message acknowledged; 1 some rejected (see stderr); 2 usage;\n"
          "3 timeout (unacknowledged messages remain); 4 local failure; 5 protocol version\n",
          f);
}

typedef enum { E_PENDING = 0, E_SENT, E_DONE } entry_state;

typedef struct {
    uint64_t seq;
    rwkvp_op op;
    entry_state state;
    char *payload; /* malloc'd, may be NULL when len is 0 */
    size_t len;
    const char *src; /* input name for error messages */
    long line;       /* 1-based; 0 for messages that are not input lines */
    uint64_t charged; /* while sent: the cost counted in outstanding (§8.1) */
} entry;

typedef struct {
    /* options */
    const char *channel;
    char producer[RWKVP_NAME_MAX + 1];
    char endpoint[4096];
    const char *state_path;
    bool tokens, reset, verbose, have_seq;
    const char *task;
    const char *gen_json; /* NULL: no GEN */
    uint64_t first_seq;
    size_t window;
    int64_t timeout_ms, connect_timeout_ms, drain_timeout_ms;
    size_t max_bytes, max_payload;
    char **files;
    int n_files;

    /* socket */
    void *zctx, *sock;

    /* window: ring of entries in seq order, [head, head + count) */
    entry *ring;
    size_t head, count;
    size_t cursor; /* offset from head of the first entry that may need sending */
    uint64_t next_seq;
    uint64_t credit;   /* tokens (§8.1), from the latest ACK, DUP or CREDIT */
    size_t in_flight;
    uint64_t outstanding; /* summed costs of the messages in flight */
    uint64_t queue;       /* largest credit seen: the queue's size once it was seen empty */
    uint64_t sep_tokens;  /* --separator-tokens: what the daemon adds to each TEXT */
    int64_t sync_sent_ms, sync_answered_ms; /* §8.1 step 5 */
    uint64_t acked; /* the pair's highest accepted seq, as the daemon last said */
    uint64_t state_acked; /* from the state file of an earlier run */

    /* pause (§8.2) */
    bool paused, wait_credit;
    int64_t pause_until_ms;
    int64_t backoff_ms;
    bool need_sync;

    /* timers */
    int64_t last_reply_ms, last_send_ms;
    bool warned_silent;
    bool send_blocked; /* the socket refused a message (no connection yet) */

    /* input */
    int file_idx; /* into files, or -1 before the first */
    int fd;
    const char *src;
    long line_no;
    char *ibuf;
    size_t ilen, icap;
    bool discarding; /* inside an over-long line */
    bool at_eof;     /* the current input has ended; ibuf may still hold lines */
    bool input_done, gen_queued;

    /* results */
    uint64_t n_sent, n_acked, n_rejected, n_replaced;
    bool state_dirty;
    int64_t last_save_ms;
    int fatal; /* exit status when set */
} cat_state;

static entry *at(cat_state *s, size_t i)
{
    return &s->ring[(s->head + i) % s->window];
}

static void vlog(cat_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(cat_state *s, const char *fmt, ...)
{
    if (!s->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("rwkvcat: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- window ------------------------------------------------------------------------- */

static int enqueue(cat_state *s, rwkvp_op op, char *payload, size_t len, long line)
{
    if (s->count == s->window) {
        free(payload);
        return -ENOBUFS;
    }
    entry *e = at(s, s->count);
    *e = (entry){.seq = s->next_seq++, .op = op, .state = E_PENDING, .payload = payload, .len = len,
                 .src = s->src ? s->src : "-", .line = line};
    s->count++;
    return 0;
}

/* PROTOCOL.md §8.1: an upper bound of the tokens the message puts into the queue; a cost
 * above the queue's size counts as the size (sent alone into an empty queue). */
static uint64_t cost_of(const cat_state *s, const entry *e)
{
    uint64_t c = e->op == RWKVP_OP_TEXT ? e->len + s->sep_tokens
                 : e->op == RWKVP_OP_TOKENS ? e->len / 4
                 : e->op == RWKVP_OP_CANCEL ? 0 : 1;
    return s->queue && c > s->queue ? s->queue : c;
}

/* A sent entry no longer in flight (answered, or to be resent). */
static void unsend(cat_state *s, entry *e)
{
    if (s->in_flight > 0)
        s->in_flight--;
    s->outstanding = s->outstanding > e->charged && s->in_flight ? s->outstanding - e->charged : 0;
    e->charged = 0;
}

static void mark_done(cat_state *s, entry *e)
{
    if (e->state == E_SENT)
        unsend(s, e);
    e->state = E_DONE;
}

/* Drop answered entries from the head; keep the cursor pointing at the same entry. */
static void pop_done(cat_state *s)
{
    while (s->count && at(s, 0)->state == E_DONE) {
        entry *e = at(s, 0);
        free(e->payload);
        e->payload = NULL;
        s->head = (s->head + 1) % s->window;
        s->count--;
        if (s->cursor)
            s->cursor--;
    }
}

static entry *find_seq(cat_state *s, uint64_t seq, size_t *idx)
{
    if (!s->count || seq < at(s, 0)->seq || seq > at(s, s->count - 1)->seq)
        return NULL;
    /* seqs in the window are consecutive */
    size_t i = (size_t)(seq - at(s, 0)->seq);
    if (i >= s->count || at(s, i)->seq != seq)
        return NULL;
    if (idx)
        *idx = i;
    return at(s, i);
}

/* Every entry with seq <= acked is accepted or a duplicate (ACK/DUP/CREDIT frame "acked"). */
static void cover(cat_state *s, uint64_t acked)
{
    if (acked > s->acked) {
        s->acked = acked;
        s->state_dirty = true;
    }
    for (size_t i = 0; i < s->count && at(s, i)->seq <= acked; i++) {
        entry *e = at(s, i);
        if (e->state != E_DONE) {
            mark_done(s, e);
            s->n_acked++;
        }
    }
    pop_done(s);
}

/* Everything sent from window offset i on counts as lost: send it again from there. */
static void rewind_to(cat_state *s, size_t i)
{
    for (size_t k = i; k < s->count; k++)
        if (at(s, k)->state == E_SENT) {
            at(s, k)->state = E_PENDING;
            unsend(s, at(s, k));
        }
    if (i < s->cursor)
        s->cursor = i;
}

/* ---- sending ---------------------------------------------------------------------------- */

static int send_ingest(cat_state *s, rwkvp_op op, uint64_t seq, const void *payload, size_t len)
{
    rwkvp_ingest m = {.op = op, .channel = {s->channel, strlen(s->channel)},
                      .producer = {s->producer, strlen(s->producer)}, .seq = seq, .payload = {payload, len}};
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_ingest_encode(&m, &msg, &e) != 0) {
        fprintf(stderr, "rwkvcat: cannot encode seq %llu: %s\n", (unsigned long long)seq, e.text);
        return -EINVAL;
    }
    /* a DEALER delimiter frame first is optional (§5); we send without one */
    return rwkvc_send(s->sock, msg.frames, msg.n, ZMQ_DONTWAIT);
}

static int send_sync(cat_state *s)
{
    int rc = send_ingest(s, RWKVP_OP_SYNC, 0, NULL, 0);
    if (rc && rc != -EAGAIN)
        vlog(s, "SYNC not sent: %s", zmq_strerror(-rc));
    s->last_send_ms = rwkvc_now_ms();
    return rc;
}

static void send_some(cat_state *s, int64_t now)
{
    s->send_blocked = false;
    if (s->paused)
        return;
    while (s->cursor < s->count) {
        entry *e = at(s, s->cursor);
        if (e->state != E_PENDING) {
            s->cursor++;
            continue;
        }
        uint64_t cost = cost_of(s, e);
        if (s->outstanding + cost > s->credit) {
            /* §8.1 step 5: nothing in flight and it does not fit: SYNC, unless one is on its
             * way, or its answer came and the unsolicited CREDIT is awaited (1 s at most) */
            if (s->in_flight == 0 && !s->sync_sent_ms &&
                (!s->sync_answered_ms || now - s->sync_answered_ms >= 1000) && send_sync(s) == 0)
                s->sync_sent_ms = now;
            else if (s->sync_sent_ms && now - s->sync_sent_ms >= s->timeout_ms)
                s->sync_sent_ms = 0; /* its answer was lost: ask again */
            break;
        }
        int rc = send_ingest(s, e->op, e->seq, e->payload, e->len);
        if (rc == -EAGAIN) {
            s->send_blocked = true; /* not connected (ZMQ_IMMEDIATE) or at the HWM: retry soon */
            break;
        }
        if (rc) {
            fprintf(stderr, "rwkvcat: send to %s failed: %s\n", s->endpoint, zmq_strerror(-rc));
            s->fatal = EXIT_LOCAL;
            return;
        }
        if (s->in_flight == 0)
            s->last_send_ms = now;
        e->state = E_SENT;
        e->charged = cost;
        s->in_flight++;
        s->outstanding += cost;
        s->n_sent++;
        s->cursor++;
    }
}

/* ---- replies ---------------------------------------------------------------------------- */

static void set_credit(cat_state *s, uint64_t credit)
{
    s->credit = credit;
    if (credit > s->queue)
        s->queue = credit;
}

static void pause_at(cat_state *s, size_t idx, int64_t now, int code)
{
    rewind_to(s, idx);
    s->paused = true;
    s->wait_credit = code == RWKVP_E_NO_CREDIT;
    if (s->wait_credit) {
        s->pause_until_ms = now + 1000;
    } else {
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
        if (s->backoff_ms > 5000)
            s->backoff_ms = 5000;
        s->pause_until_ms = now + s->backoff_ms;
    }
}

static void handle_reply(cat_state *s, const rwkvp_reply *r, int64_t now)
{
    bool ours = r->channel.len == strlen(s->channel) && memcmp(r->channel.data, s->channel, r->channel.len) == 0 &&
                r->producer.len == strlen(s->producer) &&
                memcmp(r->producer.data, s->producer, r->producer.len) == 0;
    if (r->kind != RWKVP_REPLY_ERROR && !ours)
        return; /* not for this pair (cannot happen on our own DEALER) */
    s->last_reply_ms = now;
    s->warned_silent = false;
    switch (r->kind) {
    case RWKVP_REPLY_ACK:
    case RWKVP_REPLY_DUP: {
        entry *e = find_seq(s, r->seq, NULL);
        if (e && e->state != E_DONE) {
            mark_done(s, e);
            s->n_acked++;
        }
        set_credit(s, r->credit);
        s->sync_answered_ms = 0;
        cover(s, r->acked);
        s->backoff_ms = 0;
        pop_done(s);
        return;
    }
    case RWKVP_REPLY_CREDIT:
        set_credit(s, r->credit);
        /* the answer to our SYNC: an unsolicited CREDIT follows as the queue drains; an
         * unsolicited one: SYNC again if the next message still does not fit */
        s->sync_answered_ms = s->sync_sent_ms ? now : 0;
        s->sync_sent_ms = 0;
        cover(s, r->acked);
        if (s->need_sync) {
            s->need_sync = false;
            s->paused = false;
        }
        if (s->paused && s->wait_credit) {
            vlog(s, "CREDIT %llu: resuming", (unsigned long long)r->credit);
            s->paused = false;
        }
        return;
    case RWKVP_REPLY_ERROR:
        break;
    }
    /* ERROR: find the message it answers; without a seq, the oldest one in flight (replies
       come in the order the daemon received the messages) */
    size_t idx = 0;
    entry *e = NULL;
    if (r->has_seq && ours) {
        e = find_seq(s, r->seq, &idx);
    } else if (!r->has_seq) {
        for (size_t i = 0; i < s->count; i++)
            if (at(s, i)->state == E_SENT) {
                e = at(s, i);
                idx = i;
                break;
            }
    }
    if (r->code == RWKVP_E_VERSION) {
        fprintf(stderr, "rwkvcat: %s does not speak protocol RWKV%d: %.*s\n", s->endpoint, RWKVP_VERSION,
                (int)r->text.len, (const char *)r->text.data);
        s->fatal = EXIT_VERSION;
        return;
    }
    if (!e || e->state == E_DONE)
        return; /* late answer to something already settled */
    rwkvp_retry retry = rwkvp_code_retry(r->code);
    const char *name = rwkvp_code_name(r->code);
    if (retry == RWKVP_RETRY_NO) {
        if (e->line)
            fprintf(stderr, "rwkvcat: %s:%ld (seq %llu) rejected: %d %s: %.*s\n", e->src, e->line,
                    (unsigned long long)e->seq, r->code, name ? name : "error", (int)r->text.len,
                    (const char *)r->text.data);
        else
            fprintf(stderr, "rwkvcat: %s (seq %llu) rejected: %d %s: %.*s\n", rwkvp_op_name(e->op),
                    (unsigned long long)e->seq, r->code, name ? name : "error", (int)r->text.len,
                    (const char *)r->text.data);
        mark_done(s, e);
        s->n_rejected++;
        pop_done(s);
        return;
    }
    if (r->code == RWKVP_E_PAUSED) {
        if (e->state == E_SENT) {
            e->state = E_PENDING;
            unsend(s, e);
            if (idx < s->cursor)
                s->cursor = idx;
        }
        if (s->paused)
            return; /* expected: we know why */
        /* the pair is paused at a seq whose error we did not see */
        bool oldest = true;
        for (size_t i = 0; i < idx; i++)
            if (at(s, i)->state != E_DONE)
                oldest = false;
        if (oldest) {
            /* the paused seq is not in our window: SYNC ends the pause (§8.2) */
            vlog(s, "425 for seq %llu, the oldest we hold: sending SYNC", (unsigned long long)e->seq);
            rewind_to(s, 0);
            s->paused = true;
            s->need_sync = true;
            s->wait_credit = false;
            s->pause_until_ms = now + s->timeout_ms;
            send_sync(s);
        } else {
            pause_at(s, 0, now, RWKVP_E_PAUSED);
        }
        return;
    }
    vlog(s, "seq %llu: %d %s: %.*s; retrying", (unsigned long long)e->seq, r->code, name ? name : "error",
         (int)r->text.len, (const char *)r->text.data);
    pause_at(s, idx, now, r->code);
}

static void drain_replies(cat_state *s)
{
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    for (;;) {
        rwkvc_zmsg zm = {0};
        if (rwkvc_recv(s->sock, &zm, 0) != 0)
            return;
        rwkvp_reply r;
        rwkvp_error e;
        size_t off = zm.n >= 1 && zm.f[0].len == 0 ? 1 : 0; /* tolerate a delimiter */
        if (zm.n_total == zm.n && rwkvp_reply_decode(zm.f + off, zm.n - off, &lim, &r, &e) == 0)
            handle_reply(s, &r, rwkvc_now_ms());
        else
            fprintf(stderr, "rwkvcat: malformed reply from %s ignored: %s\n", s->endpoint,
                    zm.n_total != zm.n ? "too many frames" : e.text);
        rwkvc_zmsg_close(&zm);
        if (s->fatal)
            return;
    }
}

/* ---- input ------------------------------------------------------------------------------- */

static int open_next_input(cat_state *s)
{
    if (s->fd > 0)
        close(s->fd);
    s->fd = -1;
    s->file_idx++;
    if (s->file_idx >= (s->n_files ? s->n_files : 1)) {
        s->input_done = true;
        return 0;
    }
    const char *name = s->n_files ? s->files[s->file_idx] : "-";
    s->line_no = 0;
    s->ilen = 0;
    s->discarding = false;
    s->at_eof = false;
    if (strcmp(name, "-") == 0) {
        s->fd = 0;
        s->src = "stdin";
        return 0;
    }
    s->fd = open(name, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        fprintf(stderr, "rwkvcat: cannot open %s: %s\n", name, strerror(errno));
        return -errno;
    }
    s->src = name;
    return 0;
}

/* One complete line (without its terminator) -> a window entry. -ENOBUFS: window full. */
static int take_line(cat_state *s, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (s->tokens) {
        size_t n = 0, bad = 0;
        int rc = rwkvc_tokens_parse(line, len, NULL, 0, &n, &bad);
        if (rc == -EINVAL) {
            fprintf(stderr, "rwkvcat: %s:%ld:%zu: not a token id list (decimal ids separated by spaces or commas)\n",
                    s->src, s->line_no, bad + 1);
            s->n_rejected++;
            return 0;
        }
        if (n == 0)
            return 0; /* blank line */
        if (n * 4 > s->max_payload) {
            fprintf(stderr, "rwkvcat: %s:%ld: %zu token ids exceed --max-bytes; skipped\n", s->src, s->line_no, n);
            s->n_rejected++;
            return 0;
        }
        uint32_t *ids = malloc(n * sizeof *ids);
        char *buf = malloc(n * 4);
        if (!ids || !buf) {
            free(ids);
            free(buf);
            return -ENOMEM;
        }
        rwkvc_tokens_parse(line, len, ids, n, &n, &bad);
        rwkvp_tokens_pack(ids, n, buf, n * 4);
        free(ids);
        return enqueue(s, RWKVP_OP_TOKENS, buf, n * 4, s->line_no);
    }
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return -ENOMEM;
    size_t reps = 0;
    size_t out = rwkvc_utf8_repair(line, len, buf, &reps);
    s->n_replaced += reps;
    if (out > s->max_payload) {
        fprintf(stderr, "rwkvcat: %s:%ld: line of %zu octets exceeds --max-bytes; skipped\n", s->src, s->line_no, out);
        free(buf);
        s->n_rejected++;
        return 0;
    }
    return enqueue(s, RWKVP_OP_TEXT, buf, out, s->line_no);
}

/* Move complete lines from ibuf into the window while it has room. */
static int split_lines(cat_state *s, bool eof)
{
    size_t start = 0;
    while (s->count < s->window) {
        char *nl = memchr(s->ibuf + start, '\n', s->ilen - start);
        if (!nl) {
            if (eof && s->ilen > start) {
                s->line_no++;
                if (!s->discarding) {
                    int rc = take_line(s, s->ibuf + start, s->ilen - start);
                    if (rc)
                        return rc;
                }
                start = s->ilen;
            }
            break;
        }
        size_t len = (size_t)(nl - (s->ibuf + start));
        s->line_no++;
        if (s->discarding) {
            s->discarding = false;
        } else {
            int rc = take_line(s, s->ibuf + start, len);
            if (rc)
                return rc;
        }
        start += len + 1;
    }
    memmove(s->ibuf, s->ibuf + start, s->ilen - start);
    s->ilen -= start;
    if (s->ilen == s->icap && !memchr(s->ibuf, '\n', s->ilen)) {
        /* a line longer than any message can carry */
        if (!s->discarding) {
            fprintf(stderr, "rwkvcat: %s:%ld: line longer than %zu octets; skipped\n", s->src, s->line_no + 1,
                    s->icap);
            s->n_rejected++;
        }
        s->discarding = true;
        s->ilen = 0;
    }
    return 0;
}

/* Read what is available from the current input (when readable) and move complete lines
 * into the window; at the end of an input whose lines are all taken, open the next one. */
static int pump_input(cat_state *s, bool readable)
{
    if (s->fd < 0)
        return 0;
    if (readable && !s->at_eof && s->ilen < s->icap) {
        ssize_t n = read(s->fd, s->ibuf + s->ilen, s->icap - s->ilen);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                return 0;
            fprintf(stderr, "rwkvcat: read %s: %s\n", s->src, strerror(errno));
            return -errno;
        }
        s->ilen += (size_t)n;
        s->at_eof = n == 0;
    }
    int rc = split_lines(s, s->at_eof);
    if (rc && rc != -ENOBUFS)
        return rc;
    if (s->at_eof && s->ilen == 0)
        return open_next_input(s);
    return 0;
}

/* ---- state file --------------------------------------------------------------------------- */

static void save_state(cat_state *s, bool force)
{
    if (!s->state_path || !s->state_dirty)
        return;
    int64_t now = rwkvc_now_ms();
    if (!force && now - s->last_save_ms < 1000)
        return;
    rwkvc_seqstate st;
    memset(&st, 0, sizeof st);
    snprintf(st.channel, sizeof st.channel, "%s", s->channel);
    snprintf(st.producer, sizeof st.producer, "%s", s->producer);
    st.acked = s->acked;
    char err[512];
    if (rwkvc_seqfile_save(s->state_path, &st, err, sizeof err) != 0) {
        fprintf(stderr, "rwkvcat: cannot save the sequence state: %s\n", err);
        s->fatal = EXIT_LOCAL;
        return;
    }
    s->state_dirty = false;
    s->last_save_ms = now;
}

/* ---- main loop ------------------------------------------------------------------------------ */

static int connect_phase(cat_state *s)
{
    int64_t start = rwkvc_now_ms();
    int64_t next_sync = start;
    while (!g_signals) {
        int64_t now = rwkvc_now_ms();
        if (s->connect_timeout_ms && now - start >= s->connect_timeout_ms) {
            char why[400];
            rwkvc_curve_explain(why, sizeof why); /* a refused key says so, not a bare time-out */
            if (why[0])
                fprintf(stderr, "rwkvcat: no answer from %s: %s\n", s->endpoint, why);
            else
                fprintf(stderr, "rwkvcat: no answer from %s within %lld ms (is rwkvd running? see --endpoint)\n",
                        s->endpoint, (long long)s->connect_timeout_ms);
            return EXIT_TIMEOUT;
        }
        if (now >= next_sync)
            next_sync = now + (send_sync(s) == -EAGAIN ? 50 : s->timeout_ms);
        int64_t wait = next_sync - now;
        if (s->connect_timeout_ms && start + s->connect_timeout_ms - now < wait)
            wait = start + s->connect_timeout_ms - now;
        rwkvc_zmsg zm = {0};
        int rc = rwkvc_recv(s->sock, &zm, (long)(wait > 0 ? wait : 0));
        if (rc == -EAGAIN || rc == -EINTR)
            continue;
        if (rc) {
            fprintf(stderr, "rwkvcat: receive from %s: %s\n", s->endpoint, zmq_strerror(-rc));
            return EXIT_LOCAL;
        }
        rwkvp_limits lim;
        rwkvp_limits_default(&lim);
        rwkvp_reply r;
        rwkvp_error e;
        bool got = false;
        size_t off = zm.n >= 1 && zm.f[0].len == 0 ? 1 : 0;
        if (zm.n_total == zm.n && rwkvp_reply_decode(zm.f + off, zm.n - off, &lim, &r, &e) == 0) {
            if (r.kind == RWKVP_REPLY_CREDIT) {
                s->acked = r.acked;
                set_credit(s, r.credit);
                got = true;
            } else if (r.kind == RWKVP_REPLY_ERROR) {
                const char *name = rwkvp_code_name(r.code);
                fprintf(stderr, "rwkvcat: SYNC refused by %s: %d %s: %.*s%s\n", s->endpoint, r.code,
                        name ? name : "error", (int)r.text.len, (const char *)r.text.data,
                        rwkvp_code_retry(r.code) ? "; retrying" : "");
                if (!rwkvp_code_retry(r.code)) {
                    rwkvc_zmsg_close(&zm);
                    return r.code == RWKVP_E_VERSION ? EXIT_VERSION : EXIT_USAGE;
                }
                next_sync = now + 500; /* 503 while the daemon starts or reloads */
            }
        }
        rwkvc_zmsg_close(&zm);
        if (got)
            return 0;
    }
    return EXIT_TIMEOUT;
}

static int run(cat_state *s)
{
    int rc = connect_phase(s);
    if (rc)
        return rc;
    /* a daemon restarted without durable state has forgotten the pair: the state file still
       moves the numbering past everything an earlier run had acknowledged */
    if (s->state_acked > s->acked)
        s->acked = s->state_acked;
    s->next_seq = s->have_seq ? s->first_seq : s->acked + 1;
    s->last_reply_ms = rwkvc_now_ms();
    vlog(s, "producer %s, channel %s: acked %llu, credit %llu, first seq %llu", s->producer, s->channel,
         (unsigned long long)s->acked, (unsigned long long)s->credit, (unsigned long long)s->next_seq);
    if (s->reset)
        enqueue(s, RWKVP_OP_RESET, NULL, 0, 0);
    if (s->task) {
        char *p = strdup(s->task);
        if (!p || enqueue(s, RWKVP_OP_TASK, p, strlen(s->task), 0) != 0)
            return EXIT_LOCAL;
    }
    if (open_next_input(s) != 0)
        return EXIT_LOCAL;

    int sig_seen = 0;
    int64_t drain_deadline = 0;
    while (!s->fatal) {
        int64_t now = rwkvc_now_ms();
        if (g_signals != sig_seen) {
            sig_seen = g_signals;
            if (sig_seen >= 2)
                break;
            if (!s->input_done)
                vlog(s, "signal: stopping input, waiting for the acknowledgements");
            if (s->fd > 0)
                close(s->fd);
            s->fd = -1;
            s->input_done = true;
            s->gen_queued = true; /* no GEN after an interrupted input */
        }
        if (s->input_done && !s->gen_queued && s->count < s->window) {
            char *p = s->gen_json && *s->gen_json ? strdup(s->gen_json) : NULL;
            enqueue(s, RWKVP_OP_GEN, p, p ? strlen(p) : 0, 0);
            s->gen_queued = true;
        }
        if (s->input_done && s->gen_queued && s->count == 0)
            break;
        if (s->input_done && !drain_deadline)
            drain_deadline = now + (s->drain_timeout_ms ? s->drain_timeout_ms : INT64_MAX / 4);
        if (drain_deadline && now >= drain_deadline) {
            fprintf(stderr, "rwkvcat: %zu message%s not acknowledged by %s within --drain-timeout (seqs %llu..%llu)\n",
                    s->count, s->count == 1 ? "" : "s", s->endpoint, (unsigned long long)at(s, 0)->seq,
                    (unsigned long long)at(s, s->count - 1)->seq);
            s->fatal = EXIT_TIMEOUT;
            break;
        }

        /* timers */
        if (s->paused && now >= s->pause_until_ms) {
            if (s->need_sync) {
                send_sync(s); /* no CREDIT yet: ask again */
                s->pause_until_ms = now + s->timeout_ms;
            } else {
                if (s->wait_credit) {
                    vlog(s, "no CREDIT within 1 s: asking with SYNC");
                    set_credit(s, 0); /* nothing fits: send_some SYNCs (it also ends the pause) */
                    s->sync_sent_ms = s->sync_answered_ms = 0;
                }
                s->paused = false;
            }
        }
        if (s->in_flight && now - (s->last_reply_ms > s->last_send_ms ? s->last_reply_ms : s->last_send_ms) >=
                                s->timeout_ms) {
            if (!s->warned_silent)
                fprintf(stderr, "rwkvcat: no reply from %s for %lld ms; resending from seq %llu\n", s->endpoint,
                        (long long)s->timeout_ms, (unsigned long long)(s->count ? at(s, 0)->seq : 0));
            s->warned_silent = true;
            rewind_to(s, 0);
            s->in_flight = 0;
            s->outstanding = 0;
            set_credit(s, 0); /* nothing fits: send_some SYNCs for the real credit */
            s->sync_sent_ms = s->sync_answered_ms = 0;
            s->last_reply_ms = now;
        }
        send_some(s, now);
        save_state(s, false);
        if (s->fatal)
            break;

        /* wait */
        int64_t wake = now + 1000;
        if (s->paused && s->pause_until_ms < wake)
            wake = s->pause_until_ms;
        if (s->in_flight) {
            int64_t t = (s->last_reply_ms > s->last_send_ms ? s->last_reply_ms : s->last_send_ms) + s->timeout_ms;
            if (t < wake)
                wake = t;
        }
        if (s->sync_answered_ms && s->sync_answered_ms + 1000 < wake)
            wake = s->sync_answered_ms + 1000;
        if (s->sync_sent_ms && s->sync_sent_ms + s->timeout_ms < wake)
            wake = s->sync_sent_ms + s->timeout_ms;
        if (drain_deadline && drain_deadline < wake)
            wake = drain_deadline;
        if (s->send_blocked && now + 50 < wake)
            wake = now + 50;
        bool want_input = !s->input_done && s->fd >= 0 && !s->at_eof && s->count < s->window;
        bool buffered = !s->input_done && s->count < s->window &&
                        (s->at_eof || (s->ilen && memchr(s->ibuf, '\n', s->ilen)));
        if (buffered)
            wake = now; /* lines or the end of an input are waiting in the buffer */
        zmq_pollitem_t items[2] = {{.socket = s->sock, .events = ZMQ_POLLIN}, {.fd = s->fd, .events = ZMQ_POLLIN}};
        long wait = wake > now ? (long)(wake - now) : 0;
        int pr = zmq_poll(items, want_input ? 2 : 1, wait);
        if (pr < 0) {
            if (zmq_errno() == EINTR)
                continue;
            fprintf(stderr, "rwkvcat: poll: %s\n", zmq_strerror(zmq_errno()));
            return EXIT_LOCAL;
        }
        if (items[0].revents & ZMQ_POLLIN)
            drain_replies(s);
        bool readable = want_input && (items[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR));
        if (readable || buffered) {
            if (pump_input(s, readable) != 0) {
                s->fatal = EXIT_LOCAL;
                break;
            }
        }
    }
    save_state(s, true);
    if (s->n_replaced)
        fprintf(stderr, "rwkvcat: %llu invalid UTF-8 octet%s replaced by U+FFFD\n", (unsigned long long)s->n_replaced,
                s->n_replaced == 1 ? "" : "s");
    vlog(s, "%llu sent (with resends), %llu acknowledged, %llu rejected; acked seq %llu", (unsigned long long)s->n_sent,
         (unsigned long long)s->n_acked, (unsigned long long)s->n_rejected, (unsigned long long)s->acked);
    if (s->fatal)
        return s->fatal;
    if (s->count) {
        fprintf(stderr, "rwkvcat: interrupted with %zu message%s unacknowledged\n", s->count, s->count == 1 ? "" : "s");
        return EXIT_TIMEOUT;
    }
    return s->n_rejected ? EXIT_REJECTED : 0;
}

static int parse_size(const char *arg, size_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || arg[0] == '-')
        return -EINVAL;
    if (strcmp(end, "KiB") == 0)
        v <<= 10;
    else if (strcmp(end, "MiB") == 0)
        v <<= 20;
    else if (*end)
        return -EINVAL;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_TOKENS = 256, O_TASK, O_RESET, O_GEN, O_CONNECT, O_DRAIN, O_MAXB, O_SEPT };
    static const struct option opts[] = {
        {"channel", required_argument, NULL, 'c'}, {"endpoint", required_argument, NULL, 'e'},
        {"producer", required_argument, NULL, 'p'}, {"seq", required_argument, NULL, 's'},
        {"state", required_argument, NULL, 'S'},   {"tokens", no_argument, NULL, O_TOKENS},
        {"task", required_argument, NULL, O_TASK}, {"reset", no_argument, NULL, O_RESET},
        {"gen", required_argument, NULL, O_GEN},   {"window", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'}, {"connect-timeout", required_argument, NULL, O_CONNECT},
        {"drain-timeout", required_argument, NULL, O_DRAIN}, {"max-bytes", required_argument, NULL, O_MAXB},
        {"separator-tokens", required_argument, NULL, O_SEPT},
        {"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cat_state *s = calloc(1, sizeof *s);
    if (!s)
        return EXIT_LOCAL;
    s->window = 1024;
    s->sep_tokens = 1;
    s->timeout_ms = 2000;
    s->connect_timeout_ms = 30000;
    s->drain_timeout_ms = 30000;
    s->max_bytes = RWKVP_DEFAULT_MAX_MESSAGE_BYTES;
    s->file_idx = -1;
    s->fd = -1;
    const char *producer = NULL, *endpoint = NULL;
    int c, status = EXIT_USAGE;
    while ((c = getopt_long(argc, argv, "c:e:p:s:S:w:t:vh", opts, NULL)) != -1) {
        uint64_t v = 0;
        switch (c) {
        case 'c':
            s->channel = optarg;
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'p':
            producer = optarg;
            break;
        case 's':
            if (rwkvc_uint_parse(optarg, UINT64_MAX, &v) != 0 || v == 0) {
                fprintf(stderr, "rwkvcat: --seq: '%s' is not an integer >= 1\n", optarg);
                goto out;
            }
            s->first_seq = v;
            s->have_seq = true;
            break;
        case 'S':
            s->state_path = optarg;
            break;
        case O_TOKENS:
            s->tokens = true;
            break;
        case O_TASK:
            if (rwkvp_name_check(optarg, strlen(optarg), NULL) != 0) {
                fprintf(stderr, "rwkvcat: --task: '%s' is not a profile name (A-Z a-z 0-9 _ - . : /, 1..64)\n", optarg);
                goto out;
            }
            s->task = optarg;
            break;
        case O_RESET:
            s->reset = true;
            break;
        case O_GEN: {
            s->gen_json = optarg;
            rwkvp_gen_params gp;
            rwkvp_error ge;
            memset(&ge, 0, sizeof ge);
            if (rwkvp_gen_params_parse(s->gen_json, strlen(s->gen_json), &gp, &ge) != 0) {
                fprintf(stderr, "rwkvcat: --gen: %s\n", ge.text);
                goto out;
            }
            break;
        }
        case O_SEPT:
            if (rwkvc_uint_parse(optarg, 64, &v) != 0) {
                fprintf(stderr, "rwkvcat: --separator-tokens: '%s' is not an integer 0..64\n", optarg);
                goto out;
            }
            s->sep_tokens = v;
            break;
        case 'w':
            if (rwkvc_uint_parse(optarg, 1u << 20, &v) != 0 || v == 0) {
                fprintf(stderr, "rwkvcat: --window: '%s' is not an integer 1..1048576\n", optarg);
                goto out;
            }
            s->window = (size_t)v;
            break;
        case 't':
        case O_CONNECT:
        case O_DRAIN: {
            int64_t ms = 0;
            if (rwkvc_duration_parse(optarg, &ms) != 0 || (c == 't' && ms <= 0)) {
                fprintf(stderr, "rwkvcat: --%s: '%s' is not a %sduration (e.g. 500ms, 2s, 1m)\n",
                        c == 't' ? "timeout" : c == O_CONNECT ? "connect-timeout" : "drain-timeout", optarg,
                        c == 't' ? "positive " : "");
                goto out;
            }
            *(c == 't' ? &s->timeout_ms : c == O_CONNECT ? &s->connect_timeout_ms : &s->drain_timeout_ms) = ms;
            break;
        }
        case O_MAXB:
            if (parse_size(optarg, &s->max_bytes) != 0 || s->max_bytes < 1024) {
                fprintf(stderr, "rwkvcat: --max-bytes: '%s' is not a size >= 1024 (e.g. 1048576, 4MiB)\n", optarg);
                goto out;
            }
            break;
        case 'v':
            s->verbose = true;
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (!s->channel) {
        fprintf(stderr, "rwkvcat: missing -c CHANNEL\n");
        usage(stderr);
        goto out;
    }
    size_t bad = 0;
    int vr = rwkvp_channel_check(s->channel, strlen(s->channel), &bad);
    if (vr) {
        fprintf(stderr, "rwkvcat: -c: '%s' is not a channel name (%s)\n", s->channel,
                vr == -ENAMETOOLONG ? "longer than 128 octets"
                                    : "1..128 of A-Z a-z 0-9 _, then also - . : /");
        goto out;
    }
    if (producer && rwkvp_name_check(producer, strlen(producer), NULL) != 0) {
        fprintf(stderr, "rwkvcat: -p: '%s' is not a producer id (1..64 of A-Z a-z 0-9 _, then also - . : /)\n",
                producer);
        goto out;
    }
    s->files = argv + optind;
    s->n_files = argc - optind;

    /* the state file: producer id and the acknowledged seq of an earlier run */
    uint64_t state_acked = 0;
    if (s->state_path) {
        rwkvc_seqstate st;
        char err[512];
        int rc = rwkvc_seqfile_load(s->state_path, &st, err, sizeof err);
        if (rc == 0) {
            if (strcmp(st.channel, s->channel) != 0 || (producer && strcmp(st.producer, producer) != 0)) {
                fprintf(stderr, "rwkvcat: %s holds the state of channel %s, producer %s; use another state file\n",
                        s->state_path, st.channel, st.producer);
                goto out;
            }
            producer = NULL;
            snprintf(s->producer, sizeof s->producer, "%s", st.producer);
            state_acked = st.acked;
        } else if (rc != -ENOENT) {
            fprintf(stderr, "rwkvcat: cannot use the state file: %s\n", err);
            status = EXIT_LOCAL;
            goto out;
        }
    }
    if (producer) {
        snprintf(s->producer, sizeof s->producer, "%s", producer);
    } else if (!s->producer[0]) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        rwkvc_producer_from_host(host, (long)getpid(), s->producer);
    }
    if (endpoint) {
        if (strlen(endpoint) >= sizeof s->endpoint) {
            fprintf(stderr, "rwkvcat: endpoint too long\n");
            goto out;
        }
        strcpy(s->endpoint, endpoint);
    } else if (rwkvc_default_endpoint("ingest", s->endpoint, sizeof s->endpoint) != 0) {
        fprintf(stderr, "rwkvcat: default endpoint too long (RUNTIME_DIRECTORY)\n");
        goto out;
    }
    /* frames other than the payload: signature, op, channel, producer, seq */
    size_t overhead = RWKVP_SIGNATURE_LEN + 6 + strlen(s->channel) + strlen(s->producer) + RWKVP_U64_DIGITS;
    s->max_payload = s->max_bytes > overhead ? s->max_bytes - overhead : 0;
    s->icap = s->max_payload + 2; /* a maximal line plus \r\n fits */
    s->ibuf = malloc(s->icap);
    s->ring = calloc(s->window, sizeof *s->ring);
    if (!s->ibuf || !s->ring) {
        fprintf(stderr, "rwkvcat: out of memory\n");
        status = EXIT_LOCAL;
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    status = EXIT_LOCAL;
    s->zctx = zmq_ctx_new();
    s->sock = s->zctx ? zmq_socket(s->zctx, ZMQ_DEALER) : NULL;
    if (!s->sock) {
        fprintf(stderr, "rwkvcat: cannot create a socket: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    int zero = 0, one = 1;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->sock, ZMQ_IMMEDIATE, &one, sizeof one); /* queue only on live connections */
    char kerr[700];
    if (rwkvc_curve_setup(s->zctx, s->sock, kerr, sizeof kerr) < 0) { /* RWKV_SERVER_KEY, RWKV_CLIENT_KEY */
        fprintf(stderr, "rwkvcat: %s\n", kerr);
        status = EXIT_USAGE;
        goto out;
    }
    if (zmq_connect(s->sock, s->endpoint) != 0) {
        fprintf(stderr, "rwkvcat: cannot connect to %s: %s\n", s->endpoint, zmq_strerror(zmq_errno()));
        status = EXIT_USAGE;
        goto out;
    }
    s->state_acked = state_acked;
    s->gen_queued = s->gen_json == NULL;
    status = run(s);

out:
    if (s->ring) {
        for (size_t i = 0; i < s->count; i++)
            free(at(s, i)->payload);
        free(s->ring);
    }
    free(s->ibuf);
    if (s->fd > 0)
        close(s->fd);
    if (s->sock)
        zmq_close(s->sock);
    rwkvc_curve_close();
    if (s->zctx)
        zmq_ctx_term(s->zctx);
    free(s);
    return status;
}
