/* test_keys.c — key files, the allow-list and the ZAP decision (daemon/keys.c): what each
 * permission admits (a subscription must lie inside a read prefix), every parser error named
 * with its file and line, a directory of certificates, the secret key file's mode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"
#include "testutil.h"

/* two keys made for this test (40 Z85 characters each) */
#define PUB_A "i?#S@OPyOc3j=ABDgDP3gw{z}zf-Kp8$5/U4(4Qg"
#define SEC_A ">@jIYd?K#*!ULcaufK4nkRPV1yO&c&cP1+*}wWJ&"
#define PUB_B "s:704!fY^QV+L&J:+%L>i5Z(E:#8jI5307[IdE9q"

static char err[600];

static rwkvd_allow *allow(const char *text)
{
    rwkvd_allow *a = NULL;
    err[0] = '\0';
    int rc = rwkvd_allow_parse(text, strlen(text), "allow", &a, err, sizeof err);
    CHECKF(rc == 0 && a, "%s", err);
    return a;
}

static void expect_allow_error(const char *text, const char *want)
{
    rwkvd_allow *a = NULL;
    int rc = rwkvd_allow_parse(text, strlen(text), "allow", &a, err, sizeof err);
    CHECKF(rc == -EINVAL && !a && !strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
    rwkvd_allow_destroy(&a);
}

static void expect_cert_error(const char *text, const char *want)
{
    rwkvd_cert c;
    int rc = rwkvd_cert_parse(text, strlen(text), "k.key", false, &c, err, sizeof err);
    CHECKF(rc == -EINVAL && !strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
}

static void test_permissions(void)
{
    rwkvd_allow *a = allow("# comment\n"
                           "zed   " PUB_B "  # a key that may connect and nothing else\n"
                           "alice " PUB_A " write=app/,logs/ read=app/ write=x control=read\n");
    if (!a)
        return;
    CHECK(a->n == 2 && !strcmp(a->v[0].name, "alice") && !strcmp(a->v[1].name, "zed")); /* sorted */
    const rwkvd_key *k = rwkvd_allow_by_name(a, "alice");
    CHECK(k && k->n_write == 3 && k->n_read == 1 && k->control == RWKVD_CONTROL_READ && !k->replicate);
    CHECK(rwkvd_key_may_write(k, "app/x", 5) && rwkvd_key_may_write(k, "logs/", 5) && rwkvd_key_may_write(k, "xy", 2));
    CHECK(!rwkvd_key_may_write(k, "ops/x", 5) && !rwkvd_key_may_write(k, "ap", 2));
    /* a subscription must lie inside a read prefix: "" and "ap" match topics outside app/ */
    CHECK(rwkvd_key_may_read(k, "app/", 4) && rwkvd_key_may_read(k, "app/x", 5));
    CHECK(!rwkvd_key_may_read(k, "", 0) && !rwkvd_key_may_read(k, "ap", 2) && !rwkvd_key_may_read(k, "ops/", 4));
    CHECK(rwkvd_key_may_control(k, RWKVP_CTL_STATUS) && rwkvd_key_may_control(k, RWKVP_CTL_METRICS) &&
          rwkvd_key_may_control(k, RWKVP_CTL_CHANNELS) && rwkvd_key_may_control(k, RWKVP_CTL_INFO));
    CHECK(!rwkvd_key_may_control(k, RWKVP_CTL_DROP) && !rwkvd_key_may_control(k, RWKVP_CTL_RESET) &&
          !rwkvd_key_may_control(k, RWKVP_CTL_EXPORT) && !rwkvd_key_may_control(k, RWKVP_CTL_RELOAD));
    char buf[64];
    rwkvd_key_prefixes_str(k->write, k->n_write, buf, sizeof buf);
    CHECKF(!strcmp(buf, "app/, logs/, x"), "%s", buf);
    const rwkvd_key *z = rwkvd_allow_by_name(a, "zed");
    CHECK(z && !rwkvd_key_may_write(z, "a", 1) && !rwkvd_key_may_read(z, "a", 1) &&
          !rwkvd_key_may_control(z, RWKVP_CTL_STATUS));
    rwkvd_key_prefixes_str(z->read, z->n_read, buf, sizeof buf);
    CHECK(!strcmp(buf, "(none)"));
    CHECK(rwkvd_allow_by_name(a, "bob") == NULL);
    rwkvd_allow_destroy(&a);
    CHECK(a == NULL);
    rwkvd_allow_destroy(&a); /* idempotent */

    a = allow("ops " PUB_A " write=* read=* control=all\nstandby " PUB_B " replicate\n");
    k = a ? rwkvd_allow_by_name(a, "ops") : NULL;
    CHECK(k && rwkvd_key_may_write(k, "anything", 8) && rwkvd_key_may_read(k, "", 0) &&
          rwkvd_key_may_control(k, RWKVP_CTL_DROP));
    rwkvd_key_prefixes_str(k->read, k->n_read, buf, sizeof buf);
    CHECK(!strcmp(buf, "*"));
    const rwkvd_key *s = a ? rwkvd_allow_by_name(a, "standby") : NULL;
    CHECK(s && s->replicate && rwkvd_key_may_control(s, RWKVP_CTL_STATUS) && !rwkvd_key_may_control(s, RWKVP_CTL_INFO));
    rwkvd_allow_destroy(&a);
}

static void test_allow_errors(void)
{
    expect_allow_error("alice\n", "allow:1: key 'alice' has no public key");
    expect_allow_error("\n\nbad!name " PUB_A "\n",
                       "allow:3: 'bad!name' is not a key name (1..64 of A-Z a-z 0-9 _ - . @)");
    expect_allow_error("alice " PUB_A "x\n", "allow:1: key 'alice': the public key is not 40 Z85 characters");
    expect_allow_error("alice " PUB_A " control=root\n",
                       "allow:1: key 'alice': 'control=root': control must be none, read or all");
    expect_allow_error("alice " PUB_A " write=\n",
                       "allow:1: key 'alice': 'write=': an empty prefix (use * for every channel)");
    expect_allow_error("alice " PUB_A " read=a,,b\n",
                       "allow:1: key 'alice': 'read=a,,b': an empty prefix (use * for every channel)");
    expect_allow_error("alice " PUB_A " admin\n", "allow:1: key 'alice': 'admin': unknown permission (expected "
                       "write=, read=, control= or replicate)");
    expect_allow_error("alice " PUB_A "\nalice " PUB_B "\n", "allow: the name 'alice' is given to two keys");
    expect_allow_error("alice " PUB_A "\nbob " PUB_A "\n", "allow: 'alice' and 'bob' have the same public key");
}

static void test_certs(void)
{
    rwkvd_cert c;
    const char *secret = "#   ZeroMQ CURVE **Secret** Certificate\n\nmetadata\n    name = \"alice\"\n"
                         "    email = \"a@example.org\"\n    write = \"app/\"\n    replicate = \"true\"\n"
                         "curve\n    public-key = \"" PUB_A "\"\n    secret-key = \"" SEC_A "\"\n";
    CHECKF(rwkvd_cert_parse(secret, strlen(secret), "k", false, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.has_public && c.has_secret && !strcmp(c.key.name, "alice") && c.key.n_write == 1 && c.key.replicate);
    rwkvd_key_clear(&c.key);
    const char *bare = SEC_A "\n";
    CHECK(rwkvd_cert_parse(bare, strlen(bare), "k", true, &c, err, sizeof err) == 0 && c.has_secret && !c.has_public);
    CHECK(rwkvd_cert_parse(bare, strlen(bare), "k", false, &c, err, sizeof err) == 0 && c.has_public && !c.has_secret);
    expect_cert_error("# nothing\n", "k.key: no key (expected a curve section with public-key, or a bare Z85 key)");
    expect_cert_error("curve\n    public-key = \"abc\"\n", "k.key:2: public-key is not a 40-character Z85 key");
    expect_cert_error("curve\n    public-key = \"" PUB_A "\n", "k.key:2: unterminated quoted value");
    expect_cert_error("public-key = \"" PUB_A "\"\n",
                      "k.key:1: a property outside a section (indent it under metadata or curve)");
    expect_cert_error("metadata\n    name = \"a b\"\n", "k.key:2: name must be 1..64 of A-Z a-z 0-9 _ - . @");
    expect_cert_error("curve\n    public-key = \"" PUB_A "\"\n    public-key = \"" PUB_B "\"\n",
                      "k.key:3: public-key given twice");
    expect_cert_error(PUB_A "\n" PUB_B "\n", "k.key:2: a second key, or a bare key inside a certificate");
}

static void test_files(void)
{
    char dir[] = "/tmp/test_keys.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    char p[256], q[256];
    /* a secret key others can read is refused, naming the file and the fix */
    snprintf(p, sizeof p, "%s/server.key_secret", dir);
    const char *sec = "curve\n    public-key = \"" PUB_A "\"\n    secret-key = \"" SEC_A "\"\n";
    CHECK(test_write_file(p, sec, strlen(sec)) == 0);
    chmod(p, 0644);
    rwkvd_cert c;
    CHECK(rwkvd_cert_load(p, true, &c, err, sizeof err) == -EPERM && strstr(err, p) && strstr(err, "chmod 600"));
    chmod(p, 0600);
    CHECKF(rwkvd_cert_load(p, true, &c, err, sizeof err) == 0 && c.has_secret, "%s", err);
    /* a public file where a secret one is needed */
    snprintf(q, sizeof q, "%s/pub.key", dir);
    const char *pub = "curve\n    public-key = \"" PUB_B "\"\n";
    CHECK(test_write_file(q, pub, strlen(pub)) == 0);
    CHECK(rwkvd_cert_load(q, true, &c, err, sizeof err) == -EINVAL && strstr(err, "holds no secret-key"));
    /* a directory: *.key certificates, names from metadata or the file name, others ignored */
    snprintf(p, sizeof p, "%s/clients", dir);
    mkdir(p, 0755);
    snprintf(q, sizeof q, "%s/clients/bob.key", dir);
    CHECK(test_write_file(q, pub, strlen(pub)) == 0);
    snprintf(q, sizeof q, "%s/clients/x.key", dir);
    const char *named = "metadata\n    name = \"carol\"\n    read = \"app/,ops/\"\n    control = \"all\"\ncurve\n"
                        "    public-key = \"" PUB_A "\"\n";
    CHECK(test_write_file(q, named, strlen(named)) == 0);
    snprintf(q, sizeof q, "%s/clients/README", dir);
    CHECK(test_write_file(q, "not a key", 9) == 0);
    rwkvd_allow *a = NULL;
    CHECKF(rwkvd_allow_load(p, &a, err, sizeof err) == 0 && a && a->n == 2, "%s", err);
    const rwkvd_key *k = a ? rwkvd_allow_by_name(a, "carol") : NULL;
    CHECK(k && k->n_read == 2 && k->control == RWKVD_CONTROL_ALL && rwkvd_allow_by_name(a, "bob"));
    rwkvd_allow_destroy(&a);
    /* a secret key in the directory is an error */
    snprintf(q, sizeof q, "%s/clients/oops.key", dir);
    CHECK(test_write_file(q, sec, strlen(sec)) == 0);
    CHECK(rwkvd_allow_load(p, &a, err, sizeof err) == -EINVAL && strstr(err, "oops.key") &&
          strstr(err, "public certificates only"));
    unlink(q);
    snprintf(q, sizeof q, "%s/nowhere", dir);
    CHECK(rwkvd_allow_load(q, &a, err, sizeof err) == -ENOENT && strstr(err, q));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_zap(void)
{
    rwkvd_allow *a = allow("alice " PUB_A "\n");
    if (!a)
        return;
    const rwkvd_key *k = rwkvd_allow_by_name(a, "alice");
    uint8_t other[32] = {1};
    rwkvp_frame ok[7] = {{"1.0", 3}, {"42", 2}, {"rwkvd", 5}, {"127.0.0.1", 9}, {"", 0}, {"CURVE", 5},
                         {k->public_key, 32}};
    rwkvd_zap_reply r;
    CHECK(rwkvd_zap_decide(a, ok, 7, &r) == RWKVD_ZAP_OK && !strcmp(r.status, "200") && !strcmp(r.user_id, "alice") &&
          r.request_id.len == 2 && !memcmp(r.request_id.data, "42", 2));
    ok[6].data = other;
    CHECK(rwkvd_zap_decide(a, ok, 7, &r) == RWKVD_ZAP_UNKNOWN_KEY && !strcmp(r.status, "400") && !r.user_id[0]);
    ok[5] = (rwkvp_frame){"NULL", 4};
    CHECK(rwkvd_zap_decide(a, ok, 6, &r) == RWKVD_ZAP_MECHANISM && !strcmp(r.status, "400"));
    ok[0] = (rwkvp_frame){"2.0", 3};
    CHECK(rwkvd_zap_decide(a, ok, 7, &r) == RWKVD_ZAP_MALFORMED && !strcmp(r.status, "500"));
    CHECK(rwkvd_zap_decide(a, ok, 1, &r) == RWKVD_ZAP_MALFORMED && r.request_id.len == 0);
    CHECK(!strcmp(rwkvd_zap_reason_name(RWKVD_ZAP_UNKNOWN_KEY), "unknown_key"));
    rwkvd_allow_destroy(&a);
}

int main(void)
{
    test_permissions();
    test_allow_errors();
    test_certs();
    test_files();
    test_zap();
    return test_finish("test_keys");
}
