/* health.c — see health.h. */
#include "health.h"

#include <errno.h>
#include <stdio.h>

#include "chantab.h"
#include "log.h"
#include "publish.h"

static void quarantine(rwkvd_daemon *d, rwkvd_job *j, rwkvd_channel *ch, int slot)
{
    if (ch->dead)
        return;
    uint64_t seen = ch->tokens_seen;
    rwkvd_log(LOG_ERR,
              "channel %s: its state became non-finite (NaN or Inf in slot %d after %llu tokens); quarantined: "
              "state reset, generation cancelled",
              ch->name, slot, (unsigned long long)seen);
    d->m.channels_quarantined++;
    /* its classifications in this job were computed from the bad state: not published */
    for (int i = 0; i < j->n_tasks; i++)
        if (j->tasks[i].ch == ch && j->tasks[i].kind != RWKVD_HEAD_GEN_START)
            j->tasks[i].rc = -ERANGE;
    rwkvd_daemon_reset_channel(d, ch);
    char text[200];
    snprintf(text, sizeof text,
             "the channel's state became non-finite after %llu tokens; it was reset (tokens_seen 0) and its "
             "generation, if any, cancelled",
             (unsigned long long)seen);
    rwkvd_origin o = {"", 0, seen};
    rwkvd_publish_error(d, ch, &o, RWKVD_E_QUARANTINED, text);
}

void rwkvd_health_job(rwkvd_daemon *d, rwkvd_job *j)
{
    if (j->rc || j->n_bad == 0)
        return;
    for (int i = 0; i < j->n_items; i++) {
        if (!j->item_bad[i])
            continue;
        rwkvd_gen *g = j->item_gen[i];
        if (g) { /* a generation's fork: that generation fails, the channel may be fine */
            rwkvd_log(LOG_ERR, "channel %s: a generation's state became non-finite (slot %d); it ends with an error",
                      g->ch->name, j->items[i].slot);
            d->m.generations_nonfinite++;
            g->next_token = -ERANGE;
        } else if (j->item_ch[i]) {
            quarantine(d, j, j->item_ch[i], j->items[i].slot);
        }
    }
    for (int i = 0; i < j->n_runs; i++)
        if (j->run_bad[i])
            quarantine(d, j, j->runs[i].ch, j->runs[i].slot);
}
