/* fuzz_keys.c — libFuzzer target for the security parsers (daemon/keys.c): CURVE key files
 * (ZPL certificates or bare Z85), the allow-list file, and the ZAP handler's decision.
 *
 * The first octet picks the parser: 'c' a key file (the rest of the input), 'a' an
 * allow-list file, 'z' a ZAP request whose frames are the rest of the input split at each
 * "\x01|" (decided against a fixed two-key list). Invariants: a rejected input gives -EINVAL
 * and a message; an accepted allow-list has unique sorted names, each found by name and by
 * key, and a listed key's ZAP request is admitted under its name; every ZAP decision has a
 * 3-digit status, and 200 only with a listed key. A broken invariant aborts.
 */
#include "keys.h"

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

static const char fixed_list[] = "alice >kqQTW?)wbY&0Y!{z@<3q!OlKxJ^R%O2GP%(+8+5 write=app/ read=*\n"
                                 "bob   !LHjOr438H}dZj59MrLI[ddl2H+NE@tH%Kq4?RF& control=read replicate\n";

static void check_allow(const rwkvd_allow *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const rwkvd_key *k = &a->v[i];
        REQUIRE(k->name[0] && strlen(k->name) <= RWKVD_KEY_NAME_MAX);
        REQUIRE(i == 0 || strcmp(a->v[i - 1].name, k->name) < 0);
        REQUIRE(rwkvd_allow_by_name(a, k->name) == k);
        REQUIRE(rwkvd_allow_by_public(a, k->public_key) == k);
        REQUIRE(k->n_write <= RWKVD_KEY_PREFIXES_MAX && k->n_read <= RWKVD_KEY_PREFIXES_MAX);
        for (size_t j = 0; j < k->n_write; j++)
            REQUIRE(rwkvd_key_may_write(k, k->write[j], strlen(k->write[j])));
        for (size_t j = 0; j < k->n_read; j++)
            REQUIRE(rwkvd_key_may_read(k, k->read[j], strlen(k->read[j])));
        /* a listed key's request is admitted under its name */
        rwkvp_frame f[7] = {{"1.0", 3}, {"7", 1}, {"rwkvd", 5}, {"127.0.0.1", 9}, {"", 0}, {"CURVE", 5},
                            {k->public_key, 32}};
        rwkvd_zap_reply r;
        REQUIRE(rwkvd_zap_decide(a, f, 7, &r) == RWKVD_ZAP_OK);
        REQUIRE(!strcmp(r.status, "200") && !strcmp(r.user_id, k->name));
        char buf[64];
        rwkvd_key_prefixes_str(k->write, k->n_write, buf, sizeof buf);
        REQUIRE(strlen(buf) < sizeof buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[512];
    err[0] = '\0';
    if (data[0] == 'c') {
        rwkvd_cert c;
        int rc = rwkvd_cert_parse(text, len, "fuzz", data[0] & 1, &c, err, sizeof err);
        REQUIRE(rc == 0 || (rc == -EINVAL && !strncmp(err, "fuzz", 4)));
        if (rc == 0) {
            REQUIRE(c.has_public || c.has_secret);
            rwkvd_key_clear(&c.key);
        }
    } else if (data[0] == 'a') {
        rwkvd_allow *a = NULL;
        int rc = rwkvd_allow_parse(text, len, "fuzz", &a, err, sizeof err);
        REQUIRE((rc == 0 && a) || ((rc == -EINVAL || rc == -ENOMEM) && !a && !strncmp(err, "fuzz", 4)));
        if (a)
            check_allow(a);
        rwkvd_allow_destroy(&a);
        REQUIRE(!a);
    } else if (data[0] == 'z') {
        rwkvd_allow *a = NULL;
        REQUIRE(rwkvd_allow_parse(fixed_list, strlen(fixed_list), "fixed", &a, err, sizeof err) == 0);
        check_allow(a);
        rwkvp_frame f[16];
        size_t n = 0, start = 0;
        for (size_t i = 0; i <= len && n < 16; i++) {
            if (i == len || (i + 1 < len && text[i] == '\x01' && text[i + 1] == '|')) {
                f[n].data = text + start;
                f[n].len = i - start;
                n++;
                start = i + 2;
                i++;
            }
        }
        rwkvd_zap_reply r;
        rwkvd_zap_result res = rwkvd_zap_decide(a, f, n, &r);
        REQUIRE(res < RWKVD_ZAP_N_REASONS && strlen(r.status) == 3 && r.text && r.user_id);
        REQUIRE(res != RWKVD_ZAP_OK || (!strcmp(r.status, "200") && n == 7 && f[6].len == 32 &&
                                        rwkvd_allow_by_public(a, f[6].data) &&
                                        !strcmp(rwkvd_allow_by_public(a, f[6].data)->name, r.user_id)));
        REQUIRE(res == RWKVD_ZAP_OK || !r.user_id[0]);
        REQUIRE(r.request_id.len == (n >= 2 ? f[1].len : 0));
        rwkvd_allow_destroy(&a);
    }
    return 0;
}
