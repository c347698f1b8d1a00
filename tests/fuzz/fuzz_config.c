/* fuzz_config.c — libFuzzer target for the rwkvd.yaml loader (daemon/config.c).
 *
 * The input is parsed as a config file from memory. A rejected input must give -EINVAL (or
 * -ENOMEM), a "fuzz:" message and no output; an accepted one must dump to YAML that loads
 * back into an equal config and dumps to the same text, and must compare cleanly against
 * the defaults. A broken invariant aborts, so the fuzzer reports it.
 * Not a test of the wording of messages (tests/daemon/test_config.c has the golden ones).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

static char *dump(const rwkvd_config *c, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    REQUIRE(f);
    REQUIRE(rwkvd_config_dump(c, f) == 0);
    fclose(f);
    /* skip the first line, which names the source */
    char *body = strchr(buf, '\n');
    REQUIRE(body);
    memmove(buf, body + 1, strlen(body + 1) + 1);
    *len = strlen(buf);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rwkvd_config *const sentinel = (rwkvd_config *)(uintptr_t)0x1;
    rwkvd_config *c = sentinel;
    char err[512] = "";
    int rc = rwkvd_config_parse((const char *)data, size, "fuzz", &c, err, sizeof err);
    if (rc != 0) {
        REQUIRE(rc == -EINVAL || rc == -ENOMEM);
        REQUIRE(c == sentinel);
        REQUIRE(strncmp(err, "fuzz:", 5) == 0 && strlen(err) > 7);
        return 0;
    }
    REQUIRE(c && c != sentinel);

    size_t n1, n2;
    char *d1 = dump(c, &n1);
    rwkvd_config *back = NULL;
    rc = rwkvd_config_parse(d1, n1, "dump", &back, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "dump does not load: %s\n%s\n", err, d1);
    REQUIRE(rc == 0);
    REQUIRE(rwkvd_config_diff(c, back, NULL, NULL) == 0);
    REQUIRE(rwkvd_config_diff_reloadable(c, back, err, sizeof err) == 0);
    char *d2 = dump(back, &n2);
    REQUIRE(n1 == n2 && memcmp(d1, d2, n1) == 0);

    rwkvd_config *def = NULL;
    if (rwkvd_config_default(&def, err, sizeof err) == 0) {
        int n = rwkvd_config_diff(def, c, NULL, NULL);
        REQUIRE(n >= 0);
        rc = rwkvd_config_diff_reloadable(def, c, err, sizeof err);
        REQUIRE(rc == 0 || rc == -EPERM);
        rwkvd_config_destroy(&def);
    }
    for (size_t i = 0; i < c->tasks.n_profiles; i++)
        REQUIRE(rwkvd_config_find_profile(c, c->tasks.profiles[i].name) != NULL);

    free(d1);
    free(d2);
    rwkvd_config_destroy(&back);
    rwkvd_config_destroy(&c);
    REQUIRE(c == NULL);
    return 0;
}
