/* test_config.c — unit tests of daemon/config.c, the rwkvd.yaml loader.
 *
 * Proves: conf/rwkvd.yaml loads, sets every key of the schema and equals the built-in
 * defaults except for its example profiles; each kind of mistake gives one exact golden
 * message `file:line:col: key.path: reason`; units, endpoints and the environment are read
 * as documented; public tcp binds need the opt-in; the reload differ separates reloadable
 * keys from the rest; dump -> load is the identity; and thousands of mutated files never
 * crash the loader or leave output behind on failure.
 * Usage: test_config CONF_DIR/rwkvd.yaml
 */
#include "config.h"
#include "rwkvd_features.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *example_path;

/* Parse text as "t.yaml"; returns rc and fills err. */
#define LONG64 "p123456789012345678901234567890123456789012345678901234567890123" /* 64 octets */

static int parse(const char *text, rwkvd_config **out, char *err, size_t err_len)
{
    return rwkvd_config_parse(text, strlen(text), "t.yaml", out, err, err_len);
}

static rwkvd_config *must_parse(const char *text)
{
    rwkvd_config *c = NULL;
    char err[1024] = "";
    int rc = parse(text, &c, err, sizeof err);
    CHECKF(rc == 0 && c, "rc=%d err=%s\n--- text:\n%s", rc, err, text);
    return c;
}

/* The error for text must be exactly `want`, and the output untouched. */
static void expect_error(const char *text, const char *want)
{
    rwkvd_config *sentinel = (rwkvd_config *)(uintptr_t)0x1;
    rwkvd_config *c = sentinel;
    char err[1024] = "";
    int rc = parse(text, &c, err, sizeof err);
    CHECKF(rc == -EINVAL, "rc=%d for:\n%s", rc, text);
    CHECKF(c == sentinel, "output written on failure");
    CHECKF(!strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
    if (c != sentinel)
        rwkvd_config_destroy(&c);
}

static char *dump_to_string(const rwkvd_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    int rc = rwkvd_config_dump(c, f);
    fclose(f);
    CHECK(rc == 0);
    return buf;
}

static int count_diffs(const rwkvd_config *a, const rwkvd_config *b)
{
    return rwkvd_config_diff(a, b, NULL, NULL);
}

/* dump(c) loads back into a config with no differences, and dumps identically. */
static void check_roundtrip(const rwkvd_config *c)
{
    char *d1 = dump_to_string(c);
    CHECK(d1 != NULL);
    if (!d1)
        return;
    rwkvd_config *back = NULL;
    char err[1024] = "";
    int rc = rwkvd_config_parse(d1, strlen(d1), "dump.yaml", &back, err, sizeof err);
    CHECKF(rc == 0, "dump does not load: %s\n%s", err, d1);
    if (rc == 0) {
        CHECK(count_diffs(c, back) == 0);
        char *d2 = dump_to_string(back);
        /* the first line names the source, which differs */
        const char *b1 = strchr(d1, '\n'), *b2 = d2 ? strchr(d2, '\n') : NULL;
        CHECK(b1 && b2 && !strcmp(b1, b2));
        free(d2);
        rwkvd_config_destroy(&back);
    }
    free(d1);
}

static void clear_env(void)
{
    unsetenv("RWKVD_MODEL");
    unsetenv("RUNTIME_DIRECTORY");
    unsetenv("STATE_DIRECTORY");
}

/* ------------------------------------------------------------------ defaults, example */

static void test_defaults(void)
{
    clear_env();
    rwkvd_config *c = NULL;
    char err[512] = "";
    CHECK(rwkvd_config_default(&c, err, sizeof err) == 0);
    if (!c)
        return;
    CHECK(!strcmp(c->source, "(defaults)"));
    CHECK(!strcmp(c->model.path, "build/tools/default-model.pth"));
    CHECK(!strcmp(c->model.vocab, "bytes"));
    CHECK(c->model.backend == RWKVD_BACKEND_CPU);
    CHECK(c->model.weights == RWKVD_WEIGHTS_F32);
    CHECK(c->model.threads == 0 && c->model.state_slots == 256 && c->model.max_batch == 64);
    CHECK(c->endpoints.ingest.n == 1 &&
          !strcmp(c->endpoints.ingest.v[0], "ipc:///run/rwkvd/ingest.sock"));
    CHECK(c->endpoints.publish.n == 1 &&
          !strcmp(c->endpoints.publish.v[0], "ipc:///run/rwkvd/publish.sock"));
    CHECK(c->endpoints.control.n == 1 &&
          !strcmp(c->endpoints.control.v[0], "ipc:///run/rwkvd/control.sock"));
    CHECK(!c->endpoints.allow_public_bind && c->endpoints.publish_hwm == 10000);
    CHECK(c->limits.max_channels == 1024 && c->limits.max_queue_tokens == 65536);
    CHECK(c->limits.max_message_bytes == 1u << 20);
    CHECK(!strcmp(c->events.separator, "\n"));
    CHECK(c->log.level == RWKVD_LOG_INFO);
    CHECK(c->service.status_interval_ms == 5000 && c->service.step_timeout_ms == 60000);
    CHECK(!strcmp(c->state_dir, "/var/lib/rwkvd"));
    CHECK(!strcmp(c->tasks.default_profile, "") && c->tasks.n_profiles == 0);
    check_roundtrip(c);

    /* An empty file, a bare document marker and comments alone are the defaults. */
    const char *empties[] = {"", "---\n", "# nothing\n\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        rwkvd_config *e = must_parse(empties[i]);
        if (e)
            CHECKF(count_diffs(c, e) == 0, "case %zu", i);
        rwkvd_config_destroy(&e);
    }

    /* The environment reaches the defaults. */
    setenv("RUNTIME_DIRECTORY", "/tmp/rt", 1);
    setenv("STATE_DIRECTORY", "/tmp/st", 1);
    setenv("RWKVD_MODEL", "/m/x.pth", 1);
    rwkvd_config *e = NULL;
    CHECK(rwkvd_config_default(&e, err, sizeof err) == 0);
    if (e) {
        CHECK(!strcmp(e->endpoints.ingest.v[0], "ipc:///tmp/rt/ingest.sock"));
        CHECK(!strcmp(e->state_dir, "/tmp/st"));
        CHECK(!strcmp(e->model.path, "/m/x.pth"));
    }
    rwkvd_config_destroy(&e);
    /* set but empty: the fallback, as in sh */
    setenv("RUNTIME_DIRECTORY", "", 1);
    CHECK(rwkvd_config_default(&e, err, sizeof err) == 0);
    if (e)
        CHECK(!strcmp(e->endpoints.ingest.v[0], "ipc:///run/rwkvd/ingest.sock"));
    rwkvd_config_destroy(&e);

    /* An environment that makes a default invalid is reported against the default. */
    char longdir[200];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = 0;
    setenv("RUNTIME_DIRECTORY", longdir, 1);
    rwkvd_config *sentinel = (rwkvd_config *)(uintptr_t)0x1;
    e = sentinel;
    CHECK(rwkvd_config_default(&e, err, sizeof err) == -EINVAL);
    CHECK(e == sentinel);
    CHECKF(!strncmp(err, "(defaults):1:1: endpoints.ingest[0]: bad endpoint \"ipc:///ddd", 60) &&
               strstr(err, ": ipc path longer than 107 bytes (the limit of a unix socket "
                           "address) (in the default \"ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/"
                           "ingest.sock\")"),
           "%s", err);
    /* ... but not when the file sets every endpoint itself */
    rwkvd_config *f = must_parse("endpoints:\n  ingest: ipc:///tmp/i\n  publish: ipc:///tmp/p\n"
                                 "  control: ipc:///tmp/c\n");
    rwkvd_config_destroy(&f);
    clear_env();
    rwkvd_config_destroy(&c);
    rwkvd_config_destroy(&c); /* idempotent */
    rwkvd_config_destroy(NULL);
}

static void collect_path(const char *path, bool reloadable, void *user)
{
    char *buf = user;
    size_t n = strlen(buf);
    snprintf(buf + n, 4096 - n, "%s%s%s", n ? "," : "", path, reloadable ? "" : "!");
}

static void test_example(void)
{
    clear_env();
    rwkvd_config *ex = NULL, *def = NULL;
    char err[1024] = "";
    int rc = rwkvd_config_load(example_path, &ex, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    CHECK(rwkvd_config_default(&def, err, sizeof err) == 0);
    if (!ex || !def)
        goto out;
    CHECK(!strcmp(ex->source, example_path));

    /* Equal to the defaults but for the example profiles, which are all additions. */
    char paths[4096] = "";
    int n = rwkvd_config_diff(def, ex, collect_path, paths);
    CHECKF(n == 4 && !strcmp(paths, "tasks.profiles.severity,tasks.profiles.health,"
                                    "tasks.profiles.chat,tasks.profiles.quiet"),
           "%d: %s", n, paths);

    const rwkvd_profile *p = rwkvd_config_find_profile(ex, "severity");
    CHECK(p && p->kind == RWKVD_TASK_CLASSIFY_LABELS && p->trigger == RWKVD_TRIGGER_EVENT);
    CHECK(p && p->n_labels == 3 && !strcmp(p->labels[0].name, "error") &&
          !strcmp(p->labels[0].text, " error") && !strcmp(p->labels[2].text, " info"));
    p = rwkvd_config_find_profile(ex, "health");
    CHECK(p && p->trigger == RWKVD_TRIGGER_TOKENS && p->every_n_tokens == 512);
    CHECK(p && p->n_labels == 2 && !strcmp(p->labels[0].name, "yes"));
    CHECK(p && !strcmp(p->prompt_suffix, "\nQuestion: is the system above healthy?\nAnswer:"));
    p = rwkvd_config_find_profile(ex, "chat");
    CHECK(p && p->kind == RWKVD_TASK_CONTINUE && p->trigger == RWKVD_TRIGGER_REQUEST);
    CHECK(p && p->generate.max_tokens == 64 && p->generate.temperature == 1.0 &&
          p->generate.top_p == 0.85 && p->generate.penalty_decay == 0.996 &&
          p->generate.seed == 42 && !p->generate.commit);
    CHECK(p && p->generate.stop.n == 1 && !strcmp(p->generate.stop.v[0], "\n\nUser:"));
    p = rwkvd_config_find_profile(ex, "quiet");
    CHECK(p && p->kind == RWKVD_TASK_NONE);
    CHECK(rwkvd_config_find_profile(ex, "intent") == NULL);
    CHECK(rwkvd_config_find_profile(ex, NULL) == NULL);

    /* Every key of the schema (every line of the dump) is written out in the example. */
    char *text = test_read_file(example_path, NULL), *d = dump_to_string(ex);
    CHECK(text && d);
    for (char *line = d ? strtok(d, "\n") : NULL; text && line; line = strtok(NULL, "\n")) {
        char *k = line + strspn(line, " -");
        char *colon = strchr(k, ':');
        if (*k == '#' || *k == '"' || !colon)
            continue; /* comment, profile name, list item */
        char want[80];
        snprintf(want, sizeof want, "%.*s:", (int)(colon - k), k);
        CHECKF(strstr(text, want) != NULL, "conf/rwkvd.yaml does not mention %s", want);
    }
    free(d);
    free(text);
    check_roundtrip(ex);
out:
    rwkvd_config_destroy(&ex);
    rwkvd_config_destroy(&def);
}

/* ------------------------------------------------------------------ golden errors */

static void test_errors(void)
{
    clear_env();
    /* unknown keys */
    expect_error("model:\n  threds: 4\n", "t.yaml:2:3: model.threds: unknown key (did you mean "
                                          "\"threads\"?)");
    expect_error("threads: 4\n", "t.yaml:1:1: threads: unknown key (did you mean model.threads?)");
    /* a key that is no longer a setting says why */
    expect_error("limits:\n  max_channel_name_bytes: 64\n",
                 "t.yaml:2:3: limits.max_channel_name_bytes: no longer a setting: channel names are 1..128 "
                 "octets, fixed by the protocol (PROTOCOL.md \u00a74.4, \u00a714); delete this line");
    expect_error("modle:\n  path: x\n", "t.yaml:1:1: modle: unknown key (did you mean \"model\"?)");
    expect_error("colour: blue\n", "t.yaml:1:1: colour: unknown key");
    /* residency: the resident bound cannot pass the channel slots; units as elsewhere */
    expect_error("model:\n  state_slots: 8\nresidency:\n  resident_channels: 7\n",
                 "t.yaml:4:22: residency.resident_channels: 7 is more than the 6 state slots channels "
                 "can use (model.state_slots 8 less 2 scratch slots)");
    expect_error("residency:\n  idle_ttl: 5\n",
                 "t.yaml:2:13: residency.idle_ttl: duration \"5\" needs a unit (ms, s, m, h, d)");
    {
        rwkvd_config *c = must_parse("model:\n  state_slots: 8\nresidency:\n  resident_channels: 6\n"
                                     "  idle_ttl: 250ms\n  host_max_bytes: 64KiB\n");
        CHECK(c->residency.resident_channels == 6 && c->residency.idle_ttl_ms == 250 &&
              c->residency.host_max_bytes == 65536);
        rwkvd_config_destroy(&c);
    }
    expect_error("tasks:\n  profiles:\n    p:\n      kind: none\n      temprature: 1\n",
                 "t.yaml:5:7: tasks.profiles.p.temprature: unknown key");
    /* duplicate keys */
    expect_error("model:\n  threads: 1\n  threads: 2\n",
                 "t.yaml:3:3: model.threads: duplicate key (first at line 2)");
    expect_error("log:\n  level: info\nlog:\n  level: debug\n",
                 "t.yaml:3:1: log: duplicate key (first at line 1)");
    expect_error("tasks:\n  profiles:\n    a: {kind: none}\n    a: {kind: none}\n",
                 "t.yaml:4:5: tasks.profiles.a: duplicate key (first at line 3)");
    /* wrong types */
    expect_error("model: 5\n", "t.yaml:1:8: model: expected a mapping, got a scalar");
    expect_error("model:\n  threads: [1]\n",
                 "t.yaml:2:12: model.threads: expected an integer, got a sequence");
    expect_error("model:\n  threads: \"4\"\n",
                 "t.yaml:2:12: model.threads: expected an integer, got a quoted string");
    expect_error("model:\n  threads: four\n",
                 "t.yaml:2:12: model.threads: expected an integer, got \"four\"");
    expect_error("model:\n  threads: 010\n",
                 "t.yaml:2:12: model.threads: expected an integer, got \"010\"");
    expect_error("model:\n  path: {a: 1}\n",
                 "t.yaml:2:9: model.path: expected a string, got a mapping");
    expect_error("model:\n  path:\n",
                 "t.yaml:2:8: model.path: missing value (write \"\" for an empty string)");
    expect_error("model:\n  path: \"\"\n", "t.yaml:2:9: model.path: must not be empty");
    expect_error("endpoints:\n  allow_public_bind: maybe\n",
                 "t.yaml:2:22: endpoints.allow_public_bind: expected true or false, got \"maybe\"");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n      generate: {top_p: high}\n",
                 "t.yaml:5:25: tasks.profiles.p.generate.top_p: expected a number, got \"high\"");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n      generate: {top_p: .nan}\n",
                 "t.yaml:5:25: tasks.profiles.p.generate.top_p: expected a number, got \".nan\"");
    expect_error("tasks:\n  profiles: [a, b]\n",
                 "t.yaml:2:13: tasks.profiles: expected a mapping of names, got a sequence");
    expect_error("- a\n", "t.yaml:1:1: the top level must be a mapping of keys, got a sequence");
    expect_error("events:\n  separator: \"a\\0b\"\n",
                 "t.yaml:2:14: events.separator: contains a NUL character");
    /* out of range */
    expect_error("model:\n  max_batch: 5000\n",
                 "t.yaml:2:14: model.max_batch: 5000 is out of range (1..4096)");
    expect_error("model:\n  state_slots: 0\n",
                 "t.yaml:2:16: model.state_slots: 0 is out of range (1..65536)");
    expect_error("model:\n  threads: 99999999999999999999999\n",
                 "t.yaml:2:12: model.threads: 99999999999999999999999 is out of range (0..1024)");
    expect_error("limits:\n  max_message_bytes: 128MiB\n",
                 "t.yaml:2:22: limits.max_message_bytes: 128MiB is out of range (1B..64MiB)");
    expect_error("service:\n  status_interval: 50ms\n",
                 "t.yaml:2:20: service.status_interval: 50ms is out of range (100ms..1h)");
    expect_error("service:\n  step_timeout: 2h\n",
                 "t.yaml:2:17: service.step_timeout: 2h is out of range (1s..1h)");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n      generate: {top_p: 1.5}\n",
                 "t.yaml:5:25: tasks.profiles.p.generate.top_p: 1.5 is out of range (0.0..1.0)");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n"
                 "      generate: {penalty_decay: 0}\n",
                 "t.yaml:5:33: tasks.profiles.p.generate.penalty_decay: 0 is out of range "
                 "(above 0.0, at most 1.0)");
    expect_error("events:\n  separator: \"0123456789012345678901234567890123456789"
                 "01234567890123456789012345\"\n",
                 "t.yaml:2:14: events.separator: longer than 64 bytes");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n      generate:\n"
                 "        stop: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]\n",
                 "t.yaml:6:64: tasks.profiles.p.generate.stop[16]: too many entries (at most 16)");
    /* bad enums */
    expect_error("model:\n  backend: gpu\n",
                 "t.yaml:2:12: model.backend: bad value \"gpu\" (expected one of: cpu, cuda, cuda-emu, auto)");
    expect_error("model:\n  weights: fp16\n", "t.yaml:2:12: model.weights: bad value \"fp16\" "
                                              "(expected one of: f32, stored, bf16, f16, bf16dot)");
    expect_error("log:\n  level: verbose\n", "t.yaml:2:10: log.level: bad value \"verbose\" "
                                             "(expected one of: error, warning, notice, info, "
                                             "debug)");
    expect_error("tasks:\n  profiles:\n    p: {kind: classify}\n",
                 "t.yaml:3:15: tasks.profiles.p.kind: bad value \"classify\" (expected one of: "
                 "none, classify_labels, classify_linear, continue)");
    /* bad endpoints */
    expect_error("endpoints:\n  ingest: tcp://127.0.0.1\n",
                 "t.yaml:2:11: endpoints.ingest[0]: bad endpoint \"tcp://127.0.0.1\": missing "
                 "port (expected tcp://host:port)");
    expect_error("endpoints:\n  ingest: [ipc:///tmp/a, \"udp://h:1\"]\n",
                 "t.yaml:2:26: endpoints.ingest[1]: bad endpoint \"udp://h:1\": unsupported "
                 "transport (rwkvd binds tcp://, ipc:// or inproc://)");
    expect_error("endpoints:\n  publish: tcp://127.0.0.1:0\n",
                 "t.yaml:2:12: endpoints.publish[0]: bad endpoint \"tcp://127.0.0.1:0\": bad "
                 "port (expected 1..65535 or *)");
    expect_error("endpoints:\n  publish: tcp://127.0.0.1:65536\n",
                 "t.yaml:2:12: endpoints.publish[0]: bad endpoint \"tcp://127.0.0.1:65536\": "
                 "bad port (expected 1..65535 or *)");
    expect_error("endpoints:\n  publish: tcp://::1:5555\n",
                 "t.yaml:2:12: endpoints.publish[0]: bad endpoint \"tcp://::1:5555\": an IPv6 "
                 "address needs brackets (tcp://[::1]:port)");
    expect_error("endpoints:\n  publish: tcp://[::g]:5555\n",
                 "t.yaml:2:12: endpoints.publish[0]: bad endpoint \"tcp://[::g]:5555\": bad "
                 "IPv6 address");
    expect_error("endpoints:\n  publish: tcp://:5555\n",
                 "t.yaml:2:12: endpoints.publish[0]: bad endpoint \"tcp://:5555\": missing host "
                 "(expected tcp://host:port; 127.0.0.1 for loopback)");
    expect_error("endpoints:\n  control: ipc://\n",
                 "t.yaml:2:12: endpoints.control[0]: bad endpoint \"ipc://\": empty ipc path");
    expect_error("endpoints:\n  control: ipc://*\n",
                 "t.yaml:2:12: endpoints.control[0]: bad endpoint \"ipc://*\": ipc://* binds a "
                 "random name that clients cannot know");
    expect_error("endpoints:\n  control: inproc://\n",
                 "t.yaml:2:12: endpoints.control[0]: bad endpoint \"inproc://\": empty inproc "
                 "name");
    expect_error("endpoints:\n  control: localhost:5555\n",
                 "t.yaml:2:12: endpoints.control[0]: bad endpoint \"localhost:5555\": not an "
                 "endpoint (expected tcp://host:port, ipc://path or inproc://name)");
    expect_error("endpoints:\n  control: \"ipc:///tmp/a b\"\n",
                 "t.yaml:2:12: endpoints.control[0]: bad endpoint \"ipc:///tmp/a b\": contains "
                 "whitespace or a control character");
    expect_error("endpoints:\n  control: []\n",
                 "t.yaml:2:12: endpoints.control: needs at least 1 entry");
    expect_error("endpoints:\n  publish: ipc:///run/rwkvd/ingest.sock\n",
                 "t.yaml:2:12: endpoints.publish[0]: \"ipc:///run/rwkvd/ingest.sock\" is also "
                 "endpoints.ingest[0] (by default)");
    expect_error("endpoints:\n  ingest: [tcp://127.0.0.1:7000, tcp://127.0.0.1:7000]\n",
                 "t.yaml:2:34: endpoints.ingest[1]: \"tcp://127.0.0.1:7000\" is also "
                 "endpoints.ingest[0]");
    /* malformed YAML: libyaml's message at its mark */
    expect_error("model:\n  path: \"unterminated\n",
                 "t.yaml:3:1: invalid YAML: found unexpected end of stream (while scanning a "
                 "quoted scalar at line 2, column 9)");
    expect_error("model:\n\tpath: x\n",
                 "t.yaml:2:1: invalid YAML: found character that cannot start any token (while "
                 "scanning for the next token at line 2, column 1)");
    expect_error("model:\n  path: x\n threads: 1\n",
                 "t.yaml:3:2: invalid YAML: did not find expected key (while parsing a block "
                 "mapping at line 1, column 1)");
    expect_error("model:\n  path: \"x\xff\"\n",
                 "t.yaml:2:11: invalid YAML: invalid leading UTF-8 octet (byte 0xff)");
    expect_error("model:\n  threads: &n 1\n  max_batch: *n\n",
                 "t.yaml:3:14: model.max_batch: YAML aliases (*n) are not supported");
    expect_error("log: {level: info}\n---\nlog: {level: info}\n",
                 "t.yaml:2:1: only one YAML document is allowed");
    expect_error("{? [a]: 1}\n", "t.yaml:1:4: a key must be a string, got a sequence");
    /* profiles */
    expect_error("tasks:\n  profiles:\n    p: {trigger: event}\n",
                 "t.yaml:3:8: tasks.profiles.p: missing required key \"kind\"");
    expect_error("tasks:\n  profiles:\n    p:\n",
                 "t.yaml:3:5: tasks.profiles.p: missing required key \"kind\"");
    expect_error("tasks:\n  profiles:\n    \"bad name\": {kind: none}\n",
                 "t.yaml:3:5: tasks.profiles.bad name: bad name (expected 1..64 of A-Z a-z 0-9 _ - . : /, "
                 "the first a letter, digit or _)");
    expect_error("tasks:\n  profiles:\n    -x: {kind: none}\n",
                 "t.yaml:3:5: tasks.profiles.-x: bad name (expected 1..64 of A-Z a-z 0-9 _ - . : /, "
                 "the first a letter, digit or _)");
    {   /* the protocol's profile names (TASK, PROTOCOL.md \u00a74.4): 64 octets, '.', ':' and '/' */
        rwkvd_config *c = NULL;
        char err[1024] = "", text[256];
        snprintf(text, sizeof text, "tasks:\n  default_profile: %s\n  profiles:\n    %s: {kind: none}\n"
                 "    a.b:c/d: {kind: none}\n", LONG64, LONG64);
        CHECKF(parse(text, &c, err, sizeof err) == 0 && c->tasks.n_profiles == 2, "64-octet profile name: %s", err);
        rwkvd_config_destroy(&c);
    }
    expect_error("tasks:\n  profiles:\n    p:\n      kind: classify_labels\n"
                 "      labels: [{name: a, text: \" a\"}]\n",
                 "t.yaml:3:5: tasks.profiles.p: kind classify_labels needs at least 2 labels "
                 "(has 1)");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: classify_labels\n      labels:\n"
                 "        - {name: a, text: b}\n        - {name: a, text: c}\n",
                 "t.yaml:7:11: tasks.profiles.p.labels[1]: duplicate name \"a\" (also [0])");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: classify_labels\n      labels:\n"
                 "        - {name: a}\n",
                 "t.yaml:6:11: tasks.profiles.p.labels[0]: missing required key \"text\"");
    expect_error("tasks:\n  profiles:\n    p:\n      kind: classify_labels\n      labels:\n"
                 "        - a\n",
                 "t.yaml:6:11: tasks.profiles.p.labels[0]: expected a mapping, got a scalar");
    expect_error("tasks:\n  profiles:\n    p: {kind: classify_linear}\n",
                 "t.yaml:3:5: tasks.profiles.p: kind classify_linear needs \"head\" (the path of "
                 "a linear head file)");
    expect_error("tasks:\n  default_profile: foo\n",
                 "t.yaml:2:20: tasks.default_profile: no profile named \"foo\" in tasks.profiles");
    /* environment */
    unsetenv("RWKVD_TEST_NOPE");
    expect_error("model:\n  path: ${RWKVD_TEST_NOPE}/m.pth\n",
                 "t.yaml:2:9: model.path: environment variable RWKVD_TEST_NOPE is not set "
                 "(write ${RWKVD_TEST_NOPE:-fallback} for a default)");
    expect_error("model:\n  path: ${1X}\n", "t.yaml:2:9: model.path: bad variable name after "
                                            "\"${\" (expected [A-Za-z_][A-Za-z0-9_]*)");
    expect_error("model:\n  path: ${HOME\n", "t.yaml:2:9: model.path: unterminated \"${HOME\" "
                                             "(expected \"}\" or \":-fallback}\")");
}

/* ------------------------------------------------------------------ public bind */

static void test_public_bind(void)
{
    clear_env();
    static const char *const loopback[] = {"tcp://127.0.0.1:5555", "tcp://127.8.9.10:1",
        "tcp://[::1]:5555", "tcp://localhost:5555", "tcp://lo:5555", "tcp://127.0.0.1:*",
        "ipc:///tmp/x.sock", "ipc://@abstract", "inproc://t"};
    static const char *const public[] = {"tcp://0.0.0.0:5555", "tcp://*:5555",
        "tcp://192.168.1.10:5555", "tcp://[::]:5555", "tcp://eth0:5555",
        "tcp://example.com:5555", "tcp://[2001:db8::1]:1"};
    char text[512], err[1024];
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
        snprintf(text, sizeof text, "endpoints:\n  ingest: \"%s\"\n", loopback[i]);
        rwkvd_config *c = must_parse(text);
        if (c)
            CHECK(!strcmp(c->endpoints.ingest.v[0], loopback[i]));
        rwkvd_config_destroy(&c);
    }
    for (size_t i = 0; i < sizeof public / sizeof *public; i++) {
        snprintf(text, sizeof text, "endpoints:\n  ingest: [ipc:///tmp/a, \"%s\"]\n", public[i]);
        rwkvd_config *c = NULL;
        CHECKF(parse(text, &c, err, sizeof err) == -EINVAL && !c, "%s", public[i]);
        char want[512];
        snprintf(want, sizeof want, "t.yaml:2:26: endpoints.ingest[1]: \"%s\" binds a "
                 "non-loopback address without CURVE; configure security.curve.secret_key_file "
                 "(encryption and a client allow-list), or set security.insecure_bind: true to "
                 "accept that anyone who reaches the port can feed and read every channel", public[i]);
        CHECKF(!strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
        /* security.insecure_bind opts in; so does CURVE (with its allow-list) */
        snprintf(text, sizeof text, "endpoints:\n  ingest: \"%s\"\nsecurity:\n  insecure_bind: true\n", public[i]);
        c = must_parse(text);
        CHECK(c->security.insecure_bind);
        rwkvd_config_destroy(&c);
        snprintf(text, sizeof text, "endpoints:\n  ingest: \"%s\"\nsecurity:\n  curve:\n"
                 "    secret_key_file: /etc/rwkvd/server.key_secret\n    allow: /etc/rwkvd/clients\n", public[i]);
        c = must_parse(text);
        CHECK(!strcmp(c->security.curve.allow, "/etc/rwkvd/clients"));
        rwkvd_config_destroy(&c);
        /* the opt-in may come before or after the endpoint */
        snprintf(text, sizeof text, "endpoints:\n  ingest: \"%s\"\n  allow_public_bind: true\n",
                 public[i]);
        c = must_parse(text);
        rwkvd_config_destroy(&c);
        snprintf(text, sizeof text, "endpoints:\n  allow_public_bind: yes\n  ingest: \"%s\"\n",
                 public[i]);
        c = must_parse(text);
        rwkvd_config_destroy(&c);
    }
    /* CURVE needs both its files; replication.bind is held to the same rule as the endpoints */
    expect_error("security:\n  curve:\n    secret_key_file: /k\n",
                 "t.yaml:3:22: security.curve.allow: security.curve needs both secret_key_file (the "
                 "server's key pair) and allow (the client allow-list file or directory)");
    expect_error("replication:\n  bind: tcp://0.0.0.0:7000\n",
                 "t.yaml:2:9: replication.bind: \"tcp://0.0.0.0:7000\" binds a non-loopback address "
                 "without CURVE; configure security.curve.secret_key_file, or set "
                 "security.insecure_bind: true");
    /* An environment variable cannot sneak a public address past the check. */
    setenv("RWKVD_TEST_HOST", "0.0.0.0", 1);
    rwkvd_config *c = NULL;
    CHECK(parse("endpoints:\n  publish: tcp://${RWKVD_TEST_HOST}:7001\n", &c, err, sizeof err) ==
          -EINVAL);
    CHECKF(strstr(err, "\"tcp://0.0.0.0:7001\" binds a non-loopback address") != NULL, "%s", err);
    unsetenv("RWKVD_TEST_HOST");
}

/* metrics.listen: off by default, host:port syntax, loopback-only unless allow_remote, not
 * reloadable, and refused outright by a build without libmicrohttpd. */
static void test_metrics_listen(void)
{
    clear_env();
    rwkvd_config *c = must_parse("");
    CHECK(c && !strcmp(c->metrics.listen, "") && !c->metrics.allow_remote);
    rwkvd_config_destroy(&c);
    if (!RWKVD_HAVE_MICROHTTPD) {
        expect_error("metrics:\n  listen: \"127.0.0.1:9464\"\n",
                     "t.yaml:2:11: metrics.listen: this rwkvd was built without libmicrohttpd, so it "
                     "cannot serve /metrics over HTTP; leave metrics.listen empty (METRICS on the "
                     "control socket still works) or rebuild with libmicrohttpd-dev installed");
        return;
    }
    static const char *const loopback[] = {"127.0.0.1:9464", "127.1.2.3:1", "[::1]:9464", "localhost:0"};
    static const char *const remote[] = {"0.0.0.0:9464", "[::]:9464", "192.168.1.10:80", "[2001:db8::1]:9464"};
    char text[256], want[512];
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
        snprintf(text, sizeof text, "metrics:\n  listen: \"%s\"\n", loopback[i]);
        c = must_parse(text);
        CHECK(c && !strcmp(c->metrics.listen, loopback[i]));
        rwkvd_config_destroy(&c);
    }
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
        snprintf(text, sizeof text, "metrics:\n  listen: \"%s\"\n", remote[i]);
        snprintf(want, sizeof want, "t.yaml:2:11: metrics.listen: \"%s\" is not a loopback address; "
                 "/metrics has no authentication, so serving it beyond this host needs "
                 "metrics.allow_remote: true", remote[i]);
        expect_error(text, want);
        snprintf(text, sizeof text, "metrics:\n  allow_remote: true\n  listen: \"%s\"\n", remote[i]);
        c = must_parse(text);
        CHECK(c && c->metrics.allow_remote);
        rwkvd_config_destroy(&c);
    }
    static const char *const bad[][2] = {
        {"127.0.0.1", "missing port (expected host:port, e.g. 127.0.0.1:9464)"},
        {":9464", "missing host (expected host:port; 127.0.0.1 for loopback, 0.0.0.0 for every address)"},
        {"127.0.0.1:65536", "bad port (expected 0..65535)"},
        {"127.0.0.1:http", "bad port (expected 0..65535)"},
        {"::1:9464", "an IPv6 address needs brackets ([::1]:9464)"},
        {"[::1]9464", "expected [ipv6]:port"},
        {"[fe80::zz]:1", "bad IPv6 address"},
        {"example.org:9464", "bad host (expected an IPv4 address, [IPv6] or localhost)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, "metrics:\n  listen: \"%s\"\n", bad[i][0]);
        snprintf(want, sizeof want, "t.yaml:2:11: metrics.listen: \"%s\": %s", bad[i][0], bad[i][1]);
        expect_error(text, want);
    }
    /* a restart, not SIGHUP, changes it */
    rwkvd_config *a = must_parse(""), *b = must_parse("metrics:\n  listen: \"127.0.0.1:9464\"\n");
    char err[512] = "";
    CHECK(rwkvd_config_diff_reloadable(a, b, err, sizeof err) == -EPERM);
    CHECKF(strstr(err, "metrics.listen") != NULL, "%s", err);
    rwkvd_config_destroy(&a);
    rwkvd_config_destroy(&b);
}

/* ------------------------------------------------------------------ units */

static void test_units(void)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } sizes[] = {{"1", 1}, {"4096", 4096}, {"64KiB", 64 << 10}, {"64kib", 64 << 10},
        {"1 MiB", 1 << 20}, {"1MiB", 1 << 20}, {"1MB", 1000000}, {"10kB", 10000},
        {"512B", 512}, {"64MiB", 64u << 20}, {"\"2MiB\"", 2u << 20}};
    static const char *const bad_sizes[] = {"1.5MiB", "1 XB", "-1", "MiB", "01", "1  MiB",
        "1MiB ", "0x10"};
    char text[256], err[1024];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(text, sizeof text, "limits:\n  max_message_bytes: %s\n", sizes[i].text);
        rwkvd_config *c = must_parse(text);
        if (c)
            CHECKF(c->limits.max_message_bytes == sizes[i].bytes, "%s", sizes[i].text);
        rwkvd_config_destroy(&c);
    }
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        snprintf(text, sizeof text, "limits:\n  max_message_bytes: \"%s\"\n", bad_sizes[i]);
        rwkvd_config *c = NULL;
        CHECK(parse(text, &c, err, sizeof err) == -EINVAL);
        char want[256];
        snprintf(want, sizeof want, "t.yaml:2:22: limits.max_message_bytes: expected a size "
                 "(e.g. 4096, 64KiB, 1MiB), got \"%s\"", bad_sizes[i]);
        CHECKF(!strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
    }
    expect_error("limits:\n  max_message_bytes: 0\n",
                 "t.yaml:2:22: limits.max_message_bytes: 0 is out of range (1B..64MiB)");
    expect_error("limits:\n  max_message_bytes: 99999999999TiB\n",
                 "t.yaml:2:22: limits.max_message_bytes: 99999999999TiB is out of range "
                 "(1B..64MiB)");

    static const struct {
        const char *text;
        uint64_t ms;
    } durs[] = {{"1s", 1000}, {"90s", 90000}, {"1m30s", 90000}, {"1min", 60000},
        {"2m", 120000}, {"1h", 3600000}, {"1500ms", 1500}, {"1s500ms", 1500}, {"\"3s\"", 3000}};
    static const char *const bad_durs[] = {"1.5s", "s", "5 s", "5sec", "1H", "-1s", "5s5"};
    for (size_t i = 0; i < sizeof durs / sizeof *durs; i++) {
        snprintf(text, sizeof text, "service:\n  step_timeout: %s\n", durs[i].text);
        rwkvd_config *c = must_parse(text);
        if (c)
            CHECKF(c->service.step_timeout_ms == durs[i].ms, "%s", durs[i].text);
        rwkvd_config_destroy(&c);
    }
    for (size_t i = 0; i < sizeof bad_durs / sizeof *bad_durs; i++) {
        snprintf(text, sizeof text, "service:\n  step_timeout: \"%s\"\n", bad_durs[i]);
        rwkvd_config *c = NULL;
        CHECK(parse(text, &c, err, sizeof err) == -EINVAL);
        char want[256];
        snprintf(want, sizeof want, "t.yaml:2:17: service.step_timeout: expected a duration "
                 "(e.g. 500ms, 5s, 2m, 1h30m), got \"%s\"", bad_durs[i]);
        CHECKF(!strcmp(err, want), "\n  got:  %s\n  want: %s", err, want);
    }
    expect_error("service:\n  step_timeout: 5\n",
                 "t.yaml:2:17: service.step_timeout: duration \"5\" needs a unit (ms, s, m, h, d)");
    expect_error("service:\n  step_timeout: 0\n",
                 "t.yaml:2:17: service.step_timeout: 0 is out of range (1s..1h)");

    /* integers, floats, booleans */
    rwkvd_config *c = NULL;
    expect_error("tasks:\n  profiles:\n    p:\n      kind: continue\n"
                 "      generate:\n        stop: {a: b}\n",
                 "t.yaml:6:15: tasks.profiles.p.generate.stop: expected a string or a list of "
                 "strings, got a mapping");
    c = must_parse("tasks:\n  profiles:\n    p:\n      kind: continue\n"
                   "      generate:\n        stop: \"one\"\n");
    CHECK(c && c->tasks.profiles[0].generate.stop.n == 1 &&
          !strcmp(c->tasks.profiles[0].generate.stop.v[0], "one"));
    rwkvd_config_destroy(&c);
    c = must_parse("model:\n  threads: +8\n  state_slots: 65536\n"
                   "endpoints:\n  allow_public_bind: off\n"
                   "tasks:\n  profiles:\n    p:\n      kind: continue\n"
                   "      generate:\n        temperature: 0\n        top_p: 1e-1\n"
                   "        presence_penalty: -0.5\n        seed: 9007199254740991\n"
                   "        commit: on\n        stop: [\"\\n\", END]\n");
    if (c) {
        CHECK(c->model.threads == 8 && c->model.state_slots == 65536);
        CHECK(!c->endpoints.allow_public_bind && c->endpoints.publish_hwm == 10000);
        const rwkvd_profile *p = &c->tasks.profiles[0];
        CHECK(p->generate.temperature == 0 && p->generate.top_p == 0.1 &&
              p->generate.presence_penalty == -0.5);
        CHECK(p->generate.seed == 9007199254740991ull && p->generate.commit);
        CHECK(p->generate.stop.n == 2 && !strcmp(p->generate.stop.v[0], "\n") &&
              !strcmp(p->generate.stop.v[1], "END"));
        check_roundtrip(c);
    }
    rwkvd_config_destroy(&c);
}

/* ------------------------------------------------------------------ reload */

static void test_reload(void)
{
    clear_env();
    const char *base = "model:\n  path: /m/a.pth\nlog:\n  level: info\n"
                       "limits:\n  max_channels: 10\n"
                       "tasks:\n  profiles:\n    s:\n      kind: classify_labels\n"
                       "      labels: [{name: a, text: \" a\"}, {name: b, text: \" b\"}]\n"
                       "    c:\n      kind: continue\n";
    const char *reloadable = "model:\n  path: /m/a.pth\nlog:\n  level: debug\n"
                             "limits:\n  max_channels: 20\n  max_message_bytes: 2MiB\n"
                             "tasks:\n  default_profile: c\n  profiles:\n"
                             "    c:\n      kind: continue\n      generate: {temperature: 0.5}\n"
                             "    s:\n      kind: classify_labels\n"
                             "      labels: [{name: a, text: \" A\"}, {name: b, text: \" b\"}]\n"
                             "    n:\n      kind: none\n";
    const char *fixed = "model:\n  path: /m/b.pth\n  backend: cuda\nlog:\n  level: info\n"
                        "limits:\n  max_channels: 10\n"
                        "endpoints:\n  ingest: [tcp://127.0.0.1:7000]\n"
                        "events:\n  separator: \"\"\n"
                        "tasks:\n  profiles:\n    s:\n      kind: classify_labels\n"
                        "      labels: [{name: a, text: \" a\"}, {name: b, text: \" b\"}]\n"
                        "    c:\n      kind: continue\n";
    rwkvd_config *a = must_parse(base), *b = must_parse(reloadable), *f = must_parse(fixed);
    char err[1024] = "x";
    if (!a || !b || !f)
        goto out;
    CHECK(count_diffs(a, a) == 0);
    CHECK(rwkvd_config_diff_reloadable(a, a, err, sizeof err) == 0 && err[0] == 0);

    char paths[4096] = "";
    CHECK(rwkvd_config_diff(a, b, collect_path, paths) == 7);
    CHECKF(!strcmp(paths, "limits.max_channels,limits.max_message_bytes,log.level,"
                          "tasks.default_profile,tasks.profiles.s.labels[0].text,"
                          "tasks.profiles.c.generate.temperature,tasks.profiles.n"),
           "%s", paths);
    CHECK(rwkvd_config_diff_reloadable(a, b, err, sizeof err) == 0);
    CHECK(rwkvd_config_diff_reloadable(b, a, err, sizeof err) == 0); /* n removed: fine */

    paths[0] = 0;
    CHECK(rwkvd_config_diff(a, f, collect_path, paths) == 4);
    CHECKF(!strcmp(paths, "model.path!,model.backend!,endpoints.ingest!,events.separator!"), "%s",
           paths);
    CHECK(rwkvd_config_diff_reloadable(a, f, err, sizeof err) == -EPERM);
    CHECKF(!strcmp(err, "model.path, model.backend, endpoints.ingest, events.separator: cannot "
                        "change on reload; restart rwkvd"),
           "%s", err);
    CHECK(rwkvd_config_diff_reloadable(a, f, NULL, 0) == -EPERM);
    char tiny[8];
    CHECK(rwkvd_config_diff_reloadable(a, f, tiny, sizeof tiny) == -EPERM && strlen(tiny) < 8);
    CHECK(rwkvd_config_diff(a, NULL, NULL, NULL) == -EINVAL);
out:
    rwkvd_config_destroy(&a);
    rwkvd_config_destroy(&b);
    rwkvd_config_destroy(&f);
}

/* ------------------------------------------------------------------ strings, dump */

static void test_strings(void)
{
    clear_env();
    setenv("RWKVD_TEST_DIR", "/srv/x", 1);
    rwkvd_config *c = must_parse(
        "model:\n  path: ${RWKVD_TEST_DIR}/m-$$1-${RWKVD_TEST_UNSET:-fb}-$x.pth\n"
        "  vocab: '/v/a\\nb'\n"
        "events:\n  separator: \"\\t|\\u00e9\\u2028\\x85\\x7f\\\"\\\\\\x01$\"\n"
        "state_dir: ${RWKVD_TEST_UNSET:-}/rel\n"
        "tasks:\n  default_profile: \"p-1\"\n  profiles:\n    p-1:\n      kind: continue\n"
        "      prompt_suffix: \"\\U0001F600 ${NOT_EXPANDED}\"\n"
        "      generate: {stop: [\"\\uFEFF\", \"\\r\\n\"]}\n");
    if (c) {
        CHECK(!strcmp(c->model.path, "/srv/x/m-$1-fb-$x.pth"));
        CHECK(!strcmp(c->model.vocab, "/v/a\\nb"));
        CHECK(!strcmp(c->events.separator, "\t|\xc3\xa9\xe2\x80\xa8\xc2\x85\x7f\"\\\x01$"));
        CHECK(!strcmp(c->state_dir, "/rel"));
        CHECK(!strcmp(c->tasks.default_profile, "p-1"));
        CHECK(!strcmp(c->tasks.profiles[0].prompt_suffix, "\xf0\x9f\x98\x80 ${NOT_EXPANDED}"));
        check_roundtrip(c);
    }
    rwkvd_config_destroy(&c);
    unsetenv("RWKVD_TEST_DIR");
    CHECK(!strcmp(rwkvd_backend_name(RWKVD_BACKEND_CUDA), "cuda"));
    CHECK(!strcmp(rwkvd_backend_name(RWKVD_BACKEND_AUTO), "auto"));
    CHECK(!strcmp(rwkvd_backend_name(RWKVD_BACKEND_CUDA_EMU), "cuda-emu"));
    char aerr[256];
    CHECK(parse("model:\n  backend: auto\n", &c, aerr, sizeof aerr) == 0 && c && c->model.backend == RWKVD_BACKEND_AUTO);
    rwkvd_config_destroy(&c);
    CHECK(!strcmp(rwkvd_weights_name(RWKVD_WEIGHTS_STORED), "stored"));
    CHECK(!strcmp(rwkvd_weights_name(RWKVD_WEIGHTS_BF16DOT), "bf16dot"));
    CHECK(!strcmp(rwkvd_log_level_name(RWKVD_LOG_DEBUG), "debug"));
    CHECK(!strcmp(rwkvd_task_kind_name(RWKVD_TASK_CLASSIFY_LINEAR), "classify_linear"));
    CHECK(!strcmp(rwkvd_trigger_name(RWKVD_TRIGGER_REQUEST), "request"));
    CHECK(!strcmp(rwkvd_log_level_name((rwkvd_log_level)42), "?"));
}

/* ------------------------------------------------------------------ files */

static void test_files(void)
{
    clear_env();
    char dir[256], path[512], err[1024];
    CHECK(test_tmpdir(dir, sizeof dir) == 0);
    rwkvd_config *sentinel = (rwkvd_config *)(uintptr_t)0x1, *c = sentinel;
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    CHECK(rwkvd_config_load(path, &c, err, sizeof err) == -ENOENT && c == sentinel);
    char want[1024];
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    CHECKF(!strcmp(err, want), "%s", err);
    CHECK(rwkvd_config_load(dir, &c, err, sizeof err) == -EINVAL && c == sentinel);
    snprintf(want, sizeof want, "%s: not a regular file", dir);
    CHECKF(!strcmp(err, want), "%s", err);

    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    const char *bad = "# comment\nmodel:\n  max_batch: 0\n";
    CHECK(test_write_file(path, bad, strlen(bad)) == 0);
    CHECK(rwkvd_config_load(path, &c, err, sizeof err) == -EINVAL && c == sentinel);
    snprintf(want, sizeof want, "%s:3:14: model.max_batch: 0 is out of range (1..4096)", path);
    CHECKF(!strcmp(err, want), "%s", err);
    unlink(path);

    snprintf(path, sizeof path, "%s/big.yaml", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        static char line[1024];
        memset(line, '#', sizeof line - 1);
        line[sizeof line - 1] = '\n';
        for (int i = 0; i < 4097; i++)
            fwrite(line, 1, sizeof line, f);
        fclose(f);
        CHECK(rwkvd_config_load(path, &c, err, sizeof err) == -EFBIG && c == sentinel);
    }
    unlink(path);

    snprintf(path, sizeof path, "%s/good.yaml", dir);
    const char *good = "model:\n  max_batch: 8\n";
    CHECK(test_write_file(path, good, strlen(good)) == 0);
    c = NULL;
    CHECK(rwkvd_config_load(path, &c, err, sizeof err) == 0 && c && c->model.max_batch == 8);
    CHECK(c && !strcmp(c->source, path));
    rwkvd_config_destroy(&c);
    CHECK(c == NULL);
    unlink(path);
    rmdir(dir);

    /* NULL err buffers and arguments */
    CHECK(rwkvd_config_parse("model: 1\n", 9, NULL, &c, NULL, 0) == -EINVAL && !c);
    CHECK(rwkvd_config_parse(NULL, 3, "x", &c, err, sizeof err) == -EINVAL);
    CHECK(rwkvd_config_parse("", 0, "x", NULL, err, sizeof err) == -EINVAL);
    CHECK(rwkvd_config_load(NULL, &c, err, sizeof err) == -EINVAL);
    /* text need not be NUL-terminated */
    const char buf[] = {'l', 'o', 'g', ':', ' ', '{', 'l', 'e', 'v', 'e', 'l', ':', ' ',
                        'd', 'e', 'b', 'u', 'g', '}', 'X'};
    CHECK(rwkvd_config_parse(buf, sizeof buf - 1, "b", &c, err, sizeof err) == 0);
    CHECK(c && c->log.level == RWKVD_LOG_DEBUG);
    rwkvd_config_destroy(&c);
    /* a truncated err buffer is still NUL-terminated */
    char small[16];
    CHECK(parse("model:\n  backend: gpu\n", &c, small, sizeof small) == -EINVAL);
    CHECK(strlen(small) == sizeof small - 1);
}

/* ------------------------------------------------------------------ mutation loop */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void test_mutations(void)
{
    clear_env();
    size_t n0;
    char *orig = test_read_file(example_path, &n0);
    CHECK(orig != NULL);
    if (!orig)
        return;
    static const char *const tokens[] = {":", "- ", "\n", "  ", "\"", "'", "{", "}", "[", "]",
        "&a ", "*a", "? ", "!!str ", "${", "}", "0", "-1", "1e999", "tcp://0.0.0.0:1",
        "\t", "#", "kind: ", "\xff", "\xc3", "---\n", "...", "|\n", ">\n", "~", "labels:"};
    size_t cap = n0 * 2 + 256;
    char *buf = malloc(cap), err[1024];
    CHECK(buf != NULL);
    int ok = 0, rejected = 0, iters = 4000;
    const char *e = getenv("RWKVD_TEST_MUTATIONS");
    if (e && atoi(e) > 0)
        iters = atoi(e);
    for (int it = 0; buf && it < iters; it++) {
        memcpy(buf, orig, n0);
        size_t n = n0;
        int edits = 1 + (int)(rng() % 4);
        for (int k = 0; k < edits; k++) {
            size_t pos = n ? rng() % n : 0;
            switch (rng() % 4) {
            case 0: /* flip a byte */
                if (n)
                    buf[pos] = (char)rng();
                break;
            case 1: { /* insert a token */
                const char *t = tokens[rng() % (sizeof tokens / sizeof *tokens)];
                size_t tl = strlen(t);
                if (n + tl < cap) {
                    memmove(buf + pos + tl, buf + pos, n - pos);
                    memcpy(buf + pos, t, tl);
                    n += tl;
                }
                break;
            }
            case 2: { /* delete a range */
                size_t len = rng() % 64;
                if (pos + len > n)
                    len = n - pos;
                memmove(buf + pos, buf + pos + len, n - pos - len);
                n -= len;
                break;
            }
            default: /* truncate */
                n = pos;
                break;
            }
        }
        rwkvd_config *sentinel = (rwkvd_config *)(uintptr_t)0x1, *c = sentinel;
        err[0] = 0;
        int rc = rwkvd_config_parse(buf, n, "m.yaml", &c, err, sizeof err);
        if (rc == 0) {
            ok++;
            CHECK(c != sentinel && c != NULL);
            if (it % 8 == 0)
                check_roundtrip(c);
            rwkvd_config_destroy(&c);
        } else {
            rejected++;
            CHECKF(rc == -EINVAL, "rc=%d", rc);
            CHECK(c == sentinel);
            CHECKF(!strncmp(err, "m.yaml:", 7) && strlen(err) > 12, "%s", err);
        }
    }
    fprintf(stderr, "mutations: %d loaded, %d rejected\n", ok, rejected);
    CHECK(ok > 0 && rejected > 0);
    free(buf);
    free(orig);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s conf/rwkvd.yaml\n", argv[0]);
        return 2;
    }
    example_path = argv[1];
    test_defaults();
    test_example();
    test_errors();
    test_public_bind();
    test_metrics_listen();
    test_units();
    test_reload();
    test_strings();
    test_files();
    test_mutations();
    return test_finish("test_config");
}
