/* kdslc_cc.c — the test build of kdslc: the same command line (driver/cli.h)
 * with the C-compiler backend (cc_backend.c) in the JIT's place for train,
 * evaluate and predict. The suites run it instead of kdslc when
 * KDSL_TEST_BACKEND=cc is in their environment (testutil.c's tu_kdslc). */
#include "cc_backend.h"
#include "cli.h"

int main(int argc, char **argv)
{
    kd_run_set_backend(&kd_test_cc_backend);
    return kd_cli(argc, argv);
}
