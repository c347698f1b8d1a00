/* curve.c — see curve.h. */
#include "curve.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

static void *mon;            /* PAIR receiving the watched socket's events */
static bool curve_on;
static bool seen_connected, seen_ok, seen_auth, seen_mech, seen_proto, seen_closed;
static unsigned auth_status; /* ZAP status of a refusal (400) */

static bool z85_ok(const char *s, size_t n)
{
    static const char chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (n != 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(chars, s[i]))
            return false;
    return true;
}

/* The Z85 key `what` ("public-key" or "secret-key") of a certificate, or the file's bare
 * key, or `spec` itself when it is 40 Z85 characters and no such file exists. */
static int load_key(const char *var, const char *spec, const char *what, char out[41], char *err, size_t cap)
{
    size_t sn = strlen(spec);
    struct stat st;
    if (z85_ok(spec, sn) && stat(spec, &st) != 0) {
        memcpy(out, spec, 41);
        return 0;
    }
    FILE *f = fopen(spec, "r");
    if (!f) {
        snprintf(err, cap, "%s: %s: %s", var, spec, strerror(errno));
        return -1;
    }
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, "\r\n");
        p[n] = '\0';
        if (p == line && z85_ok(p, n)) { /* a bare key */
            memcpy(out, p, 41);
            found = true;
        } else if (!strncmp(p, what, strlen(what))) {
            char *q = strchr(p, '=');
            if (!q)
                continue;
            q++;
            while (*q == ' ' || *q == '\t')
                q++;
            if (*q == '"' || *q == '\'')
                q++;
            if (z85_ok(q, 40) && (q[40] == '"' || q[40] == '\'' || q[40] == '\0')) {
                memcpy(out, q, 40);
                out[40] = '\0';
                found = true;
            }
        }
    }
    fclose(f);
    if (!found) {
        snprintf(err, cap, "%s: %s: no %s in it (expected a certificate from rwkvd-keygen or a bare Z85 key)", var,
                 spec, what);
        return -1;
    }
    return 0;
}

int rwkvc_curve_setup(void *ctx, void *sock, char *err, size_t cap)
{
    const char *server = getenv("RWKV_SERVER_KEY"), *client = getenv("RWKV_CLIENT_KEY");
    if (server && !*server)
        server = NULL;
    if (client && !*client)
        client = NULL;
    if (ctx && !mon) {
        static unsigned seq;
        char ep[64];
        snprintf(ep, sizeof ep, "inproc://rwkvc-curve-monitor-%u", seq++);
        int ev = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
        if (zmq_socket_monitor(sock, ep, ev) == 0 && (mon = zmq_socket(ctx, ZMQ_PAIR)) != NULL) {
            int zero = 0;
            zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
            if (zmq_connect(mon, ep) != 0) {
                zmq_close(mon);
                mon = NULL;
            }
        }
    }
    if (!server && !client)
        return 0;
    if (!server || !client) {
        snprintf(err, cap, "CURVE needs both RWKV_SERVER_KEY (the daemon's public key) and RWKV_CLIENT_KEY (this "
                 "client's secret certificate); %s is not set", server ? "RWKV_CLIENT_KEY" : "RWKV_SERVER_KEY");
        return -1;
    }
    char spub[41], csec[41], cpub[41];
    if (load_key("RWKV_SERVER_KEY", server, "public-key", spub, err, cap) != 0 ||
        load_key("RWKV_CLIENT_KEY", client, "secret-key", csec, err, cap) != 0)
        return -1;
    if (zmq_curve_public(cpub, csec) != 0) {
        snprintf(err, cap, "RWKV_CLIENT_KEY: this libzmq has no CURVE (zmq_has(\"curve\") is false)");
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, spub, 40) != 0 || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, cpub, 40) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, csec, 40) != 0) {
        snprintf(err, cap, "cannot set the CURVE keys: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    memset(csec, 0, sizeof csec);
    curve_on = true;
    return 1;
}

static void explain(char *buf, size_t cap);

void rwkvc_curve_explain(char *buf, size_t cap)
{
    buf[0] = '\0';
    while (mon) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (const char *)zmq_msg_data(&ev) + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) {
            zmq_msg_t addr;
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, mon, 0);
            zmq_msg_close(&addr);
        }
        rwkvc_curve_event(event, value);
    }
    explain(buf, cap);
}

void rwkvc_curve_event(unsigned event, unsigned value)
{
    if (event == ZMQ_EVENT_CONNECTED)
        seen_connected = true;
    else if (event == ZMQ_EVENT_DISCONNECTED)
        seen_closed = true;
    else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
        seen_ok = true;
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        seen_auth = true;
        auth_status = value;
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        seen_mech = true;
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        seen_proto = true;
}

static void explain(char *buf, size_t cap)
{
    buf[0] = '\0';
    if (seen_auth)
        snprintf(buf, cap, "the daemon refused this client's key (ZAP status %u): its public key is not on the "
                 "daemon's allow-list (security.curve.allow)", auth_status);
    else if (seen_mech && curve_on)
        snprintf(buf, cap, "the daemon does not use CURVE, but RWKV_SERVER_KEY/RWKV_CLIENT_KEY are set");
    else if (seen_mech)
        snprintf(buf, cap, "the daemon requires CURVE: set RWKV_SERVER_KEY (its public key) and RWKV_CLIENT_KEY "
                 "(this client's secret certificate, on its allow-list)");
    else if (seen_proto)
        snprintf(buf, cap, "the security handshake failed (a wrong server key in RWKV_SERVER_KEY?)");
    else if (seen_connected && !seen_ok && curve_on)
        snprintf(buf, cap, "connected, but the CURVE handshake never completed: a wrong server key? "
                 "(RWKV_SERVER_KEY must be the daemon's public key; a daemon drops a hello it cannot decrypt)");
}

void rwkvc_curve_close(void)
{
    if (mon)
        zmq_close(mon);
    mon = NULL;
}
