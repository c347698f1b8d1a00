/* test_clients.c — unit tests of the client helpers (clients/rwkvc.h), no daemon needed:
 * durations and integers, token-id lines, UTF-8 repair, default endpoints and producer ids,
 * the seq state file (round trip, atomic replace, every rejection), and the JSON line rwkvsub
 * prints for each publish kind. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rwkvc.h"
#include "testutil.h"

static void test_parsers(void)
{
    int64_t ms = -1;
    CHECK(rwkvc_duration_parse("250ms", &ms) == 0 && ms == 250);
    CHECK(rwkvc_duration_parse("2", &ms) == 0 && ms == 2000);
    CHECK(rwkvc_duration_parse("1.5s", &ms) == 0 && ms == 1500);
    CHECK(rwkvc_duration_parse("2m", &ms) == 0 && ms == 120000);
    CHECK(rwkvc_duration_parse("1h", &ms) == 0 && ms == 3600000);
    CHECK(rwkvc_duration_parse("0", &ms) == 0 && ms == 0);
    ms = 7;
    CHECK(rwkvc_duration_parse("", &ms) == -EINVAL && ms == 7);
    CHECK(rwkvc_duration_parse("-1s", &ms) == -EINVAL);
    CHECK(rwkvc_duration_parse("5 s", &ms) == -EINVAL);
    CHECK(rwkvc_duration_parse("5d", &ms) == -EINVAL);
    CHECK(rwkvc_duration_parse("nan", &ms) == -EINVAL);
    CHECK(rwkvc_duration_parse("1e300", &ms) == -EINVAL && ms == 7);

    uint64_t v = 0;
    CHECK(rwkvc_uint_parse("42", 100, &v) == 0 && v == 42);
    CHECK(rwkvc_uint_parse("18446744073709551615", UINT64_MAX, &v) == 0 && v == UINT64_MAX);
    CHECK(rwkvc_uint_parse("18446744073709551616", UINT64_MAX, &v) == -ERANGE);
    CHECK(rwkvc_uint_parse("101", 100, &v) == -ERANGE);
    CHECK(rwkvc_uint_parse("-1", 100, &v) == -EINVAL);
    CHECK(rwkvc_uint_parse("", 100, &v) == -EINVAL);
}

static void test_tokens(void)
{
    uint32_t ids[4];
    size_t n = 99, bad = 99;
    const char *l1 = "34 105,110\t4294967295";
    CHECK(rwkvc_tokens_parse(l1, strlen(l1), ids, 4, &n, &bad) == 0 && n == 4);
    CHECK(ids[0] == 34 && ids[1] == 105 && ids[2] == 110 && ids[3] == 4294967295u);
    CHECK(rwkvc_tokens_parse("  ,\r", 4, ids, 4, &n, &bad) == 0 && n == 0);
    CHECK(rwkvc_tokens_parse("1 2 3 4 5", 9, ids, 4, &n, &bad) == -ENOBUFS && n == 5);
    CHECK(rwkvc_tokens_parse("1 2 3 4 5", 9, NULL, 0, &n, &bad) == -ENOBUFS && n == 5);
    CHECK(rwkvc_tokens_parse("1 x2", 4, ids, 4, &n, &bad) == -EINVAL && bad == 2);
    CHECK(rwkvc_tokens_parse("4294967296", 10, ids, 4, &n, &bad) == -EINVAL && bad == 0);
    CHECK(rwkvc_tokens_parse("-1", 2, ids, 4, &n, &bad) == -EINVAL && bad == 0);
}

static void test_utf8(void)
{
    char out[64];
    size_t reps = 99;
    size_t n = rwkvc_utf8_repair("ab\xC3\xA9", 4, out, &reps);
    CHECK(n == 4 && reps == 0 && memcmp(out, "ab\xC3\xA9", 4) == 0);
    n = rwkvc_utf8_repair("a\xFF" "b", 3, out, &reps);
    CHECK(n == 5 && reps == 1 && memcmp(out, "a\xEF\xBF\xBD" "b", 5) == 0);
    n = rwkvc_utf8_repair("\xE2\x82", 2, out, &reps); /* truncated sequence: one per octet */
    CHECK(n == 6 && reps == 2);
    CHECK(rwkvp_utf8_valid(out, n, NULL));
    n = rwkvc_utf8_repair("\xED\xA0\x80", 3, out, &reps); /* surrogate */
    CHECK(reps == 3 && rwkvp_utf8_valid(out, n, NULL));
    n = rwkvc_utf8_repair("", 0, out, &reps);
    CHECK(n == 0 && reps == 0);
    n = rwkvc_utf8_repair("x\0y", 3, out, &reps); /* U+0000 is valid */
    CHECK(n == 3 && reps == 0);
}

static void test_names(void)
{
    char buf[256];
    setenv("RWKVD_INGEST", "tcp://127.0.0.1:9", 1);
    CHECK(rwkvc_default_endpoint("ingest", buf, sizeof buf) == 0 && strcmp(buf, "tcp://127.0.0.1:9") == 0);
    unsetenv("RWKVD_INGEST");
    setenv("RUNTIME_DIRECTORY", "/tmp/rt", 1);
    CHECK(rwkvc_default_endpoint("publish", buf, sizeof buf) == 0 && strcmp(buf, "ipc:///tmp/rt/publish.sock") == 0);
    unsetenv("RUNTIME_DIRECTORY");
    unsetenv("RWKVD_CONTROL");
    CHECK(rwkvc_default_endpoint("control", buf, sizeof buf) == 0 &&
          strcmp(buf, "ipc:///run/rwkvd/control.sock") == 0);
    CHECK(rwkvc_default_endpoint("control", buf, 10) == -ENAMETOOLONG);

    char id[RWKVP_NAME_MAX + 1];
    rwkvc_producer_from_host("web-1.example", 1234, id);
    CHECK(strcmp(id, "web-1.example:1234") == 0);
    rwkvc_producer_from_host("-bad host!", 7, id);
    CHECK(strcmp(id, "_bad_host_:7") == 0 && rwkvp_name_check(id, strlen(id), NULL) == 0);
    rwkvc_producer_from_host("", 7, id);
    CHECK(strcmp(id, "host:7") == 0);
    char longhost[200];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    rwkvc_producer_from_host(longhost, 99999, id);
    CHECK(strlen(id) == RWKVP_NAME_MAX && rwkvp_name_check(id, strlen(id), NULL) == 0);
    CHECK(strcmp(id + RWKVP_NAME_MAX - 6, ":99999") == 0);
}

static void test_seqfile(void)
{
    char dir[256], path[512], err[512];
    CHECK(test_tmpdir(dir, sizeof dir) == 0);
    snprintf(path, sizeof path, "%s/seq", dir);
    rwkvc_seqstate st, back;
    memset(&st, 0, sizeof st);
    strcpy(st.channel, "app/nginx");
    strcpy(st.producer, "web-1");
    st.acked = 18446744073709551615ull;
    CHECK(rwkvc_seqfile_load(path, &back, err, sizeof err) == -ENOENT);
    CHECK(rwkvc_seqfile_save(path, &st, err, sizeof err) == 0);
    memset(&back, 0, sizeof back);
    CHECKF(rwkvc_seqfile_load(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK(strcmp(back.channel, "app/nginx") == 0 && strcmp(back.producer, "web-1") == 0 &&
          back.acked == st.acked);
    st.acked = 41; /* replaced, no temporary left behind */
    CHECK(rwkvc_seqfile_save(path, &st, err, sizeof err) == 0);
    CHECK(rwkvc_seqfile_load(path, &back, err, sizeof err) == 0 && back.acked == 41);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);

    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"channel a\nproducer p\n", "missing acked"},
        {"channel a\nproducer p\nacked 01\n", ":3: acked is not"},
        {"channel a b\nproducer p\nacked 1\n", ":1: invalid channel"},
        {"channel a\nproducer p q\nacked 1\n", ":2: invalid producer"},
        {"channel a\nproducer p\nacked 1\nextra 2\n", ":4: unknown key 'extra'"},
        {"garbage\n", ":1: expected 'key value'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_write_file(path, bad[i].text, strlen(bad[i].text));
        err[0] = '\0';
        int rc = rwkvc_seqfile_load(path, &back, err, sizeof err);
        CHECKF(rc == -EBADMSG && strstr(err, bad[i].expect), "case %zu: rc %d, '%s'", i, rc, err);
    }
    const char *ok = "# comment\n\nchannel a\nproducer p\nacked 0\n";
    test_write_file(path, ok, strlen(ok));
    CHECK(rwkvc_seqfile_load(path, &back, err, sizeof err) == 0 && back.acked == 0);
    char missing_dir[600];
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/seq", dir);
    CHECK(rwkvc_seqfile_save(missing_dir, &st, err, sizeof err) == -ENOENT && strstr(err, "cannot create"));
    unlink(path);
    rmdir(dir);
}

static void expect_json(const rwkvp_pub *p, const char *want)
{
    char *got = rwkvc_pub_json(p);
    CHECKF(got && strcmp(got, want) == 0, "\n  got  %s\n  want %s", got ? got : "(null)", want);
    free(got);
}

static void test_pubjson(void)
{
    rwkvp_pub p = {.kind = RWKVP_PUB_CLASS, .channel = {"app/x", 5}, .producer = {"web-1", 5}, .seq = 41,
                   .tokens_seen = 1234};
    const char *body = "{\"profile\":\"severity\",\"labels\":[\"ok\",\"error\"],\"probs\":[0.93,0.07],\"top\":\"ok\"}";
    p.body = (rwkvp_frame){body, strlen(body)};
    expect_json(&p, "{\"channel\":\"app/x\",\"kind\":\"CLASS\",\"producer\":\"web-1\",\"seq\":41,\"tokens_seen\":1234,"
                    "\"body\":{\"profile\":\"severity\",\"labels\":[\"ok\",\"error\"],\"probs\":[0.93,0.07],\"top\":\"ok\"}}");
    /* a body on several lines is re-serialised compactly */
    const char *multi = "{\"reason\": \"stop\",\n \"n_tokens\": 3}";
    p.kind = RWKVP_PUB_END;
    p.body = (rwkvp_frame){multi, strlen(multi)};
    expect_json(&p, "{\"channel\":\"app/x\",\"kind\":\"END\",\"producer\":\"web-1\",\"seq\":41,\"tokens_seen\":1234,"
                    "\"body\":{\"reason\":\"stop\",\"n_tokens\":3}}");
    /* not JSON: kept as a string */
    p.body = (rwkvp_frame){"{oops", 5};
    expect_json(&p, "{\"channel\":\"app/x\",\"kind\":\"END\",\"producer\":\"web-1\",\"seq\":41,\"tokens_seen\":1234,"
                    "\"body_raw\":\"{oops\"}");
    p.kind = RWKVP_PUB_TEXT;
    p.index = 2;
    p.body = (rwkvp_frame){"a\"\n\0\xC3\xA9", 6};
    expect_json(&p, "{\"channel\":\"app/x\",\"kind\":\"TEXT\",\"producer\":\"web-1\",\"seq\":41,\"tokens_seen\":1234,"
                    "\"index\":2,\"piece\":\"a\\\"\\n\\u0000\xC3\xA9\"}");
    p.kind = RWKVP_PUB_ERROR;
    p.producer = (rwkvp_frame){NULL, 0};
    p.seq = 0;
    p.code = 500;
    p.body = (rwkvp_frame){"engine failed", 13};
    expect_json(&p, "{\"channel\":\"app/x\",\"kind\":\"ERROR\",\"producer\":\"\",\"seq\":0,\"tokens_seen\":1234,"
                    "\"code\":500,\"text\":\"engine failed\"}");
}

int main(void)
{
    test_parsers();
    test_tokens();
    test_utf8();
    test_names();
    test_seqfile();
    test_pubjson();
    return test_finish("test_clients");
}
