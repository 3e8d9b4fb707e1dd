/* The reveal scan's split into text and segments, in C: the same result as
 * reveal._SEGMENT_SPLIT[context, True].split(data), without the regex engine's set-up per match and
 * without a separate pass for upper-case "Q"s (a memchr for each case finds the next candidate).
 *
 * split(data: bytes, end: int) -> list[bytes]: text, segment, text, ..., text. A segment starts at a
 * "q" or "Q" that meets the token's start condition (no ASCII letter or digit before it, unless an
 * escape ends there: \n \r \t \b \f, \uXXXX, %XX), followed by "x" or "X" and a scheme letter
 * (a, d, w, e in either case); it runs up to the next byte `end` (not included) or the end of data.
 * reveal.py's pure-Python twin is the reference; tests/core/test_reveal_scan.py checks them equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
    if (nargs != 2 || !PyBytes_CheckExact(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "split(data: bytes, end: int)");
        return NULL;
    }
    long end = PyLong_AsLong(args[1]);
    if (end < 0 || end > 255) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "end is one byte value");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t text = 0, i = 0, at_lower = -1, at_upper = -1;
    while (i + 2 < n) {
        Py_ssize_t lo = next_of(d, n, i, 'q', &at_lower), up = next_of(d, n, i, 'Q', &at_upper);
        i = lo < up ? lo : up;
        if (i + 2 >= n)
            break;
        if ((d[i + 1] | 0x20) == 'x' && is_scheme(d[i + 2]) && starts_here(d, i)) {
            const unsigned char *stop = memchr(d + i + 3, (int)end, (size_t)(n - i - 3));
            Py_ssize_t seg_end = stop ? stop - d : n;
            if (append_slice(out, d, text, i) < 0 || append_slice(out, d, i, seg_end) < 0) {
                Py_DECREF(out);
                return NULL;
            }
            text = i = seg_end;
        }
        else {
            i++;
        }
    }
    if (text == 0) {
        if (PyList_Append(out, args[0]) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    else if (append_slice(out, d, text, n) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL,
     "split(data, end) -> [text, segment, text, ..., text] (see the module's source)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_segments", "The reveal scan's segment split, in C.", 0, methods, slots,
};

PyMODINIT_FUNC PyInit__segments(void)
{
    return PyModuleDef_Init(&module);
}
