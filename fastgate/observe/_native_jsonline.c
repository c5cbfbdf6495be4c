/* fastgate.observe._native_jsonline: the access log's JSON line, written in C.
 *
 * Contract: LineWriter(buffer, limit_bytes, at_bound, failed).write(conn,
 * status, total_s) appends to the bytearray ``buffer`` the line that
 * accesslog.py's JsonLines writes for record.py's make_record(conn, status,
 * total_s), without making the record. When the buffer already holds
 * ``limit_bytes`` or more, it calls at_bound(conn, status, total_s) instead
 * (the access log writes the buffer out, or drops the line). The reference
 * is the Python code, and the tests run both on the same connections: the
 * same keys in the same order, the fields whose value is "" left out
 * (omit_defaults), strings escaped as msgspec escapes them. One difference:
 * the three floats are written rounded to microseconds with integer
 * arithmetic ("0.0021", "1732233600.123456"), where msgspec writes the
 * shortest repr.
 *
 * The writer is a C object, not a Python function around one, so that a
 * request's line costs no Python frame. The line is made in a scratch buffer
 * and copied into ``buffer`` in one piece, so ``buffer`` only ever gains
 * whole lines; the writer grows ``buffer`` itself, to its bound at once (see
 * append_bytes). The text of route names, upstream labels and rate-limit
 * outcomes is kept from line to line, with a reference to each str kept
 * (see Fragment). For a connection whose attributes have unexpected types
 * (TypeError; ValueError for a duration that is not finite or out of range;
 * AttributeError for a missing attribute) it leaves ``buffer`` as it was
 * and hands the exception to failed(exception).
 */
#include "_native_slots.h"
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Where observe/trace.py's TRACE_ID and SPAN_ID slices find the ids in conn.traceparent. */
#define TRACE_ID_START 18
#define TRACE_ID_STOP 50
#define SPAN_ID_START 51
#define SPAN_ID_STOP 67

#define MAX_SECONDS 9.2e12 /* below this, microseconds fit an int64 */

/* A string literal and its length, for the keys and constant pieces. */
#define LITERAL_SIZE(text) ((Py_ssize_t)sizeof(text) - 1)
#define LITERAL(text) (text), LITERAL_SIZE(text)

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Line;

static Line scratch; /* the line being made; reused by every call (the GIL orders them) */

/* The attributes read (_native_slots.h: from the object's slot, when it is one). */
static SlotReader a_head = {"head"}, a_route = {"route"}, a_name = {"name"}, a_request_id = {"request_id"},
    a_client_text = {"client_text"}, a_method = {"method"}, a_target = {"target"}, a_http_1_0 = {"http_1_0"},
    a_raw = {"raw"}, a_lowered = {"lowered"}, a_bytes_in = {"bytes_in"}, a_bytes_out = {"bytes_out"},
    a_upstream_s = {"upstream_s"}, a_upstream_label = {"upstream_label"}, a_limit_outcome = {"limit_outcome"},
    a_traceparent = {"traceparent"}, a_http2 = {"http2"};
static SlotReader *attributes[] = {&a_head, &a_route, &a_name, &a_request_id, &a_client_text, &a_method,
                                   &a_target, &a_http_1_0, &a_raw, &a_lowered, &a_bytes_in, &a_bytes_out,
                                   &a_upstream_s, &a_upstream_label, &a_limit_outcome, &a_traceparent, &a_http2};

/* msgspec's escapes of ASCII characters: 0 as is, else the character after the backslash ('u': \u00XX). */
static char escapes[128];
static const char hex_digits[] = "0123456789abcdef";
static char digit_pairs[200]; /* "00", "01", ..., "99" */
static char digit_triples[3000]; /* "000", "001", ..., "999" */

static int grow(Line *w, Py_ssize_t more)
{
    Py_ssize_t capacity = Py_MAX(2 * w->capacity, w->size + more);
    char *data = PyMem_Realloc(w->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->data = data;
    w->capacity = capacity;
    return 0;
}

/* Room for ``more`` bytes after the line's end. */
static inline int reserve(Line *w, Py_ssize_t more)
{
    return w->capacity - w->size >= more ? 0 : grow(w, more);
}

static int put_literal(Line *w, const char *text, Py_ssize_t size)
{
    if (reserve(w, size) < 0)
        return -1;
    memcpy(w->data + w->size, text, size);
    w->size += size;
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGH_BITS 0x8080808080808080ULL

/* Whether the 8 bytes of x are all written as they are: none below 0x20, no '"' or '\\', and,
 * for latin-1, none above 0x7f. SWAR: (v - k * ONES) & ~v has a byte's high bit set for some
 * byte of v below k (k <= 0x80), and is 0 when there is none. */
static inline int plain8(uint64_t x, int latin1)
{
    uint64_t quote = x ^ ('"' * ONES), backslash = x ^ ('\\' * ONES);
    uint64_t special = ((x - 0x20 * ONES) & ~x) | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash);
    if (latin1)
        special |= x;
    return (special & HIGH_BITS) == 0;
}

/* One character, escaped as msgspec does: \" \\ \b \t \n \f \r, other controls \u00XX; DEL and
 * non-ASCII characters as they are, in UTF-8 (a latin-1 byte becomes two bytes). */
static inline char *put_char(char *out, unsigned char c, int latin1)
{
    if (c >= 0x80 && latin1) {
        *out++ = (char)(0xc0 | (c >> 6));
        *out++ = (char)(0x80 | (c & 0x3f));
    }
    else if (c >= 0x80 || escapes[c] == 0) {
        *out++ = (char)c;
    }
    else {
        *out++ = '\\';
        *out++ = escapes[c];
        if (escapes[c] == 'u') {
            memcpy(out, "00", 2);
            out[2] = hex_digits[c >> 4];
            out[3] = hex_digits[c & 15];
            out += 4;
        }
    }
    return out;
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "load_short assumes a little-endian machine"
#endif

#define PLAIN_PAD 0x6161616161616161ULL /* "aaaaaaaa": plain bytes */

/* s[0:n], 0 < n < 8, as the first bytes of a word whose other bytes are plain; two overlapping loads
 * (or three single bytes) instead of a call to memcpy of a variable size. */
static inline uint64_t load_short(const unsigned char *s, Py_ssize_t n)
{
    uint64_t x;
    if (n >= 4) {
        uint32_t first, last;
        memcpy(&first, s, 4);
        memcpy(&last, s + n - 4, 4);
        x = first | (uint64_t)last << (8 * (n - 4));
    }
    else {
        x = s[0] | (uint64_t)s[n / 2] << (8 * (n / 2)) | (uint64_t)s[n - 1] << (8 * (n - 1));
    }
    return x | PLAIN_PAD << (8 * n);
}

/* s[0:n] as the inside of a JSON string, written from ``out``, which has room for 6 * n + 8 bytes;
 * returns the end. Bytes are latin-1 characters when ``latin1`` (a bytes object from the head), else
 * UTF-8 (a str's). Runs of 8 plain bytes are copied whole; so is a plain tail shorter than 8, padded
 * with plain bytes that are then left out (hence the 8 spare bytes). */
static char *put_string_body(char *out, const unsigned char *s, Py_ssize_t n, int latin1)
{
    const unsigned char *end = s + n;
    while (s < end) {
        uint64_t x;
        Py_ssize_t left = end - s;
        if (left >= 8) {
            memcpy(&x, s, 8);
            left = 8;
        }
        else {
            x = load_short(s, left);
        }
        if (plain8(x, latin1)) {
            memcpy(out, &x, 8);
            out += left;
            s += left;
        }
        else {
            out = put_char(out, *s++, latin1);
        }
    }
    return out;
}

/* ``key`` (which ends with the string's opening quote), then s[0:n] as a JSON string and its
 * closing quote. */
static inline int put_text(Line *w, const char *key, Py_ssize_t key_size, const unsigned char *s,
                           Py_ssize_t n, int latin1)
{
    if (reserve(w, key_size + 6 * n + 8 + 1) < 0)
        return -1;
    char *out = w->data + w->size;
    memcpy(out, key, key_size);
    out = put_string_body(out + key_size, s, n, latin1);
    *out++ = '"';
    w->size = out - w->data;
    return 0;
}

/* The decimal digits of v, written backwards ending at ``end``, two at a time; returns their start. */
static char *put_digits(char *end, uint64_t v)
{
    while (v >= 100) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * v, 2);
    }
    else {
        *--end = (char)('0' + v);
    }
    return end;
}

/* The microseconds ``us`` (below 1e6) as the six decimals of a fraction of a second, written ending at
 * *end, which is then moved back over their trailing zeros (one decimal is kept); returns their start. */
static inline char *put_fraction(char **end, uint32_t us)
{
    char *start = *end - 6;
    memcpy(start, digit_triples + 3 * (us / 1000), 3);
    memcpy(start + 3, digit_triples + 3 * (us % 1000), 3);
    while ((*end)[-1] == '0' && *end - start > 1)
        (*end)--;
    return start;
}

#define NUMBER_TEXT 32 /* more than the decimal text of any int64, or of seconds with 6 decimals */

/* ``key``, then the number text start[0:stop - start]. The text is made backwards at the end of
 * the first half of a 2 * NUMBER_TEXT array, so NUMBER_TEXT bytes can be read from ``start``:
 * they are copied whole, a copy of a fixed size, and the line's size then leaves out the rest. */
static inline int put_number(Line *w, const char *key, Py_ssize_t key_size, const char *start, const char *stop)
{
    if (reserve(w, key_size + NUMBER_TEXT) < 0)
        return -1;
    char *out = w->data + w->size;
    memcpy(out, key, key_size);
    memcpy(out + key_size, start, NUMBER_TEXT);
    w->size += key_size + (stop - start);
    return 0;
}

/* ``key``, then an int: written from a C integer when it fits one, else from its decimal text. */
static inline int put_int(Line *w, const char *key, Py_ssize_t key_size, PyObject *value)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        PyObject *text = PyNumber_ToBase(value, 10);
        if (text == NULL)
            return -1;
        int rc = put_literal(w, key, key_size);
        if (rc == 0)
            rc = put_literal(w, PyUnicode_AsUTF8(text), PyUnicode_GET_LENGTH(text));
        Py_DECREF(text);
        return rc;
    }
    char text[2 * NUMBER_TEXT] = {0}, *end = text + NUMBER_TEXT;
    char *start = put_digits(end, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
    if (v < 0)
        *--start = '-';
    return put_number(w, key, key_size, start, end);
}

/* Seconds as whole microseconds; the range keeps them in an int64. */
static int to_microseconds(double seconds, int64_t *us)
{
    if (!(seconds > -MAX_SECONDS && seconds < MAX_SECONDS)) { /* also NaN */
        PyErr_SetString(PyExc_ValueError, "a duration that is not finite, or too large to log");
        return -1;
    }
    *us = (int64_t)(seconds * 1e6 + (seconds < 0 ? -0.5 : 0.5));
    return 0;
}

/* ``key``, then microseconds as seconds: the fraction without trailing zeros, at least one digit. */
static inline int put_seconds(Line *w, const char *key, Py_ssize_t key_size, int64_t us)
{
    char text[2 * NUMBER_TEXT] = {0}, *end = text + NUMBER_TEXT;
    uint64_t u = us < 0 ? 0ULL - (uint64_t)us : (uint64_t)us;
    char *start = put_fraction(&end, (uint32_t)(u % 1000000));
    *--start = '.';
    start = put_digits(start, u / 1000000);
    if (us < 0)
        *--start = '-';
    return put_number(w, key, key_size, start, end);
}

/* obj.<a>, which must be of ``type`` (or a subclass); a new reference. */
static inline PyObject *get_typed(SlotReader *a, PyObject *obj, PyTypeObject *type)
{
    PyObject *value = slot_get(a, obj);
    if (value != NULL && !PyObject_TypeCheck(value, type)) {
        PyErr_Format(PyExc_TypeError, "%.100s.%s must be %s, not %.100s", Py_TYPE(obj)->tp_name, a->text,
                     type->tp_name, Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

/* The text that a str field's value makes (its key, the JSON string, the closing quote; nothing for a
 * left-out ""), kept for the str objects seen last: route names, upstream labels and rate-limit outcomes
 * are the same few objects from request to request. A cache is direct-mapped by the object's address,
 * and each entry holds a reference to its object, so that no other object can take that address. */
#define FRAGMENT_ENTRIES 16
#define FRAGMENT_BYTES 64

typedef struct {
    PyObject *value;
    Py_ssize_t size;
    char text[FRAGMENT_BYTES];
} Fragment;

static Fragment route_fragments[FRAGMENT_ENTRIES], upstream_fragments[FRAGMENT_ENTRIES],
    outcome_fragments[FRAGMENT_ENTRIES];

static inline Fragment *fragment_of(Fragment *cache, PyObject *value)
{
    return &cache[((uintptr_t)value >> 4) % FRAGMENT_ENTRIES];
}

static inline int put_fragment(Line *w, const Fragment *kept)
{
    if (reserve(w, FRAGMENT_BYTES) < 0)
        return -1;
    memcpy(w->data + w->size, kept->text, FRAGMENT_BYTES);
    w->size += kept->size;
    return 0;
}

/* Keep text[0:size], what ``value`` made, in its entry (unless it is too long to keep). */
static void keep_fragment(Fragment *entry, PyObject *value, const char *text, Py_ssize_t size)
{
    if (size > FRAGMENT_BYTES)
        return;
    Py_XSETREF(entry->value, Py_NewRef(value));
    memcpy(entry->text, text, size);
    entry->size = size;
}

/* A bytes attribute, as a latin-1 string. */
static inline int put_bytes_field(Line *w, const char *key, Py_ssize_t key_size, SlotReader *a, PyObject *obj)
{
    PyObject *value = get_typed(a, obj, &PyBytes_Type);
    if (value == NULL)
        return -1;
    int rc = put_text(w, key, key_size, (const unsigned char *)PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), 1);
    Py_DECREF(value);
    return rc;
}

/* A str attribute; left out when it is "" and ``optional``. */
static inline int put_str_field(Line *w, const char *key, Py_ssize_t key_size, SlotReader *a,
                                PyObject *obj, int optional, Fragment *cache)
{
    PyObject *value = get_typed(a, obj, &PyUnicode_Type);
    if (value == NULL)
        return -1;
    Fragment *kept = cache != NULL ? fragment_of(cache, value) : NULL;
    if (kept != NULL && kept->value == value) {
        int rc = put_fragment(w, kept);
        Py_DECREF(value);
        return rc;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const char *utf8 = PyUnicode_IS_COMPACT_ASCII(value) ? (const char *)PyUnicode_DATA(value) /* is UTF-8 */
                                                         : PyUnicode_AsUTF8AndSize(value, &n);
    int rc = -1;
    if (utf8 != NULL) {
        Py_ssize_t start = w->size;
        rc = (optional && n == 0) ? 0 : put_text(w, key, key_size, (const unsigned char *)utf8, n, 0);
        if (rc == 0 && kept != NULL)
            keep_fragment(kept, value, w->data + start, w->size - start);
    }
    Py_DECREF(value);
    return rc;
}

/* An int attribute. */
static inline int put_int_field(Line *w, const char *key, Py_ssize_t key_size, SlotReader *a, PyObject *obj)
{
    PyObject *value = get_typed(a, obj, &PyLong_Type);
    if (value == NULL)
        return -1;
    int rc = put_int(w, key, key_size, value);
    Py_DECREF(value);
    return rc;
}

/* A float attribute (seconds). */
static inline int put_seconds_field(Line *w, const char *key, Py_ssize_t key_size, SlotReader *a, PyObject *obj)
{
    PyObject *value = slot_get(a, obj);
    if (value == NULL)
        return -1;
    double seconds = PyFloat_AsDouble(value);
    Py_DECREF(value);
    int64_t us;
    if ((seconds == -1.0 && PyErr_Occurred()) || to_microseconds(seconds, &us) < 0)
        return -1;
    return put_seconds(w, key, key_size, us);
}

/* conn.route.name, left out when there is no route or its name is "". */
static int put_route_field(Line *w, PyObject *conn)
{
    PyObject *route = slot_get(&a_route, conn);
    if (route == NULL)
        return -1;
    int rc = route == Py_None ? 0 : put_str_field(w, LITERAL(",\"route\":\""), &a_name, route, 1, route_fragments);
    Py_DECREF(route);
    return rc;
}

/* A slice of bytes (Python's slice bounds) as a latin-1 string, left out when empty. */
static inline int put_slice(Line *w, const char *key, Py_ssize_t key_size, const char *s,
                            Py_ssize_t n, Py_ssize_t start, Py_ssize_t stop)
{
    start = Py_MIN(start, n);
    stop = Py_MIN(stop, n);
    if (stop <= start)
        return 0;
    return put_text(w, key, key_size, (const unsigned char *)s + start, stop - start, 1);
}

/* trace_id and span_id: slices of conn.traceparent (b"" when tracing is off: both left out). Tracer.start
 * makes them of hex digits; any other byte would be taken as latin-1, where Python decodes UTF-8. */
static int put_trace_fields(Line *w, PyObject *conn)
{
    PyObject *traceparent = get_typed(&a_traceparent, conn, &PyBytes_Type);
    if (traceparent == NULL)
        return -1;
    const char *s = PyBytes_AS_STRING(traceparent);
    Py_ssize_t n = PyBytes_GET_SIZE(traceparent);
    int rc = put_slice(w, LITERAL(",\"trace_id\":\""), s, n, TRACE_ID_START, TRACE_ID_STOP);
    if (rc == 0)
        rc = put_slice(w, LITERAL(",\"span_id\":\""), s, n, SPAN_ID_START, SPAN_ID_STOP);
    Py_DECREF(traceparent);
    return rc;
}

/* method, path and protocol from the head. */
static int put_request_line_fields(Line *w, PyObject *head)
{
    if (put_bytes_field(w, LITERAL(",\"method\":\""), &a_method, head) < 0
        || put_bytes_field(w, LITERAL(",\"path\":\""), &a_target, head) < 0)
        return -1;
    PyObject *http_1_0 = slot_get(&a_http_1_0, head);
    if (http_1_0 == NULL)
        return -1;
    int old = PyObject_IsTrue(http_1_0);
    Py_DECREF(http_1_0);
    if (old < 0)
        return -1;
    if (old)
        return put_literal(w, LITERAL(",\"protocol\":\"HTTP/1.0\""));
    PyObject *http2 = slot_get(&a_http2, head);
    if (http2 == NULL)
        return -1;
    int two = PyObject_IsTrue(http2);
    Py_DECREF(http2);
    if (two < 0)
        return -1;
    if (two)
        return put_literal(w, LITERAL(",\"protocol\":\"HTTP/2.0\""));
    return put_literal(w, LITERAL(",\"protocol\":\"HTTP/1.1\""));
}

/* The first "\r\n" in s[0:n], or NULL. */
static const char *find_crlf(const char *s, Py_ssize_t n)
{
    const char *end = s + n;
    for (const char *p = s; (p = memchr(p, '\r', end - p)) != NULL; p++)
        if (end - p >= 2 && p[1] == '\n')
            return p;
    return NULL;
}

#define USER_AGENT "\r\nuser-agent:"
#define REFERER "\r\nreferer:"

/* ``key`` and the value of the header whose marker (b"\r\nname:") is at low[at:] in the lowered
 * head, taken from ``raw`` and stripped of ASCII whitespace; left out when absent (``at`` < 0)
 * or empty. record.py's _field, byte for byte (slice bounds included). */
static inline int put_header_field(Line *w, const char *key, Py_ssize_t key_size, PyObject *raw,
                                   Py_ssize_t at, Py_ssize_t marker_size)
{
    if (at < 0)
        return 0;
    const char *s = PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw);
    Py_ssize_t start = Py_MIN(at + marker_size, n);
    const char *crlf = find_crlf(s + start, n - start);
    Py_ssize_t end = crlf != NULL ? crlf - s : n - 1; /* raw[start:-1] when there is no CRLF */
    while (start < end && Py_ISSPACE(s[start]))
        start++;
    while (end > start && Py_ISSPACE(s[end - 1]))
        end--;
    if (end <= start)
        return 0;
    return put_text(w, key, key_size, (const unsigned char *)s + start, end - start, 1);
}

/* user_agent and referer from the head: their first headers, found in one pass over the lines. */
static int put_header_fields(Line *w, PyObject *head)
{
    PyObject *raw = get_typed(&a_raw, head, &PyBytes_Type);
    if (raw == NULL)
        return -1;
    PyObject *lowered = get_typed(&a_lowered, head, &PyBytes_Type);
    if (lowered == NULL) {
        Py_DECREF(raw);
        return -1;
    }
    const char *low = PyBytes_AS_STRING(lowered), *end = low + PyBytes_GET_SIZE(lowered);
    Py_ssize_t user_agent = -1, referer = -1;
    for (const char *p = low; (p = memchr(p, '\r', end - p)) != NULL && (user_agent < 0 || referer < 0); p++) {
        if (user_agent < 0 && end - p >= LITERAL_SIZE(USER_AGENT) && memcmp(p, LITERAL(USER_AGENT)) == 0)
            user_agent = p - low;
        else if (referer < 0 && end - p >= LITERAL_SIZE(REFERER) && memcmp(p, LITERAL(REFERER)) == 0)
            referer = p - low;
    }
    Py_DECREF(lowered);
    int rc = put_header_field(w, LITERAL(",\"user_agent\":\""), raw, user_agent, LITERAL_SIZE(USER_AGENT));
    if (rc == 0)
        rc = put_header_field(w, LITERAL(",\"referer\":\""), raw, referer, LITERAL_SIZE(REFERER));
    Py_DECREF(raw);
    return rc;
}

static int64_t wall_clock_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000 + (now.tv_nsec + 500) / 1000;
}

#define TIME_KEY "{\"time\":"

/* The line's start up to its time's fraction, `{"time":1732233600.`: made again only when the second changes. */
static struct {
    int64_t second;
    Py_ssize_t size;
    char text[LITERAL_SIZE(TIME_KEY) + NUMBER_TEXT + 1];
} time_start = {-1};

/* TIME_KEY and the wall-clock time ``us`` (microseconds since 1970) in seconds, as put_seconds writes them. */
static int put_time(Line *w, int64_t us)
{
    if (us < 0) /* a clock before 1970 */
        return put_seconds(w, LITERAL(TIME_KEY), us);
    int64_t second = us / 1000000;
    if (second != time_start.second) {
        char digits[NUMBER_TEXT], *end = digits + NUMBER_TEXT;
        char *start = put_digits(end, (uint64_t)second);
        memcpy(time_start.text, LITERAL(TIME_KEY));
        memcpy(time_start.text + LITERAL_SIZE(TIME_KEY), start, end - start);
        time_start.size = LITERAL_SIZE(TIME_KEY) + (end - start) + 1;
        time_start.text[time_start.size - 1] = '.';
        time_start.second = second;
    }
    char text[2 * NUMBER_TEXT] = {0}, *end = text + NUMBER_TEXT;
    char *start = put_fraction(&end, (uint32_t)(us % 1000000));
    if (reserve(w, sizeof time_start.text + NUMBER_TEXT) < 0)
        return -1;
    char *out = w->data + w->size;
    memcpy(out, time_start.text, sizeof time_start.text);
    memcpy(out + time_start.size, start, NUMBER_TEXT);
    w->size += time_start.size + (end - start);
    return 0;
}

/* The whole line, in record.py's field order; ``head`` is conn.head (None: refused before a head). */
static int put_line(Line *w, PyObject *conn, PyObject *head, PyObject *status, double total_s)
{
    int64_t total_us;
    if (to_microseconds(total_s, &total_us) < 0
        || put_time(w, wall_clock_us() - total_us) < 0
        || put_bytes_field(w, LITERAL(",\"request_id\":\""), &a_request_id, conn) < 0
        || put_str_field(w, LITERAL(",\"client_ip\":\""), &a_client_text, conn, 0, NULL) < 0)
        return -1;
    if (head == Py_None) {
        if (put_literal(w, LITERAL(",\"method\":\"\",\"path\":\"\",\"protocol\":\"HTTP/1.1\"")) < 0)
            return -1;
    }
    else if (put_request_line_fields(w, head) < 0) {
        return -1;
    }
    if (put_int(w, LITERAL(",\"status\":"), status) < 0
        || put_int_field(w, LITERAL(",\"bytes_in\":"), &a_bytes_in, conn) < 0
        || put_int_field(w, LITERAL(",\"bytes_out\":"), &a_bytes_out, conn) < 0
        || put_seconds_field(w, LITERAL(",\"upstream_time\":"), &a_upstream_s, conn) < 0
        || put_seconds(w, LITERAL(",\"total_time\":"), total_us) < 0
        || put_route_field(w, conn) < 0
        || put_str_field(w, LITERAL(",\"upstream\":\""), &a_upstream_label, conn, 1, upstream_fragments) < 0
        || put_str_field(w, LITERAL(",\"ratelimit\":\""), &a_limit_outcome, conn, 1, outcome_fragments) < 0
        || put_trace_fields(w, conn) < 0
        || (head != Py_None && put_header_fields(w, head) < 0))
        return -1;
    return put_literal(w, LITERAL("}\n"));
}

#define MAX_UPFRONT (1 << 20) /* the most allocated at once for a buffer's bound */
#define LINE_ROOM 4096         /* room past the bound, for the line that finds the buffer just below it */

/* Append data[0:n] to the bytearray ``buffer``, whose lines are written out once it holds ``bound``
 * bytes. PyByteArray_Resize would reallocate, and copy what is held, every few lines (it adds an
 * eighth, and gives back what is more than twice the size), and again after every write-out, which
 * empties the buffer. This writes into the allocation's spare room; when there is none, it makes room
 * for the whole bound at once (up to MAX_UPFRONT; past that, twice what is held): PyByteArray_Resize to
 * that size, then the size set back, as Resize's own quick path sets it. The trailing NUL that bytearray
 * keeps is kept. An exported buffer is left to Resize, which refuses it (BufferError). */
static int append_bytes(PyObject *buffer, const char *data, Py_ssize_t n, Py_ssize_t bound)
{
    PyByteArrayObject *b = (PyByteArrayObject *)buffer;
    Py_ssize_t size = Py_SIZE(b);
    if (b->ob_exports > 0 || b->ob_alloc - (b->ob_start - b->ob_bytes) - 1 - size < n) {
        Py_ssize_t capacity = Py_MAX(Py_MIN(bound, MAX_UPFRONT) + LINE_ROOM, 2 * size);
        if (PyByteArray_Resize(buffer, Py_MAX(capacity, size + n)) < 0)
            return -1;
    }
    memcpy(b->ob_start + size, data, n);
    Py_SET_SIZE(b, size + n);
    b->ob_start[size + n] = '\0';
    return 0;
}

/* Append conn's line to the bytearray ``buffer`` (bounded by ``bound``: see append_bytes); -1 with an
 * exception set, and ``buffer`` as it was, when the line cannot be made. */
static int append_line(PyObject *buffer, Py_ssize_t bound, PyObject *conn, PyObject *status, PyObject *total)
{
    if (!PyLong_Check(status)) {
        PyErr_Format(PyExc_TypeError, "status must be an int, not %.100s", Py_TYPE(status)->tp_name);
        return -1;
    }
    double total_s = PyFloat_AsDouble(total);
    if (total_s == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *head = slot_get(&a_head, conn);
    if (head == NULL)
        return -1;
    scratch.size = 0;
    int rc = put_line(&scratch, conn, head, status, total_s);
    Py_DECREF(head);
    if (rc < 0)
        return -1;
    return append_bytes(buffer, scratch.data, scratch.size, bound);
}

typedef struct {
    PyObject_HEAD
    PyObject *buffer;   /* the bytearray the lines go to */
    Py_ssize_t limit;   /* no line is added while the buffer holds this many bytes or more */
    PyObject *at_bound; /* at_bound(conn, status, total_s): called instead when the buffer is at its limit */
    PyObject *failed;   /* failed(exception): called when a line cannot be made */
} LineWriter;

/* Hand the exception being raised to self->failed; its result is the call's. */
static PyObject *report_failure(LineWriter *self)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    PyObject *result = PyObject_CallOneArg(self->failed, value);
    Py_DECREF(value);
    return result;
}

static PyObject *writer_write(LineWriter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write(conn, status, total_s) takes 3 arguments");
        return NULL;
    }
    if (self->buffer == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter is not initialized");
        return NULL;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(self->buffer);
    if (size >= self->limit)
        return PyObject_Vectorcall(self->at_bound, args, 3, NULL);
    if (append_line(self->buffer, self->limit, args[0], args[1], args[2]) < 0)
        return report_failure(self);
    Py_RETURN_NONE;
}

static int writer_init(LineWriter *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"buffer", "limit_bytes", "at_bound", "failed", NULL};
    PyObject *buffer, *at_bound, *failed;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!nOO", names, &PyByteArray_Type, &buffer, &limit, &at_bound,
                                     &failed))
        return -1;
    if (!PyCallable_Check(at_bound) || !PyCallable_Check(failed)) {
        PyErr_SetString(PyExc_TypeError, "at_bound and failed must be callable");
        return -1;
    }
    Py_XSETREF(self->buffer, Py_NewRef(buffer));
    Py_XSETREF(self->at_bound, Py_NewRef(at_bound));
    Py_XSETREF(self->failed, Py_NewRef(failed));
    self->limit = limit;
    return 0;
}

static int writer_traverse(LineWriter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer);
    Py_VISIT(self->at_bound);
    Py_VISIT(self->failed);
    return 0;
}

static int writer_clear(LineWriter *self)
{
    Py_CLEAR(self->buffer);
    Py_CLEAR(self->at_bound);
    Py_CLEAR(self->failed);
    return 0;
}

static void writer_dealloc(LineWriter *self)
{
    PyObject_GC_UnTrack(self);
    writer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef writer_methods[] = {
    {"write", (PyCFunction)(void (*)(void))writer_write, METH_FASTCALL,
     "write(conn, status, total_s) -> None\n\n"
     "Append the JSON access log line of conn's finished request to the buffer. When the buffer\n"
     "already holds limit_bytes or more, call at_bound(conn, status, total_s) instead and leave\n"
     "the buffer alone; when the line cannot be made (an attribute of an unexpected type), leave\n"
     "the buffer as it was and call failed(exception). Returns what the callback returns."},
    {NULL},
};

static PyTypeObject LineWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastgate.observe._native_jsonline.LineWriter",
    .tp_basicsize = sizeof(LineWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "LineWriter(buffer, limit_bytes, at_bound, failed): JSON access log lines into a bytearray.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)writer_init,
    .tp_traverse = (traverseproc)writer_traverse,
    .tp_clear = (inquiry)writer_clear,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_methods = writer_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastgate.observe._native_jsonline", "The access log's JSON line in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native_jsonline(void)
{
    if (slot_readers_init(attributes, sizeof attributes / sizeof attributes[0]) < 0)
        return NULL;
    for (int c = 0; c < 0x20; c++)
        escapes[c] = 'u';
    escapes['\b'] = 'b';
    escapes['\t'] = 't';
    escapes['\n'] = 'n';
    escapes['\f'] = 'f';
    escapes['\r'] = 'r';
    escapes['"'] = '"';
    escapes['\\'] = '\\';
    for (int i = 0; i < 100; i++) {
        digit_pairs[2 * i] = (char)('0' + i / 10);
        digit_pairs[2 * i + 1] = (char)('0' + i % 10);
    }
    for (int i = 0; i < 1000; i++) {
        digit_triples[3 * i] = (char)('0' + i / 100);
        digit_triples[3 * i + 1] = (char)('0' + i / 10 % 10);
        digit_triples[3 * i + 2] = (char)('0' + i % 10);
    }
    if (PyType_Ready(&LineWriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "LineWriter", (PyObject *)&LineWriterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
