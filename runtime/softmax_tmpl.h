/* softmax_tmpl.h — row softmax, log-softmax and fused softmax cross-entropy
 * for one element type.  softmax.c includes this for float and double with
 * KT, KS, KP(x), KEXP, KLOG defined.  Every row is max-subtracted first, so
 * exp never overflows and the largest term is exactly 1. */

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

static KT KI(row_max)(int n, const KT *x)
{
    KT m = x[0];
    for (int j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* Σ exp(x - m) */
static KT KI(row_sumexp)(int n, const KT *x, KT m)
{
    KT s = 0;
    for (int j = 0; j < n; j++) s += KEXP(x[j] - m);
    return s;
}

void KP(softmax)(int rows, int n, const KT *x, KT *y)
{
    for (int r = 0; r < rows && n > 0; r++, x += n, y += n) {
        KT m = KI(row_max)(n, x), s = 0;
        for (int j = 0; j < n; j++) {
            y[j] = KEXP(x[j] - m);
            s += y[j];
        }
        KT inv = 1 / s;
        for (int j = 0; j < n; j++) y[j] *= inv;
    }
}

void KP(logsoftmax)(int rows, int n, const KT *x, KT *y)
{
    for (int r = 0; r < rows && n > 0; r++, x += n, y += n) {
        KT m = KI(row_max)(n, x);
        KT ls = KLOG(KI(row_sumexp)(n, x, m));
        /* (x - m) is exact near the max; m + log s would round at |m| */
        for (int j = 0; j < n; j++) y[j] = (x[j] - m) - ls;
    }
}

void KP(softmax_bwd)(int rows, int n, const KT *y, const KT *dy, KT *dx)
{
    for (int r = 0; r < rows; r++, y += n, dy += n, dx += n) {
        KT dot = 0;
        for (int j = 0; j < n; j++) dot += dy[j] * y[j];
        for (int j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - dot);
    }
}

void KP(logsoftmax_bwd)(int rows, int n, const KT *y, const KT *dy, KT *dx)
{
    for (int r = 0; r < rows; r++, y += n, dy += n, dx += n) {
        KT sum = 0;
        for (int j = 0; j < n; j++) sum += dy[j];
        for (int j = 0; j < n; j++) dx[j] = dy[j] - KEXP(y[j]) * sum;
    }
}

/* loss = Σ t·(log Σexp(z − m) − (z − m));  d = (softmax·Σt − t)·scale.  The loss is computed
 * before d is written, so dlogits may alias logits. */
double KP(softmax_xent)(int rows, int n, const KT *logits, const KT *target, KT *loss,
                        KT *dlogits, KT scale)
{
    double total = 0;
    for (int r = 0; r < rows && n > 0; r++) {
        const KT *z = logits + (ptrdiff_t)r * n, *t = target + (ptrdiff_t)r * n;
        KT m = KI(row_max)(n, z), s = KI(row_sumexp)(n, z, m);
        KT ls = KLOG(s), l = 0, tsum = 0;
        for (int j = 0; j < n; j++) {
            if (t[j] != 0) l += t[j] * (ls - (z[j] - m));
            tsum += t[j];
        }
        if (loss) loss[r] = l;
        total += (double)l;   /* the batch's sum in double, on purpose: a training loss */
        if (dlogits) {
            KT *d = dlogits + (ptrdiff_t)r * n, k = tsum / s;
            for (int j = 0; j < n; j++) d[j] = (KEXP(z[j] - m) * k - t[j]) * scale;
        }
    }
    return total;
}

/* Rows whose label is outside [0, n) are ignored: loss 0, gradient 0. */
double KP(softmax_xent_idx)(int rows, int n, const KT *logits, const int32_t *labels, KT *loss,
                            KT *dlogits, KT scale)
{
    double total = 0;
    for (int r = 0; r < rows && n > 0; r++) {
        const KT *z = logits + (ptrdiff_t)r * n;
        KT *d = dlogits ? dlogits + (ptrdiff_t)r * n : NULL;
        int32_t lab = labels[r];
        if (lab < 0 || lab >= n) {
            if (loss) loss[r] = 0;
            if (d) memset(d, 0, sizeof(KT) * (size_t)n);
            continue;
        }
        KT m = KI(row_max)(n, z), s = KI(row_sumexp)(n, z, m);
        KT l = KLOG(s) - (z[lab] - m);
        if (loss) loss[r] = l;
        total += (double)l;   /* the batch's sum in double, on purpose: a training loss */
        if (d) {
            KT k = scale / s;
            for (int j = 0; j < n; j++) d[j] = KEXP(z[j] - m) * k;
            d[lab] -= scale;
        }
    }
    return total;
}

#undef KI

/* y = x: one process's mean over the ranks (kernels.h). */
void KP(rank_mean)(int n, int batch, const KT *x, KT *y)
{
    (void)batch;
    if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
}
