/* seqfile.c — rwkvcat's sequence state file; see rwkvc.h for the format. The file is only
 * ever replaced by rename, so a reader sees the old or the new state, never a mix. */
#include "rwkvc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEQFILE_MAX_BYTES 4096

int rwkvc_seqfile_load(const char *path, rwkvc_seqstate *out, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    char buf[SEQFILE_MAX_BYTES + 1];
    size_t len = fread(buf, 1, sizeof buf, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, err_len, "%s: read error", path);
        return -EIO;
    }
    if (len > SEQFILE_MAX_BYTES) {
        snprintf(err, err_len, "%s: larger than %d bytes; not a sequence state file", path, SEQFILE_MAX_BYTES);
        return -EBADMSG;
    }
    buf[len] = '\0';
    rwkvc_seqstate st;
    memset(&st, 0, sizeof st);
    bool have_ch = false, have_pr = false, have_ack = false;
    int line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *sp = strchr(line, ' ');
        if (!sp) {
            snprintf(err, err_len, "%s:%d: expected 'key value'", path, line_no);
            return -EBADMSG;
        }
        *sp = '\0';
        const char *val = sp + 1;
        size_t vlen = strlen(val);
        if (strcmp(line, "channel") == 0) {
            if (rwkvp_channel_check(val, vlen, NULL) != 0) {
                snprintf(err, err_len, "%s:%d: invalid channel name", path, line_no);
                return -EBADMSG;
            }
            memcpy(st.channel, val, vlen + 1);
            have_ch = true;
        } else if (strcmp(line, "producer") == 0) {
            if (rwkvp_name_check(val, vlen, NULL) != 0) {
                snprintf(err, err_len, "%s:%d: invalid producer id", path, line_no);
                return -EBADMSG;
            }
            memcpy(st.producer, val, vlen + 1);
            have_pr = true;
        } else if (strcmp(line, "acked") == 0) {
            if (rwkvp_u64_parse(val, vlen, &st.acked) != 0) {
                snprintf(err, err_len, "%s:%d: acked is not a decimal integer", path, line_no);
                return -EBADMSG;
            }
            have_ack = true;
        } else {
            snprintf(err, err_len, "%s:%d: unknown key '%s'", path, line_no, line);
            return -EBADMSG;
        }
    }
    if (!have_ch || !have_pr || !have_ack) {
        snprintf(err, err_len, "%s: missing %s", path, !have_ch ? "channel" : !have_pr ? "producer" : "acked");
        return -EBADMSG;
    }
    *out = st;
    return 0;
}

int rwkvc_seqfile_save(const char *path, const rwkvc_seqstate *st, char *err, size_t err_len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        snprintf(err, err_len, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    char body[512];
    int n = snprintf(body, sizeof body, "# rwkvcat sequence state\nchannel %s\nproducer %s\nacked %llu\n",
                     st->channel, st->producer, (unsigned long long)st->acked);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_len, "%s: cannot create: %s", tmp, strerror(e));
        return -e;
    }
    const char *step = NULL;
    int e = 0;
    if (write(fd, body, (size_t)n) != n) {
        e = errno ? errno : EIO;
        step = "write";
    } else if (fsync(fd) != 0) {
        e = errno;
        step = "fsync";
    }
    if (close(fd) != 0 && !step) {
        e = errno;
        step = "close";
    }
    if (!step && rename(tmp, path) != 0) {
        e = errno;
        step = "rename";
    }
    if (step) {
        unlink(tmp);
        snprintf(err, err_len, "%s: %s: %s", path, step, strerror(e));
        return -e;
    }
    return 0;
}
