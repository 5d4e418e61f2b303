/*
 * loadgen.c - load generator for `make bench`: C concurrent callers of the
 * helper, each in its own thread doing connect, one request line, one
 * answer line, close, for a fixed time. C so that the client costs the
 * 2-core machine as little as the real caller (pam_slurmjwt.so) does.
 *
 * usage: loadgen SOCKET USER CALLERS SECONDS
 * prints: requests failed tokens_per_second p50_ms p99_ms
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 2000000

struct caller {
    pthread_t thread;
    const char *path;
    char request[128];
    double until;
    double *lat;
    size_t n, cap, failed;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One exchange; returns 1 when the answer is an OK line. */
static int exchange(const char *path, const char *request)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    char buf[1100];
    size_t got = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
    if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) < 0
        || send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
        close(fd);
        return 0;
    }
    while (got < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t) r;
        if (memchr(buf, '\n', got))
            break;
    }
    close(fd);
    buf[got] = '\0';
    return strncmp(buf, "SLURMJWT/2 OK ", 14) == 0 && memchr(buf, '\n', got) != NULL;
}

static void *run(void *arg)
{
    struct caller *c = arg;
    while (now() < c->until) {
        double start = now();
        if (!exchange(c->path, c->request)) {
            c->failed++;
            continue;
        }
        if (c->n < c->cap)
            c->lat[c->n++] = now() - start;
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: loadgen SOCKET USER CALLERS SECONDS\n");
        return 2;
    }
    int callers = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (callers < 1 || callers > 1024 || seconds <= 0)
        return 2;
    struct caller *c = calloc((size_t) callers, sizeof(*c));
    size_t cap = MAX_SAMPLES / (size_t) callers;
    double until = now() + seconds;
    for (int i = 0; i < callers; i++) {
        c[i].path = argv[1];
        snprintf(c[i].request, sizeof(c[i].request), "SLURMJWT/2 TOKEN %s 60\n", argv[2]);
        c[i].until = until;
        c[i].cap = cap;
        c[i].lat = malloc(cap * sizeof(double));
        pthread_create(&c[i].thread, NULL, run, &c[i]);
    }
    size_t total = 0, failed = 0;
    for (int i = 0; i < callers; i++) {
        pthread_join(c[i].thread, NULL);
        total += c[i].n;
        failed += c[i].failed;
    }
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t k = 0;
    for (int i = 0; i < callers; i++) {
        memcpy(all + k, c[i].lat, c[i].n * sizeof(double));
        k += c[i].n;
        free(c[i].lat);
    }
    qsort(all, total, sizeof(double), cmp);
    double p50 = total ? all[(size_t) (0.50 * (double) (total - 1))] : 0;
    double p99 = total ? all[(size_t) (0.99 * (double) (total - 1))] : 0;
    printf("%zu %zu %.1f %.3f %.3f\n", total, failed, (double) total / seconds,
           p50 * 1000, p99 * 1000);
    free(all);
    free(c);
    return 0;
}
