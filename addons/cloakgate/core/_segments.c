/* The reveal scan's split into text and segments, in C: the same result as
 * reveal._SEGMENT_SPLIT[context, True].split(data), without the regex engine's set-up per match and
 * without a separate pass for upper-case "Q"s (a memchr for each case finds the next candidate).
 *
 * split(data: bytes, end: int) -> list[bytes]: text, segment, text, ..., text. A segment starts at a
 * "q" or "Q" that meets the token's start condition (no ASCII letter or digit before it, unless an
 * escape ends there: \n \r \t \b \f, \uXXXX, %XX), followed by "x" or "X" and a scheme letter
 * (a, d, w, e in either case); it runs up to the next byte `end` (not included) or the end of data.
 *
 * substitute(data: bytes, end: int, revealed: dict, counts: dict) -> (bytes, int) | None: the scan's
 * hot path when every segment was seen before. Each segment is looked up in `revealed` (its revealed
 * bytes) and `counts` (its packed counts, an int); the result is data with every segment replaced and
 * the sum of the counts. None as soon as one segment is missing from either dict or reveals to empty
 * bytes: the caller then takes the slow path (split, token by token).
 *
 * reveal.py's pure-Python twins are the reference; tests/core/test_reveal_scan.py checks them equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>

static inline int is_alnum(unsigned char c)
{
    unsigned char l = c | 0x20;
    return (c >= '0' && c <= '9') || (l >= 'a' && l <= 'z');
}

static inline int is_hex(unsigned char c)
{
    unsigned char l = c | 0x20;
    return (c >= '0' && c <= '9') || (l >= 'a' && l <= 'f');
}

static inline int is_scheme(unsigned char c)
{
    unsigned char l = c | 0x20;
    return l == 'a' || l == 'd' || l == 'w' || l == 'e';
}

/* The start condition of a candidate whose first letter is d[i]. */
static int starts_here(const unsigned char *d, Py_ssize_t i)
{
    if (i == 0 || !is_alnum(d[i - 1]))
        return 1;
    if (i >= 2 && d[i - 2] == '\\') {
        unsigned char c = d[i - 1];
        if (c == 'n' || c == 'r' || c == 't' || c == 'b' || c == 'f')
            return 1;
    }
    if (i >= 6 && d[i - 6] == '\\' && d[i - 5] == 'u' && is_hex(d[i - 4]) && is_hex(d[i - 3]) &&
        is_hex(d[i - 2]) && is_hex(d[i - 1]))
        return 1;
    if (i >= 3 && d[i - 3] == '%' && is_hex(d[i - 2]) && is_hex(d[i - 1]))
        return 1;
    return 0;
}

/* The position of the next byte `c` at or after i (n if none), remembered in *at between calls. */
static inline Py_ssize_t next_of(const unsigned char *d, Py_ssize_t n, Py_ssize_t i, unsigned char c,
                                 Py_ssize_t *at)
{
    if (*at < i) {
        const unsigned char *p = memchr(d + i, c, (size_t)(n - i));
        *at = p ? p - d : n;
    }
    return *at;
}

/* Where the next segment is: a scan over data, resumed call by call. */
typedef struct {
    const unsigned char *d;
    Py_ssize_t n, i, at_lower, at_upper;
    int end;
} Scanner;

static void scanner_init(Scanner *s, PyObject *data, int end)
{
    s->d = (const unsigned char *)PyBytes_AS_STRING(data);
    s->n = PyBytes_GET_SIZE(data);
    s->i = 0;
    s->at_lower = s->at_upper = -1;
    s->end = end;
}

/* The next segment [*start, *stop); 0 when there is none. */
static int next_segment(Scanner *s, Py_ssize_t *start, Py_ssize_t *stop)
{
    const unsigned char *d = s->d;
    Py_ssize_t n = s->n, i = s->i;
    while (i + 2 < n) {
        Py_ssize_t lo = next_of(d, n, i, 'q', &s->at_lower), up = next_of(d, n, i, 'Q', &s->at_upper);
        i = lo < up ? lo : up;
        if (i + 2 >= n)
            break;
        if ((d[i + 1] | 0x20) == 'x' && is_scheme(d[i + 2]) && starts_here(d, i)) {
            const unsigned char *p = memchr(d + i + 3, s->end, (size_t)(n - i - 3));
            *start = i;
            *stop = s->i = p ? p - d : n;
            return 1;
        }
        i++;
    }
    s->i = n;
    return 0;
}

/* The arguments data (bytes) and end (a byte value) of both functions. */
static int parse_data_end(PyObject *const *args, const char *usage, int *end)
{
    if (!PyBytes_CheckExact(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    long e = PyLong_AsLong(args[1]);
    if (e < 0 || e > 255) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "end is one byte value");
        return -1;
    }
    *end = (int)e;
    return 0;
}

static int append_slice(PyObject *list, const unsigned char *d, Py_ssize_t start, Py_ssize_t stop)
{
    PyObject *piece = PyBytes_FromStringAndSize((const char *)d + start, stop - start);
    if (piece == NULL)
        return -1;
    int rc = PyList_Append(list, piece);
    Py_DECREF(piece);
    return rc;
}

static PyObject *split(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char usage[] = "split(data: bytes, end: int)";
    int end;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (parse_data_end(args, usage, &end) < 0)
        return NULL;
    Scanner s;
    scanner_init(&s, args[0], end);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t text = 0, start, stop;
    while (next_segment(&s, &start, &stop)) {
        if (append_slice(out, s.d, text, start) < 0 || append_slice(out, s.d, start, stop) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        text = stop;
    }
    int rc = text == 0 ? PyList_Append(out, args[0]) : append_slice(out, s.d, text, s.n);
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* One segment found in the caches: where it was and what replaces it (a new reference). */
typedef struct {
    Py_ssize_t start, stop;
    PyObject *value;
} Hit;

/* Adds the packed counts `c` (an int) to *small, or to *big (a new reference) where the sum would no
 * longer fit 64 bits (a segment with e-mail tokens packs above 2**62). */
static int add_counts(PyObject *c, unsigned long long *small, PyObject **big)
{
    if (!PyLong_Check(c)) {
        PyErr_SetString(PyExc_TypeError, "counts must be ints");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(c, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (!overflow && v >= 0 && (unsigned long long)v <= ULLONG_MAX - *small) {
        *small += (unsigned long long)v;
        return 0;
    }
    if (*big == NULL) {
        *big = Py_NewRef(c);
        return 0;
    }
    PyObject *sum = PyNumber_Add(*big, c);
    Py_DECREF(*big);
    *big = sum;
    return sum == NULL ? -1 : 0;
}

static PyObject *substitute(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char usage[] = "substitute(data: bytes, end: int, revealed: dict, counts: dict)";
    int end;
    if (nargs != 4 || !PyDict_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (parse_data_end(args, usage, &end) < 0)
        return NULL;
    PyObject *revealed = args[2], *counts = args[3], *result = NULL, *big = NULL;
    Scanner s;
    scanner_init(&s, args[0], end);
    Hit local[64], *hits = local;
    Py_ssize_t n_hits = 0, cap = 64, size = s.n, start, stop;
    unsigned long long small = 0;
    int missed = 0;
    while (next_segment(&s, &start, &stop)) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)s.d + start, stop - start);
        if (key == NULL)
            goto done;
        PyObject *value = PyDict_GetItemWithError(revealed, key);  /* borrowed */
        PyObject *c = value == NULL ? NULL : PyDict_GetItemWithError(counts, key);
        Py_DECREF(key);
        if (PyErr_Occurred())
            goto done;
        if (c == NULL || !PyBytes_Check(value) || PyBytes_GET_SIZE(value) == 0) {
            missed = 1;
            break;
        }
        if (add_counts(c, &small, &big) < 0)
            goto done;
        if (n_hits == cap) {
            Hit *more = PyMem_Malloc(sizeof(Hit) * (size_t)cap * 2);
            if (more == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(more, hits, sizeof(Hit) * (size_t)cap);
            if (hits != local)
                PyMem_Free(hits);
            hits = more;
            cap *= 2;
        }
        Py_INCREF(value);
        hits[n_hits++] = (Hit){start, stop, value};
        size += PyBytes_GET_SIZE(value) - (stop - start);
    }
    if (missed) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *total;
    if (big == NULL) {
        total = PyLong_FromUnsignedLongLong(small);
    }
    else {
        PyObject *rest = PyLong_FromUnsignedLongLong(small);
        total = rest == NULL ? NULL : PyNumber_Add(big, rest);
        Py_XDECREF(rest);
    }
    if (total == NULL)
        goto done;
    PyObject *body;
    if (n_hits == 0) {
        body = Py_NewRef(args[0]);
    }
    else {
        body = PyBytes_FromStringAndSize(NULL, size);
        if (body != NULL) {
            char *w = PyBytes_AS_STRING(body);
            Py_ssize_t text = 0;
            for (Py_ssize_t k = 0; k < n_hits; k++) {
                memcpy(w, s.d + text, (size_t)(hits[k].start - text));
                w += hits[k].start - text;
                memcpy(w, PyBytes_AS_STRING(hits[k].value), (size_t)PyBytes_GET_SIZE(hits[k].value));
                w += PyBytes_GET_SIZE(hits[k].value);
                text = hits[k].stop;
            }
            memcpy(w, s.d + text, (size_t)(s.n - text));
        }
    }
    if (body == NULL) {
        Py_DECREF(total);
        goto done;
    }
    result = PyTuple_Pack(2, body, total);
    Py_DECREF(body);
    Py_DECREF(total);
done:
    for (Py_ssize_t k = 0; k < n_hits; k++)
        Py_DECREF(hits[k].value);
    if (hits != local)
        PyMem_Free(hits);
    Py_XDECREF(big);
    return result;
}

static PyMethodDef methods[] = {
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL,
     "split(data, end) -> [text, segment, text, ..., text] (see the module's source)."},
    {"substitute", (PyCFunction)(void (*)(void))substitute, METH_FASTCALL,
     "substitute(data, end, revealed, counts) -> (bytes, int) or None (see the module's source)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    /* No Py_mod_gil slot: substitute holds borrowed references from dict look-ups, safe under the
     * GIL only, so a free-threaded build keeps the GIL on for this module. */
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_segments", "The reveal scan's segment split and cached substitution, in C.", 0,
    methods, slots,
};

PyMODINIT_FUNC PyInit__segments(void)
{
    return PyModuleDef_Init(&module);
}
