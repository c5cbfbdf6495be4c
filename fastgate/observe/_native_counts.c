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

typedef struct {
    PyObject_HEAD
    Py_buffer buffer;        /* the values array, exported */
    double *values;
    Py_ssize_t size;
    PyObject *limit_slots;   /* dict: outcome str -> offset */
    PyObject *pool_bases;    /* dict: pool -> index of its first series */
    PyObject *group_bases;   /* dict: group -> index of its duration histogram */
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
    s_upstream_label = {"upstream_label"}, s_status = {"status"}, s_upstream_s = {"upstream_s"},
    s_group = {"group"};
static SlotReader *readers[] = {&s_route, &s_index, &s_head, &s_method, &s_bytes_in, &s_bytes_out,
                                &s_limit_outcome, &s_pool, &s_upstream_label, &s_status, &s_upstream_s, &s_group};

/* values[i] += by; an index outside the values is a layout bug, raised rather than written. */
static int add(RequestCounter *self, Py_ssize_t i, double by)
{
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "metrics series index out of range");
        return -1;
    }
    self->values[i] += by;
    return 0;
}

/* A Python int or float as a double. */
static int as_double(PyObject *number, double *out)
{
    *out = PyFloat_CheckExact(number) ? PyFloat_AS_DOUBLE(number) : PyFloat_AsDouble(number);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* The bucket of a duration: bisect_left over the bounds (n_bounds is +Inf). */
static Py_ssize_t bucket_of(const RequestCounter *self, double seconds)
{
    Py_ssize_t lo = 0, hi = self->n_bounds;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (self->bounds[mid] < seconds)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
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

/* Get an attribute into *out (a new reference), or fail. */
#define GET(out, obj, reader) do { (out) = slot_get(&(reader), (obj)); if ((out) == NULL) goto error; } while (0)

static int count_upstream(RequestCounter *self, PyObject *conn, PyObject *pool)
{
    PyObject *status = NULL, *group = NULL, *upstream_s = NULL;
    int rc = -1;
    Py_ssize_t server_base = index_in(self->pool_bases, pool, "pool");
    if (server_base < 0)
        return -1;
    GET(status, conn, s_status);
    GET(group, pool, s_group);
    GET(upstream_s, conn, s_upstream_s);
    Py_ssize_t duration = index_in(self->group_bases, group, "upstream group");
    if (duration < 0)
        goto error;
    long code = PyLong_AsLong(status);
    if ((code == -1 && PyErr_Occurred()) || add(self, server_base + status_slot(self, code), 1.0) < 0)
        goto error;
    rc = observe(self, duration, upstream_s);
error:
    Py_XDECREF(status);
    Py_XDECREF(group);
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
    int has_outcome = PyObject_IsTrue(outcome);
    if (has_outcome < 0)
        goto error;
    if (has_outcome) {
        Py_ssize_t slot = index_in(self->limit_slots, outcome, "rate-limit outcome");
        if (slot < 0 || add(self, base + self->limits + slot, 1.0) < 0)
            goto error;
    }
    if (pool != Py_None) {
        GET(label, conn, s_upstream_label);
        int has_label = PyObject_IsTrue(label);
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

static int counter_init(RequestCounter *self, PyObject *args, PyObject *kwargs)
{
    PyObject *values, *method_slots, *limit_slots, *pool_bases, *group_bases, *status_slots, *bounds;
    static char *names[] = {"values", "method_slots", "limit_slots", "pool_bases", "group_bases", "status_slots",
                            "bounds", "route_block", "unmatched_base", "other_method_slot", "duration", "bytes_in",
                            "bytes_out", "limits", "sum_part", NULL};
    if (self->values != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RequestCounter is initialized once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!O!O!O!O!nnnnnnnn", names, &values, &PyDict_Type,
                                     &method_slots, &PyDict_Type, &limit_slots, &PyDict_Type, &pool_bases,
                                     &PyDict_Type, &group_bases, &PyTuple_Type, &status_slots, &PyTuple_Type, &bounds,
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
    if (read_methods(self, method_slots) < 0)
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
    self->pool_bases = Py_NewRef(pool_bases);
    self->group_bases = Py_NewRef(group_bases);
    return 0;
}

static int counter_traverse(RequestCounter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer.obj);
    Py_VISIT(self->limit_slots);
    Py_VISIT(self->pool_bases);
    Py_VISIT(self->group_bases);
    return 0;
}

static int counter_clear(RequestCounter *self)
{
    if (self->values != NULL) {
        self->values = NULL;
        PyBuffer_Release(&self->buffer);
    }
    Py_CLEAR(self->limit_slots);
    Py_CLEAR(self->pool_bases);
    Py_CLEAR(self->group_bases);
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
