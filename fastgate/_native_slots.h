/* Reading __slots__ attributes from C as cheaply as the interpreter does.
 *
 * PyObject_GetAttr on a slotted object costs ~160 instructions (type lookup,
 * descriptor call); CPython's specialized bytecode reads the slot at its
 * offset in ~20. A SlotReader remembers, per attribute name, the last type
 * seen, its version tag and the slot's offset; while an object has that type
 * and the type is unchanged, the attribute is read at the offset. Any other
 * object (another type, a dict attribute, a property) goes through
 * PyObject_GetAttr, so the result is always what Python would see.
 *
 * The reader holds a reference to the remembered type, so its address cannot
 * be reused by another type while remembered. A SlotReader is static: it lives
 * as long as the process, so that reference is never released.
 */
#ifndef FASTGATE_NATIVE_SLOTS_H
#define FASTGATE_NATIVE_SLOTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    const char *text;
    PyObject *name;         /* interned; set by slot_readers_init */
    PyTypeObject *type;     /* the type remembered, or NULL */
    unsigned int version;   /* its tp_version_tag when remembered */
    Py_ssize_t offset;
} SlotReader;

/* Intern the names of readers[0:count], at module init; -1 with an exception set on failure. */
static int slot_readers_init(SlotReader **readers, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        readers[i]->name = PyUnicode_InternFromString(readers[i]->text);
        if (readers[i]->name == NULL)
            return -1;
    }
    return 0;
}

/* Remember where type(obj) keeps the attribute, if it is a plain object slot. */
static void slot_reader_learn(SlotReader *reader, PyTypeObject *type)
{
    PyObject *descr = _PyType_Lookup(type, reader->name);  /* gives the type a version tag */
    if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type
        || !PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG))
        return;
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READ_RESTRICTED))
        return;
    if (type->tp_getattro != PyObject_GenericGetAttr)
        return;  /* a __getattr__ or __getattribute__ decides */
    Py_INCREF(type);
    Py_XSETREF(reader->type, type);
    reader->version = type->tp_version_tag;
    reader->offset = member->offset;
}

/* slot_get when the remembered slot does not apply: learn the type, or ask Python. Kept out of line, and
 * out of the hot code's cache lines: it runs once per reader and slotted type (and for every read of an
 * attribute that is not a slot, which the hot path does not see). */
__attribute__((noinline, cold)) static PyObject *slot_get_slow(SlotReader *reader, PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    slot_reader_learn(reader, type);
    if (type == reader->type && type->tp_version_tag == reader->version) {
        PyObject *value = *(PyObject **)((char *)obj + reader->offset);
        if (value != NULL)
            return Py_NewRef(value);
    }
    return PyObject_GetAttr(obj, reader->name); /* not a slot, or an unset one: Python's answer or error */
}

/* obj.<name>, a new reference; NULL with an exception set when it is missing. */
static inline PyObject *slot_get(SlotReader *reader, PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (__builtin_expect(type == reader->type && type->tp_version_tag == reader->version, 1)) {
        PyObject *value = *(PyObject **)((char *)obj + reader->offset);
        if (__builtin_expect(value != NULL, 1))
            return Py_NewRef(value);
    }
    return slot_get_slow(reader, obj);
}

#endif
