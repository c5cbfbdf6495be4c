/* fastgate.observe._native_counts: WorkerMetrics.count_request (metrics.py) in C.
 *
 * Contract: RequestCounter(values=..., <layout>).count(conn, status, total_s)
 * adds to ``values`` (an array('d'), one double per series) what the
 * pure-Python count_request adds to its list, for the same connection: the
 * reference is metrics.py, and the tests run both on the same connections.
 * The layout arguments are what metrics.py's _native_layout() passes, so the
 * series layout is decided in one place.
 *
 * The array stays exported while the counter lives, so it cannot be resized
 * under it. A connection whose attributes have unexpected types raises
 * (TypeError, KeyError, AttributeError), as the Python code would; what was
 * added for that request before the error stays added, also as in Python.
 */
#include "_native_slots.h"

#define MAX_BOUNDS 32
#define MAX_METHODS 16

typedef struct {
    char name[8];
    Py_ssize_t length, slot;
} MethodSlot;

/* Where a pool's series are: its own block, and its group's duration histogram. */
typedef struct {
    PyObject *pool;          /* a strong reference, so the address stays its own; NULL: a free entry */
    Py_ssize_t server_base;
    Py_ssize_t duration_base;
} PoolBlock;

typedef struct {
    PyObject_HEAD
    Py_buffer buffer;        /* the values array, exported */
    double *values;
    Py_ssize_t size;
    PyObject *limit_slots;   /* dict: outcome str -> offset */
    PoolBlock *pools;        /* open addressing by the pool's address; a power of two of entries */
    size_t pool_mask;
    Py_ssize_t route_block, unmatched_base, other_method_slot;
    Py_ssize_t duration, bytes_in, bytes_out, limits, sum_part;
    Py_ssize_t status_slots[10];
    MethodSlot methods[MAX_METHODS];
    Py_ssize_t n_methods;
    double bounds[MAX_BOUNDS];
    Py_ssize_t n_bounds;
} RequestCounter;

static SlotReader s_route = {"route"}, s_index = {"index"}, s_head = {"head"}, s_method = {"method"},
    s_bytes_in = {"bytes_in"}, s_bytes_out = {"bytes_out"}, s_limit_outcome = {"limit_outcome"}, s_pool = {"pool"},
    s_upstream_label = {"upstream_label"}, s_status = {"status"}, s_upstream_s = {"upstream_s"};
static SlotReader *readers[] = {&s_route, &s_index, &s_head, &s_method, &s_bytes_in, &s_bytes_out,
                                &s_limit_outcome, &s_pool, &s_upstream_label, &s_status, &s_upstream_s};

__attribute__((noinline, cold)) static int index_out_of_range(void)
{
    PyErr_SetString(PyExc_IndexError, "metrics series index out of range");
    return -1;
}

/* values[i] += by; an index outside the values is a layout bug, raised rather than written. */
static inline int add(RequestCounter *self, Py_ssize_t i, double by)
{
    if (__builtin_expect((size_t)i >= (size_t)self->size, 0))
        return index_out_of_range();
    self->values[i] += by;
    return 0;
}

/* A Python int or float as a double. (PyFloat_AsDouble would convert an int through a new float.) */
static int as_double(PyObject *number, double *out)
{
    if (PyFloat_CheckExact(number))
        *out = PyFloat_AS_DOUBLE(number);
    else if (PyLong_Check(number))
        *out = PyLong_AsDouble(number);
    else
        *out = PyFloat_AsDouble(number);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* The bucket of a duration: bisect_left over the bounds (n_bounds is +Inf). A scan from the smallest
 * bound: most requests end in the first few buckets, where it takes fewer (and predictable) branches. */
static Py_ssize_t bucket_of(const RequestCounter *self, double seconds)
{
    Py_ssize_t i = 0;
    while (i < self->n_bounds && self->bounds[i] < seconds)
        i++;
    return i;
}

static Py_ssize_t status_slot(const RequestCounter *self, long status)
{
    long hundreds = status / 100;
    return (hundreds >= 0 && hundreds < 10) ? self->status_slots[hundreds] : self->status_slots[0];
}

/* The offset of a method's block of status classes; other_method_slot for a method not listed. */
static Py_ssize_t method_slot(const RequestCounter *self, PyObject *method)
{
    if (!PyBytes_Check(method))
        return self->other_method_slot;
    Py_ssize_t length = PyBytes_GET_SIZE(method);
    const char *name = PyBytes_AS_STRING(method);
    for (Py_ssize_t i = 0; i < self->n_methods; i++)
        if (self->methods[i].length == length && memcmp(self->methods[i].name, name, length) == 0)
            return self->methods[i].slot;
    return self->other_method_slot;
}

/* A histogram observation: its bucket and its sum. */
static int observe(RequestCounter *self, Py_ssize_t base, PyObject *seconds)
{
    double value;
    if (as_double(seconds, &value) < 0)
        return -1;
    if (add(self, base + bucket_of(self, value), 1.0) < 0)
        return -1;
    return add(self, base + self->sum_part, value);
}

/* bool(obj); a str (the outcome, the label) without a call. */
static inline int is_true(PyObject *obj)
{
    return PyUnicode_CheckExact(obj) ? PyUnicode_GET_LENGTH(obj) != 0 : PyObject_IsTrue(obj);
}

/* dict[key] as a Py_ssize_t index; -1 with KeyError when absent. */
static Py_ssize_t index_in(PyObject *dict, PyObject *key, const char *what)
{
    PyObject *index = PyDict_GetItemWithError(dict, key);
    if (index == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_KeyError, "%s without metrics series", what);
        return -1;
    }
    return PyLong_AsSsize_t(index);
}

static size_t pool_slot(const RequestCounter *self, PyObject *pool)
{
    return ((uintptr_t)pool >> 4) & self->pool_mask;
}

/* The block of ``pool`` (by identity, as the pools are dict keys in metrics.py); NULL with KeyError when absent. */
static const PoolBlock *pool_block(const RequestCounter *self, PyObject *pool)
{
    for (size_t i = pool_slot(self, pool);; i = (i + 1) & self->pool_mask) {
        const PoolBlock *block = &self->pools[i];
        if (block->pool == pool)
            return block;
        if (block->pool == NULL) {
            PyErr_SetString(PyExc_KeyError, "pool without metrics series");
            return NULL;
        }
    }
}

/* Get an attribute into *out (a new reference), or fail. */
#define GET(out, obj, reader) do { (out) = slot_get(&(reader), (obj)); if ((out) == NULL) goto error; } while (0)

static int count_upstream(RequestCounter *self, PyObject *conn, PyObject *pool)
{
    PyObject *status = NULL, *upstream_s = NULL;
    int rc = -1;
    const PoolBlock *block = pool_block(self, pool);
    if (block == NULL)
        return -1;
    GET(status, conn, s_status);
    GET(upstream_s, conn, s_upstream_s);
    long code = PyLong_AsLong(status);
    if ((code == -1 && PyErr_Occurred()) || add(self, block->server_base + status_slot(self, code), 1.0) < 0)
        goto error;
    rc = observe(self, block->duration_base, upstream_s);
error:
    Py_XDECREF(status);
    Py_XDECREF(upstream_s);
    return rc;
}

static PyObject *count(RequestCounter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "count(conn, status, total_s)");
        return NULL;
    }
    PyObject *conn = args[0], *total_s = args[2];
    long status = PyLong_AsLong(args[1]);
    if (status == -1 && PyErr_Occurred())
        return NULL;
    PyObject *route = NULL, *index = NULL, *head = NULL, *method = NULL, *bytes_in = NULL, *bytes_out = NULL,
             *outcome = NULL, *pool = NULL, *label = NULL;
    PyObject *result = NULL;
    double in, out;

    GET(route, conn, s_route);
    Py_ssize_t base = self->unmatched_base;
    if (route != Py_None) {
        GET(index, route, s_index);
        base = PyLong_AsSsize_t(index) * self->route_block;
        if (base < 0 && PyErr_Occurred())
            goto error;
    }
    GET(head, conn, s_head);
    Py_ssize_t method_at = self->other_method_slot;
    if (head != Py_None) {
        GET(method, head, s_method);
        method_at = method_slot(self, method);
    }
    GET(bytes_in, conn, s_bytes_in);
    GET(bytes_out, conn, s_bytes_out);
    GET(outcome, conn, s_limit_outcome);
    GET(pool, conn, s_pool);
    if (as_double(bytes_in, &in) < 0 || as_double(bytes_out, &out) < 0)
        goto error;

    if (add(self, base + method_at + status_slot(self, status), 1.0) < 0
        || observe(self, base + self->duration, total_s) < 0
        || add(self, base + self->bytes_in, in) < 0
        || add(self, base + self->bytes_out, out) < 0)
        goto error;
    int has_outcome = is_true(outcome);
    if (has_outcome < 0)
        goto error;
    if (has_outcome) {
        Py_ssize_t slot = index_in(self->limit_slots, outcome, "rate-limit outcome");
        if (slot < 0 || add(self, base + self->limits + slot, 1.0) < 0)
            goto error;
    }
    if (pool != Py_None) {
        GET(label, conn, s_upstream_label);
        int has_label = is_true(label);
        if (has_label < 0 || (has_label && count_upstream(self, conn, pool) < 0))
            goto error;
    }
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(route);
    Py_XDECREF(index);
    Py_XDECREF(head);
    Py_XDECREF(method);
    Py_XDECREF(bytes_in);
    Py_XDECREF(bytes_out);
    Py_XDECREF(outcome);
    Py_XDECREF(pool);
    Py_XDECREF(label);
    return result;
}

/* method_slots (dict: method bytes -> slot) into the C table. */
static int read_methods(RequestCounter *self, PyObject *method_slots)
{
    PyObject *name, *slot;
    Py_ssize_t at = 0;
    self->n_methods = 0;
    while (PyDict_Next(method_slots, &at, &name, &slot)) {
        if (!PyBytes_Check(name) || PyBytes_GET_SIZE(name) > 8 || self->n_methods == MAX_METHODS) {
            PyErr_SetString(PyExc_ValueError, "method_slots: at most 16 methods of at most 8 bytes");
            return -1;
        }
        MethodSlot *method = &self->methods[self->n_methods++];
        method->length = PyBytes_GET_SIZE(name);
        memcpy(method->name, PyBytes_AS_STRING(name), method->length);
        if ((method->slot = PyLong_AsSsize_t(slot)) == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static void free_pools(RequestCounter *self)
{
    if (self->pools == NULL)
        return;
    for (size_t i = 0; i <= self->pool_mask; i++)
        Py_CLEAR(self->pools[i].pool);
    PyMem_Free(self->pools);
    self->pools = NULL;
}

/* pool_blocks (dict: pool -> (server_base, duration_base)) into the table. */
static int read_pools(RequestCounter *self, PyObject *pool_blocks)
{
    free_pools(self); /* of an __init__ that failed */
    size_t capacity = 8;
    while (capacity < 2 * (size_t)PyDict_GET_SIZE(pool_blocks))
        capacity *= 2;
    self->pools = PyMem_Calloc(capacity, sizeof(PoolBlock));
    if (self->pools == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->pool_mask = capacity - 1;
    PyObject *pool, *bases;
    Py_ssize_t at = 0;
    while (PyDict_Next(pool_blocks, &at, &pool, &bases)) {
        Py_ssize_t server_base, duration_base;
        if (!PyArg_ParseTuple(bases, "nn;pool_blocks: each pool maps to (server_base, duration_base)", &server_base,
                              &duration_base))
            return -1;
        size_t i = pool_slot(self, pool);
        while (self->pools[i].pool != NULL)
            i = (i + 1) & self->pool_mask;
        self->pools[i] = (PoolBlock){Py_NewRef(pool), server_base, duration_base};
    }
    return 0;
}

static int counter_init(RequestCounter *self, PyObject *args, PyObject *kwargs)
{
    PyObject *values, *method_slots, *limit_slots, *pool_blocks, *status_slots, *bounds;
    static char *names[] = {"values", "method_slots", "limit_slots", "pool_blocks", "status_slots",
                            "bounds", "route_block", "unmatched_base", "other_method_slot", "duration", "bytes_in",
                            "bytes_out", "limits", "sum_part", NULL};
    if (self->values != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RequestCounter is initialized once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!O!O!O!nnnnnnnn", names, &values, &PyDict_Type,
                                     &method_slots, &PyDict_Type, &limit_slots, &PyDict_Type, &pool_blocks,
                                     &PyTuple_Type, &status_slots, &PyTuple_Type, &bounds,
                                     &self->route_block, &self->unmatched_base, &self->other_method_slot,
                                     &self->duration, &self->bytes_in, &self->bytes_out, &self->limits,
                                     &self->sum_part))
        return -1;
    if (PyTuple_GET_SIZE(status_slots) != 10 || PyTuple_GET_SIZE(bounds) > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "status_slots needs 10 entries, bounds at most 32");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 10; i++)
        if ((self->status_slots[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(status_slots, i))) == -1 && PyErr_Occurred())
            return -1;
    self->n_bounds = PyTuple_GET_SIZE(bounds);
    for (Py_ssize_t i = 0; i < self->n_bounds; i++)
        if ((self->bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i))) == -1.0 && PyErr_Occurred())
            return -1;
    if (read_methods(self, method_slots) < 0 || read_pools(self, pool_blocks) < 0)
        return -1;
    if (PyObject_GetBuffer(values, &self->buffer, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return -1;
    if (self->buffer.format == NULL || strcmp(self->buffer.format, "d") != 0) {
        PyBuffer_Release(&self->buffer);
        PyErr_SetString(PyExc_TypeError, "values must be an array('d')");
        return -1;
    }
    self->values = self->buffer.buf;
    self->size = self->buffer.len / (Py_ssize_t)sizeof(double);
    self->limit_slots = Py_NewRef(limit_slots);
    return 0;
}

static int counter_traverse(RequestCounter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer.obj);
    Py_VISIT(self->limit_slots);
    for (size_t i = 0; self->pools != NULL && i <= self->pool_mask; i++)
        Py_VISIT(self->pools[i].pool);
    return 0;
}

static int counter_clear(RequestCounter *self)
{
    if (self->values != NULL) {
        self->values = NULL;
        PyBuffer_Release(&self->buffer);
    }
    Py_CLEAR(self->limit_slots);
    free_pools(self);
    return 0;
}

static void counter_dealloc(RequestCounter *self)
{
    PyObject_GC_UnTrack(self);
    counter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *counter_count(RequestCounter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->values == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RequestCounter is not initialized");
        return NULL;
    }
    return count(self, args, nargs);
}

static PyMethodDef counter_methods[] = {
    {"count", (PyCFunction)(void (*)(void))counter_count, METH_FASTCALL,
     "count(conn, status, total_s): count one finished request of conn."},
    {NULL},
};

static PyTypeObject RequestCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastgate.observe._native_counts.RequestCounter",
    .tp_basicsize = sizeof(RequestCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The request counts of one worker's metrics (see metrics.py count_request).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)counter_init,
    .tp_traverse = (traverseproc)counter_traverse,
    .tp_clear = (inquiry)counter_clear,
    .tp_dealloc = (destructor)counter_dealloc,
    .tp_methods = counter_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastgate.observe._native_counts", "WorkerMetrics.count_request in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native_counts(void)
{
    if (slot_readers_init(readers, sizeof readers / sizeof readers[0]) < 0)
        return NULL;
    if (PyType_Ready(&RequestCounterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RequestCounter", (PyObject *)&RequestCounterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
