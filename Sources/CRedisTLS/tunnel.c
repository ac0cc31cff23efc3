// The TLS tunnel behind rediss:// (see include/redis_tls_tunnel.h for why it exists).
//
// Layout: srtls_open (caller's thread) = TCP connect + TLS handshake, both bounded by the
// timeout; then one detached pump thread per tunnel, which owns the SSL session, the TCP socket
// and its end of the socketpair, and frees all three when it ends.
//
// SIGPIPE: OpenSSL writes to the TCP socket with write(2), which raises SIGPIPE when the server
// has gone; the process does not ignore SIGPIPE, so every write happens with it blocked (the
// handshake in the caller's thread, briefly; the pump thread for its lifetime) and a SIGPIPE
// raised meanwhile is consumed.
#define _GNU_SOURCE
#include "redis_tls_tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int live_tunnels;

int srtls_live_tunnels(void) { return atomic_load(&live_tunnels); }

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

/// Fills `message` with `what` and the newest OpenSSL error (or errno), and clears the queue.
static void ssl_failure(char *message, size_t size, const char *what) {
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(message, size, "%s: %s", what, buf);
    } else if (errno != 0) {
        snprintf(message, size, "%s: %s", what, strerror(errno));
    } else {
        snprintf(message, size, "%s", what);
    }
    ERR_clear_error();
}

/// A non-blocking TCP connection to host:port within the deadline, or -1 with a message.
static int tcp_connect(const char *host, int port, long long deadline, char *message, size_t size) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {0}, *list = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        snprintf(message, size, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(message, size, "no address for %s", host);
    for (struct addrinfo *a = list; a != NULL && fd < 0; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (s < 0) { snprintf(message, size, "socket: %s", strerror(errno)); continue; }
        if (connect(s, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            snprintf(message, size, "%s", strerror(errno));
            close(s);
            continue;
        }
        struct pollfd p = {.fd = s, .events = POLLOUT};
        long long left = deadline - now_ms();
        int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
        int err = 0;
        socklen_t len = sizeof err;
        if (ready <= 0) {
            snprintf(message, size, "%s", ready == 0 ? "Connection timed out" : strerror(errno));
        } else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            snprintf(message, size, "%s", strerror(err ? err : errno));
        } else {
            fd = s;
            continue;
        }
        close(s);
    }
    freeaddrinfo(list);
    if (fd >= 0) {
        int one = 1;  // request/reply traffic: do not wait to fill segments (hiredis does the same)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/// Called by OpenSSL when the server asks for a client certificate and none is configured: notes
/// it, so srtls_open can check whether the server insists (see probe).
static int note_certificate_request(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
    (void)x509; (void)pkey;
    int *asked = SSL_get_app_data(ssl);
    if (asked != NULL) *asked = 1;
    return 0;
}

/// Runs one step of a non-blocking SSL call: 1 done, 0 wait and retry, -1 failed (or deadline).
static int ssl_step(SSL *ssl, int fd, int r, long long deadline) {
    if (r > 0) return 1;
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
    struct pollfd p = {.fd = fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
    long long left = deadline - now_ms();
    return left > 0 && poll(&p, 1, (int)left) > 0 ? 0 : -1;
}

/// One PING on a fresh session, its whole one-line reply read back (+PONG, or -NOAUTH before a
/// login: either way the server serves us). With TLS 1.3 a server that requires a client
/// certificate ("tls-auth-clients yes") checks it only after the client's handshake is done
/// and then drops the session; this tells that apart from "optional". 1: served, 0: not.
static int probe(SSL *ssl, int fd, long long deadline) {
    static const char ping[] = "PING\r\n";
    int r;
    while ((r = ssl_step(ssl, fd, SSL_write(ssl, ping, sizeof ping - 1), deadline)) == 0) {}
    if (r < 0) return 0;
    char c = 0;
    while (c != '\n') {
        while ((r = ssl_step(ssl, fd, SSL_read(ssl, &c, 1), deadline)) == 0) {}
        if (r < 0) return 0;
    }
    return 1;
}

static int is_ip_literal(const char *name) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/// A client context: verify the peer against `ca_file` (or the system store), TLS ≥ 1.2,
/// optional client certificate.
static SSL_CTX *make_context(const char *ca_file, const char *cert_file, const char *key_file,
                             char *message, size_t size) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) { ssl_failure(message, size, "SSL_CTX_new"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_client_cert_cb(ctx, note_certificate_request);
    char what[600];
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            snprintf(what, sizeof what, "cannot load the CA file %s", ca_file);
            ssl_failure(message, size, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_failure(message, size, "cannot load the system's CA store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cert_file != NULL || key_file != NULL) {
        if (cert_file == NULL || key_file == NULL) {
            snprintf(message, size, "a client certificate needs both the certificate and the key file");
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            snprintf(what, sizeof what, "cannot load the client certificate %s", cert_file);
            ssl_failure(message, size, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(what, sizeof what, "cannot use the client key %s with %s", key_file, cert_file);
            ssl_failure(message, size, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

// MARK: - The pump

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    int tcp;    // non-blocking
    int local;  // the pump's end of the socketpair, non-blocking
} tunnel;

static void tunnel_free(tunnel *t) {
    if (t->ssl != NULL) { SSL_shutdown(t->ssl); SSL_free(t->ssl); }  // best effort close_notify
    if (t->ctx != NULL) SSL_CTX_free(t->ctx);
    if (t->tcp >= 0) close(t->tcp);
    if (t->local >= 0) close(t->local);
    free(t);
}

/// Moves bytes both ways until hiredis closes its end. Each direction has its own buffer and
/// neither blocks the other: hiredis writes a whole pipeline before reading, while the server
/// may already answer. When the server side ends (EOF, reset, TLS error), hiredis's end sees EOF
/// (shutdown, not close: its next write must not raise SIGPIPE) and the pump drains what hiredis
/// still writes until it closes.
static void *pump(void *arg) {
    tunnel *t = arg;
    enum { size = 65536 };
    unsigned char *up = malloc(size), *down = malloc(size);  // up: hiredis → server; down: server → hiredis
    size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
    int local_open = up != NULL && down != NULL, server_open = 1, local_shut = 0;
    short tcp_for_write = POLLOUT, tcp_for_read = POLLIN;
    while (local_open) {
        int progress = 1;
        while (progress && local_open) {
            progress = 0;
            if (up_len == 0) {
                ssize_t n = recv(t->local, up, size, 0);
                if (n > 0) { up_len = (size_t)n; up_off = 0; progress = 1; }
                else if (n == 0 || (errno != EAGAIN && errno != EINTR)) { local_open = 0; break; }
            }
            if (up_len > 0 && !server_open) { up_len = 0; progress = 1; }  // nobody to send to
            if (up_len > 0) {
                int r = SSL_write(t->ssl, up + up_off, (int)(up_len - up_off));
                if (r > 0) {
                    up_off += (size_t)r;
                    if (up_off == up_len) up_len = 0;
                    progress = 1;
                } else {
                    int e = SSL_get_error(t->ssl, r);
                    if (e == SSL_ERROR_WANT_READ) tcp_for_write = POLLIN;
                    else if (e == SSL_ERROR_WANT_WRITE) tcp_for_write = POLLOUT;
                    else { server_open = 0; progress = 1; }
                }
            }
            if (down_len == 0 && server_open) {
                int r = SSL_read(t->ssl, down, size);
                if (r > 0) { down_len = (size_t)r; down_off = 0; progress = 1; }
                else {
                    int e = SSL_get_error(t->ssl, r);
                    if (e == SSL_ERROR_WANT_READ) tcp_for_read = POLLIN;
                    else if (e == SSL_ERROR_WANT_WRITE) tcp_for_read = POLLOUT;
                    else { server_open = 0; progress = 1; }
                }
            }
            if (down_len > 0) {
                ssize_t n = send(t->local, down + down_off, down_len - down_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                    down_off += (size_t)n;
                    if (down_off == down_len) down_len = 0;
                    progress = 1;
                } else if (errno != EAGAIN && errno != EINTR) { local_open = 0; break; }
            }
            ERR_clear_error();
        }
        if (!local_open) break;
        if (!server_open && down_len == 0 && !local_shut) { shutdown(t->local, SHUT_WR); local_shut = 1; }
        struct pollfd p[2] = {{.fd = t->local, .events = 0}, {.fd = t->tcp, .events = 0}};
        if (up_len == 0) p[0].events |= POLLIN;
        if (down_len > 0) p[0].events |= POLLOUT;
        if (server_open && up_len > 0) p[1].events |= tcp_for_write;
        if (server_open && down_len == 0) p[1].events |= tcp_for_read;
        if (!server_open) p[1].fd = -1;
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        // hiredis closed its end: nobody wants what is still in flight (and a HUP reported
        // without asking would spin this loop while the server is not reading).
        if (p[0].revents & (POLLHUP | POLLERR)) break;
    }
    free(up);
    free(down);
    tunnel_free(t);
    atomic_fetch_sub(&live_tunnels, 1);
    return NULL;
}

// MARK: - Open

int srtls_open(const char *host, int port, const char *ca_file, const char *cert_file, const char *key_file,
               const char *server_name, int timeout_ms, srtls_error *error, char *message, size_t message_size) {
    long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    const char *name = server_name != NULL ? server_name : host;
    *error = SRTLS_ERR_SYSTEM;
    message[0] = 0;

    // SIGPIPE blocked while this thread writes to the TCP socket (and inherited by the pump).
    sigset_t pipe_set, previous, pending_before;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending_before);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &previous);

    int result = -1, pair[2] = {-1, -1};
    tunnel *t = calloc(1, sizeof *t);
    if (t == NULL) { snprintf(message, message_size, "out of memory"); goto done; }
    t->tcp = t->local = -1;
    if ((t->ctx = make_context(ca_file, cert_file, key_file, message, message_size)) == NULL) {
        *error = SRTLS_ERR_TLS;
        goto done;
    }
    if ((t->tcp = tcp_connect(host, port, deadline, message, message_size)) < 0) {
        *error = SRTLS_ERR_CONNECT;
        goto done;
    }
    if ((t->ssl = SSL_new(t->ctx)) == NULL || SSL_set_fd(t->ssl, t->tcp) != 1) {
        ssl_failure(message, message_size, "SSL_new");
        goto done;
    }
    int certificate_requested = 0;
    SSL_set_app_data(t->ssl, &certificate_requested);
    if (is_ip_literal(name)) {
        // No SNI for an address (RFC 6066); the certificate must list it as an IP SAN.
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
    } else {
        SSL_set_tlsext_host_name(t->ssl, name);
        SSL_set1_host(t->ssl, name);
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(t->ssl);
        if (r == 1) break;
        int e = SSL_get_error(t->ssl, r);
        struct pollfd p = {.fd = t->tcp, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            *error = SRTLS_ERR_TLS;
            long verify = SSL_get_verify_result(t->ssl);
            if (verify != X509_V_OK) {
                snprintf(message, message_size, "certificate verification failed: %s",
                         X509_verify_cert_error_string(verify));
                ERR_clear_error();
            } else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
                snprintf(message, message_size, "TLS handshake failed: the server closed the connection%s%s",
                         errno ? ": " : " (is it a TLS port? does it want a client certificate?)",
                         errno ? strerror(errno) : "");
            } else {
                ssl_failure(message, message_size, "TLS handshake failed");
            }
            goto done;
        }
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            // A server that accepts but never answers is down, not misconfigured.
            *error = SRTLS_ERR_CONNECT;
            snprintf(message, message_size, "TLS handshake timed out");
            goto done;
        }
    }
    SSL_set_app_data(t->ssl, NULL);
    if (certificate_requested && !probe(t->ssl, t->tcp, deadline)) {
        *error = SRTLS_ERR_TLS;
        snprintf(message, message_size, "the server requires a client certificate and none is configured");
        ERR_clear_error();
        goto done;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        snprintf(message, message_size, "socketpair: %s", strerror(errno));
        goto done;
    }
    t->local = pair[1];  // closed by tunnel_free from here on
    if (set_nonblocking(t->local, 1) != 0) {
        snprintf(message, message_size, "fcntl: %s", strerror(errno));
        goto done;
    }
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&live_tunnels, 1);
    int rc = pthread_create(&thread, &attr, pump, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&live_tunnels, 1);
        snprintf(message, message_size, "cannot start the TLS pump thread: %s", strerror(rc));
        goto done;
    }
    t = NULL;  // the pump owns it now
    result = pair[0];
    *error = SRTLS_OK;
done:
    if (t != NULL) tunnel_free(t);
    if (result < 0 && pair[0] >= 0) close(pair[0]);
    // Consume a SIGPIPE this thread raised (not one that was already pending), then unblock.
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) && !sigismember(&pending_before, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return result;
}
