/* One worker of the benchmark's load generator, in C: the same model, counts and output as the
 * Python worker in loadgen.py (which documents it), at a fraction of its CPU per request. On a
 * 2-core machine the generator shares the cores with what it measures, so every microsecond it
 * spends is taken from the proxies (issue 4's scale-out); wrk2, the paper's generator, is C too.
 *
 * usage: cgen PORT MODE RATE TOTAL_CONNS WORKERS WORKER WARMUP DURATION DRAIN REQFILE
 *   MODE     open (constant rate, latency from the scheduled send time) or closed
 *   REQFILE  the requests: each a 4-byte little-endian length, then its bytes
 * Protocol with the parent: after connecting, prints READY; reads the common start time (Unix
 * seconds) from stdin; runs; prints one JSON line of counts, then the lines "lat", "svc" and
 * "lag", each followed by the recorded values in microseconds. All traffic goes to 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HIST_MAX_US 3600000000LL
#define HEAD_MAX (1 << 20)
#define READ_CHUNK 65536

typedef struct {
    int64_t *v;
    size_t n, cap;
} vec;

typedef struct {
    int fd;
    int g;            /* global connection index: phases interleave across workers */
    long i;           /* requests sent so far */
    double sched;     /* the next send time (open loop), or the earliest (closed loop, after an error) */
    double sent;
    int waited;       /* idle until sched: its send lag is recorded */
    int inflight;
    int measured;
    int closed;       /* the peer closed it while idle: reconnect before the next send */
    int done;
    const char *req;
    size_t reqlen, wpos;
    char *buf;
    size_t len, cap;
    size_t need;      /* bytes of the whole response once its head said so (Content-Length); 0 unknown */
    int status;
    size_t body;
} conn;

static struct {
    int port, open, total, workers, worker, nreqs, ep, tfd;
    double rate, warmup, duration, drain, t0, t_warm, t_end, armed;
    char **reqs;
    size_t *reqlens;
    conn *conns;
    int n;
    vec lat, svc, lag;
    long long scheduled, completed, ok, non2xx, errors, bytes_in;
    char crashed[3][160];
    int ncrashed;
} S;

static void die(const char *what) {
    fprintf(stderr, "cgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void push(vec *a, int64_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4096;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v) die("realloc");
    }
    a->v[a->n++] = x;
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

static int64_t us(double s) { /* a latency in microseconds, clamped to what the histograms hold */
    double v = s * 1e6;
    if (v < 1) return 1;
    if (v > HIST_MAX_US) return HIST_MAX_US;
    return (int64_t)v;
}

static int connect_to(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void crash(conn *c, const char *what) {
    if (S.ncrashed < 3)
        snprintf(S.crashed[S.ncrashed], sizeof S.crashed[0], "%s: %s", what, strerror(errno));
    S.ncrashed++;
    c->done = 1;
}

static int attach(conn *c) {
    c->fd = connect_to();
    if (c->fd < 0) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(S.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    c->closed = 0;
    c->len = c->need = 0;
    return 0;
}

static void detach(conn *c) {
    if (c->fd >= 0) close(c->fd); /* closing removes it from the epoll set */
    c->fd = -1;
    c->inflight = 0;
    c->len = c->need = 0;
}

/* A new connection in place of the old one; a connection that cannot be opened ends its schedule. */
static int reopen(conn *c) {
    detach(c);
    if (attach(c) == 0) return 0;
    crash(c, "connect");
    return -1;
}

/* Open loop: the scheduled send time of the connection's next request. */
static double scheduled(const conn *c) { return S.t0 + (double)c->g / S.rate + c->i * (S.total / S.rate); }

/* A request failed (connection error, malformed response): counted, the connection replaced. */
static void failed(conn *c, double t) {
    int measured = S.open ? c->measured : c->sent >= S.t_warm;
    if (measured) S.errors++;
    if (reopen(c) < 0) return;
    c->sched = S.open ? scheduled(c) : t + 0.01;
    c->waited = 0;
}

static void want_write(conn *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(S.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(conn *c, double t) {
    while (c->wpos < c->reqlen) {
        ssize_t k = send(c->fd, c->req + c->wpos, c->reqlen - c->wpos, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_write(c, 1);
                return;
            }
            if (errno == EINTR) continue;
            failed(c, t);
            return;
        }
        c->wpos += (size_t)k;
    }
}

static void send_next(conn *c, double t) {
    if (c->closed && reopen(c) < 0) return;
    int k = (int)((c->g + c->i * (long)S.total) % S.nreqs);
    c->req = S.reqs[k];
    c->reqlen = S.reqlens[k];
    c->wpos = 0;
    c->i++;
    c->sent = t;
    c->inflight = 1;
    flush(c, t);
}

/* 1: a whole response is in the buffer (status, body length, bytes used); 0: not yet; -1: malformed. */
static int parse(conn *c, size_t *used) {
    char *buf = c->buf;
    if (c->need) {
        if (c->len < c->need) return 0;
        *used = c->need;
        return 1;
    }
    char *p = memmem(buf, c->len, "\r\n\r\n", 4);
    if (!p) return c->len > HEAD_MAX ? -1 : 0;
    size_t end = (size_t)(p - buf);
    if (end < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
    for (int d = 9; d < 12; d++)
        if (buf[d] < '0' || buf[d] > '9') return -1;
    c->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    long long clen = -1;
    int chunked = 0;
    char *line = memmem(buf, end, "\r\n", 2);
    for (; line && line < p; line = memmem(line + 2, (size_t)(p - line), "\r\n", 2)) {
        char *h = line + 2;
        if ((size_t)(p - h) > 15 && strncasecmp(h, "content-length:", 15) == 0)
            clen = strtoll(h + 15, NULL, 10);
        else if ((size_t)(p - h) > 18 && strncasecmp(h, "transfer-encoding:", 18) == 0) {
            char *eol = memmem(h, (size_t)(p - h) + 2, "\r\n", 2);
            for (char *q = h + 18; q + 7 <= eol; q++)
                if (strncasecmp(q, "chunked", 7) == 0) chunked = 1;
        }
    }
    size_t pos = end + 4;
    if (clen >= 0) {
        c->body = (size_t)clen;
        c->need = pos + (size_t)clen;
        return parse(c, used);
    }
    if (chunked) {
        c->body = 0;
        for (;;) {
            char *eol = memmem(buf + pos, c->len - pos, "\r\n", 2);
            if (!eol) return 0;
            char *stop;
            unsigned long long size = strtoull(buf + pos, &stop, 16);
            if (stop == buf + pos) return -1;
            size_t e = (size_t)(eol - buf);
            if (size == 0) {
                char *fin = memmem(buf + e - 2, c->len - (e - 2), "\r\n\r\n", 4);
                if (!fin) return 0;
                *used = (size_t)(fin - buf) + 4;
                return 1;
            }
            if (c->len < e + 2 + size + 2) return 0;
            c->body += size;
            pos = e + 2 + size + 2;
        }
    }
    if (c->status == 204 || c->status == 304 || c->status < 200) {
        c->body = 0;
        *used = pos;
        return 1;
    }
    return -1; /* a response without a length */
}

static void answered(conn *c, double t) {
    int measured = S.open ? c->measured : (c->sent >= S.t_warm && t <= S.t_end);
    if (measured) {
        if (!S.open) S.scheduled++;
        S.completed++;
        S.bytes_in += (long long)c->body;
        push(&S.lat, us(t - (S.open ? c->sched : c->sent)));
        push(&S.svc, us(t - c->sent));
        if (c->status >= 200 && c->status < 300)
            S.ok++;
        else
            S.non2xx++;
    }
    c->inflight = 0;
    c->need = 0;
    c->sched = S.open ? scheduled(c) : t;
}

static void readable(conn *c, double t) {
    int eof = 0; /* closed by the peer, or reset: what arrived before still counts */
    for (;;) {
        if (c->cap - c->len < READ_CHUNK) {
            c->cap = c->cap * 2 > c->len + READ_CHUNK ? c->cap * 2 : c->len + READ_CHUNK;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) die("realloc");
        }
        size_t room = c->cap - c->len;
        ssize_t k = recv(c->fd, c->buf + c->len, room, 0);
        if (k > 0) {
            c->len += (size_t)k;
            if ((size_t)k < room) break; /* a short read: the socket is drained */
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (k < 0 && errno == EINTR) continue;
        eof = 1;
        break;
    }
    if (c->inflight) {
        size_t used;
        int r = parse(c, &used);
        if (r < 0) {
            failed(c, t);
            return;
        }
        if (r > 0) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            answered(c, t);
        }
    } /* else: bytes nobody asked for stay, as in the Python worker */
    if (!eof) return;
    if (c->inflight) {
        failed(c, t);
    } else {
        detach(c); /* reconnected before the next send */
        c->closed = 1;
    }
}

static void arm(double when) {
    if (when == S.armed) return;
    S.armed = when;
    struct itimerspec its = {0};
    if (when < INFINITY) {
        double w = when > 1e-6 ? when : 1e-6;
        its.it_value.tv_sec = (time_t)w;
        its.it_value.tv_nsec = (long)((w - (double)(time_t)w) * 1e9);
    }
    if (timerfd_settime(S.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
}

/* Sends what is due; returns how many connections still have work, and the next deadline. */
static int dispatch(double t, double *next) {
    int active = 0;
    *next = INFINITY;
    for (int k = 0; k < S.n; k++) {
        conn *c = &S.conns[k];
        if (c->done) continue;
        if (!c->inflight) {
            if (S.open ? c->sched >= S.t_end : t >= S.t_end) {
                c->done = 1;
                continue;
            }
            if (c->sched > t) {
                c->waited = 1;
                if (c->sched < *next) *next = c->sched;
                active++;
                continue;
            }
            if (S.open) {
                c->measured = c->sched >= S.t_warm;
                if (c->measured) {
                    S.scheduled++;
                    if (c->waited) push(&S.lag, us(t - c->sched));
                }
            }
            c->waited = 0;
            send_next(c, t);
            if (c->done) continue;
        }
        active++;
    }
    return active;
}

static void load_requests(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    uint8_t hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        size_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (size_t)hdr[3] << 24;
        S.reqs = realloc(S.reqs, (S.nreqs + 1) * sizeof *S.reqs);
        S.reqlens = realloc(S.reqlens, (S.nreqs + 1) * sizeof *S.reqlens);
        char *r = malloc(n ? n : 1);
        if (!S.reqs || !S.reqlens || !r || fread(r, 1, n, f) != n) die("requests file");
        S.reqs[S.nreqs] = r;
        S.reqlens[S.nreqs++] = n;
    }
    fclose(f);
    if (!S.nreqs) {
        errno = EINVAL;
        die("no requests");
    }
}

static void print_values(const char *name, const vec *a) {
    fputs(name, stdout);
    for (size_t k = 0; k < a->n; k++) printf(" %lld", (long long)a->v[k]);
    fputc('\n', stdout);
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: cgen PORT open|closed RATE TOTAL_CONNS WORKERS WORKER WARMUP DURATION DRAIN "
                        "REQFILE\n");
        return 2;
    }
    S.port = atoi(argv[1]);
    S.open = strcmp(argv[2], "open") == 0;
    S.rate = atof(argv[3]);
    S.total = atoi(argv[4]);
    S.workers = atoi(argv[5]);
    S.worker = atoi(argv[6]);
    S.warmup = atof(argv[7]);
    S.duration = atof(argv[8]);
    S.drain = atof(argv[9]);
    if (S.total < 1 || S.workers < 1 || S.worker < 0 || (S.open && !(S.rate > 0))) {
        fprintf(stderr, "cgen: bad arguments\n");
        return 2;
    }
    load_requests(argv[10]);
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    S.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (S.ep < 0 || S.tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(S.ep, EPOLL_CTL_ADD, S.tfd, &tev);
    S.armed = INFINITY;
    for (int g = S.worker; g < S.total; g += S.workers) S.n++;
    S.conns = calloc((size_t)S.n, sizeof *S.conns);
    for (int k = 0; k < S.n; k++) {
        conn *c = &S.conns[k];
        c->g = S.worker + k * S.workers;
        if (attach(c) < 0) die("connect");
    }
    puts("READY");
    fflush(stdout);
    double start_at;
    if (scanf("%lf", &start_at) != 1) die("start time");
    double delay = start_at - clock_s(CLOCK_REALTIME);
    S.t0 = now() + (delay > 0 ? delay : 0);
    S.t_warm = S.t0 + S.warmup;
    S.t_end = S.t_warm + S.duration;
    double deadline = S.t_end + S.drain;
    double cpu0 = cpu_s();
    for (int k = 0; k < S.n; k++) /* closed loop: start at once (like the Python worker) */
        S.conns[k].sched = S.open ? scheduled(&S.conns[k]) : 0;
    struct epoll_event evs[64];
    for (;;) {
        double t = now(), next;
        if (!dispatch(t, &next) || t >= deadline) break;
        arm(next < deadline ? next : deadline);
        int ne = epoll_wait(S.ep, evs, 64, -1);
        if (ne < 0 && errno != EINTR) die("epoll_wait");
        t = now();
        for (int e = 0; e < ne; e++) {
            conn *c = evs[e].data.ptr;
            if (!c) {
                uint64_t x;
                if (read(S.tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("timerfd read");
                S.armed = -1; /* fired: arm again */
                continue;
            }
            if (c->fd < 0 || c->done) continue;
            if (evs[e].events & EPOLLOUT) {
                want_write(c, 0);
                if (c->inflight) flush(c, t);
                if (c->fd < 0 || c->done) continue;
            }
            if (evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable(c, t);
        }
    }
    int timeouts = 0;
    for (int k = 0; k < S.n; k++)
        if (!S.conns[k].done && S.conns[k].inflight) timeouts++;
    double cpu = cpu_s() - cpu0;
    printf("{\"scheduled\": %lld, \"completed\": %lld, \"ok\": %lld, \"non2xx\": %lld, \"errors\": %lld, "
           "\"timeouts\": %d, \"bytes_in\": %lld, \"cpu_s\": %.6f, \"crashed\": [",
           S.scheduled, S.completed, S.ok, S.non2xx, S.errors + timeouts + S.ncrashed, timeouts, S.bytes_in,
           cpu);
    for (int k = 0; k < S.ncrashed && k < 3; k++) printf("%s\"%s\"", k ? ", " : "", S.crashed[k]);
    puts("]}");
    print_values("lat", &S.lat);
    print_values("svc", &S.svc);
    print_values("lag", &S.lag);
    return 0;
}
