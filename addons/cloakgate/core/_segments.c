/* The reveal scan's segments, in C: the split into text and segments (the same result as
 * reveal._SEGMENT_SPLIT[context, True].split(data), without the regex engine's set-up per match and
 * without a separate pass for upper-case "Q"s: a memchr for each case finds the next candidate), and
 * the table of segments seen before with the substitution that reads it.
 *
 * split(data: bytes, end: int) -> list[bytes]: text, segment, text, ..., text. A segment starts at a
 * "q" or "Q" that meets the token's start condition (no ASCII letter or digit before it, unless an
 * escape ends there: \n \r \t \b \f, \uXXXX, %XX), followed by "x" or "X" and a scheme letter
 * (a, d, w, e in either case); it runs up to the next byte `end` (not included) or the end of data.
 *
 * Table(): segment (bytes) -> (revealed bytes, packed counts: an int >= 0). get(segment) -> the pair
 * or None; put(segment, revealed, counts); clear(); len(). Open addressing over SipHash-1-3 with a
 * key drawn at import (what CPython's own str and bytes hashes are): the segments come from the
 * SaaS's responses, and a table whose collisions a sender could choose would be a denial of service.
 *
 * substitute(data: bytes, end: int, table: Table) -> (bytes, int) | None: the scan's hot path when
 * every segment was seen before: data with every segment replaced by its revealed bytes, and the sum
 * of their counts. Each segment is hashed where it lies in data (no bytes object per segment, no
 * second look-up for its counts). None as soon as one segment is not in the table or reveals to empty
 * bytes: the caller then takes the slow path (split, token by token).
 *
 * siphash(key: bytes, data: bytes, c: int, d: int) -> int: SipHash-c-d of data (the table's hash,
 * exposed for the reference vectors of SipHash-2-4 in the tests).
 *
 * reveal.py's pure-Python twins are the reference; tests/core/test_reveal_scan.py checks them equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
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

/* --- SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012) ------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                  \
    do {                                                                                          \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                 \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                    \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                    \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                 \
    } while (0)

static inline uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint64_t siphash_cd(const uint64_t k[2], const unsigned char *in, size_t n, int c, int d)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    const unsigned char *end = in + (n & ~(size_t)7);
    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        for (int r = 0; r < c; r++)
            SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    switch (n & 7) {
    case 7: b |= (uint64_t)in[6] << 48; /* fall through */
    case 6: b |= (uint64_t)in[5] << 40; /* fall through */
    case 5: b |= (uint64_t)in[4] << 32; /* fall through */
    case 4: b |= (uint64_t)in[3] << 24; /* fall through */
    case 3: b |= (uint64_t)in[2] << 16; /* fall through */
    case 2: b |= (uint64_t)in[1] << 8; /* fall through */
    case 1: b |= (uint64_t)in[0];
    }
    v3 ^= b;
    for (int r = 0; r < c; r++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int r = 0; r < d; r++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The module's state: the Table type and the key of its hash. */
typedef struct {
    PyTypeObject *table_type;
    uint64_t key[2];
} State;

static inline State *state_of(PyObject *module)
{
    return (State *)PyModule_GetState(module);
}

/* --- Table --------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t hash;
    PyObject *key;   /* bytes; NULL: an empty slot */
    PyObject *value; /* bytes */
    unsigned long long small; /* the counts, where they fit 64 bits */
    PyObject *big;   /* else the counts (an int); NULL when small holds them */
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *slots;
    size_t mask; /* slots - 1, a power of two less one; at most half the slots are used */
    Py_ssize_t used;
    uint64_t key[2];
} Table;

#define TABLE_FIRST 64

/* Drops the references of the entries in slots[0..mask] and frees them. */
static void release_slots(Entry *slots, size_t mask)
{
    for (size_t i = 0; slots != NULL && i <= mask; i++) {
        if (slots[i].key != NULL) {
            Py_DECREF(slots[i].key);
            Py_DECREF(slots[i].value);
            Py_XDECREF(slots[i].big);
        }
    }
    PyMem_Free(slots);
}

static int table_alloc(Table *t, size_t n_slots)
{
    Entry *slots = PyMem_Calloc(n_slots, sizeof(Entry));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->slots = slots;
    t->mask = n_slots - 1;
    t->used = 0;
    return 0;
}

/* The table's hash of the segment d[0:n]: SipHash-1-3 (CPython's own choice for str and bytes). */
static inline uint64_t table_hash(const Table *t, const unsigned char *d, Py_ssize_t n)
{
    return siphash_cd(t->key, d, (size_t)n, 1, 3);
}

/* The slot of the segment d[0:n] with hash h: its entry, or the empty slot where it would go. */
static inline Entry *table_slot(const Table *t, const unsigned char *d, Py_ssize_t n, uint64_t h)
{
    size_t i = (size_t)h & t->mask;
    for (;;) {
        Entry *e = &t->slots[i];
        if (e->key == NULL || (e->hash == h && PyBytes_GET_SIZE(e->key) == n &&
                               memcmp(PyBytes_AS_STRING(e->key), d, (size_t)n) == 0))
            return e;
        i = (i + 1) & t->mask;
    }
}

static int table_grow(Table *t)
{
    Entry *old = t->slots;
    size_t old_n = t->mask + 1;
    Py_ssize_t used = t->used;
    if (old_n > PY_SSIZE_T_MAX / 2 / sizeof(Entry)) {
        PyErr_NoMemory();
        return -1;
    }
    if (table_alloc(t, old_n * 2) < 0)  /* the table stays as it was */
        return -1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].key == NULL)
            continue;
        size_t j = (size_t)old[i].hash & t->mask;
        while (t->slots[j].key != NULL)
            j = (j + 1) & t->mask;
        t->slots[j] = old[i];
    }
    t->used = used;
    PyMem_Free(old);
    return 0;
}

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Table() takes no arguments");
        return NULL;
    }
    State *st = PyType_GetModuleState(type);
    if (st == NULL)
        return NULL;
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->key[0] = st->key[0];
    t->key[1] = st->key[1];
    if (table_alloc(t, TABLE_FIRST) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static void table_dealloc(Table *t)
{
    PyTypeObject *type = Py_TYPE(t);
    release_slots(t->slots, t->mask);
    type->tp_free((PyObject *)t);
    Py_DECREF(type);
}

static Py_ssize_t table_len(Table *t)
{
    return t->used;
}

static PyObject *counts_of(const Entry *e)
{
    return e->big != NULL ? Py_NewRef(e->big) : PyLong_FromUnsignedLongLong(e->small);
}

static PyObject *table_get(Table *t, PyObject *segment)
{
    if (!PyBytes_CheckExact(segment)) {
        PyErr_SetString(PyExc_TypeError, "a segment is bytes");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(segment);
    Py_ssize_t n = PyBytes_GET_SIZE(segment);
    Entry *e = table_slot(t, d, n, table_hash(t, d, n));
    if (e->key == NULL)
        Py_RETURN_NONE;
    PyObject *counts = counts_of(e);
    if (counts == NULL)
        return NULL;
    PyObject *pair = PyTuple_Pack(2, e->value, counts);
    Py_DECREF(counts);
    return pair;
}

static PyObject *table_put(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    static const char usage[] = "put(segment: bytes, revealed: bytes, counts: int >= 0)";
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[1]) ||
        !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_SetString(PyExc_ValueError, "counts are >= 0");
        return NULL;
    }
    if ((size_t)(t->used + 1) * 2 > t->mask + 1 && table_grow(t) < 0)
        return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    uint64_t h = table_hash(t, d, n);
    Entry *e = table_slot(t, d, n, h);
    if (e->key == NULL) {
        e->hash = h;
        e->key = Py_NewRef(args[0]);
        t->used++;
    }
    else {
        Py_DECREF(e->value);
        Py_CLEAR(e->big);
    }
    e->value = Py_NewRef(args[1]);
    e->small = overflow ? 0 : (unsigned long long)v;
    e->big = overflow ? Py_NewRef(args[2]) : NULL;
    Py_RETURN_NONE;
}

static PyObject *table_clear(Table *t, PyObject *Py_UNUSED(ignored))
{
    Entry *old = t->slots;
    size_t old_mask = t->mask;
    if (table_alloc(t, TABLE_FIRST) < 0)  /* the table stays as it was */
        return NULL;
    release_slots(old, old_mask);
    Py_RETURN_NONE;
}

static PyMethodDef table_methods[] = {
    {"get", (PyCFunction)table_get, METH_O, "get(segment) -> (revealed, counts) or None."},
    {"put", (PyCFunction)(void (*)(void))table_put, METH_FASTCALL, "put(segment, revealed, counts)."},
    {"clear", (PyCFunction)table_clear, METH_NOARGS, "Forget every segment."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot table_slots[] = {
    {Py_tp_new, table_new},
    {Py_tp_dealloc, table_dealloc},
    {Py_tp_methods, table_methods},
    {Py_mp_length, table_len},
    {Py_sq_length, table_len},
    {Py_tp_doc, "Segment -> (revealed bytes, packed counts); see the module's source."},
    {0, NULL},
};

static PyType_Spec table_spec = {
    "cloakgate.core._segments.Table", sizeof(Table), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    table_slots,
};

/* --- substitute ---------------------------------------------------------------------------------- */

/* One segment found in the table: where it was and what replaces it (a new reference). */
typedef struct {
    Py_ssize_t start, stop;
    PyObject *value;
} Hit;

/* Adds an entry's counts to *small, or to *big (a new reference) where the sum would no longer fit
 * 64 bits (a segment with e-mail tokens packs above 2**62). */
static int add_counts(const Entry *e, unsigned long long *small, PyObject **big)
{
    if (e->big == NULL && e->small <= ULLONG_MAX - *small) {
        *small += e->small;
        return 0;
    }
    PyObject *c = counts_of(e);
    if (c == NULL)
        return -1;
    if (*big == NULL) {
        *big = c;
        return 0;
    }
    PyObject *sum = PyNumber_Add(*big, c);
    Py_DECREF(c);
    Py_DECREF(*big);
    *big = sum;
    return sum == NULL ? -1 : 0;
}

static PyObject *substitute(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char usage[] = "substitute(data: bytes, end: int, table: Table)";
    int end;
    if (nargs != 3 || !Py_IS_TYPE(args[2], state_of(module)->table_type)) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (parse_data_end(args, usage, &end) < 0)
        return NULL;
    Table *table = (Table *)args[2];
    PyObject *result = NULL, *big = NULL;
    Scanner s;
    scanner_init(&s, args[0], end);
    Hit local[64], *hits = local;
    Py_ssize_t n_hits = 0, cap = 64, size = s.n, start, stop;
    unsigned long long small = 0;
    int missed = 0;
    while (next_segment(&s, &start, &stop)) {
        Py_ssize_t n = stop - start;
        const unsigned char *segment = s.d + start;
        const Entry *e = table_slot(table, segment, n, table_hash(table, segment, n));
        if (e->key == NULL || PyBytes_GET_SIZE(e->value) == 0) {
            missed = 1;
            break;
        }
        if (add_counts(e, &small, &big) < 0)
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
        hits[n_hits++] = (Hit){start, stop, Py_NewRef(e->value)};
        size += PyBytes_GET_SIZE(e->value) - n;
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

static PyObject *siphash(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char usage[] = "siphash(key: bytes of 16, data: bytes, c: int, d: int)";
    if (nargs != 4 || !PyBytes_CheckExact(args[0]) || PyBytes_GET_SIZE(args[0]) != 16 ||
        !PyBytes_CheckExact(args[1]) || !PyLong_Check(args[2]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    long c = PyLong_AsLong(args[2]), d = PyLong_AsLong(args[3]);
    if ((c == -1 || d == -1) && PyErr_Occurred())
        return NULL;
    if (c < 1 || c > 8 || d < 1 || d > 8) {
        PyErr_SetString(PyExc_ValueError, "rounds c and d are 1 to 8");
        return NULL;
    }
    const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    uint64_t key[2] = {load_le64(k), load_le64(k + 8)};
    return PyLong_FromUnsignedLongLong(siphash_cd(key, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                                  (size_t)PyBytes_GET_SIZE(args[1]), (int)c, (int)d));
}

/* --- module -------------------------------------------------------------------------------------- */

static int exec_module(PyObject *module)
{
    State *st = state_of(module);
    PyObject *os = PyImport_ImportModule("os");
    PyObject *random = os == NULL ? NULL : PyObject_CallMethod(os, "urandom", "i", 16);
    Py_XDECREF(os);
    if (random == NULL)
        return -1;
    if (!PyBytes_Check(random) || PyBytes_GET_SIZE(random) != 16) {
        Py_DECREF(random);
        PyErr_SetString(PyExc_RuntimeError, "os.urandom(16) gave no 16 bytes");
        return -1;
    }
    st->key[0] = load_le64((const unsigned char *)PyBytes_AS_STRING(random));
    st->key[1] = load_le64((const unsigned char *)PyBytes_AS_STRING(random) + 8);
    Py_DECREF(random);
    st->table_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &table_spec, NULL);
    if (st->table_type == NULL)
        return -1;
    return PyModule_AddType(module, st->table_type);
}

static int traverse_module(PyObject *module, visitproc visit, void *arg)
{
    Py_VISIT(state_of(module)->table_type);
    return 0;
}

static int clear_module(PyObject *module)
{
    Py_CLEAR(state_of(module)->table_type);
    return 0;
}

static void free_module(void *module)
{
    clear_module((PyObject *)module);
}

static PyMethodDef methods[] = {
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL,
     "split(data, end) -> [text, segment, text, ..., text] (see the module's source)."},
    {"substitute", (PyCFunction)(void (*)(void))substitute, METH_FASTCALL,
     "substitute(data, end, table) -> (bytes, int) or None (see the module's source)."},
    {"siphash", (PyCFunction)(void (*)(void))siphash, METH_FASTCALL,
     "siphash(key, data, c, d) -> SipHash-c-d of data as an int."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    /* No Py_mod_gil slot: a Table has no lock of its own, safe under the GIL only, so a free-threaded
     * build keeps the GIL on for this module. */
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_segments", "The reveal scan's segments: split, table, substitution, in C.",
    sizeof(State), methods, slots, traverse_module, clear_module, free_module,
};

PyMODINIT_FUNC PyInit__segments(void)
{
    return PyModuleDef_Init(&module);
}
