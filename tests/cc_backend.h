/* cc_backend.h — the test-only C-compiler backend (cc_backend.c) for
 * driver/run.h's kd_run_set_backend. */
#ifndef KDSL_TEST_CC_BACKEND_H
#define KDSL_TEST_CC_BACKEND_H

#include "run.h"

extern const kd_run_backend kd_test_cc_backend;

#endif
