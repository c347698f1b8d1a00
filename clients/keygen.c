/* keygen.c — rwkvd-keygen: write a CURVE key pair for rwkvd and its clients.
 *
 *   rwkvd-keygen [-n NAME] [--write PFX,..] [--read PFX,..] [--control none|read|all]
 *                [--replicate] [-f] BASE
 *
 * writes BASE.key (the public certificate: metadata and public-key; give it to the other
 * side, or put it in the daemon's allow-list directory) and BASE.key_secret (both keys,
 * mode 0600; keep it). The files are ZPL certificates as czmq's zcert writes them
 * (daemon/FORMATS.md §4), so czmq tools read them too. It also prints the key's line for
 * an allow-list file. Existing files are not overwritten unless -f.
 * What it is not: a key store; permissions are copied into the public certificate's
 * metadata only for the daemon's allow-list directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static void usage(FILE *f)
{
    fputs("usage: rwkvd-keygen [-n NAME] [--write PFX,..] [--read PFX,..] [--control none|read|all]\n"
          "                    [--replicate] [-f] BASE\n"
          "  writes BASE.key (public certificate) and BASE.key_secret (mode 0600) and prints the\n"
          "  key's allow-list line. NAME defaults to BASE's file name; PFX is a channel prefix,\n"
          "  * every channel.\n",
          f);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.' || *s == '@'))
            return false;
    return true;
}

static bool valid_prefixes(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == 0x7f)
            return false;
    return true;
}

static int write_cert(const char *path, bool secret, bool force, const char *name, const char *pub, const char *sec,
                      const char *wr, const char *rd, const char *ctl, bool repl)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), secret ? 0600 : 0644);
    if (fd < 0) {
        fprintf(stderr, "rwkvd-keygen: %s: %s%s\n", path, strerror(errno), errno == EEXIST ? " (use -f to replace it)" : "");
        return -1;
    }
    if (secret && fchmod(fd, 0600) != 0) {
        fprintf(stderr, "rwkvd-keygen: %s: chmod: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -1;
    }
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&now));
    fprintf(f, "#   ****  Generated on %s UTC by rwkvd-keygen  ****\n", when);
    if (secret)
        fprintf(f, "#   ZeroMQ CURVE **Secret** Certificate\n"
                   "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n");
    else
        fprintf(f, "#   ZeroMQ CURVE Public Certificate\n"
                   "#   Exchange securely, or use a secure mechanism to verify the contents\n"
                   "#   of this file after exchange. Store public certificates in your home\n"
                   "#   directory, in the .curve subdirectory.\n\n");
    fprintf(f, "metadata\n    name = \"%s\"\n", name);
    if (wr)
        fprintf(f, "    write = \"%s\"\n", wr);
    if (rd)
        fprintf(f, "    read = \"%s\"\n", rd);
    if (ctl)
        fprintf(f, "    control = \"%s\"\n", ctl);
    if (repl)
        fprintf(f, "    replicate = \"true\"\n");
    fprintf(f, "curve\n    public-key = \"%s\"\n", pub);
    if (secret)
        fprintf(f, "    secret-key = \"%s\"\n", sec);
    if (fclose(f) != 0) {
        fprintf(stderr, "rwkvd-keygen: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
                                         {"write", required_argument, NULL, 'w'},
                                         {"read", required_argument, NULL, 'r'},
                                         {"control", required_argument, NULL, 'c'},
                                         {"replicate", no_argument, NULL, 'R'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *name = NULL, *wr = NULL, *rd = NULL, *ctl = NULL;
    bool repl = false, force = false;
    int c;
    while ((c = getopt_long(argc, argv, "n:fh", opts, NULL)) != -1) {
        switch (c) {
        case 'n': name = optarg; break;
        case 'w': wr = optarg; break;
        case 'r': rd = optarg; break;
        case 'c': ctl = optarg; break;
        case 'R': repl = true; break;
        case 'f': force = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    const char *base = argv[optind];
    char derived[65] = "";
    if (!name) {
        const char *slash = strrchr(base, '/');
        snprintf(derived, sizeof derived, "%s", slash ? slash + 1 : base);
        name = derived;
    }
    if (!valid_name(name)) {
        fprintf(stderr, "rwkvd-keygen: name '%s': 1..64 of A-Z a-z 0-9 _ - . @ (use -n NAME)\n", name);
        return 2;
    }
    if ((wr && !valid_prefixes(wr)) || (rd && !valid_prefixes(rd))) {
        fprintf(stderr, "rwkvd-keygen: --write/--read: comma-separated prefixes without spaces or quotes\n");
        return 2;
    }
    if (ctl && strcmp(ctl, "none") && strcmp(ctl, "read") && strcmp(ctl, "all")) {
        fprintf(stderr, "rwkvd-keygen: --control must be none, read or all\n");
        return 2;
    }
    if (!zmq_has("curve")) {
        fprintf(stderr, "rwkvd-keygen: this libzmq has no CURVE support (zmq_has(\"curve\") is false)\n");
        return 1;
    }
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "rwkvd-keygen: zmq_curve_keypair: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    size_t bl = strlen(base);
    char *pub_path = malloc(bl + 5), *sec_path = malloc(bl + 12);
    if (!pub_path || !sec_path)
        return 1;
    snprintf(pub_path, bl + 5, "%s.key", base);
    snprintf(sec_path, bl + 12, "%s.key_secret", base);
    int rc = write_cert(sec_path, true, force, name, pub, sec, wr, rd, ctl, repl);
    if (rc == 0)
        rc = write_cert(pub_path, false, force, name, pub, sec, wr, rd, ctl, repl);
    memset(sec, 0, sizeof sec);
    if (rc == 0) {
        printf("%s %s", name, pub);
        if (wr)
            printf(" write=%s", wr);
        if (rd)
            printf(" read=%s", rd);
        if (ctl)
            printf(" control=%s", ctl);
        if (repl)
            printf(" replicate");
        printf("\n");
        fprintf(stderr, "rwkvd-keygen: wrote %s (public) and %s (secret, mode 0600)\n", pub_path, sec_path);
    }
    free(pub_path);
    free(sec_path);
    return rc == 0 ? 0 : 1;
}
