/* main.c — the rwkvd command line: run the daemon, or check a configuration file.
 *
 *   rwkvd -c FILE                 run in the foreground (systemd Type=notify)
 *   rwkvd -c FILE --check-config  validate FILE, print file:line:col errors; exit 0 or 1
 *   rwkvd -c FILE --standby-of EP follow the primary whose control endpoint is EP (replica.h)
 *         [-v]                    with --check-config: print the effective configuration
 *   rwkvd --version | --help
 *
 * Signals are blocked here, before any thread exists (engine pool, zmq I/O threads, the
 * worker), so only the loop receives them, through its signalfd.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "rwkvd_version.h"
#include "loop.h"
#include "security.h"

static void usage(FILE *f)
{
    fputs("usage: rwkvd -c FILE [--check-config [-v]]\n"
          "       rwkvd -c FILE --standby-of PRIMARY_CONTROL_ENDPOINT\n"
          "       rwkvd --version | --help\n"
          "\n"
          "  -c, --config FILE   configuration (YAML; see conf/rwkvd.yaml); without it the defaults\n"
          "      --check-config  validate the configuration and exit: 0 valid, 1 invalid\n"
          "  -v, --verbose       with --check-config: print the effective configuration\n"
          "      --standby-of EP warm standby of the primary whose control endpoint is EP: follow its\n"
          "                      replication stream, take over when it goes silent (README \"Failover\")\n"
          "      --version       print the version and exit\n"
          "  -h, --help          this text\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {"standby-of", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    const char *standby_of = NULL;
    bool check = false, verbose = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'S':
            standby_of = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'V':
            printf("rwkvd %s (protocol RWKV%d)\n", RWKVD_VERSION, RWKVP_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rwkvd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    rwkvd_log_init();
    char err[1024] = "";
    rwkvd_config *cfg = NULL;
    int rc = path ? rwkvd_config_load(path, &cfg, err, sizeof err) : rwkvd_config_default(&cfg, err, sizeof err);
    if (check) {
        if (rc == 0) /* the key files and the allow-list the config names */
            rc = rwkvd_security_check(cfg, err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s\n", err[0] ? err : strerror(-rc));
            rwkvd_config_destroy(&cfg);
            return 1;
        }
        if (verbose)
            rwkvd_config_dump(cfg, stdout);
        else
            printf("%s: ok\n", path ? path : "(defaults)");
        rwkvd_config_destroy(&cfg);
        return 0;
    }
    if (rc) {
        rwkvd_log(LOG_ERR, "%s", err[0] ? err : strerror(-rc));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rwkvd_daemon d;
    memset(&d, 0, sizeof d);
    d.standby_of = standby_of;
    int status = 1;
    if (rwkvd_daemon_init(&d, path, &cfg) == 0)
        status = rwkvd_loop_run(&d);
    bool restart = d.restart;
    rwkvd_daemon_fini(&d);
    rwkvd_config_destroy(&cfg);
    if (restart) { /* a standby resyncs: the same command again, same pid (systemd keeps tracking it) */
        char **args = argv;
        if (d.restart_standby_of[0] && (args = calloc((size_t)argc + 3, sizeof *args))) {
            int n = 0; /* a fenced primary steps down: the same command with --standby-of its peer */
            for (int i = 0; i < argc; i++) {
                if (strcmp(argv[i], "--standby-of") == 0 && i + 1 < argc) {
                    i++;
                    continue;
                }
                if (strncmp(argv[i], "--standby-of=", 13) != 0)
                    args[n++] = argv[i];
            }
            args[n++] = "--standby-of";
            args[n++] = d.restart_standby_of;
            args[n] = NULL;
        }
        execv("/proc/self/exe", args ? args : argv);
        rwkvd_log(LOG_ERR, "standby resync: cannot re-execute rwkvd: %s", strerror(errno));
        return 1;
    }
    return status;
}
