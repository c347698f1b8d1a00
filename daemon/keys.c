/* keys.c — see keys.h. */
#include "keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALLOW_FILE_MAX (4u << 20)
#define PREFIX_MAX 128 /* a channel name's longest (PROTOCOL.md §4.4) */

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- Z85 (ZeroMQ RFC 32) ------------------------------------------------------------ */

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static int z85_value(char c)
{
    const char *p = c ? strchr(z85_chars, c) : NULL;
    return p ? (int)(p - z85_chars) : -1;
}

/* Decode exactly 40 Z85 characters into 32 octets; false when s is not such a key. */
static bool z85_key(const char *s, size_t n, uint8_t out[32])
{
    if (n != 40)
        return false;
    for (size_t i = 0; i < 40; i += 5) {
        uint64_t v = 0;
        for (size_t j = 0; j < 5; j++) {
            int d = z85_value(s[i + j]);
            if (d < 0)
                return false;
            v = v * 85 + (uint64_t)d;
        }
        if (v > 0xffffffffu)
            return false;
        for (int j = 0; j < 4; j++)
            out[i / 5 * 4 + (size_t)j] = (uint8_t)(v >> (24 - 8 * j));
    }
    return true;
}

/* ---- permissions -------------------------------------------------------------------- */

void rwkvd_key_clear(rwkvd_key *k)
{
    for (size_t i = 0; i < k->n_write; i++)
        free(k->write[i]);
    for (size_t i = 0; i < k->n_read; i++)
        free(k->read[i]);
    k->n_write = k->n_read = 0;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > RWKVD_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '@'))
            return false;
    }
    return true;
}

/* Add the comma-separated prefixes of v[0..n) to a right; "*" is every channel. NULL or why not. */
static const char *add_prefixes(char **list, size_t *count, const char *v, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (a == b)
            return "an empty prefix (use * for every channel)";
        if (b - a > PREFIX_MAX)
            return "a prefix longer than 128 octets (the longest channel name)";
        for (size_t k = a; k < b; k++)
            if ((unsigned char)v[k] <= ' ' || v[k] == 0x7f)
                return "a prefix with whitespace or a control character";
        if (*count == RWKVD_KEY_PREFIXES_MAX)
            return "more than 32 prefixes";
        bool all = b - a == 1 && v[a] == '*';
        char *p = malloc(all ? 1 : b - a + 1);
        if (!p)
            return "out of memory";
        if (!all)
            memcpy(p, v + a, b - a);
        p[all ? 0 : b - a] = '\0';
        list[(*count)++] = p;
        i = j + 1;
    }
    return NULL;
}

/* One permission `what`=`v` (what: write, read, control, replicate). NULL or why not. */
static const char *set_permission(rwkvd_key *k, const char *what, size_t wn, const char *v, size_t n, bool has_value)
{
#define IS(s) (wn == strlen(s) && memcmp(what, s, wn) == 0)
#define VIS(s) (n == strlen(s) && memcmp(v, s, n) == 0)
    if (IS("write") || IS("read")) {
        if (!has_value)
            return "write and read need =PREFIX[,PREFIX...]";
        return IS("write") ? add_prefixes(k->write, &k->n_write, v, n) : add_prefixes(k->read, &k->n_read, v, n);
    }
    if (IS("control")) {
        if (VIS("none"))
            k->control = RWKVD_CONTROL_NONE;
        else if (VIS("read"))
            k->control = RWKVD_CONTROL_READ;
        else if (VIS("all"))
            k->control = RWKVD_CONTROL_ALL;
        else
            return "control must be none, read or all";
        return NULL;
    }
    if (IS("replicate")) {
        if (!has_value || VIS("true") || VIS("yes") || VIS("1"))
            k->replicate = true;
        else if (VIS("false") || VIS("no") || VIS("0"))
            k->replicate = false;
        else
            return "replicate takes no value, or true/false";
        return NULL;
    }
    return "unknown permission (expected write=, read=, control= or replicate)";
#undef IS
#undef VIS
}

bool rwkvd_key_may_write(const rwkvd_key *k, const char *channel, size_t len)
{
    for (size_t i = 0; i < k->n_write; i++) {
        size_t pn = strlen(k->write[i]);
        if (pn <= len && memcmp(channel, k->write[i], pn) == 0)
            return true;
    }
    return false;
}

bool rwkvd_key_may_read(const rwkvd_key *k, const char *prefix, size_t len)
{
    for (size_t i = 0; i < k->n_read; i++) {
        size_t pn = strlen(k->read[i]);
        if (pn <= len && memcmp(prefix, k->read[i], pn) == 0)
            return true;
    }
    return false;
}

bool rwkvd_key_may_control(const rwkvd_key *k, rwkvp_ctl_cmd cmd)
{
    if (k->control == RWKVD_CONTROL_ALL)
        return true;
    bool read_only = cmd == RWKVP_CTL_STATUS || cmd == RWKVP_CTL_CHANNELS || cmd == RWKVP_CTL_INFO ||
                     cmd == RWKVP_CTL_METRICS;
    if (k->control == RWKVD_CONTROL_READ && read_only)
        return true;
    return k->replicate && cmd == RWKVP_CTL_STATUS;
}

void rwkvd_key_prefixes_str(char *const *v, size_t n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    if (n == 0) {
        snprintf(buf, cap, "(none)");
        return;
    }
    for (size_t i = 0; i < n && at < cap; i++) {
        int k = snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", v[i][0] ? v[i] : "*");
        if (k < 0)
            break;
        at += (size_t)k;
    }
}

/* ---- key files (ZPL certificates) --------------------------------------------------- */

/* Split text into lines; calls per line (without the newline); stops at a non-NULL error. */
typedef struct {
    const char *p, *end;
    int line;
} lines;

static bool next_line(lines *l, const char **s, size_t *n)
{
    if (l->p >= l->end)
        return false;
    const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
    const char *e = nl ? nl : l->end;
    *s = l->p;
    *n = (size_t)(e - l->p);
    while (*n > 0 && ((*s)[*n - 1] == '\r' || (*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
    l->p = nl ? nl + 1 : l->end;
    l->line++;
    return true;
}

static bool has_nul(const char *s, size_t n) { return memchr(s, '\0', n) != NULL; }

int rwkvd_cert_parse(const char *text, size_t len, const char *file, bool bare_is_secret, rwkvd_cert *out,
                     char *err, size_t err_len)
{
    rwkvd_cert c;
    memset(&c, 0, sizeof c);
    if (len > RWKVD_KEY_FILE_MAX)
        return fail(err, err_len, "%s: larger than 64 KiB; not a key file", file);
    if (has_nul(text, len))
        return fail(err, err_len, "%s: contains a NUL octet; not a key file", file);
    lines l = {text, text + len, 0};
    const char *s;
    size_t n;
    enum { NONE, METADATA, CURVE, OTHER } section = NONE;
    bool bare = false;
    int rc = 0;
    const char *why = NULL;
    while (!rc && next_line(&l, &s, &n)) {
        size_t ind = 0;
        while (ind < n && (s[ind] == ' ' || s[ind] == '\t'))
            ind++;
        if (ind == n || s[ind] == '#')
            continue;
        const char *t = s + ind;
        size_t tn = n - ind;
        if (ind == 0) {
            uint8_t k[32];
            if (z85_key(t, tn, k)) { /* a bare key (curve_keygen's output) */
                if (bare || section != NONE) {
                    rc = fail(err, err_len, "%s:%d: a second key, or a bare key inside a certificate", file, l.line);
                    break;
                }
                bare = true;
                if (bare_is_secret) {
                    memcpy(c.secret_key, k, 32);
                    c.has_secret = true;
                } else {
                    memcpy(c.key.public_key, k, 32);
                    c.has_public = true;
                }
                continue;
            }
            if (bare) {
                rc = fail(err, err_len, "%s:%d: text after a bare Z85 key", file, l.line);
                break;
            }
            if (tn == 8 && !memcmp(t, "metadata", 8))
                section = METADATA;
            else if (tn == 5 && !memcmp(t, "curve", 5))
                section = CURVE;
            else if (memchr(t, '=', tn)) {
                rc = fail(err, err_len, "%s:%d: a property outside a section (indent it under metadata or curve)",
                          file, l.line);
                break;
            } else
                section = OTHER;
            continue;
        }
        if (section == NONE) {
            rc = fail(err, err_len, "%s:%d: an indented line before any section", file, l.line);
            break;
        }
        /* name = "value" | name = value */
        const char *eq = memchr(t, '=', tn);
        if (!eq) {
            rc = fail(err, err_len, "%s:%d: expected name = \"value\"", file, l.line);
            break;
        }
        size_t kn = (size_t)(eq - t);
        while (kn > 0 && (t[kn - 1] == ' ' || t[kn - 1] == '\t'))
            kn--;
        const char *v = eq + 1;
        size_t vn = (size_t)(t + tn - v);
        while (vn > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vn--;
        }
        if (vn >= 1 && (v[0] == '"' || v[0] == '\'')) {
            if (vn < 2 || v[vn - 1] != v[0]) {
                rc = fail(err, err_len, "%s:%d: unterminated quoted value", file, l.line);
                break;
            }
            v++;
            vn -= 2;
        }
        if (section == CURVE) {
            bool pub = kn == 10 && !memcmp(t, "public-key", 10);
            bool sec = kn == 10 && !memcmp(t, "secret-key", 10);
            if (!pub && !sec)
                continue; /* other curve properties are not ours */
            uint8_t k[32];
            if (!z85_key(v, vn, k)) {
                rc = fail(err, err_len, "%s:%d: %s is not a 40-character Z85 key", file, l.line,
                          pub ? "public-key" : "secret-key");
                break;
            }
            if ((pub && c.has_public) || (sec && c.has_secret)) {
                rc = fail(err, err_len, "%s:%d: %s given twice", file, l.line, pub ? "public-key" : "secret-key");
                break;
            }
            memcpy(pub ? c.key.public_key : c.secret_key, k, 32);
            if (pub)
                c.has_public = true;
            else
                c.has_secret = true;
        } else if (section == METADATA) {
            if (kn == 4 && !memcmp(t, "name", 4)) {
                if (!valid_name(v, vn)) {
                    rc = fail(err, err_len, "%s:%d: name must be 1..64 of A-Z a-z 0-9 _ - . @", file, l.line);
                    break;
                }
                memcpy(c.key.name, v, vn);
                c.key.name[vn] = '\0';
            } else if ((kn == 5 && !memcmp(t, "write", 5)) || (kn == 4 && !memcmp(t, "read", 4)) ||
                       (kn == 7 && !memcmp(t, "control", 7)) || (kn == 9 && !memcmp(t, "replicate", 9))) {
                if ((why = set_permission(&c.key, t, kn, v, vn, true)) != NULL) {
                    rc = fail(err, err_len, "%s:%d: %.*s: %s", file, l.line, (int)kn, t, why);
                    break;
                }
            } /* other metadata (email, created-by, ...) is kept by whoever wrote it */
        }
    }
    if (!rc && !c.has_public && !c.has_secret)
        rc = fail(err, err_len, "%s: no key (expected a curve section with public-key, or a bare Z85 key)", file);
    if (rc) {
        rwkvd_key_clear(&c.key);
        return rc;
    }
    *out = c;
    return 0;
}

static int read_file(const char *path, size_t max, char **out, size_t *out_len, mode_t *mode, char *err,
                     size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        int e = errno;
        bool reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        close(fd);
        if (!reg)
            snprintf(err, err_len, "%s: not a regular file", path);
        else
            snprintf(err, err_len, "%s: larger than %zu KiB", path, max >> 10);
        return reg ? -EFBIG : (e ? -e : -EINVAL);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        snprintf(err, err_len, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            snprintf(err, err_len, "%s: %s", path, strerror(e));
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    if (mode)
        *mode = st.st_mode;
    return 0;
}

int rwkvd_cert_load(const char *path, bool secret, rwkvd_cert *out, char *err, size_t err_len)
{
    char *text = NULL;
    size_t len = 0;
    mode_t mode = 0;
    int rc = read_file(path, RWKVD_KEY_FILE_MAX, &text, &len, &mode, err, err_len);
    if (rc)
        return rc;
    rwkvd_cert c;
    rc = rwkvd_cert_parse(text, len, path, secret, &c, err, err_len);
    free(text);
    if (rc)
        return rc;
    if (secret && !c.has_secret) {
        rwkvd_key_clear(&c.key);
        return fail(err, err_len, "%s: holds no secret-key (is it the public half?)", path);
    }
    if (secret && (mode & 077)) {
        rwkvd_key_clear(&c.key);
        snprintf(err, err_len, "%s: a secret key readable by group or others (mode %03o); chmod 600 it", path,
                 (unsigned)(mode & 0777));
        return -EPERM;
    }
    *out = c;
    return 0;
}

/* ---- the allow-list ---------------------------------------------------------------- */

void rwkvd_allow_destroy(rwkvd_allow **ap)
{
    rwkvd_allow *a = ap ? *ap : NULL;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        rwkvd_key_clear(&a->v[i]);
    free(a->v);
    free(a);
    *ap = NULL;
}

static int cmp_name(const void *x, const void *y) { return strcmp(((const rwkvd_key *)x)->name, ((const rwkvd_key *)y)->name); }

/* Append k (moved) to a; -ENOMEM. */
static int allow_push(rwkvd_allow *a, size_t *cap, rwkvd_key *k)
{
    if (a->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        rwkvd_key *v = realloc(a->v, nc * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        *cap = nc;
    }
    a->v[a->n++] = *k;
    memset(k, 0, sizeof *k);
    return 0;
}

/* Sort by name; names and public keys must be unique. `where(i)` names an entry's origin. */
static int allow_finish(rwkvd_allow *a, const char *source, char *err, size_t err_len)
{
    qsort(a->v, a->n, sizeof *a->v, cmp_name);
    for (size_t i = 1; i < a->n; i++)
        if (!strcmp(a->v[i].name, a->v[i - 1].name))
            return fail(err, err_len, "%s: the name '%s' is given to two keys", source, a->v[i].name);
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = i + 1; j < a->n; j++)
            if (!memcmp(a->v[i].public_key, a->v[j].public_key, 32))
                return fail(err, err_len, "%s: '%s' and '%s' have the same public key", source, a->v[i].name,
                            a->v[j].name);
    return 0;
}

int rwkvd_allow_parse(const char *text, size_t len, const char *file, rwkvd_allow **out, char *err, size_t err_len)
{
    rwkvd_allow *a = calloc(1, sizeof *a);
    if (!a)
        return fail(err, err_len, "%s: out of memory", file), -ENOMEM;
    size_t cap = 0;
    int rc = 0;
    if (has_nul(text, len))
        rc = fail(err, err_len, "%s: contains a NUL octet; not an allow-list", file);
    lines l = {text, text + len, 0};
    const char *s;
    size_t n;
    while (!rc && next_line(&l, &s, &n)) {
        rwkvd_key k;
        memset(&k, 0, sizeof k);
        size_t i = 0, field = 0;
        while (!rc) {
            while (i < n && (s[i] == ' ' || s[i] == '\t'))
                i++;
            if (i == n || s[i] == '#')
                break;
            size_t j = i;
            while (j < n && s[j] != ' ' && s[j] != '\t')
                j++;
            const char *t = s + i;
            size_t tn = j - i;
            if (field == 0) {
                if (!valid_name(t, tn))
                    rc = fail(err, err_len, "%s:%d: '%.*s' is not a key name (1..64 of A-Z a-z 0-9 _ - . @)", file,
                              l.line, (int)(tn > 80 ? 80 : tn), t);
                else {
                    memcpy(k.name, t, tn);
                    k.name[tn] = '\0';
                }
            } else if (field == 1) {
                if (!z85_key(t, tn, k.public_key))
                    rc = fail(err, err_len, "%s:%d: key '%s': the public key is not 40 Z85 characters", file, l.line,
                              k.name);
            } else {
                const char *eq = memchr(t, '=', tn);
                size_t wn = eq ? (size_t)(eq - t) : tn;
                const char *why = set_permission(&k, t, wn, eq ? eq + 1 : "", eq ? tn - wn - 1 : 0, eq != NULL);
                if (why)
                    rc = fail(err, err_len, "%s:%d: key '%s': '%.*s': %s", file, l.line, k.name,
                              (int)(tn > 80 ? 80 : tn), t, why);
            }
            field++;
            i = j;
        }
        if (!rc && field == 1)
            rc = fail(err, err_len, "%s:%d: key '%s' has no public key", file, l.line, k.name);
        if (!rc && field >= 2 && allow_push(a, &cap, &k) != 0)
            rc = fail(err, err_len, "%s: out of memory", file);
        rwkvd_key_clear(&k);
    }
    if (!rc)
        rc = allow_finish(a, file, err, err_len);
    if (rc) {
        rwkvd_allow_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

static int allow_load_dir(const char *path, rwkvd_allow **out, char *err, size_t err_len)
{
    DIR *dir = opendir(path);
    if (!dir) {
        int e = errno;
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    char **names = NULL;
    size_t n = 0, cap_names = 0;
    int rc = 0;
    for (struct dirent *de; !rc && (de = readdir(dir)) != NULL;) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 5 || strcmp(de->d_name + l - 4, ".key"))
            continue;
        if (n == cap_names) {
            size_t nc = cap_names ? cap_names * 2 : 16;
            char **v = realloc(names, nc * sizeof *v);
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            names = v;
            cap_names = nc;
        }
        if (!(names[n] = strdup(de->d_name)))
            rc = -ENOMEM;
        else
            n++;
    }
    closedir(dir);
    rwkvd_allow *a = rc ? NULL : calloc(1, sizeof *a);
    if (!a && !rc)
        rc = -ENOMEM;
    if (rc == -ENOMEM)
        snprintf(err, err_len, "%s: out of memory", path);
    if (names)
        qsort(names, n, sizeof *names, cmp_str);
    size_t cap = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        rwkvd_cert c;
        if ((rc = rwkvd_cert_load(file, false, &c, err, err_len)))
            break;
        if (c.has_secret) {
            rwkvd_key_clear(&c.key);
            rc = fail(err, err_len, "%s: holds a secret key; the allow-list directory takes public certificates only",
                      file);
            break;
        }
        if (!c.key.name[0]) {
            size_t bn = strlen(names[i]) - 4;
            if (!valid_name(names[i], bn)) {
                rwkvd_key_clear(&c.key);
                rc = fail(err, err_len, "%s: no metadata name, and the file name is not a key name "
                          "(1..64 of A-Z a-z 0-9 _ - . @ before .key)", file);
                break;
            }
            memcpy(c.key.name, names[i], bn);
            c.key.name[bn] = '\0';
        }
        if (allow_push(a, &cap, &c.key)) {
            rwkvd_key_clear(&c.key);
            rc = fail(err, err_len, "%s: out of memory", path);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!rc)
        rc = allow_finish(a, path, err, err_len);
    if (rc) {
        rwkvd_allow_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

int rwkvd_allow_load(const char *path, rwkvd_allow **out, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    if (S_ISDIR(st.st_mode))
        return allow_load_dir(path, out, err, err_len);
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, ALLOW_FILE_MAX, &text, &len, NULL, err, err_len);
    if (rc)
        return rc;
    rc = rwkvd_allow_parse(text, len, path, out, err, err_len);
    free(text);
    return rc;
}

const rwkvd_key *rwkvd_allow_by_name(const rwkvd_allow *a, const char *name)
{
    if (!a || !name)
        return NULL;
    rwkvd_key k;
    size_t n = strlen(name);
    if (n > RWKVD_KEY_NAME_MAX)
        return NULL;
    memcpy(k.name, name, n + 1);
    return bsearch(&k, a->v, a->n, sizeof *a->v, cmp_name);
}

const rwkvd_key *rwkvd_allow_by_public(const rwkvd_allow *a, const uint8_t public_key[32])
{
    for (size_t i = 0; a && i < a->n; i++)
        if (!memcmp(a->v[i].public_key, public_key, 32))
            return &a->v[i];
    return NULL;
}

/* ---- ZAP ---------------------------------------------------------------------------- */

static bool frame_is(const rwkvp_frame *f, const char *s) { return f->len == strlen(s) && !memcmp(f->data, s, f->len); }

rwkvd_zap_result rwkvd_zap_decide(const rwkvd_allow *a, const rwkvp_frame *f, size_t n, rwkvd_zap_reply *r)
{
    r->request_id = n >= 2 ? f[1] : (rwkvp_frame){"", 0};
    r->user_id = "";
    if (n < 6 || !frame_is(&f[0], "1.0")) {
        r->status = "500";
        r->text = "malformed ZAP request";
        return RWKVD_ZAP_MALFORMED;
    }
    if (!frame_is(&f[5], "CURVE")) {
        r->status = "400";
        r->text = "CURVE is required";
        return RWKVD_ZAP_MECHANISM;
    }
    if (n != 7 || f[6].len != 32) {
        r->status = "500";
        r->text = "malformed CURVE credentials";
        return RWKVD_ZAP_MALFORMED;
    }
    const rwkvd_key *k = rwkvd_allow_by_public(a, f[6].data);
    if (!k) {
        r->status = "400";
        r->text = "client key not on the allow-list";
        return RWKVD_ZAP_UNKNOWN_KEY;
    }
    r->status = "200";
    r->text = "OK";
    r->user_id = k->name;
    return RWKVD_ZAP_OK;
}

const char *rwkvd_zap_reason_name(rwkvd_zap_result r)
{
    static const char *const names[] = {"ok", "unknown_key", "mechanism", "malformed"};
    return r < RWKVD_ZAP_N_REASONS ? names[r] : "?";
}
