/* test_proto_json — GEN parameters, CLASS and END bodies (proto/rwkvp_json.c).
 *
 * Parses every member at its range boundaries and one step outside; wrong types, unknown
 * and duplicate members, syntax errors and non-objects give the documented codes naming
 * the member; encoders round-trip through the parser (and jansson) and report the size
 * they need when the buffer is short.
 */
#include "rwkvp_json.h"
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static int parse(const char *json, rwkvp_gen_params *p, rwkvp_error *e)
{
    return rwkvp_gen_params_parse(json, strlen(json), p, e);
}

static void test_defaults(void)
{
    rwkvp_gen_params p;
    rwkvp_error e;
    CHECK(rwkvp_gen_params_parse("", 0, &p, &e) == 0);
    CHECK(p.present == 0 && p.max_tokens == 128 && p.temperature == 1.0 && p.top_p == 0.85);
    CHECK(p.top_k == 0 && p.presence_penalty == 0 && p.frequency_penalty == 0);
    CHECK(p.penalty_decay == 0.996 && !p.commit && p.n_stop == 0);
    CHECK(parse(" { } ", &p, &e) == 0 && p.present == 0);
    CHECK(rwkvp_gen_params_parse(NULL, 0, &p, &e) == 0);
    CHECK(rwkvp_gen_params_parse(NULL, 3, &p, &e) == -EINVAL);
    CHECK(rwkvp_gen_params_parse("{}", 2, NULL, &e) == -EINVAL);
}

static void test_members(void)
{
    rwkvp_gen_params p;
    rwkvp_error e;
    const char *all = "{\"max_tokens\":32,\"temperature\":0.7,\"top_p\":0.5,\"top_k\":40,"
                      "\"presence_penalty\":-1.5,\"frequency_penalty\":2,\"penalty_decay\":1,"
                      "\"seed\":9007199254740991,\"stop\":[\"\\n\",\"User:\",\"\\u00e9\"],"
                      "\"commit\":true}";
    CHECKF(parse(all, &p, &e) == 0, "%s", e.text);
    CHECK(p.present == 0x3FF);
    CHECK(p.max_tokens == 32 && p.temperature == 0.7 && p.top_p == 0.5 && p.top_k == 40);
    CHECK(p.presence_penalty == -1.5 && p.frequency_penalty == 2 && p.penalty_decay == 1);
    CHECK(p.seed == 9007199254740991ull && p.commit);
    CHECK(p.n_stop == 3 && p.stop_len[0] == 1 && strcmp(p.stop[0], "\n") == 0);
    CHECK(strcmp(p.stop[1], "User:") == 0 && strcmp(p.stop[2], "\xC3\xA9") == 0);

    /* Boundaries: in range passes, one step out is 422 naming the member. */
    static const struct {
        const char *json;
        bool ok;
        const char *field;
    } cases[] = {
        {"{\"max_tokens\":1}", true, "max_tokens"},
        {"{\"max_tokens\":65536}", true, "max_tokens"},
        {"{\"max_tokens\":0}", false, "max_tokens"},
        {"{\"max_tokens\":65537}", false, "max_tokens"},
        {"{\"max_tokens\":-1}", false, "max_tokens"},
        {"{\"max_tokens\":32.0}", false, "max_tokens"},
        {"{\"max_tokens\":\"32\"}", false, "max_tokens"},
        {"{\"temperature\":0}", true, "temperature"},
        {"{\"temperature\":100}", true, "temperature"},
        {"{\"temperature\":100.000001}", false, "temperature"},
        {"{\"temperature\":-0.1}", false, "temperature"},
        {"{\"temperature\":null}", false, "temperature"},
        {"{\"top_p\":0}", true, "top_p"},
        {"{\"top_p\":1}", true, "top_p"},
        {"{\"top_p\":1.01}", false, "top_p"},
        {"{\"top_k\":65536}", true, "top_k"},
        {"{\"top_k\":65537}", false, "top_k"},
        {"{\"top_k\":1.5}", false, "top_k"},
        {"{\"presence_penalty\":-100}", true, "presence_penalty"},
        {"{\"presence_penalty\":-100.5}", false, "presence_penalty"},
        {"{\"frequency_penalty\":100}", true, "frequency_penalty"},
        {"{\"frequency_penalty\":true}", false, "frequency_penalty"},
        {"{\"penalty_decay\":0.0001}", true, "penalty_decay"},
        {"{\"penalty_decay\":0}", false, "penalty_decay"},
        {"{\"penalty_decay\":1.5}", false, "penalty_decay"},
        {"{\"seed\":0}", true, "seed"},
        {"{\"seed\":9007199254740992}", false, "seed"},
        {"{\"seed\":-5}", false, "seed"},
        {"{\"commit\":false}", true, "commit"},
        {"{\"commit\":1}", false, "commit"},
        {"{\"stop\":[]}", true, "stop"},
        {"{\"stop\":\"\\n\"}", false, "stop"},
        {"{\"stop\":[\"\"]}", false, "stop"},
        {"{\"stop\":[1]}", false, "stop"},
        {"{\"stop\":[\"a\\u0000b\"]}", false, "stop"},
        {"{\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\"]}", true, "stop"},
        {"{\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}", false, "stop"},
        {"{\"temprature\":0.5}", false, "params"},
        {"{\"max_tokens\":5,\"x\":{}}", false, "params"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = parse(cases[i].json, &p, &e);
        if (cases[i].ok) {
            CHECKF(rc == 0, "%s: %s", cases[i].json, e.text);
            continue;
        }
        CHECKF(rc == -EBADMSG && e.code == 422 && e.frame == 5, "%s: rc %d code %d", cases[i].json,
               rc, e.code);
        CHECKF(e.field && strcmp(e.field, cases[i].field) == 0, "%s: field %s", cases[i].json,
               e.field ? e.field : "(null)");
        CHECKF(strncmp(e.text, "frame 5 (params): ", 18) == 0, "%s", e.text);
    }
    CHECK(parse("{\"temprature\":0.5}", &p, &e) == -EBADMSG);
    CHECKF(strstr(e.text, "unknown member \"temprature\"") != NULL, "%s", e.text);
    /* Stop strings at their length limit. */
    char json[400], s[258];
    memset(s, 'x', sizeof s);
    s[256] = 0;
    snprintf(json, sizeof json, "{\"stop\":[\"%s\"]}", s);
    CHECK(parse(json, &p, &e) == 0 && p.stop_len[0] == 256 && strlen(p.stop[0]) == 256);
    s[256] = 'x';
    s[257] = 0;
    snprintf(json, sizeof json, "{\"stop\":[\"%s\"]}", s);
    CHECK(parse(json, &p, &e) == -EBADMSG && e.code == 422);
}

static void test_syntax(void)
{
    rwkvp_gen_params p;
    rwkvp_error e;
    static const struct {
        const char *json;
        int code;
    } cases[] = {
        {"[]", 400},
        {"42", 400},
        {"\"x\"", 400},
        {"{", 400},
        {"{\"max_tokens\":1,}", 400},
        {"{\"max_tokens\":1,\"max_tokens\":2}", 400}, /* duplicate member */
        {"{\"temperature\":1e400}", 400},             /* out of double range */
        {"{\"seed\":99999999999999999999}", 400},     /* beyond jansson integers */
        {"{} {}", 400},
        {"{\"\xFF\":1}", 415},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = parse(cases[i].json, &p, &e);
        CHECKF(rc == -EBADMSG && e.code == cases[i].code, "%s: rc %d code %d (%s)", cases[i].json,
               rc, e.code, e.text);
        for (const char *c = e.text; *c; c++)
            CHECKF(*c >= 0x20 && *c < 0x7F, "%s: text not printable", cases[i].json);
    }
    CHECK(parse("{\n\"a\" 1}", &p, &e) == -EBADMSG && strstr(e.text, "line 2") != NULL);
    /* A member name with control octets is shown escaped. */
    CHECK(parse("{\"\\u001b[2J\":1}", &p, &e) == -EBADMSG && e.code == 422);
    CHECKF(strstr(e.text, "\\x1B[2J") != NULL, "%s", e.text);
}

static void test_gen_encode(void)
{
    rwkvp_gen_params p, back;
    rwkvp_error e;
    char buf[1024];
    size_t need = 0;
    rwkvp_gen_params_default(&p);
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == 0);
    CHECK(need == 2 && memcmp(buf, "{}", 2) == 0);
    p.present = RWKVP_GEN_HAS_MAX_TOKENS | RWKVP_GEN_HAS_TEMPERATURE | RWKVP_GEN_HAS_STOP |
                RWKVP_GEN_HAS_COMMIT | RWKVP_GEN_HAS_SEED;
    p.max_tokens = 32;
    p.temperature = 0.7;
    p.seed = 7;
    p.commit = true;
    p.n_stop = 1;
    p.stop_len[0] = 1;
    strcpy(p.stop[0], "\n");
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == 0);
    const char *want = "{\"max_tokens\":32,\"temperature\":0.7,\"seed\":7,\"stop\":[\"\\n\"],\"commit\":true}";
    CHECKF(need == strlen(want) && memcmp(buf, want, need) == 0, "%.*s", (int)need, buf);
    CHECK(rwkvp_gen_params_parse(buf, need, &back, &e) == 0 && back.present == p.present);
    CHECK(back.max_tokens == 32 && back.temperature == 0.7 && back.seed == 7 && back.commit);
    /* A double that needs 17 digits still round-trips exactly. */
    p.present = RWKVP_GEN_HAS_TOP_P;
    p.top_p = 0.1 + 0.2;
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == 0);
    CHECK(rwkvp_gen_params_parse(buf, need, &back, &e) == 0 && back.top_p == 0.1 + 0.2);
    /* Short buffer: -ENOBUFS with the size needed. */
    p.present = RWKVP_GEN_HAS_MAX_TOKENS;
    p.max_tokens = 5;
    CHECK(rwkvp_gen_params_encode(&p, buf, 3, &need) == -ENOBUFS && need == strlen("{\"max_tokens\":5}"));
    CHECK(rwkvp_gen_params_encode(&p, NULL, 0, &need) == -ENOBUFS && need == 16);
    /* Out-of-range values are refused. */
    p.max_tokens = 0;
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == -EINVAL);
    p.present = RWKVP_GEN_HAS_TEMPERATURE;
    p.temperature = NAN;
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == -EINVAL);
    p.present = RWKVP_GEN_HAS_SEED;
    p.seed = RWKVP_SEED_MAX + 1;
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == -EINVAL);
    p.present = RWKVP_GEN_HAS_STOP;
    p.n_stop = 1;
    p.stop_len[0] = 2;
    memcpy(p.stop[0], "\xC3(", 3);
    CHECK(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == -EINVAL);
    CHECK(rwkvp_gen_params_encode(NULL, buf, sizeof buf, &need) == -EINVAL);
}

static void test_class(void)
{
    const char *labels[] = {"ok", "error", "\xC3\xA9t\xC3\xA9"};
    const float probs[] = {0.93f, 0.07f, 0.0f};
    char buf[256];
    size_t need = 0;
    CHECK(rwkvp_class_encode("severity", 2, labels, probs, buf, sizeof buf, &need) == 0);
    const char *want = "{\"profile\":\"severity\",\"labels\":[\"ok\",\"error\"],\"probs\":[0.93,0.07],\"top\":\"ok\"}";
    CHECKF(need == strlen(want) && memcmp(buf, want, need) == 0, "%.*s", (int)need, buf);
    CHECK(rwkvp_class_encode("severity", 2, labels, probs, buf, 10, &need) == -ENOBUFS && need == strlen(want));
    /* Probabilities read back as the same floats; top is the first maximum. */
    const float p3[] = {0.25f, 1.0f / 3.0f, 1.0f / 3.0f};
    CHECK(rwkvp_class_encode("p", 3, labels, p3, buf, sizeof buf, &need) == 0);
    json_error_t je;
    json_t *o = json_loadb(buf, need, 0, &je);
    CHECK(o != NULL);
    if (o) {
        json_t *pr = json_object_get(o, "probs");
        for (size_t i = 0; i < 3; i++)
            CHECK((float)json_number_value(json_array_get(pr, i)) == p3[i]);
        CHECK(strcmp(json_string_value(json_object_get(o, "top")), "error") == 0);
        CHECK(strcmp(json_string_value(json_array_get(json_object_get(o, "labels"), 2)), labels[2]) == 0);
        json_decref(o);
    }
    const float badp[] = {0.5f, NAN};
    const float negp[] = {-0.1f, 1.1f};
    const char *badl[] = {"ok", "\xFF"};
    CHECK(rwkvp_class_encode("p", 2, labels, badp, buf, sizeof buf, &need) == -EINVAL);
    CHECK(rwkvp_class_encode("p", 2, labels, negp, buf, sizeof buf, &need) == -EINVAL);
    CHECK(rwkvp_class_encode("p", 2, badl, probs, buf, sizeof buf, &need) == -EINVAL);
    CHECK(rwkvp_class_encode("bad profile", 2, labels, probs, buf, sizeof buf, &need) == -EINVAL);
    CHECK(rwkvp_class_encode("p", 0, labels, probs, buf, sizeof buf, &need) == -EINVAL);
}

static void test_end(void)
{
    char buf[256];
    size_t need = 0;
    rwkvp_end e = {RWKVP_END_STOP, 3, {" Fine thanks", 12}, {"\n", 1}, 7, false};
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == 0);
    const char *want = "{\"reason\":\"stop\",\"n_tokens\":3,\"text\":\" Fine thanks\",\"stop\":\"\\n\","
                       "\"seed\":7,\"committed\":false}";
    CHECKF(need == strlen(want) && memcmp(buf, want, need) == 0, "%.*s", (int)need, buf);
    e.reason = RWKVP_END_MAX_TOKENS;
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == -EINVAL); /* stop only with STOP */
    e.stop.len = 0;
    e.text = (rwkvp_frame){"a\0b", 3};
    e.committed = true;
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == 0);
    json_error_t je;
    json_t *o = json_loadb(buf, need, JSON_ALLOW_NUL, &je);
    CHECK(o != NULL);
    if (o) {
        CHECK(strcmp(json_string_value(json_object_get(o, "reason")), "max_tokens") == 0);
        CHECK(json_string_length(json_object_get(o, "text")) == 3);
        CHECK(json_object_get(o, "stop") == NULL && json_is_true(json_object_get(o, "committed")));
        json_decref(o);
    }
    for (int r = RWKVP_END_MAX_TOKENS; r <= RWKVP_END_ERROR; r++)
        CHECK(rwkvp_end_reason_name((rwkvp_end_reason)r) != NULL);
    CHECK(rwkvp_end_reason_name((rwkvp_end_reason)0) == NULL);
    e.reason = RWKVP_END_EOS;
    e.text = (rwkvp_frame){"\xED\xA0\x80", 3};
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == -EINVAL);
    e.text = (rwkvp_frame){NULL, 0};
    e.seed = RWKVP_SEED_MAX + 1;
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == -EINVAL);
    e.seed = 0;
    CHECK(rwkvp_end_encode(&e, buf, 5, &need) == -ENOBUFS && need > 5);
    e.reason = RWKVP_END_STOP;
    CHECK(rwkvp_end_encode(&e, buf, sizeof buf, &need) == -EINVAL); /* STOP without stop */
}

int main(void)
{
    test_defaults();
    test_members();
    test_syntax();
    test_gen_encode();
    test_class();
    test_end();
    return test_finish("test_proto_json");
}
