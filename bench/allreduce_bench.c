/* allreduce_bench.c — MPI_Allreduce of n floats (MPI_SUM), what a
 * data-parallel step of kdslc train spends on its gradients (bench/mpi fits
 * the ring model's latency and bandwidth to it; docs/distributed.md).
 *
 *   mpirun -np 2 allreduce_bench [REPS [nonblocking]]
 *
 * Prints one line per size: bytes, the median microseconds of REPS calls
 * (default 200, after 20 unmeasured), on rank 0. With `nonblocking`, each
 * call is MPI_Iallreduce polled with MPI_Test until done: what overlapping
 * it with computation would start from (docs/distributed.md compares the
 * two). bench/mpi builds it with mpicc. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, reps = argc > 1 ? atoi(argv[1]) : 200;
    int nonblocking = argc > 2 && !strcmp(argv[2], "nonblocking");
    if (reps < 1) reps = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static const long bytes[] = {64, 1 << 10, 16 << 10, 128 << 10, 512 << 10, 1 << 20, 4 << 20, 16 << 20};
    double *t = malloc((size_t)reps * sizeof *t);
    if (rank == 0) printf("# %d ranks, %s: bytes median_us\n", size, nonblocking ? "MPI_Iallreduce + MPI_Test" : "MPI_Allreduce");
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        int n = (int)(bytes[i] / 4);
        float *x = calloc((size_t)n, sizeof *x);
        int r = bytes[i] >= (4 << 20) ? (reps + 9) / 10 : reps;
        for (int k = 0; k < 20; k++) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (int k = 0; k < r; k++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (nonblocking) {
                MPI_Request req;
                int done = 0;
                MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
                while (!done) MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            } else {
                MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            }
            t[k] = MPI_Wtime() - t0;
        }
        qsort(t, (size_t)r, sizeof *t, by_double);
        if (rank == 0) printf("%ld %.2f\n", bytes[i], t[r / 2] * 1e6);
        free(x);
    }
    free(t);
    MPI_Finalize();
    return 0;
}
