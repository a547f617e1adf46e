/* fpmode.h — the floating-point mode the host runs model code in.
 *
 * Subnormal floats are slow: on x86 every operation that meets one takes a
 * microcode assist of ~100 cycles. Training produces them as a matter of
 * course — Adam's moments of a weight whose gradient is zero (the border
 * pixels of Fashion-MNIST are always 0) shrink by 0.9 per step and are
 * subnormal after ~800 steps — and the MLP's training step then takes twice
 * as long from the second epoch on. TensorFlow (so Keras) trains with
 * subnormals flushed to zero for this reason; kdsl's host loop does the same:
 * kdh_fit, kdh_evaluate and kdh_predict run with flush-to-zero and
 * denormals-are-zero (x86 MXCSR FTZ|DAZ, Arm FPCR.FZ) and restore the
 * caller's mode when they return. The thread pool (thread_pool.h) runs each job
 * in its poster's mode, so results never depend on the thread count.
 *
 * The generated C never changes the mode: a program that calls its
 * train_step itself chooses (docs/c-api.md). */
#ifndef KDSL_FPMODE_H
#define KDSL_FPMODE_H

/* The calling thread's control bits (MXCSR without its exception flags,
 * FPCR; 0 where unknown). Setting them leaves the exception flags alone. */
unsigned long kdh_fpmode_get(void);
void kdh_fpmode_set(unsigned long mode);

/* Sets flush-to-zero and denormals-are-zero on the calling thread; returns
 * the mode before, for kdh_fpmode_set. */
unsigned long kdh_fpmode_flush_subnormals(void);

#endif
