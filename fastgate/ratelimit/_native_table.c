/* fastgate.ratelimit._native_table: the local store's common check in C.
 *
 * Contract: GcraAdmit(table, lock, mask, fingerprints, records, owner, prefix,
 * interval_us, tolerance_us) is one route's single GCRA limit keyed by the
 * client IP alone, in the shared table of shared_table.py (same layout, same
 * lock, same hash of the key). ``admit(ip)`` returns True when it counted one
 * request of key ``prefix + ip``, exactly as SharedTable.apply with
 * gcra_admit would. It returns False, having changed nothing, whenever the
 * case is not the plain one: the lock is busy, the key has no slot in its
 * probe window yet, or the request does not fit. The caller then runs the
 * Python path, which waits for the lock, places keys, evicts, and builds the
 * 429 with its headers. So a False answer is "not admitted here", never a
 * denial.
 *
 * The lock is the table's multiprocessing.Lock: a process-shared POSIX
 * semaphore, taken with sem_trywait and released with sem_post, its holder's
 * pid in the header word ``owner`` while held, as the Python path does. The
 * SemLock object's own bookkeeping (count, last thread) is not touched: it
 * only concerns the Python acquire/release pairs, which stay balanced.
 *
 * ``admitted`` is an array('Q') of one number, the table's count of the
 * requests this process admitted here (read by ratelimit/stats.py); it
 * stays exported while the check lives.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define PROBE 8  /* shared_table.py PROBE */

static int64_t own_pid;

static void refresh_pid(void)
{
    own_pid = getpid();
}

typedef struct {
    PyObject_HEAD
    Py_buffer table;         /* the mapping, held exported */
    Py_buffer counter;       /* admitted: one uint64, held exported */
    int64_t *words;
    Py_ssize_t n_words;
    sem_t *lock;
    int64_t mask, fingerprints, records, owner;
    PyObject *prefix;        /* bytes */
    int64_t interval_us, tolerance_us;
} GcraAdmit;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.monotonic_ns()'s clock */
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The record of fingerprint h in its probe window, or -1 when it has no slot there. */
static int64_t record_of(const GcraAdmit *self, int64_t h)
{
    int64_t home = h & self->mask;
    const int64_t *window = self->words + self->fingerprints + home;
    for (int slot = 0; slot < PROBE; slot++)
        if (window[slot] == h)
            return self->records + 3 * (home + slot);
    return -1;
}

static PyObject *admit(GcraAdmit *self, PyObject *ip)
{
    if (self->words == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "GcraAdmit is not initialized");
        return NULL;
    }
    if (!PyBytes_Check(ip)) {
        PyErr_SetString(PyExc_TypeError, "admit(ip): ip must be bytes");
        return NULL;
    }
    Py_ssize_t prefix_length = PyBytes_GET_SIZE(self->prefix), ip_length = PyBytes_GET_SIZE(ip);
    PyObject *key = PyBytes_FromStringAndSize(NULL, prefix_length + ip_length);
    if (key == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(key), PyBytes_AS_STRING(self->prefix), prefix_length);
    memcpy(PyBytes_AS_STRING(key) + prefix_length, PyBytes_AS_STRING(ip), ip_length);
    Py_hash_t h = PyObject_Hash(key);  /* hash(key) as the Python path computes it */
    Py_DECREF(key);
    if (h == -1)
        return NULL;
    if (h == 0)
        h = 1;  /* shared_table.py: hash(key) or 1 (0 marks a free slot) */

    if (sem_trywait(self->lock) != 0)
        Py_RETURN_FALSE;
    int admitted = 0;
    int64_t *words = self->words;
    words[self->owner] = own_pid;
    int64_t record = record_of(self, h);
    if (record >= 0) {
        int64_t now = now_us();
        int64_t tat = words[record] > now ? words[record] : now;
        if (tat - now <= self->tolerance_us) {
            words[record] = tat + self->interval_us;
            admitted = 1;
        }
    }
    words[self->owner] = 0;
    sem_post(self->lock);
    if (!admitted)
        Py_RETURN_FALSE;
    (*(unsigned long long *)self->counter.buf)++;
    Py_RETURN_TRUE;
}

static int gcra_init(GcraAdmit *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"table", "lock", "mask", "fingerprints", "records", "owner", "prefix", "interval_us",
                            "tolerance_us", "admitted", NULL};
    PyObject *table, *prefix, *admitted;
    unsigned long long lock;
    long long mask, fingerprints, records, owner, interval, tolerance;
    if (self->words != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "GcraAdmit is initialized once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKLLLLO!LLO", names, &table, &lock, &mask, &fingerprints,
                                     &records, &owner, &PyBytes_Type, &prefix, &interval, &tolerance,
                                     &admitted))
        return -1;
    if (PyObject_GetBuffer(admitted, &self->counter, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return -1;
    if (self->counter.len != 8 || self->counter.format == NULL || strcmp(self->counter.format, "Q") != 0) {
        PyBuffer_Release(&self->counter);
        PyErr_SetString(PyExc_TypeError, "admitted must be an array('Q') of one number");
        return -1;
    }
    if (PyObject_GetBuffer(table, &self->table, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&self->counter);
        return -1;
    }
    Py_ssize_t n_words = self->table.len / 8;
    if (lock == 0 || mask < 0 || fingerprints < 0 || records < 0 || owner < 0 || owner >= n_words
        || fingerprints + mask + PROBE > n_words || records + 3 * (mask + PROBE) > n_words) {
        PyBuffer_Release(&self->table);
        PyBuffer_Release(&self->counter);
        PyErr_SetString(PyExc_ValueError, "the table layout does not fit the mapping");
        return -1;
    }
    self->words = self->table.buf;
    self->n_words = n_words;
    self->lock = (sem_t *)(uintptr_t)lock;
    self->mask = mask;
    self->fingerprints = fingerprints;
    self->records = records;
    self->owner = owner;
    self->prefix = Py_NewRef(prefix);
    self->interval_us = interval;
    self->tolerance_us = tolerance;
    return 0;
}

static void gcra_dealloc(GcraAdmit *self)
{
    if (self->words != NULL) {
        PyBuffer_Release(&self->table);
        PyBuffer_Release(&self->counter);
    }
    Py_XDECREF(self->prefix);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef gcra_methods[] = {
    {"admit", (PyCFunction)admit, METH_O,
     "admit(ip) -> True when one request of prefix + ip was counted; False: nothing done, use the Python path."},
    {NULL},
};

static PyTypeObject GcraAdmitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastgate.ratelimit._native_table.GcraAdmit",
    .tp_basicsize = sizeof(GcraAdmit),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One route's single GCRA limit keyed by the client IP, checked in the shared table.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)gcra_init,
    .tp_dealloc = (destructor)gcra_dealloc,
    .tp_methods = gcra_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastgate.ratelimit._native_table", "The local store's common check in C.", -1,
    NULL,
};

PyMODINIT_FUNC PyInit__native_table(void)
{
    refresh_pid();
    if (pthread_atfork(NULL, NULL, refresh_pid) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    if (PyType_Ready(&GcraAdmitType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "GcraAdmit", (PyObject *)&GcraAdmitType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
