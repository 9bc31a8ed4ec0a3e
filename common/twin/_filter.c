/* The twin's two sequential loops in C: the HMM forward filter and the trend EMA.
 *
 * Bit-identity with the Python reference (common/twin/hmm.py ``forward_filter_reference``, common/twin/features.py
 * ``trend_ema_reference``) is the point of this file, speed comes second:
 *
 * - every operation is the reference's IEEE-754 double operation, in the reference's order: no reassociation,
 *   no fused multiply-add (built with -ffp-contract=off), no fast-math (refused below), no excess precision
 *   (x86-64 and aarch64 compute doubles in double registers);
 * - one window and many windows run the same loop, so the trainer (all bars at once) and the preditor (one
 *   window) get the same bits.
 *
 * Arguments are buffers (numpy arrays, C-contiguous float64 / int64); results go into a caller-provided
 * float64 buffer. No numpy headers: the build needs only Python's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__FAST_MATH__)
#error "common/twin/_filter.c must not be built with -ffast-math: the twin needs exact IEEE-754 results"
#endif

#define ABI_VERSION 1
/* Loops shorter than this many inner steps keep the GIL: releasing it lets another Python thread take it, and
 * getting it back can then cost a switch interval (5 ms), far more than a one-window filter (~10 us). */
#define RELEASE_GIL_FROM 1000000

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static void release(Buf *b) {
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

/* A C-contiguous buffer of ``kind`` ('d' float64, 'q' int64); writable when asked. */
static int acquire(PyObject *obj, Buf *b, char kind, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %s buffer%s", name,
                     kind == 'd' ? "float64" : "int64", writable ? " (writable)" : "");
        return -1;
    }
    b->held = 1;
    const char *f = b->view.format ? b->view.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') {
        f++;
    }
    int ok = kind == 'd' ? (strcmp(f, "d") == 0 && b->view.itemsize == 8)
                         : ((strcmp(f, "q") == 0 || strcmp(f, "l") == 0) && b->view.itemsize == 8);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must hold %s, not format %s", name, kind == 'd' ? "float64" : "int64",
                     b->view.format ? b->view.format : "B");
        release(b);
        return -1;
    }
    return 0;
}

static Py_ssize_t count(const Buf *b) {
    return b->view.len / b->view.itemsize;
}

/* The reference's ``_normalise``: total = a0 + a1 + ... (left to right), divide by it when > 0, else by 1. */
static void normalise(double *alpha, Py_ssize_t k) {
    double total = alpha[0];
    for (Py_ssize_t j = 1; j < k; j++) {
        total = total + alpha[j];
    }
    double safe = total > 0 ? total : 1.0;
    for (Py_ssize_t j = 0; j < k; j++) {
        alpha[j] = alpha[j] / safe;
    }
}

/* Filtered state probabilities after row ``last``, starting at row ``first`` from ``startprob``. */
static void filter_one(const double *sp, const double *tm, const double *b, Py_ssize_t k, Py_ssize_t first,
                       Py_ssize_t last, double *alpha, double *predicted) {
    const double *e = b + first * k;
    for (Py_ssize_t j = 0; j < k; j++) {
        alpha[j] = sp[j] * e[j];
    }
    normalise(alpha, k);
    for (Py_ssize_t row = first + 1; row <= last; row++) {
        e = b + row * k;
        for (Py_ssize_t j = 0; j < k; j++) {
            predicted[j] = alpha[0] * tm[j];
        }
        for (Py_ssize_t i = 1; i < k; i++) {
            const double a_i = alpha[i];
            const double *t = tm + i * k;
            for (Py_ssize_t j = 0; j < k; j++) {
                predicted[j] = predicted[j] + a_i * t[j];
            }
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            alpha[j] = predicted[j] * e[j];
        }
        normalise(alpha, k);
    }
}

PyDoc_STRVAR(forward_filter_doc,
"forward_filter(startprob, transmat, emissions, ends, lookback, out)\n\n"
"For each end e, the HMM forward filter over emission rows e-lookback+1 .. e (scaled emission probabilities,\n"
"(M, K) float64), from startprob (K,) with transmat (K, K); writes the final filtered probabilities of end i\n"
"into out[i] ((len(ends), K) float64).");

static PyObject *forward_filter(PyObject *self, PyObject *args) {
    PyObject *o_sp, *o_tm, *o_b, *o_ends, *o_out;
    Py_ssize_t lookback;
    if (!PyArg_ParseTuple(args, "OOOOnO", &o_sp, &o_tm, &o_b, &o_ends, &lookback, &o_out)) {
        return NULL;
    }
    Buf sp = {0}, tm = {0}, b = {0}, ends = {0}, out = {0};
    PyObject *result = NULL;
    double *work = NULL;
    if (acquire(o_sp, &sp, 'd', 0, "startprob") || acquire(o_tm, &tm, 'd', 0, "transmat")
        || acquire(o_b, &b, 'd', 0, "emissions") || acquire(o_ends, &ends, 'q', 0, "ends")
        || acquire(o_out, &out, 'd', 1, "out")) {
        goto done;
    }
    Py_ssize_t k = count(&sp), n_ends = count(&ends);
    if (k < 1 || count(&tm) != k * k || count(&b) % k != 0 || count(&out) != n_ends * k) {
        PyErr_SetString(PyExc_ValueError, "shapes: startprob (K,), transmat (K, K), emissions (M, K), out (E, K)");
        goto done;
    }
    Py_ssize_t m = count(&b) / k;
    const int64_t *e = (const int64_t *)ends.view.buf;
    if (lookback < 1) {
        PyErr_SetString(PyExc_ValueError, "lookback must be at least 1");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_ends; i++) {
        if (e[i] >= m || e[i] - lookback + 1 < 0) {
            PyErr_SetString(PyExc_ValueError, "every lookback must lie inside the emissions");
            goto done;
        }
    }
    work = PyMem_Malloc(2 * k * sizeof(double));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const double *psp = sp.view.buf, *ptm = tm.view.buf, *pb = b.view.buf;
    double *pout = out.view.buf;
    PyThreadState *saved = n_ends * lookback * k * k >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < n_ends; i++) {
        filter_one(psp, ptm, pb, k, (Py_ssize_t)e[i] - lookback + 1, (Py_ssize_t)e[i], work, work + k);
        memcpy(pout + i * k, work, k * sizeof(double));
    }
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(work);
    release(&sp);
    release(&tm);
    release(&b);
    release(&ends);
    release(&out);
    return result;
}

PyDoc_STRVAR(ema_doc,
"ema(x, starts, window, alpha, out)\n\n"
"For each start s, the EMA (adjust=False) of x[s .. s+window-1] seeded with x[s]:\n"
"ema = (1.0 - alpha) * ema + alpha * x, written to out[i].");

static PyObject *ema(PyObject *self, PyObject *args) {
    PyObject *o_x, *o_starts, *o_out;
    Py_ssize_t window;
    double alpha;
    if (!PyArg_ParseTuple(args, "OOndO", &o_x, &o_starts, &window, &alpha, &o_out)) {
        return NULL;
    }
    Buf x = {0}, starts = {0}, out = {0};
    PyObject *result = NULL;
    if (acquire(o_x, &x, 'd', 0, "x") || acquire(o_starts, &starts, 'q', 0, "starts")
        || acquire(o_out, &out, 'd', 1, "out")) {
        goto done;
    }
    Py_ssize_t n = count(&x), n_starts = count(&starts);
    const int64_t *s = (const int64_t *)starts.view.buf;
    if (window < 1 || count(&out) != n_starts) {
        PyErr_SetString(PyExc_ValueError, "window must be at least 1 and out as long as starts");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_starts; i++) {
        if (s[i] < 0 || s[i] + window > n) {
            PyErr_SetString(PyExc_ValueError, "every window must lie inside x");
            goto done;
        }
    }
    const double *px = x.view.buf;
    double *pout = out.view.buf;
    PyThreadState *saved = n_starts * window >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < n_starts; i++) {
        const double *w = px + s[i];
        double value = w[0];
        for (Py_ssize_t j = 1; j < window; j++) {
            value = (1.0 - alpha) * value + alpha * w[j];
        }
        pout[i] = value;
    }
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
    result = Py_NewRef(Py_None);
done:
    release(&x);
    release(&starts);
    release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"forward_filter", forward_filter, METH_VARARGS, forward_filter_doc},
    {"ema", ema, METH_VARARGS, ema_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "common.twin._filter",
    "The twin's sequential loops (HMM forward filter, trend EMA) in C, bit-identical to the Python reference.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__filter(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI_VERSION", ABI_VERSION) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
