/* quant_cli.h — `--quantize int8` (quant_cli.c): the calibration data read
 * from the command line's --calibration, the int8 plan (codegen/quantize.h)
 * made from a session's model, and the host's entry points that run it for
 * `kdslc evaluate / predict`. */
#ifndef KDSL_QUANT_CLI_H
#define KDSL_QUANT_CLI_H

#include "driver.h"
#include "host/model_fns.h"
#include "quantize.h"
#include "run.h"

/* Checks --quantize and the --calibration* options: 0, or 2 after printing
 * the usage error (a precision other than int8; calibration options without
 * --quantize; --quantize without --calibration; a method other than minmax,
 * percentile or mse; --calibration-percentile without the percentile method;
 * a --weight-rounding other than nearest or gptq). */
int kd_quantize_flags(const kd_run_options *o);

/* The int8 plan of s's model with the weights in `weights`, calibrated on
 * --calibration's first --calibration-samples samples (default 256, or all
 * if fewer) by --calibration-method. NULL after reporting. */
kq_model *kd_quantize_model(kd_session *s, const kd_run_options *o, const char *weights);

/* fns->predict runs m (one model at a time per process: the entry points
 * take no context). */
void kd_quantize_fns(const kq_model *m, kdh_model_fns *fns);

#endif
