/* dist.c — the ranks and collectives of data-parallel training (dist.h). */
#include "dist.h"

#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    return *end || n < 1 || n > 1 << 24 ? fallback : (int)n;
}

int kdh_dist_local_size(void)
{
    int n = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 0);
    if (!n) n = env_int("MPI_LOCALNRANKS", 0);
    return n > 0 ? n : 1;
}

#ifndef KDSL_MPI

void kdh_dist_set_where(const char *where) { (void)where; }
void kdh_dist_stats(unsigned long *ncalls, double *seconds)
{
    *ncalls = 0;
    *seconds = 0;
}
bool kdh_dist_launched(void) { return false; }
int kdh_dist_init(const volatile sig_atomic_t *stop, kdh_error *err)
{
    (void)stop;
    (void)err;
    if (env_int("OMPI_COMM_WORLD_SIZE", 1) > 1 || env_int("PMI_SIZE", 1) > 1)
        fprintf(stderr, "kdslc: warning: started by mpirun, but this kdslc was built without MPI: every rank "
                        "trains alone (meson setup -Dmpi=enabled, with libopenmpi-dev)\n");
    return 0;
}
void kdh_dist_finish(int exit_code) { (void)exit_code; }
int kdh_dist_rank(void) { return 0; }
int kdh_dist_size(void) { return 1; }

int kdh_dist_bcast(void *buf, size_t bytes, kdh_error *err)
{
    (void)buf, (void)bytes, (void)err;
    return 0;
}

int kdh_dist_allreduce_floats(float *buf, int64_t n, size_t bucket_bytes, kdh_error *err)
{
    (void)buf, (void)n, (void)bucket_bytes, (void)err;
    return 0;
}

int kdh_dist_allreduce_doubles(double *buf, int n, kdh_error *err)
{
    (void)buf, (void)n, (void)err;
    return 0;
}

void kdh_dist_start_sum(float *buf, int64_t n) { (void)buf, (void)n; }
void kdh_dist_progress(void) {}
int kdh_dist_wait(kdh_error *err)
{
    (void)err;
    return 0;
}

int kdh_dist_allgather_floats(const float *mine, int64_t n, float *all, kdh_error *err)
{
    (void)err;
    if (all != mine) memmove(all, mine, (size_t)n * sizeof *all);
    return 0;
}

int kdh_dist_allgatherv_floats(const float *mine, const int64_t *counts, float *all, kdh_error *err)
{
    return kdh_dist_allgather_floats(mine, counts[0], all, err);
}

#else

#include <mpi.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static char where_now[160] = "training";

/* The job as this rank sees it. */
static struct {
    bool on;                           /* MPI_Init_thread done */
    int rank, size;
    const volatile sig_atomic_t *stop;
    /* Every rank's PID and node, for the watchdog's check of the ranks on this node. */
    long *pids;
    char (*nodes)[MPI_MAX_PROCESSOR_NAME];
    pthread_t watchdog;
    bool watching;
} job = {.size = 1};

/* The sums kdh_dist_start_sum started, and the first error starting one. */
static struct {
    MPI_Request *req;
    int n, cap;
    int rc;
} started;

/* A collective under way (its sequence number, 0: none): what the watchdog watches. */
static atomic_ulong in_call;
static unsigned long calls;
static pthread_mutex_t where_lock = PTHREAD_MUTEX_INITIALIZER;

void kdh_dist_set_where(const char *where)
{
    pthread_mutex_lock(&where_lock);
    snprintf(where_now, sizeof where_now, "%s", where);
    pthread_mutex_unlock(&where_lock);
}

bool kdh_dist_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

int kdh_dist_rank(void) { return job.rank; }
int kdh_dist_size(void) { return job.size; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mpi_err(kdh_error *err, const char *what, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    pthread_mutex_lock(&where_lock);
    kdh__err(err, "rank %d: %s failed during %s: %s", job.rank, what, where_now, text);
    pthread_mutex_unlock(&where_lock);
    return -1;
}

/* A rank of this node whose process is gone, or -1. */
static int dead_local_rank(void)
{
    for (int r = 0; r < job.size; r++) {
        if (r == job.rank || strcmp(job.nodes[r], job.nodes[job.rank])) continue;
        if (kill((pid_t)job.pids[r], 0) != 0 && errno == ESRCH) return r;
    }
    return -1;
}

/* The watchdog (dist.h): a blocking collective (or MPI_Waitall) cannot be
 * left, so this thread, which never calls MPI, ends the process with the
 * message. */
static void *watch(void *unused)
{
    (void)unused;
    unsigned long stop_call = 0;
    double stop_seen = 0;
    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        unsigned long call = atomic_load(&in_call);
        if (!call) continue;
        int dead = dead_local_rank();
        char msg[512];
        pthread_mutex_lock(&where_lock);
        if (dead >= 0)
            snprintf(msg, sizeof msg, "kdslc: error: rank %d (pid %ld on %s) ended during %s; rank %d stops (the job "
                                      "cannot go on without it; --resume from the last checkpoint continues on any "
                                      "number of ranks)\n",
                     dead, job.pids[dead], job.nodes[dead], where_now, job.rank);
        else if (job.stop && *job.stop && call == stop_call && now() - stop_seen > 2.0)
            snprintf(msg, sizeof msg, "kdslc: error: rank %d: stopped by %s during %s while waiting for the other "
                                      "ranks: a rank on another node ended, or the job was interrupted (mpirun names "
                                      "the rank)\n",
                     job.rank, *job.stop == SIGINT ? "SIGINT" : "SIGTERM", where_now);
        else msg[0] = 0;
        pthread_mutex_unlock(&where_lock);
        if (msg[0]) {
            fflush(stdout);
            if (write(STDERR_FILENO, msg, strlen(msg)) < 0) msg[0] = 0;
            _exit(1);
        }
        if (job.stop && *job.stop && call != stop_call) {
            stop_call = call;
            stop_seen = now();
        }
    }
    return NULL;
}

static double call_started, call_seconds;
static unsigned long waits;   /* the watchdog's sequence: collectives and waits */

static void wait_begin(void)
{
    atomic_store(&in_call, ++waits);
    call_started = now();
}

static void call_begin(void)
{
    calls++;
    wait_begin();
}

static void call_end(void)
{
    atomic_store(&in_call, 0);
    call_seconds += now() - call_started;
}

void kdh_dist_stats(unsigned long *ncalls, double *seconds)
{
    *ncalls = calls;
    *seconds = call_seconds;
}

int kdh_dist_init(const volatile sig_atomic_t *stop, kdh_error *err)
{
    job.stop = stop;
    if (job.on || !kdh_dist_launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return kdh__err(err, "MPI_Init_thread failed");
    job.on = true;
    /* errors come back as codes, reported with the rank */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &job.size);
    job.pids = calloc((size_t)job.size, sizeof *job.pids);
    job.nodes = calloc((size_t)job.size, sizeof *job.nodes);
    if (!job.pids || !job.nodes) return kdh__err(err, "out of memory for %d ranks", job.size);
    long pid = (long)getpid();
    char node[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    MPI_Get_processor_name(node, &len);
    int rc = MPI_Allgather(&pid, 1, MPI_LONG, job.pids, 1, MPI_LONG, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allgather(node, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, job.nodes, MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                           MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_err(err, "MPI_Allgather", rc);
    if (job.size > 1) {
        if (pthread_create(&job.watchdog, NULL, watch, NULL) != 0) return kdh__err(err, "cannot start the watchdog");
        job.watching = true;
    }
    return 0;
}

void kdh_dist_finish(int exit_code)
{
    if (!job.on) return;
    job.on = false;
    fflush(stdout);
    fflush(stderr);
    if (exit_code != 0) MPI_Abort(MPI_COMM_WORLD, exit_code);
    if (job.watching) {
        pthread_cancel(job.watchdog);   /* it sleeps in nanosleep, a cancellation point */
        pthread_join(job.watchdog, NULL);
    }
    MPI_Finalize();
    free(started.req);
    free(job.pids);
    free(job.nodes);
}

/* MPI counts are ints: larger buffers go in pieces of at most this many. */
#define PIECE (1 << 30)

int kdh_dist_bcast(void *buf, size_t bytes, kdh_error *err)
{
    for (size_t at = 0; job.size > 1 && at < bytes; at += PIECE) {
        int n = (int)(bytes - at < PIECE ? bytes - at : PIECE);
        call_begin();
        int rc = MPI_Bcast((char *)buf + at, n, MPI_BYTE, 0, MPI_COMM_WORLD);
        call_end();
        if (rc != MPI_SUCCESS) return mpi_err(err, "MPI_Bcast", rc);
    }
    return 0;
}

int kdh_dist_allreduce_floats(float *buf, int64_t n, size_t bucket_bytes, kdh_error *err)
{
    if (job.size == 1) return 0;
    int64_t per = (int64_t)(bucket_bytes / sizeof(float));
    if (per < 1024) per = 1024;
    if (per > PIECE) per = PIECE;
    for (int64_t at = 0; at < n; at += per) {
        int k = (int)(n - at < per ? n - at : per);
        call_begin();
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        call_end();
        if (rc != MPI_SUCCESS) return mpi_err(err, "MPI_Allreduce", rc);
    }
    return 0;
}

void kdh_dist_start_sum(float *buf, int64_t n)
{
    if (job.size == 1 || n <= 0 || started.rc != MPI_SUCCESS) return;
    if (started.n == started.cap) {
        int cap = started.cap ? 2 * started.cap : 64;
        MPI_Request *r = realloc(started.req, (size_t)cap * sizeof *r);
        if (!r) {
            started.rc = MPI_ERR_NO_MEM;
            return;
        }
        started.req = r;
        started.cap = cap;
    }
    calls++;
    started.rc = n > INT_MAX ? MPI_ERR_COUNT
                             : MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                              &started.req[started.n]);
    if (started.rc == MPI_SUCCESS) started.n++;
}

void kdh_dist_progress(void)
{
    int done = 0;
    if (started.n > 0) MPI_Testall(started.n, started.req, &done, MPI_STATUSES_IGNORE);
}

int kdh_dist_wait(kdh_error *err)
{
    int rc = started.rc;
    if (started.n > 0) {
        wait_begin();
        int wrc = MPI_Waitall(started.n, started.req, MPI_STATUSES_IGNORE);
        call_end();
        if (rc == MPI_SUCCESS) rc = wrc;
    }
    started.n = 0;
    started.rc = MPI_SUCCESS;
    return rc == MPI_SUCCESS ? 0 : mpi_err(err, "MPI_Iallreduce", rc);
}

int kdh_dist_allreduce_doubles(double *buf, int n, kdh_error *err)
{
    if (job.size == 1) return 0;
    call_begin();
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    call_end();
    return rc == MPI_SUCCESS ? 0 : mpi_err(err, "MPI_Allreduce", rc);
}

int kdh_dist_allgatherv_floats(const float *mine, const int64_t *counts, float *all, kdh_error *err)
{
    if (job.size == 1) {
        memmove(all, mine, (size_t)counts[0] * sizeof *all);
        return 0;
    }
    int *cnt = calloc((size_t)job.size * 2, sizeof *cnt), rc = -1;
    if (!cnt) return kdh__err(err, "out of memory for %d ranks", job.size);
    int *disp = cnt + job.size;
    int64_t at = 0;
    for (int r = 0; r < job.size; r++) {
        if (counts[r] > INT_MAX || at > INT_MAX) {
            kdh__err(err, "rank %d: %lld floats gathered at once is too many for MPI", job.rank, (long long)at);
            goto out;
        }
        cnt[r] = (int)counts[r];
        disp[r] = (int)at;
        at += counts[r];
    }
    call_begin();
    int mrc = MPI_Allgatherv(mine, cnt[job.rank], MPI_FLOAT, all, cnt, disp, MPI_FLOAT, MPI_COMM_WORLD);
    call_end();
    rc = mrc == MPI_SUCCESS ? 0 : mpi_err(err, "MPI_Allgatherv", mrc);
out:
    free(cnt);
    return rc;
}

int kdh_dist_allgather_floats(const float *mine, int64_t n, float *all, kdh_error *err)
{
    int64_t *counts = malloc((size_t)job.size * sizeof *counts);
    if (!counts) return kdh__err(err, "out of memory for %d ranks", job.size);
    for (int r = 0; r < job.size; r++) counts[r] = n;
    int rc = kdh_dist_allgatherv_floats(mine, counts, all, err);
    free(counts);
    return rc;
}

#endif
