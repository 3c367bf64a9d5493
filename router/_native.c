/* The router's native helpers: the decision log's line renderer and `untrack`.
 *
 * render(queue, item, offset, limit, request_parts, format_time)
 *     What `decision_log._render_python` does -- `_LineBuilder.add` for each decision of a line --
 *     without a Python dict and an orjson call per decision.
 *     queue          the log's queue taken by the writer: a list of (decisions, context, kind,
 *                    policy_hash) where `decisions` is one Decision or a tuple of them
 *     item, offset   where the line starts: queue[item], its decision number `offset`
 *     limit          the most decisions the line holds
 *     request_parts  decision_log._request_parts: (caller, revision, context, kind,
 *                    policy_hash, policy_version) -> (head bytes, tail bytes)
 *     format_time    decision_log._format_time, for a decide time that is not an exact
 *                    `datetime` in `timezone.utc`
 *   returns ((ids, requests, region_sets, reasons), item, offset): the line's parts exactly as
 *   `_LineBuilder.parts()` gives them (the decision ids in order; (head, decisions joined by ",",
 *   tail) per request entry; the line's distinct allowed-region tuples; its distinct reasons as
 *   dicts) and where the next line starts. Returns None, having changed nothing, when an entry
 *   is not of the shapes the router appends (Decision tuples of str fields, Enum members with str
 *   values, tuples of str): the caller then renders the line in Python, which is the reference.
 *   tests/unit/test_decision_log_native.py holds the two byte-for-byte equal.
 *
 *   Strings are written as orjson writes them: UTF-8, `"` and `\` escaped, control characters
 *   as \b \t \n \f \r or \u00XX (lower-case hex), nothing else escaped. A string that is not
 *   valid Unicode (a lone surrogate) raises, as orjson does.
 *
 * encode_batch(decisions, operations, verdict_fragment, context_fragment, reason_texts)
 *     What `convert.DecisionEncoder.encode_batch` does in Python: the serialized
 *     BatchDecideResponse of a list of Decisions, written in the protobuf wire format. The
 *     fragments that repeat across decisions come from the encoder's own (cached) methods,
 *     called once per distinct object here; `operations` maps an Operation to its field bytes.
 *     Returns None for shapes the router never produces (the caller then encodes in Python,
 *     the reference: tests/unit/test_runtime_servicers.py holds the two byte-for-byte equal).
 *
 * parse_batch(data, regions, operations, max_requests)
 *     A serialized BatchDecideRequest as the servicer's questions: a list of (dataset_id,
 *     Operation, region) -- `operations` maps a proto enum value (index) to an Operation or None
 *     -- when every request is plain: at most `max_requests`, each a dataset id of printable
 *     ASCII without edge spaces (1-2048 characters), a known operation and a region in
 *     `regions`. Otherwise None, and the servicer parses with protobuf and checks in Python,
 *     which names every problem (the reference: an answer from either path is the same).
 *
 * untrack(decisions)
 *     Takes the Decision tuples of a list out of the cyclic garbage collector's sight. A
 *     Decision holds only strings, Enum members, ints, a datetime and tuples of those: it can
 *     never be part of a reference cycle, so reference counting alone frees it. Left tracked,
 *     a BatchDecide's 10,000 decisions are walked by the next collections for nothing
 *     (docs/benchmarks.md). Anything else in the list is left alone.
 *
 * All run holding the interpreter lock (they read Python objects throughout).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define UNSUPPORTED (-2) /* an input shape this renderer leaves to Python */

/* Field positions in router.types.Decision and Reason (NamedTuples). */
enum { D_ID, D_OUTCOME, D_DATASET, D_OPERATION, D_REGION, D_ALLOWED, D_REASONS, D_VERSION, D_REVISION, D_TIME,
       D_CALLER, D_FIELDS };
enum { R_CODE, R_MESSAGE, R_RULE_ID, R_CITATION, R_PATH, R_FIELDS };

static PyObject *s_value_;   /* "_value_" */
static PyObject *s_citation, *s_code, *s_message, *s_rule_id;

/* ---- a growable byte buffer ------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 8192;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* `s` must be a string literal (its size is taken). */
#define BUF_LITERAL(b, s) buf_put((b), ("" s), (Py_ssize_t)(sizeof(s) - 1))

/* A non-negative index in decimal (by hand, as the time below: snprintf took a third of the time). */
static int
buf_index(Buf *b, Py_ssize_t value)
{
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    size_t v = (size_t)value;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_put(b, p, end - p);
}

/* Bytes that a JSON string must escape: control characters, '"' and '\\'. */
static unsigned char needs_escape[256];

/* Whether any of the 8 bytes at `p` is below 0x20, '"' or '\\' (the bytes `needs_escape`
 * marks), by the word-at-a-time tests for a zero byte and a byte below n (exact as a yes/no). */
static inline int
word_needs_escape(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t below_space = (w - ones * 0x20) & ~w & highs;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t has_quote = (quote - ones) & ~quote & highs;
    uint64_t has_backslash = (backslash - ones) & ~backslash & highs;
    return (below_space | has_quote | has_backslash) != 0;
}

/* A str as a JSON string, as orjson renders it. */
static int
buf_str(Buf *b, PyObject *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!PyUnicode_Check(s))
        return UNSUPPORTED;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL)
        return -1;
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || buf_reserve(b, 6 * n + 2) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    Py_ssize_t run = 0; /* start of the bytes not copied yet */
    Py_ssize_t i = 0;
    for (;;) {
        /* Eight bytes at a time while none needs escaping (ids and texts rarely hold one). */
        while (i + 8 <= n && !word_needs_escape(u + i))
            i += 8;
        if (i >= n)
            break;
        unsigned char c = (unsigned char)u[i++];
        if (!needs_escape[c])
            continue;
        Py_ssize_t at = i - 1;
        memcpy(out, u + run, at - run);
        out += at - run;
        run = at + 1;
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 0xf];
        }
    }
    memcpy(out, u + run, n - run);
    out += n - run;
    *out++ = '"';
    b->len = out - b->data;
    return 0;
}

/* ---- identity tables: up to 4 object addresses -> small int ------------------------------
 * Open addressing, keyed on the objects' addresses (unused key positions NULL), for objects the
 * caller keeps alive while the table exists. The router hands out one tuple per allowed-region
 * list and one message object per (rule, region) denial, so identity settles nearly every
 * lookup without hashing a value or building a key tuple. */

typedef struct {
    PyObject *key[4];
    Py_ssize_t index;
} IdSlot;

typedef struct {
    IdSlot *slots;
    Py_ssize_t size, used; /* size: a power of two */
} IdTable;

static size_t
id_hash(PyObject *const *key)
{
    uint64_t h = 0;
    for (int i = 0; i < 4; i++)
        h = (h ^ (uint64_t)(uintptr_t)key[i]) * 11400714819323198485ull;
    return (size_t)(h >> 32);
}

static Py_ssize_t
id_slot(const IdTable *t, PyObject *const *key)
{
    size_t mask = (size_t)t->size - 1, i = id_hash(key) & mask;
    while (t->slots[i].key[0] != NULL && memcmp(t->slots[i].key, key, sizeof t->slots[i].key) != 0)
        i = (i + 1) & mask;
    return (Py_ssize_t)i;
}

/* The index for `key`, or -1 when absent. */
static Py_ssize_t
id_get(const IdTable *t, PyObject *const *key)
{
    const IdSlot *slot = &t->slots[id_slot(t, key)];
    return slot->key[0] == NULL ? -1 : slot->index;
}

static int
id_init(IdTable *t, Py_ssize_t size)
{
    t->slots = PyMem_Calloc(size, sizeof(IdSlot));
    t->size = size;
    t->used = 0;
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int
id_set(IdTable *t, PyObject *const *key, Py_ssize_t index)
{
    if (2 * (t->used + 1) > t->size) {
        IdTable grown;
        if (id_init(&grown, 2 * t->size) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < t->size; i++) {
            if (t->slots[i].key[0] != NULL)
                grown.slots[id_slot(&grown, t->slots[i].key)] = t->slots[i];
        }
        grown.used = t->used;
        PyMem_Free(t->slots);
        *t = grown;
    }
    IdSlot *slot = &t->slots[id_slot(t, key)];
    if (slot->key[0] == NULL)
        t->used++;
    memcpy(slot->key, key, sizeof slot->key);
    slot->index = index;
    return 0;
}

/* ---- one line ----------------------------------------------------------------------------- */

typedef struct {
    PyObject *ids, *requests, *region_sets, *reasons; /* the results (lists) */
    PyObject *set_by_value, *reason_index;            /* dicts: tuple -> index */
    IdTable set_by_id;     /* allowed-region tuple -> region set index */
    IdTable reason_by_id;  /* (code, message, rule_id, citation) -> reason index */
    PyObject *shared;          /* the current request entry's key tuple, or NULL */
    PyObject *head, *tail;     /* its rendered parts */
    Buf group;                 /* its decisions so far, joined by "," */
    PyObject *time_of;         /* the last decide time seen (borrowed), and its text */
    char time_text[64];
    Py_ssize_t time_len;
    PyObject *enum_keys[4];    /* Enum member -> its str value (borrowed, small cache) */
    PyObject *enum_values[4];
} Line;

static int
line_init(Line *line)
{
    memset(line, 0, sizeof *line);
    line->ids = PyList_New(0);
    line->requests = PyList_New(0);
    line->region_sets = PyList_New(0);
    line->reasons = PyList_New(0);
    line->set_by_value = PyDict_New();
    line->reason_index = PyDict_New();
    if (!line->ids || !line->requests || !line->region_sets || !line->reasons || !line->set_by_value
        || !line->reason_index)
        return -1;
    if (id_init(&line->set_by_id, 64) < 0 || id_init(&line->reason_by_id, 64) < 0)
        return -1;
    return 0;
}

static void
line_clear(Line *line)
{
    Py_CLEAR(line->ids);
    Py_CLEAR(line->requests);
    Py_CLEAR(line->region_sets);
    Py_CLEAR(line->reasons);
    Py_CLEAR(line->set_by_value);
    Py_CLEAR(line->reason_index);
    PyMem_Free(line->set_by_id.slots);
    line->set_by_id.slots = NULL;
    PyMem_Free(line->reason_by_id.slots);
    line->reason_by_id.slots = NULL;
    Py_CLEAR(line->shared);
    Py_CLEAR(line->head);
    Py_CLEAR(line->tail);
    PyMem_Free(line->group.data);
    line->group.data = NULL;
    for (int i = 0; i < 4; i++)
        Py_CLEAR(line->enum_values[i]);
}

/* The current request entry, finished: (head, its decisions, tail) onto `requests`. */
static int
finish_group(Line *line)
{
    if (line->shared == NULL)
        return 0;
    PyObject *body = PyBytes_FromStringAndSize(line->group.data, line->group.len);
    if (body == NULL)
        return -1;
    PyObject *part = PyTuple_Pack(3, line->head, body, line->tail);
    Py_DECREF(body);
    if (part == NULL)
        return -1;
    int failed = PyList_Append(line->requests, part);
    Py_DECREF(part);
    line->group.len = 0;
    return failed;
}

/* An Enum member's str value, as `member._value_`. */
static int
put_enum(Line *line, Buf *b, PyObject *member)
{
    for (int i = 0; i < 4 && line->enum_keys[i] != NULL; i++) {
        if (line->enum_keys[i] == member)
            return buf_str(b, line->enum_values[i]);
    }
    PyObject *value = PyObject_GetAttr(member, s_value_);
    if (value == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return UNSUPPORTED;
    }
    if (!PyUnicode_Check(value)) {
        Py_DECREF(value);
        return UNSUPPORTED;
    }
    int result = buf_str(b, value);
    for (int i = 0; i < 4; i++) {
        if (line->enum_keys[i] == NULL) {
            line->enum_keys[i] = member; /* kept alive by the entries */
            line->enum_values[i] = value;
            return result;
        }
    }
    Py_DECREF(value);
    return result;
}

/* The index of `regions` (a tuple of str) in the line's region sets. */
static Py_ssize_t
region_set_index(Line *line, PyObject *regions)
{
    PyObject *const key[4] = {regions, NULL, NULL, NULL};
    Py_ssize_t index = id_get(&line->set_by_id, key);
    if (index >= 0)
        return index;
    if (!PyTuple_CheckExact(regions))
        return UNSUPPORTED;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(regions); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(regions, i)))
            return UNSUPPORTED;
    }
    PyObject *known = PyDict_GetItemWithError(line->set_by_value, regions);
    if (known != NULL) {
        index = PyLong_AsSsize_t(known);
    } else {
        if (PyErr_Occurred())
            return -1;
        index = PyList_GET_SIZE(line->region_sets);
        PyObject *number = PyLong_FromSsize_t(index);
        if (number == NULL)
            return -1;
        int failed = PyDict_SetItem(line->set_by_value, regions, number);
        Py_DECREF(number);
        if (failed || PyList_Append(line->region_sets, regions) < 0)
            return -1;
    }
    if (id_set(&line->set_by_id, key, index) < 0)
        return -1;
    return index;
}

/* The index of `reason` in the line's reasons: one entry per (code, message, rule_id,
 * citation). `reason` has been checked to be a tuple of R_FIELDS. */
static Py_ssize_t
reason_index(Line *line, PyObject *reason)
{
    PyObject *const *fields = &PyTuple_GET_ITEM(reason, 0); /* code, message, rule_id, citation, ... */
    Py_ssize_t index = id_get(&line->reason_by_id, fields);
    if (index >= 0)
        return index;
    PyObject *code = PyObject_GetAttr(PyTuple_GET_ITEM(reason, R_CODE), s_value_);
    if (code == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return UNSUPPORTED;
    }
    PyObject *message = PyTuple_GET_ITEM(reason, R_MESSAGE), *rule_id = PyTuple_GET_ITEM(reason, R_RULE_ID),
             *citation = PyTuple_GET_ITEM(reason, R_CITATION);
    if (!PyUnicode_Check(code) || !PyUnicode_Check(message) || !PyUnicode_Check(rule_id)
        || !PyUnicode_Check(citation)) {
        Py_DECREF(code);
        return UNSUPPORTED;
    }
    PyObject *key = PyTuple_Pack(4, code, message, rule_id, citation);
    if (key == NULL) {
        Py_DECREF(code);
        return -1;
    }
    PyObject *known = PyDict_GetItemWithError(line->reason_index, key);
    if (known != NULL) {
        index = PyLong_AsSsize_t(known);
    } else if (PyErr_Occurred()) {
        index = -1;
    } else {
        index = PyList_GET_SIZE(line->reasons);
        PyObject *number = PyLong_FromSsize_t(index), *entry = PyDict_New();
        if (number == NULL || entry == NULL || PyDict_SetItem(entry, s_citation, citation) < 0
            || PyDict_SetItem(entry, s_code, code) < 0 || PyDict_SetItem(entry, s_message, message) < 0
            || PyDict_SetItem(entry, s_rule_id, rule_id) < 0 || PyDict_SetItem(line->reason_index, key, number) < 0
            || PyList_Append(line->reasons, entry) < 0)
            index = -1;
        Py_XDECREF(number);
        Py_XDECREF(entry);
    }
    Py_DECREF(key);
    Py_DECREF(code);
    if (index >= 0 && id_set(&line->reason_by_id, fields, index) < 0)
        return -1;
    return index;
}

/* `value` in `width` decimal digits, zero-padded (value < 10**width). */
static void
put_digits(char *at, int width, int value)
{
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

/* `"time":"..."` for a decide time, formatted as `_format_time` does. */
static int
put_time(Line *line, Buf *b, PyObject *when, PyObject *format_time)
{
    if (when != line->time_of) {
        if (PyDateTime_CheckExact(when) && PyDateTime_DATE_GET_TZINFO(when) == PyDateTime_TimeZone_UTC) {
            /* "YYYY-MM-DDTHH:MM:SS.ffffffZ", quoted, by hand. */
            static const char pattern[] = "\"0000-00-00T00:00:00.000000Z\"";
            char *t = line->time_text;
            memcpy(t, pattern, sizeof pattern - 1);
            put_digits(t + 1, 4, PyDateTime_GET_YEAR(when));
            put_digits(t + 6, 2, PyDateTime_GET_MONTH(when));
            put_digits(t + 9, 2, PyDateTime_GET_DAY(when));
            put_digits(t + 12, 2, PyDateTime_DATE_GET_HOUR(when));
            put_digits(t + 15, 2, PyDateTime_DATE_GET_MINUTE(when));
            put_digits(t + 18, 2, PyDateTime_DATE_GET_SECOND(when));
            put_digits(t + 21, 6, PyDateTime_DATE_GET_MICROSECOND(when));
            line->time_len = sizeof pattern - 1;
        } else {
            PyObject *text = PyObject_CallOneArg(format_time, when);
            if (text == NULL)
                return -1;
            Buf scratch = {0};
            int result = buf_str(&scratch, text);
            Py_DECREF(text);
            if (result == 0 && scratch.len >= (Py_ssize_t)sizeof line->time_text)
                result = UNSUPPORTED;
            if (result == 0) {
                memcpy(line->time_text, scratch.data, scratch.len);
                line->time_len = scratch.len;
            }
            PyMem_Free(scratch.data);
            if (result < 0)
                return result;
        }
        line->time_of = when; /* borrowed: the entry keeps it alive */
    }
    return buf_put(b, line->time_text, line->time_len);
}

/* A tuple or list of str as a JSON array. */
static int
put_str_array(Buf *b, PyObject *items)
{
    if (!PyTuple_CheckExact(items) && !PyList_Check(items)) /* (as orjson: no tuple subclasses) */
        return UNSUPPORTED;
    if (BUF_LITERAL(b, "[") < 0)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    PyObject **item = PySequence_Fast_ITEMS(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        int result = (i && BUF_LITERAL(b, ",") < 0) ? -1 : buf_str(b, item[i]);
        if (result < 0)
            return result;
    }
    return BUF_LITERAL(b, "]");
}

#define CHECK(call)                   \
    do {                              \
        int check_result_ = (call);   \
        if (check_result_ < 0)        \
            return check_result_;     \
    } while (0)

static int
add(Line *line, PyObject *decision, PyObject *context, PyObject *kind, PyObject *policy_hash,
    PyObject *request_parts, PyObject *format_time)
{
    if (!PyTuple_Check(decision) || PyTuple_GET_SIZE(decision) != D_FIELDS)
        return UNSUPPORTED;
    PyObject **field = &PyTuple_GET_ITEM(decision, 0);

    Py_ssize_t regions = region_set_index(line, field[D_ALLOWED]);
    if (regions < 0)
        return (int)regions;

    /* Decisions of one request share these very objects: identity settles the common case. */
    PyObject *shared = line->shared;
    int same = shared != NULL && field[D_CALLER] == PyTuple_GET_ITEM(shared, 0)
               && field[D_REVISION] == PyTuple_GET_ITEM(shared, 1) && context == PyTuple_GET_ITEM(shared, 2)
               && kind == PyTuple_GET_ITEM(shared, 3) && policy_hash == PyTuple_GET_ITEM(shared, 4)
               && field[D_VERSION] == PyTuple_GET_ITEM(shared, 5);
    if (!same) {
        PyObject *key = PyTuple_Pack(6, field[D_CALLER], field[D_REVISION], context, kind, policy_hash,
                                     field[D_VERSION]);
        if (key == NULL)
            return -1;
        int differs = shared == NULL ? 1 : PyObject_RichCompareBool(key, shared, Py_NE);
        if (differs <= 0) {
            Py_DECREF(key);
            if (differs < 0)
                return -1;
        } else {
            PyObject *parts = NULL;
            if (finish_group(line) < 0 || (parts = PyObject_CallOneArg(request_parts, key)) == NULL) {
                Py_DECREF(key);
                return -1;
            }
            if (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(parts, 0))
                || !PyBytes_Check(PyTuple_GET_ITEM(parts, 1))) {
                Py_DECREF(parts);
                Py_DECREF(key);
                PyErr_SetString(PyExc_TypeError, "request_parts must return (bytes, bytes)");
                return -1;
            }
            Py_XSETREF(line->head, Py_NewRef(PyTuple_GET_ITEM(parts, 0)));
            Py_XSETREF(line->tail, Py_NewRef(PyTuple_GET_ITEM(parts, 1)));
            Py_DECREF(parts);
            Py_XSETREF(line->shared, key);
        }
    }

    /* (An unsupported field below abandons the whole line: what was written stays unused.) */
    Buf *b = &line->group;
    if (b->len)
        CHECK(BUF_LITERAL(b, ","));
    CHECK(BUF_LITERAL(b, "{\"allowed_regions\":"));
    CHECK(buf_index(b, regions));
    CHECK(BUF_LITERAL(b, ",\"dataset_id\":"));
    CHECK(buf_str(b, field[D_DATASET]));
    CHECK(BUF_LITERAL(b, ",\"decision_id\":"));
    CHECK(buf_str(b, field[D_ID]));
    CHECK(BUF_LITERAL(b, ",\"operation\":"));
    CHECK(put_enum(line, b, field[D_OPERATION]));
    CHECK(BUF_LITERAL(b, ",\"outcome\":"));
    CHECK(put_enum(line, b, field[D_OUTCOME]));
    CHECK(BUF_LITERAL(b, ",\"reasons\":["));
    PyObject *reasons = field[D_REASONS];
    if (!PyTuple_Check(reasons))
        return UNSUPPORTED;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reasons); i++) {
        PyObject *reason = PyTuple_GET_ITEM(reasons, i);
        if (!PyTuple_Check(reason) || PyTuple_GET_SIZE(reason) != R_FIELDS)
            return UNSUPPORTED;
        Py_ssize_t number = reason_index(line, reason);
        if (number < 0)
            return (int)number;
        if (i)
            CHECK(BUF_LITERAL(b, ","));
        CHECK(BUF_LITERAL(b, "["));
        CHECK(buf_index(b, number));
        CHECK(BUF_LITERAL(b, ","));
        CHECK(put_str_array(b, PyTuple_GET_ITEM(reason, R_PATH)));
        CHECK(BUF_LITERAL(b, "]"));
    }
    CHECK(BUF_LITERAL(b, "],\"region\":"));
    CHECK(buf_str(b, field[D_REGION]));
    CHECK(BUF_LITERAL(b, ",\"time\":"));
    CHECK(put_time(line, b, field[D_TIME], format_time));
    CHECK(BUF_LITERAL(b, "}"));
    return PyList_Append(line->ids, field[D_ID]);
}

static PyObject *
render(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "render(queue, item, offset, limit, request_parts, format_time)");
        return NULL;
    }
    PyObject *queue = args[0], *request_parts = args[4], *format_time = args[5];
    if (!PyList_Check(queue)) {
        PyErr_SetString(PyExc_TypeError, "queue must be a list");
        return NULL;
    }
    Py_ssize_t item = PyLong_AsSsize_t(args[1]), offset = PyLong_AsSsize_t(args[2]),
               limit = PyLong_AsSsize_t(args[3]);
    if ((item == -1 || offset == -1 || limit == -1) && PyErr_Occurred())
        return NULL;
    if (item < 0 || item > PyList_GET_SIZE(queue) || offset < 0 || limit < 1) {
        PyErr_SetString(PyExc_IndexError, "render: item, offset or limit out of range");
        return NULL;
    }
    /* The items this line can reach, held for the whole call (the identity tables key on
     * objects they keep alive, and the callbacks run Python code). */
    PyObject *held = PyList_GetSlice(queue, item, limit > PY_SSIZE_T_MAX - item ? PY_SSIZE_T_MAX : item + limit);
    if (held == NULL)
        return NULL;
    Line line;
    PyObject *result = NULL;
    Py_ssize_t count = 0, at = 0;
    if (line_init(&line) < 0)
        goto done;
    for (; at < PyList_GET_SIZE(held) && count < limit; at++, offset = 0) {
        PyObject *entry = PyList_GET_ITEM(held, at);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 4)
            goto unsupported;
        PyObject *decisions = PyTuple_GET_ITEM(entry, 0), *context = PyTuple_GET_ITEM(entry, 1),
                 *kind = PyTuple_GET_ITEM(entry, 2), *policy_hash = PyTuple_GET_ITEM(entry, 3);
        /* One Decision (a tuple subclass), or an exact tuple of them. */
        int many = PyTuple_CheckExact(decisions);
        Py_ssize_t size = many ? PyTuple_GET_SIZE(decisions) : 1;
        if (offset > size) {
            PyErr_SetString(PyExc_IndexError, "render: offset beyond the item's decisions");
            goto done;
        }
        for (; offset < size && count < limit; offset++, count++) {
            PyObject *decision = many ? PyTuple_GET_ITEM(decisions, offset) : decisions;
            int added = add(&line, decision, context, kind, policy_hash, request_parts, format_time);
            if (added == UNSUPPORTED && !PyErr_Occurred())
                goto unsupported;
            if (added < 0)
                goto done;
        }
        if (offset < size)
            break; /* the line is full: the next one starts inside this item */
    }
    if (finish_group(&line) < 0)
        goto done;
    result = Py_BuildValue("(OOOO)nn", line.ids, line.requests, line.region_sets, line.reasons, item + at, offset);
    goto done;
unsupported:
    result = Py_NewRef(Py_None);
done:
    line_clear(&line);
    Py_DECREF(held);
    return result;
}

/* Whether `object` has the shape of a NamedTuple instance of `size` fields: a tuple subclass
 * without an instance __dict__ (so it holds nothing but its items). */
static int
is_named_tuple(PyObject *object, Py_ssize_t size)
{
    return PyTuple_Check(object) && !PyTuple_CheckExact(object) && PyTuple_GET_SIZE(object) == size
           && Py_TYPE(object)->tp_dictoffset == 0;
}

static void
untrack_object(PyObject *object)
{
    if (PyObject_GC_IsTracked(object))
        PyObject_GC_UnTrack(object);
}

/* An exact tuple that cannot be part of a reference cycle: one the collector has untracked
 * already (it does so for tuples of untracked objects only), or one of exact str items --
 * which is then untracked here, as the collector would (it never does for a frozen tuple,
 * such as the engine's shared allowed-region lists), so that the next check of the same
 * tuple costs nothing. */
static int
acyclic_tuple(PyObject *tuple)
{
    if (!PyTuple_CheckExact(tuple))
        return 0;
    if (!PyObject_GC_IsTracked(tuple))
        return 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(tuple, i)))
            return 0;
    }
    PyObject_GC_UnTrack(tuple);
    return 1;
}

/* A Reason as the engine makes them: text, an enum member and a tuple of text. */
static int
acyclic_reason(PyObject *reason)
{
    if (!is_named_tuple(reason, R_FIELDS))
        return 0;
    PyObject *const *field = &PyTuple_GET_ITEM(reason, 0);
    return PyUnicode_CheckExact(field[R_MESSAGE]) && PyUnicode_CheckExact(field[R_RULE_ID])
           && PyUnicode_CheckExact(field[R_CITATION]) && acyclic_tuple(field[R_PATH]);
}

/* A Decision as the router makes them: text, an int, enum members, an exact datetime, a tuple
 * of region ids and a tuple of such Reasons. (Enum members are module-level singletons that
 * hold no reference to a decision.) */
static int
acyclic_decision(PyObject *decision)
{
    if (!is_named_tuple(decision, D_FIELDS))
        return 0;
    PyObject *const *field = &PyTuple_GET_ITEM(decision, 0);
    if (!PyUnicode_CheckExact(field[D_ID]) || !PyUnicode_CheckExact(field[D_DATASET])
        || !PyUnicode_CheckExact(field[D_REGION]) || !PyUnicode_CheckExact(field[D_VERSION])
        || !PyUnicode_CheckExact(field[D_CALLER]) || !PyLong_CheckExact(field[D_REVISION])
        || !PyDateTime_CheckExact(field[D_TIME]) || !acyclic_tuple(field[D_ALLOWED])
        || !PyTuple_CheckExact(field[D_REASONS]))
        return 0;
    PyObject *reasons = field[D_REASONS];
    for (Py_ssize_t r = 0; r < PyTuple_GET_SIZE(reasons); r++) {
        if (!acyclic_reason(PyTuple_GET_ITEM(reasons, r)))
            return 0;
    }
    return 1;
}

/* Takes BatchDecide's decisions out of the cyclic collector's sight: each Decision, its tuple
 * of reasons and each Reason in it (the engine makes new ones for a DENY that carries the
 * dataset's lineage paths). Only decisions made wholly of what cannot be part of a reference
 * cycle (`acyclic_decision`) are untracked; any other is left as it is, whole. While the
 * decision log holds them (up to its flush interval), the collections that follow would
 * otherwise walk them again and again and promote them towards the oldest generation. */
static PyObject *
untrack(PyObject *module, PyObject *decisions)
{
    if (!PyList_Check(decisions)) {
        PyErr_SetString(PyExc_TypeError, "untrack takes a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(decisions); i++) {
        PyObject *decision = PyList_GET_ITEM(decisions, i);
        if (!acyclic_decision(decision))
            continue;
        untrack_object(decision);
        PyObject *reasons = PyTuple_GET_ITEM(decision, D_REASONS);
        for (Py_ssize_t r = 0; r < PyTuple_GET_SIZE(reasons); r++)
            untrack_object(PyTuple_GET_ITEM(reasons, r));
        untrack_object(reasons);
    }
    Py_RETURN_NONE;
}

/* ---- Router.batch_decide's loop ------------------------------------------------------------
 * The loop of `Router.batch_decide` for a fresh view: for each (dataset_id, operation, region)
 * the dataset's built attribute view from the index's `views` dict, the engine's verdict
 * looked up in the view's `engine_cache` the way `CompiledPolicy.decide` looks it up first,
 * a DENY whose reasons carry the dataset's lineage paths built from the explanation's
 * `reason_templates` and the paths remembered in the cache entry, and the Decision built.
 * Whatever that does not settle goes to Python: `deny(attrs, cached, explanation)` for a DENY
 * with paths not remembered yet or a message the paths choose, and
 * `slow(dataset_id, operation, region)` for everything else (a view not built yet, an unknown
 * dataset, no cache entry of the current policy, a verdict not remembered yet, exemptions).
 * The engine cache's layout is `engine._Cached`: (token, verdicts by slot, denials by slot,
 * ...), slot 0 for `store_op` and 1 for the other operation. Anything of another shape also
 * goes to `slow`, which is the reference: both give the same Decisions (a property test holds
 * them to it). */

enum { C_TOKEN, C_VERDICTS, C_DENIALS, C_PATHS = 5, C_MIN_FIELDS = 6 };
enum { V_OUTCOME, V_ALLOWED, V_REASONS, V_FIELDS };

/* The engine_cache slot of an EffectiveAttributes instance: its offset, from the type's
 * member descriptor (a `slots=True` dataclass field). -1 (with an exception) if there is none. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name); /* borrowed */
    if (descr == NULL || !PyObject_TypeCheck(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "decide_batch: %s has no slot %s", type->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (PyDescr_TYPE(descr) != type || member->offset < 0
        || (size_t)member->offset + sizeof(PyObject *) > (size_t)type->tp_basicsize
        || (member->type != T_OBJECT_EX && member->type != T_OBJECT)) {
        PyErr_Format(PyExc_TypeError, "decide_batch: %s.%s is not an object slot", type->tp_name, name);
        return -1;
    }
    return member->offset;
}

/* The remembered verdict (a new reference) for `region` and `slot` in `cached`, or NULL
 * without an exception when the lookup does not settle it (then *explanation is set, a new
 * reference, when a DENY explanation is remembered instead); NULL with an exception on error. */
static PyObject *
cached_verdict(PyObject *cached, PyObject *token, Py_ssize_t slot, PyObject *region, PyObject **explanation)
{
    *explanation = NULL;
    if (!PyTuple_CheckExact(cached) || PyTuple_GET_SIZE(cached) < C_MIN_FIELDS
        || PyTuple_GET_ITEM(cached, C_TOKEN) != token)
        return NULL;
    PyObject *verdicts = PyTuple_GET_ITEM(cached, C_VERDICTS);
    PyObject *denials = PyTuple_GET_ITEM(cached, C_DENIALS);
    if (!PyTuple_CheckExact(verdicts) || PyTuple_GET_SIZE(verdicts) != 2 || !PyTuple_CheckExact(denials)
        || PyTuple_GET_SIZE(denials) != 2)
        return NULL;
    verdicts = PyTuple_GET_ITEM(verdicts, slot);
    denials = PyTuple_GET_ITEM(denials, slot);
    if (!PyDict_CheckExact(verdicts) || !PyDict_CheckExact(denials))
        return NULL; /* (None: exemptions or undescribed provenance -- `decide` takes those) */
    PyObject *verdict = PyDict_GetItemWithError(verdicts, region);
    if (verdict != NULL) {
        if (!PyTuple_Check(verdict) || PyTuple_GET_SIZE(verdict) != V_FIELDS)
            return NULL;
        return Py_NewRef(verdict);
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *found = PyDict_GetItemWithError(denials, region);
    if (found != NULL)
        *explanation = Py_NewRef(found);
    return NULL;
}

static PyObject *reason_templates_name; /* "reason_templates", interned at import */

/* The reasons of the DENY that `explanation` (found in a `denials` table) gives a dataset
 * whose rule paths are `paths` (`engine._RulePaths`), as `engine._deny_reasons` builds them
 * without exemptions, from the explanation's `reason_templates`; *allowed is set to its
 * allowed regions (a new reference). NULL without an exception when the shapes are not those (the
 * caller then asks Python), NULL with one on error. */
static PyObject *
templated_reasons(PyObject *explanation, PyObject *paths, PyTypeObject *reason_type, PyObject *rule_denied,
                  PyObject **allowed)
{
    if (!PyTuple_CheckExact(paths) || PyTuple_GET_SIZE(paths) == 0)
        return NULL; /* (not computed yet: the first DENY with paths computes them) */
    PyObject *templates = PyObject_GetAttr(explanation, reason_templates_name);
    if (templates == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        return NULL;
    }
    PyObject *reasons = NULL;
    if (!PyTuple_CheckExact(templates) || PyTuple_GET_SIZE(templates) != 3)
        goto done;
    PyObject *rules = PyTuple_GET_ITEM(templates, 0), *fallback = PyTuple_GET_ITEM(templates, 1);
    if (!PyTuple_CheckExact(rules))
        goto done;
    Py_ssize_t count = PyTuple_GET_SIZE(rules);
    reasons = PyTuple_New(count + (fallback != Py_None));
    if (reasons == NULL)
        goto done;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *rule = PyTuple_GET_ITEM(rules, r);
        if (!PyTuple_CheckExact(rule) || PyTuple_GET_SIZE(rule) != 4 || !PyLong_CheckExact(PyTuple_GET_ITEM(rule, 0)))
            goto unsupported;
        Py_ssize_t position = PyLong_AsSsize_t(PyTuple_GET_ITEM(rule, 0));
        if (position < 0 || position >= PyTuple_GET_SIZE(paths)) {
            PyErr_Clear();
            goto unsupported;
        }
        PyObject *found = PyTuple_GET_ITEM(paths, position); /* ((label, origin), path) */
        if (!PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 2)
            goto unsupported;
        PyObject *reason = reason_type->tp_alloc(reason_type, R_FIELDS);
        if (reason == NULL) {
            Py_CLEAR(reasons);
            goto done;
        }
        PyTuple_SET_ITEM(reason, R_CODE, Py_NewRef(rule_denied));
        PyTuple_SET_ITEM(reason, R_MESSAGE, Py_NewRef(PyTuple_GET_ITEM(rule, 1)));
        PyTuple_SET_ITEM(reason, R_RULE_ID, Py_NewRef(PyTuple_GET_ITEM(rule, 2)));
        PyTuple_SET_ITEM(reason, R_CITATION, Py_NewRef(PyTuple_GET_ITEM(rule, 3)));
        PyTuple_SET_ITEM(reason, R_PATH, Py_NewRef(PyTuple_GET_ITEM(found, 1)));
        PyTuple_SET_ITEM(reasons, r, reason);
    }
    if (fallback != Py_None)
        PyTuple_SET_ITEM(reasons, count, Py_NewRef(fallback));
    *allowed = Py_NewRef(PyTuple_GET_ITEM(templates, 2)); /* (owned: `templates` may be a new object) */
    goto done;
unsupported:
    Py_CLEAR(reasons);
done:
    Py_DECREF(templates);
    return reasons;
}

static PyObject *
decide_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError,
                        "decide_batch(requests, views, attrs_type, token, store_op, decision_type, reason_type, "
                        "deny_outcome, rule_denied, ids, version, revision, now, caller, deny, slow)");
        return NULL;
    }
    PyObject *requests = args[0], *views = args[1], *attrs_type = args[2], *token = args[3], *store_op = args[4];
    PyObject *decision_type = args[5], *reason_type = args[6], *deny_outcome = args[7], *rule_denied = args[8];
    PyObject *ids = args[9], *version = args[10], *revision = args[11], *now = args[12], *caller = args[13];
    PyObject *deny = args[14], *slow = args[15];
    if (!PyList_Check(requests) || !PyDict_Check(views) || !PyType_Check(attrs_type) || !PyType_Check(decision_type)
        || !PyType_IsSubtype((PyTypeObject *)decision_type, &PyTuple_Type) || !PyType_Check(reason_type)
        || !PyType_IsSubtype((PyTypeObject *)reason_type, &PyTuple_Type) || !PyIter_Check(ids)) {
        PyErr_SetString(PyExc_TypeError, "decide_batch: unexpected argument types");
        return NULL;
    }
    Py_ssize_t offset = slot_offset((PyTypeObject *)attrs_type, "engine_cache");
    if (offset < 0)
        return NULL;
    PyTypeObject *dtype = (PyTypeObject *)decision_type;
    Py_ssize_t n = PyList_GET_SIZE(requests);
    PyObject *decisions = PyList_New(0);
    if (decisions == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(requests); i++) {
        PyObject *request = PyList_GET_ITEM(requests, i);
        if (PyTuple_Check(request)) {
            Py_INCREF(request); /* (the list may change under a callback) */
        } else {
            Py_INCREF(request); /* (held while iterating it runs Python code) */
            PyObject *unpacked = PySequence_Tuple(request); /* as the Python loop unpacks it */
            Py_DECREF(request);
            request = unpacked;
            if (request == NULL)
                goto fail;
        }
        if (PyTuple_GET_SIZE(request) != 3) {
            PyErr_Format(PyExc_ValueError, "a request unpacks to (dataset_id, operation, region), not %zd values",
                         PyTuple_GET_SIZE(request));
            Py_DECREF(request);
            goto fail;
        }
        PyObject *dataset_id = PyTuple_GET_ITEM(request, 0), *op = PyTuple_GET_ITEM(request, 1);
        PyObject *region = PyTuple_GET_ITEM(request, 2);
        PyObject *verdict = NULL, *explanation = NULL;
        PyObject *attrs = PyUnicode_CheckExact(dataset_id) ? PyDict_GetItemWithError(views, dataset_id) : NULL;
        if (attrs != NULL && Py_TYPE(attrs) == (PyTypeObject *)attrs_type && PyUnicode_CheckExact(region)) {
            Py_INCREF(attrs);
            PyObject *cached = *(PyObject **)((char *)attrs + offset);
            if (cached != NULL) {
                Py_INCREF(cached);
                verdict = cached_verdict(cached, token, op == store_op ? 0 : 1, region, &explanation);
                if (verdict == NULL && explanation != NULL && !PyErr_Occurred()) {
                    PyObject *allowed = NULL;
                    PyObject *reasons = templated_reasons(explanation, PyTuple_GET_ITEM(cached, C_PATHS),
                                                          (PyTypeObject *)reason_type, rule_denied, &allowed);
                    if (reasons != NULL) {
                        verdict = PyTuple_Pack(3, deny_outcome, allowed, reasons);
                        Py_DECREF(reasons);
                        Py_DECREF(allowed);
                    } else if (!PyErr_Occurred()) {
                        PyObject *call[3] = {attrs, cached, explanation};
                        verdict = PyObject_Vectorcall(deny, call, 3, NULL);
                    }
                }
                Py_DECREF(cached);
            }
            Py_DECREF(attrs);
            Py_XDECREF(explanation);
        }
        if (verdict == NULL && !PyErr_Occurred()) {
            PyObject *call[3] = {dataset_id, op, region};
            verdict = PyObject_Vectorcall(slow, call, 3, NULL);
        }
        if (verdict == NULL) {
            Py_DECREF(request);
            goto fail;
        }
        if (!PyTuple_Check(verdict) || PyTuple_GET_SIZE(verdict) != V_FIELDS) {
            PyErr_SetString(PyExc_TypeError, "decide_batch: a verdict is an (outcome, allowed_regions, reasons) tuple");
            Py_DECREF(verdict);
            Py_DECREF(request);
            goto fail;
        }
        PyObject *decision_id = PyIter_Next(ids);
        if (decision_id == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "decide_batch: decision ids ran out");
            Py_DECREF(verdict);
            Py_DECREF(request);
            goto fail;
        }
        PyObject *decision = dtype->tp_alloc(dtype, D_FIELDS);
        if (decision == NULL) {
            Py_DECREF(decision_id);
            Py_DECREF(verdict);
            Py_DECREF(request);
            goto fail;
        }
        PyObject *items[D_FIELDS] = {
            [D_ID] = decision_id, [D_OUTCOME] = PyTuple_GET_ITEM(verdict, V_OUTCOME), [D_DATASET] = dataset_id,
            [D_OPERATION] = op, [D_REGION] = region, [D_ALLOWED] = PyTuple_GET_ITEM(verdict, V_ALLOWED),
            [D_REASONS] = PyTuple_GET_ITEM(verdict, V_REASONS), [D_VERSION] = version, [D_REVISION] = revision,
            [D_TIME] = now, [D_CALLER] = caller,
        };
        for (int f = 0; f < D_FIELDS; f++)
            PyTuple_SET_ITEM(decision, f, f == D_ID ? items[f] : Py_NewRef(items[f]));
        Py_DECREF(verdict);
        Py_DECREF(request);
        int appended = PyList_Append(decisions, decision);
        Py_DECREF(decision);
        if (appended < 0)
            goto fail;
    }
    return decisions;
fail:
    Py_DECREF(decisions);
    return NULL;
}

/* ---- BatchDecideResponse in the protobuf wire format -------------------------------------- */

static int
buf_varint(Buf *b, size_t value)
{
    char bytes[10];
    int n = 0;
    while (value >= 0x80) {
        bytes[n++] = (char)((value & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes[n++] = (char)value;
    return buf_put(b, bytes, n);
}

/* A length-delimited field: tag, length, bytes. */
static int
buf_field(Buf *b, char tag, const char *data, Py_ssize_t size)
{
    if (buf_put(b, &tag, 1) < 0 || buf_varint(b, (size_t)size) < 0)
        return -1;
    return buf_put(b, data, size);
}

/* A str field, as `convert._string` writes it (UTF-8). */
static int
buf_str_field(Buf *b, char tag, PyObject *value)
{
    if (!PyUnicode_Check(value))
        return UNSUPPORTED;
    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(value, &size);
    if (data == NULL)
        return -1;
    return buf_field(b, tag, data, size);
}

static int
buf_bytes(Buf *b, PyObject *bytes)
{
    if (!PyBytes_Check(bytes)) {
        PyErr_SetString(PyExc_TypeError, "encode_batch: a fragment callback must return bytes");
        return -1;
    }
    return buf_put(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

typedef struct {
    PyObject *verdict_fragment, *context_fragment, *reason_texts, *operations; /* borrowed */
    IdTable verdicts, reasons; /* identity -> index into `fragments` */
    PyObject *fragments;           /* list: what the callbacks returned */
    PyObject *context_key[3];      /* (policy_version, catalog_revision, decide_time), borrowed */
    PyObject *context;             /* its fragment (in `fragments`) */
    PyObject *op_keys[2], *op_values[2];
    Buf body, path;
} Encoder;

/* `callback(*args)`'s result for identity `key`, remembered in `table`. */
static PyObject *
fragment(Encoder *e, IdTable *table, PyObject *const *key, PyObject *callback, PyObject *const *args,
         Py_ssize_t nargs)
{
    Py_ssize_t seen = id_get(table, key);
    if (seen >= 0)
        return PyList_GET_ITEM(e->fragments, seen);
    PyObject *made = PyObject_Vectorcall(callback, args, nargs, NULL);
    if (made == NULL)
        return NULL;
    Py_ssize_t index = PyList_GET_SIZE(e->fragments);
    int failed = PyList_Append(e->fragments, made);
    Py_DECREF(made);
    if (failed || id_set(table, key, index) < 0)
        return NULL;
    return made; /* (held by `fragments`) */
}

static int
encode_one(Encoder *e, PyObject *decision)
{
    if (!PyTuple_Check(decision) || PyTuple_GET_SIZE(decision) != D_FIELDS)
        return UNSUPPORTED;
    PyObject **field = &PyTuple_GET_ITEM(decision, 0);
    Buf *b = &e->body;
    b->len = 0;
    CHECK(buf_str_field(b, 0x0a, field[D_ID]));       /* Decision.decision_id = 1 */
    CHECK(buf_str_field(b, 0x1a, field[D_DATASET]));  /* dataset_id = 3 */
    PyObject *op = field[D_OPERATION], *op_field = NULL;
    for (int i = 0; i < 2 && e->op_keys[i] != NULL; i++) {
        if (e->op_keys[i] == op)
            op_field = e->op_values[i];
    }
    if (op_field == NULL) {
        op_field = PyDict_GetItemWithError(e->operations, op);
        if (op_field == NULL)
            return PyErr_Occurred() ? -1 : UNSUPPORTED;
        if (!PyBytes_Check(op_field))
            return UNSUPPORTED;
        for (int i = 0; i < 2; i++) {
            if (e->op_keys[i] == NULL) {
                e->op_keys[i] = op; /* borrowed: the decisions keep it alive */
                e->op_values[i] = Py_NewRef(op_field); /* owned: a callback could change the dict */
                break;
            }
        }
    }
    CHECK(buf_bytes(b, op_field));                     /* operation = 4 */
    CHECK(buf_str_field(b, 0x2a, field[D_REGION]));   /* region = 5 */
    PyObject *verdict_key[4] = {field[D_OUTCOME], field[D_ALLOWED], NULL, NULL};
    PyObject *verdict = fragment(e, &e->verdicts, verdict_key, e->verdict_fragment, verdict_key, 2);
    if (verdict == NULL)
        return -1;
    CHECK(buf_bytes(b, verdict));
    if (e->context == NULL || e->context_key[0] != field[D_VERSION] || e->context_key[1] != field[D_REVISION]
        || e->context_key[2] != field[D_TIME]) {
        PyObject *context = PyObject_CallOneArg(e->context_fragment, decision);
        if (context == NULL)
            return -1;
        int failed = PyList_Append(e->fragments, context);
        Py_DECREF(context);
        if (failed)
            return -1;
        e->context = context; /* (held by `fragments`) */
        e->context_key[0] = field[D_VERSION];
        e->context_key[1] = field[D_REVISION];
        e->context_key[2] = field[D_TIME];
    }
    CHECK(buf_bytes(b, e->context));
    PyObject *reasons = field[D_REASONS];
    if (!PyTuple_Check(reasons))
        return UNSUPPORTED;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reasons); i++) {
        PyObject *reason = PyTuple_GET_ITEM(reasons, i);
        if (!PyTuple_Check(reason) || PyTuple_GET_SIZE(reason) != R_FIELDS)
            return UNSUPPORTED;
        PyObject *texts = fragment(e, &e->reasons, &PyTuple_GET_ITEM(reason, 0), e->reason_texts, &reason, 1);
        if (texts == NULL)
            return -1;
        if (!PyTuple_Check(texts) || PyTuple_GET_SIZE(texts) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(texts, 0))
            || !PyBytes_Check(PyTuple_GET_ITEM(texts, 1))) {
            PyErr_SetString(PyExc_TypeError, "encode_batch: reason_texts must return (bytes, bytes)");
            return -1;
        }
        PyObject *steps = PyTuple_GET_ITEM(reason, R_PATH);
        if (!PyTuple_Check(steps) && !PyList_Check(steps))
            return UNSUPPORTED;
        Buf *path = &e->path;
        path->len = 0;
        for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(steps); j++)
            CHECK(buf_str_field(path, 0x22, PySequence_Fast_ITEMS(steps)[j])); /* Reason.lineage_path = 4 */
        PyObject *head = PyTuple_GET_ITEM(texts, 0), *tail = PyTuple_GET_ITEM(texts, 1);
        Py_ssize_t size = PyBytes_GET_SIZE(head) + path->len + PyBytes_GET_SIZE(tail);
        CHECK(BUF_LITERAL(b, "\x3a"));                 /* Decision.reasons = 7 */
        CHECK(buf_varint(b, (size_t)size));
        CHECK(buf_bytes(b, head));
        CHECK(buf_put(b, path->data, path->len));
        CHECK(buf_bytes(b, tail));
    }
    return 0;
}

static PyObject *
encode_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_batch(decisions, operations, verdict_fragment, context_fragment, reason_texts)");
        return NULL;
    }
    PyObject *decisions = args[0];
    if (!PyList_Check(decisions) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "encode_batch: decisions must be a list, operations a dict");
        return NULL;
    }
    Encoder e;
    memset(&e, 0, sizeof e);
    e.operations = args[1];
    e.verdict_fragment = args[2];
    e.context_fragment = args[3];
    e.reason_texts = args[4];
    PyObject *held = PyList_GetSlice(decisions, 0, PyList_GET_SIZE(decisions));
    Buf out = {0};
    PyObject *result = NULL;
    if (held == NULL)
        return NULL;
    if ((e.fragments = PyList_New(0)) == NULL || id_init(&e.verdicts, 64) < 0 || id_init(&e.reasons, 64) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(held); i++) {
        int encoded = encode_one(&e, PyList_GET_ITEM(held, i));
        if (encoded == UNSUPPORTED && !PyErr_Occurred()) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (encoded < 0 || buf_field(&out, 0x0a, e.body.data, e.body.len) < 0) /* BatchDecideResponse.decisions = 1 */
            goto done;
    }
    result = PyBytes_FromStringAndSize(out.data ? out.data : "", out.len);
done:
    PyMem_Free(out.data);
    PyMem_Free(e.body.data);
    PyMem_Free(e.path.data);
    PyMem_Free(e.verdicts.slots);
    PyMem_Free(e.reasons.slots);
    Py_XDECREF(e.op_values[0]);
    Py_XDECREF(e.op_values[1]);
    Py_XDECREF(e.fragments);
    Py_DECREF(held);
    return result;
}

/* ---- BatchDecideRequest from the wire --------------------------------------------------- */

typedef struct {
    const unsigned char *at, *end;
} Reader;

/* A varint; 0 on success, -1 when malformed. */
static int
read_varint(Reader *r, uint64_t *value)
{
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && r->at < r->end; shift += 7) {
        unsigned char byte = *r->at++;
        result |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return 0;
        }
    }
    return -1;
}

/* A tag or a length as protobuf reads them: at most 5 bytes, at most 2^32 - 1 (a length: at
 * most 2^31 - 1); 0 on success, -1 when protobuf would call the input corrupt. */
static int
read_small(Reader *r, uint64_t *value, uint64_t most)
{
    uint64_t result = 0;
    for (int shift = 0; shift < 35 && r->at < r->end; shift += 7) {
        unsigned char byte = *r->at++;
        result |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return result <= most ? 0 : -1;
        }
    }
    return -1;
}

#define TAG_MOST 0xffffffffull
#define SIZE_MOST 0x7fffffffull

/* Skip the field of `tag` (just read); 0 on success, -1 when malformed -- as protobuf would
 * reject it: field number 0 or beyond 2^29 - 1, groups, reserved wire types. */
static int
skip_field(Reader *r, uint64_t tag)
{
    uint64_t size;
    int wire_type = (int)(tag & 7);
    if (tag >> 3 == 0 || tag >> 3 > 536870911)
        return -1;
    switch (wire_type) {
    case 0:
        return read_varint(r, &size);
    case 1:
        size = 8;
        break;
    case 2:
        if (read_small(r, &size, SIZE_MOST) < 0)
            return -1;
        break;
    case 5:
        size = 4;
        break;
    default: /* groups (3, 4) and reserved types: not in these messages */
        return -1;
    }
    if (size > (uint64_t)(r->end - r->at))
        return -1;
    r->at += size;
    return 0;
}

/* A dataset id the fast path takes as it is: 1-2048 printable ASCII characters (catalog
 * model.MAX_ID_BYTES), no space at either end. Anything else (non-ASCII, empty, long,
 * controls, edge spaces) goes to the servicer's Python checks, which say what is wrong. */
static int
plain_id(const unsigned char *data, Py_ssize_t size)
{
    if (size < 1 || size > 2048 || data[0] == ' ' || data[size - 1] == ' ')
        return 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (data[i] < 0x20 || data[i] > 0x7e)
            return 0;
    }
    return 1;
}

/* One DecideRequest: 1 when it parsed into a question the fast path takes, 0 when the
 * servicer must look (malformed, unusual or invalid), -1 on error. */
static int
parse_question(Reader *r, PyObject *regions, PyObject *operations, PyObject **question)
{
    const unsigned char *id = NULL, *region = NULL;
    Py_ssize_t id_size = 0, region_size = 0;
    uint64_t operation = 0;
    while (r->at < r->end) { /* a field given twice: the last one counts, as in protobuf */
        uint64_t tag, size;
        if (read_small(r, &tag, TAG_MOST) < 0)
            return 0;
        uint64_t number = tag >> 3;
        int wire_type = (int)(tag & 7);
        if ((number == 1 || number == 3) && wire_type == 2) {
            if (read_small(r, &size, SIZE_MOST) < 0 || size > (uint64_t)(r->end - r->at))
                return 0;
            /* Every copy must be plain, not only the last one that counts: protobuf checks
             * each copy's UTF-8, and this parser only takes printable ASCII. */
            for (uint64_t i = 0; i < size; i++) {
                if (r->at[i] < 0x20 || r->at[i] > 0x7e)
                    return 0;
            }
            if (number == 1) {
                id = r->at;
                id_size = (Py_ssize_t)size;
            } else {
                region = r->at;
                region_size = (Py_ssize_t)size;
            }
            r->at += size;
        } else if (number == 2 && wire_type == 0) {
            if (read_varint(r, &operation) < 0)
                return 0;
        } else if (number <= 3 || skip_field(r, tag) < 0) { /* (a known field of the wrong wire type) */
            return 0;
        }
    }
    if (id == NULL || region == NULL || !plain_id(id, id_size) || operation >= (uint64_t)PyTuple_GET_SIZE(operations)
        || PyTuple_GET_ITEM(operations, (Py_ssize_t)operation) == Py_None) {
        return 0;
    }
    PyObject *region_text = PyUnicode_FromStringAndSize((const char *)region, region_size);
    if (region_text == NULL)
        return -1;
    int known = PySequence_Contains(regions, region_text);
    if (known <= 0) {
        Py_DECREF(region_text);
        return known;
    }
    PyObject *id_text = PyUnicode_FromStringAndSize((const char *)id, id_size);
    if (id_text == NULL) {
        Py_DECREF(region_text);
        return -1;
    }
    *question = PyTuple_Pack(3, id_text, PyTuple_GET_ITEM(operations, (Py_ssize_t)operation), region_text);
    Py_DECREF(id_text);
    Py_DECREF(region_text);
    if (*question == NULL)
        return -1;
    /* Text and an enum member cannot form a cycle: out of the collector's sight (it would
     * walk the batch's questions in every collection while the batch is decided). */
    PyObject_GC_UnTrack(*question);
    return 1;
}

static PyObject *
parse_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "parse_batch(data: bytes, regions, operations: tuple, max_requests: int)");
        return NULL;
    }
    PyObject *regions = args[1], *operations = args[2];
    Py_ssize_t limit = PyLong_AsSsize_t(args[3]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    Reader r = {(const unsigned char *)PyBytes_AS_STRING(args[0]),
                (const unsigned char *)PyBytes_AS_STRING(args[0]) + PyBytes_GET_SIZE(args[0])};
    PyObject *questions = PyList_New(0);
    if (questions == NULL)
        return NULL;
    while (r.at < r.end) {
        uint64_t tag, size;
        if (read_small(&r, &tag, TAG_MOST) < 0)
            goto python;
        if (tag != ((1 << 3) | 2)) { /* not BatchDecideRequest.requests */
            if (tag >> 3 == 1 || skip_field(&r, tag) < 0)
                goto python;
            continue;
        }
        if (read_small(&r, &size, SIZE_MOST) < 0 || size > (uint64_t)(r.end - r.at) || PyList_GET_SIZE(questions) >= limit)
            goto python;
        Reader item = {r.at, r.at + size};
        r.at += size;
        PyObject *question = NULL;
        int parsed = parse_question(&item, regions, operations, &question);
        if (parsed < 0) {
            Py_DECREF(questions);
            return NULL;
        }
        if (parsed == 0)
            goto python;
        int failed = PyList_Append(questions, question);
        Py_DECREF(question);
        if (failed) {
            Py_DECREF(questions);
            return NULL;
        }
    }
    return questions;
python:
    Py_DECREF(questions);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"render", (PyCFunction)(void (*)(void))render, METH_FASTCALL,
     "render(queue, item, offset, limit, request_parts, format_time) -> ((ids, requests, region_sets, reasons), "
     "item, offset) | None"},
    {"decide_batch", (PyCFunction)(void (*)(void))decide_batch, METH_FASTCALL,
     "decide_batch(requests, views, attrs_type, token, store_op, decision_type, reason_type, deny_outcome, "
     "rule_denied, ids, version, revision, now, caller, deny, slow) -> [Decision]"},
    {"untrack", (PyCFunction)untrack, METH_O, "untrack(decisions): take a list's Decisions out of the collector's sight"},
    {"parse_batch", (PyCFunction)(void (*)(void))parse_batch, METH_FASTCALL,
     "parse_batch(data, regions, operations, max_requests) -> [(dataset_id, operation, region)] | None"},
    {"encode_batch", (PyCFunction)(void (*)(void))encode_batch, METH_FASTCALL,
     "encode_batch(decisions, operations, verdict_fragment, context_fragment, reason_texts) -> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_native", "The router's native helpers (router/_native.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    reason_templates_name = PyUnicode_InternFromString("reason_templates");
    if (reason_templates_name == NULL)
        return NULL;
    for (int c = 0; c < 0x20; c++)
        needs_escape[c] = 1;
    needs_escape['"'] = needs_escape['\\'] = 1;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if ((s_value_ = PyUnicode_InternFromString("_value_")) == NULL
        || (s_citation = PyUnicode_InternFromString("citation")) == NULL
        || (s_code = PyUnicode_InternFromString("code")) == NULL
        || (s_message = PyUnicode_InternFromString("message")) == NULL
        || (s_rule_id = PyUnicode_InternFromString("rule_id")) == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
