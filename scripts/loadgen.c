// Fixed-rate (open-loop) HTTP/1.1 load generator for scripts/bench-serve.sh, in the style of
// wrk2: request i is due at start + i/rate, goes out on the next free keep-alive connection, and
// its latency counts from its due time, so a stalled server shows as latency, not as a lower rate.
//
// Why C and not Python: the bench's asyncio generator took about 0.3 ms of CPU per request (the
// server about 0.45 ms) on the same 2 cores, and its own delays were part of what it measured:
// against a route that answers 404 at once, at 1,000 req/s, it measured p50 1.0 ms, p99 4.1 ms,
// max 147 ms. This one (one thread on epoll, nanosecond timeouts, 0.06 ms of CPU per request)
// measured p50 0.28 ms, p99 1.7 ms there (docs/BENCHMARKS.md, POST /v1/recommend).
//
//   cc -O2 -o loadgen scripts/loadgen.c
//   loadgen --port 8080 --path /v1/recommend --body body.json --rate 1000 --duration 20
//           [--conns 32] [--timeout 5] [--drain 10] [--start T] [--stop-file F] [--records F]
//
// --start T: the first request is due at T seconds of CLOCK_MONOTONIC (Python's
// time.perf_counter()), so a caller can line other events up with the load. --stop-file F: no
// request due after F appears is sent (checked every 20 ms). --records F: one line per answered
// or failed request, "due_seconds latency_seconds status" (status 0: failed without an answer).
// Bounds: no request is sent after start + duration + drain; each request gets --timeout seconds
// (then it is a failure and its connection is replaced); after the last send the run waits at
// most drain + timeout seconds. Requests never sent are reported as "unsent".
// Prints one JSON object: offered, sent, unsent, elapsed_s, failures, statuses, errors, all
// (n, p50_ms, p99_ms, max_ms of the requests answered 2xx…5xx).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BUF = 1 << 16, MAX_STATUS = 600 };

typedef struct {
    int fd;          // -1: no connection
    int busy;        // a request is out on it
    double due;      // the request's due time
    double sent;     // when it was written (for the timeout)
    size_t have;     // bytes of the reply read so far
    char buf[BUF];
} Conn;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int port, epfd;

// A new non-blocking keep-alive connection, registered with epoll as conn index k; -1 on failure.
static int dial(int k) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)k};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
    return fd;
}

static int dial_retrying(int k) {
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = dial(k);
        if (fd >= 0) return fd;
        struct timespec s = {0, 50000000L * (attempt + 1)};
        nanosleep(&s, NULL);
    }
    return -1;
}

// Length of a complete reply at the start of buf (head and Content-Length body), 0 if incomplete,
// -1 if it is not HTTP. *status gets the status code, *close whether the server closes.
static long complete_reply(const char *buf, size_t have, int *status, int *close_after) {
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end) return have > BUF - 1 ? -1 : 0;
    if (have < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(buf + 9);
    long length = 0;
    *close_after = 0;
    for (const char *line = strstr(buf, "\r\n") + 2; line < end;) {
        const char *eol = strstr(line, "\r\n");
        if (strncasecmp(line, "content-length:", 15) == 0) length = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "connection:", 11) == 0) {
            const char *close_word = strcasestr(line, "close");
            if (close_word && close_word < eol) *close_after = 1;
        }
        line = eol + 2;
    }
    long total = (end + 4 - buf) + length;
    if (total > BUF - 1) return -1;
    return (long)have >= total ? total : 0;
}

int main(int argc, char **argv) {
    const char *path = "/", *body_file = NULL, *stop_file = NULL, *records_file = NULL;
    double rate = 1000, duration = 10, timeout = 5, drain = 10, start = 0;
    int conns = 32;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--path")) path = v;
        else if (!strcmp(k, "--body")) body_file = v;
        else if (!strcmp(k, "--rate")) rate = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--conns")) conns = atoi(v);
        else if (!strcmp(k, "--timeout")) timeout = atof(v);
        else if (!strcmp(k, "--drain")) drain = atof(v);
        else if (!strcmp(k, "--start")) start = atof(v);
        else if (!strcmp(k, "--stop-file")) stop_file = v;
        else if (!strcmp(k, "--records")) records_file = v;
        else { fprintf(stderr, "loadgen: unknown option %s\n", k); return 2; }
    }
    if (!port || !body_file || rate <= 0 || duration <= 0 || conns < 1) {
        fprintf(stderr, "usage: loadgen --port P --path /x --body FILE --rate R --duration S [--conns N] [--timeout S] "
                        "[--drain S] [--start T] [--stop-file F] [--records F]\n");
        return 2;
    }
    FILE *f = fopen(body_file, "rb");
    if (!f) { perror(body_file); return 2; }
    static char body[BUF];
    size_t body_len = fread(body, 1, sizeof body, f);
    fclose(f);
    static char request[2 * BUF];
    int head_len = snprintf(request, sizeof request,
                            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            path, body_len);
    memcpy(request + head_len, body, body_len);
    size_t request_len = head_len + body_len;

    epfd = epoll_create1(0);
    Conn *c = calloc(conns, sizeof(Conn));
    int *idle = malloc(sizeof(int) * conns), n_idle = 0, live = 0;
    for (int k = 0; k < conns; k++) {
        c[k].fd = dial_retrying(k);
        if (c[k].fd >= 0) { idle[n_idle++] = k; live++; }
    }
    long offered = (long)(rate * duration), total = offered, sent = 0, done = 0, failures = 0;
    long statuses[MAX_STATUS] = {0}, timeouts = 0, closed = 0, write_errors = 0;
    double *lat = malloc(sizeof(double) * (offered > 0 ? offered : 1));
    long n_lat = 0;
    FILE *records = records_file ? fopen(records_file, "w") : NULL;
    if (start <= 0) start = now() + 0.05;
    double send_deadline = start + duration + drain, last_send = 0, next_stop_check = 0;
    while (now() < start) {
        double d = start - now();
        struct timespec s = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
        nanosleep(&s, NULL);
    }

    for (;;) {
        double t = now();
        if (stop_file && t >= next_stop_check) {
            next_stop_check = t + 0.02;
            // The run was meant to end here: nothing after this is due.
            if (access(stop_file, F_OK) == 0 && total > sent) total = offered = sent;
        }
        if (sent < total && (t > send_deadline || live == 0)) total = sent;   // unsent from here on
        // Send every request that is due, on free connections.
        while (sent < total && start + sent / rate <= t && n_idle > 0) {
            int k = idle[--n_idle];
            Conn *x = &c[k];
            x->busy = 1;
            x->due = start + sent / rate;
            x->sent = t;
            x->have = 0;
            sent++;
            last_send = t;
            if (write(x->fd, request, request_len) != (ssize_t)request_len) {
                // The write failed (a closed connection): the request fails, the connection is replaced.
                write_errors++;
                failures++;
                done++;
                if (records) fprintf(records, "%.6f %.6f 0\n", x->due, t - x->due);
                epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL);
                close(x->fd);
                x->busy = 0;
                x->fd = dial_retrying(k);
                if (x->fd >= 0) idle[n_idle++] = k; else live--;
            }
        }
        if (sent >= total && done >= sent) break;
        if (sent >= total && last_send > 0 && t > last_send + drain + timeout) break;
        // Timeouts.
        for (int k = 0; k < conns; k++) {
            Conn *x = &c[k];
            if (x->busy && t - x->sent > timeout) {
                timeouts++;
                failures++;
                done++;
                if (records) fprintf(records, "%.6f %.6f 0\n", x->due, t - x->due);
                epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL);
                close(x->fd);
                x->busy = 0;
                x->fd = dial_retrying(k);
                if (x->fd >= 0) idle[n_idle++] = k; else live--;
            }
        }
        // Wait for replies until the next due time (or 10 ms), with nanosecond precision.
        double wait = 0.01;
        if (sent < total && n_idle > 0) {
            wait = start + sent / rate - now();
            if (wait < 0) wait = 0;
        }
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        struct epoll_event ev[64];
        int n = epoll_pwait2(epfd, ev, 64, &ts, NULL);
        for (int j = 0; j < n; j++) {
            int k = (int)ev[j].data.u32;
            Conn *x = &c[k];
            if (x->fd < 0) continue;
            ssize_t r = read(x->fd, x->buf + x->have, BUF - 1 - x->have);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            int status = 0, close_after = 0;
            long reply = 0;
            if (r > 0) {
                x->have += (size_t)r;
                x->buf[x->have] = 0;   // the head is searched as a C string
                reply = complete_reply(x->buf, x->have, &status, &close_after);
                if (reply == 0) continue;
            }
            double answered = now();
            if (r > 0 && reply > 0 && x->busy) {
                if (status > 0 && status < MAX_STATUS) statuses[status]++;
                if (status < 200 || status >= 300) failures++;
                lat[n_lat++] = answered - x->due;
                if (records) fprintf(records, "%.6f %.6f %d\n", x->due, answered - x->due, status);
                done++;
                x->busy = 0;
                if (!close_after) { idle[n_idle++] = k; continue; }
            } else {
                // Closed, an error, or not HTTP: a failure if a request was out.
                closed++;
                if (x->busy) {
                    failures++;
                    done++;
                    if (records) fprintf(records, "%.6f %.6f 0\n", x->due, answered - x->due);
                    x->busy = 0;
                }
            }
            epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL);
            close(x->fd);
            x->fd = dial_retrying(k);
            if (x->fd >= 0) idle[n_idle++] = k; else live--;
        }
    }
    double elapsed = now() - start;
    if (records) fclose(records);
    qsort(lat, n_lat, sizeof(double), cmp_double);
#define PCT(q) (n_lat ? lat[(long)((q) * (n_lat - 1) + 0.5)] * 1000 : 0.0)
    printf("{\"offered\": %ld, \"sent\": %ld, \"unsent\": %ld, \"elapsed_s\": %.2f, \"failures\": %ld, \"statuses\": {",
           offered, sent, offered - sent, elapsed, failures);
    int first = 1;
    for (int s = 0; s < MAX_STATUS; s++) {
        if (statuses[s]) { printf("%s\"%d\": %ld", first ? "" : ", ", s, statuses[s]); first = 0; }
    }
    printf("}, \"errors\": {");
    first = 1;
    const char *names[] = {"Timeout", "ConnectionClosed", "WriteFailed"};
    long counts[] = {timeouts, closed, write_errors};
    for (int e = 0; e < 3; e++) {
        if (counts[e]) { printf("%s\"%s\": %ld", first ? "" : ", ", names[e], counts[e]); first = 0; }
    }
    printf("}, \"all\": {\"n\": %ld, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}}\n",
           n_lat, PCT(0.5), PCT(0.99), PCT(1.0));
    return 0;
}
