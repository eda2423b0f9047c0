/* wscap.wire._fastpath: the capture reader's record loop in C (optional; pcapio.py is the fallback).
 *
 * Why: in Python the per-record loop plus the pipeline's record filter cost ~3.5 us per packet,
 * more than everything else per skipped packet. This module walks pcap records / pcapng
 * Enhanced Packet Blocks in the read buffer, decodes the fixed link header + IPv4 + TCP at fixed
 * offsets, builds the flow key exactly as engine/core.py flow_key() does, looks it up in the
 * pipeline's `conns` dict and answers the same question Pipeline.record_filter's `want` answers.
 * It returns to Python at the first record that needs the full path (so feed(k) happens before
 * the decision on k+1), at anything unusual (Python handles that block), or at the end of the
 * buffer. Counters come back to the caller; the pipeline's own (now_ns, per-source clock,
 * decoder stats) are read at the start of a call and written back at its end.
 *
 * The decision must stay identical to `want` in engine/core.py: tests/test_fastpath.py runs
 * every capture both ways and compares the documents byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>       /* PyMemberDef, T_OBJECT_EX, READONLY */
#include <stdint.h>
#include <string.h>

#define MAX_RECORD (1 << 18)

/* status codes returned to pcapio.py */
#define ST_MORE 0   /* end of the buffer (or an unfinished record): read more */
#define ST_FRAME 1  /* the record at `start` needs the full path: build a RawFrame */
#define ST_SLOW 2   /* the block at `pos` is Python's (damage, other block types, odd interfaces) */

static const unsigned char RESOLVER[4] = {127, 0, 0, 11};   /* flow/dns.py DOCKER_RESOLVER */

/* Attributes of the flow objects (Connection, Session, TcpFlow, its halves, FrameScanner: all
 * __slots__ classes) read and written at their slots. PyObject_GetAttr finds the same slot through
 * the type's member descriptor each time; the lanes touch a dozen attributes per packet, and that
 * search was most of their cost. The slot's offset is remembered per (type, name) while the type's
 * version tag is unchanged (any change to the class or its bases drops the tag). Anything that is
 * not a plain writable object slot of a class with the generic get/setattr (a property, a class
 * with __getattr__ or __setattr__, a module, a type) takes PyObject_GetAttr/SetAttr as before. */
typedef struct {
    PyTypeObject *tp;
    unsigned int tag;
    PyObject *name;
    Py_ssize_t off;               /* -1: not a plain slot */
} SlotEnt;
#define SLOT_CACHE 256
static SlotEnt slot_cache[SLOT_CACHE];

static Py_ssize_t slot_of(PyTypeObject *tp, PyObject *name) {
    uintptr_t h = ((uintptr_t)tp >> 4) ^ ((uintptr_t)name >> 3);
    SlotEnt *e = &slot_cache[(h ^ (h >> 8)) & (SLOT_CACHE - 1)];
    if (e->tp == tp && e->name == name && e->tag != 0 && e->tag == tp->tp_version_tag
        && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return e->off;
    Py_ssize_t off = -1;
    if (tp->tp_getattro == PyObject_GenericGetAttr && tp->tp_setattro == PyObject_GenericSetAttr) {
        PyObject *d = _PyType_Lookup(tp, name);      /* borrowed; gives the type a version tag */
        if (d != NULL && Py_TYPE(d) == &PyMemberDescr_Type) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off = m->offset;
        }
    }
    if (tp->tp_version_tag != 0 && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        e->tp = tp;                 /* not owned: a type freed and another at its address has another tag */
        e->tag = tp->tp_version_tag;
        e->name = name;             /* the module's interned names (static), compared by identity */
        e->off = off;
    }
    return off;
}

/* PyObject_GetAttr(o, name), read at the slot when it is one (new reference, NULL + error). */
static PyObject *get_attr(PyObject *o, PyObject *name) {
    Py_ssize_t off = slot_of(Py_TYPE(o), name);
    if (off >= 0) {
        PyObject *v = *(PyObject **)((char *)o + off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }                           /* an empty slot: PyObject_GetAttr raises the AttributeError */
    }
    return PyObject_GetAttr(o, name);
}

/* PyObject_SetAttr(o, name, v), written at the slot when it is one. */
static int set_attr(PyObject *o, PyObject *name, PyObject *v) {
    Py_ssize_t off = slot_of(Py_TYPE(o), name);
    if (off >= 0 && v != NULL) {
        PyObject **slot = (PyObject **)((char *)o + off);
        PyObject *old = *slot;
        Py_INCREF(v);
        *slot = v;
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(o, name, v);
}

static PyObject *s_now_ns, *s_packets, *s_tcp, *s_zw, *s_last_frame, *s_last_ts, *s_fast_lane;
static PyObject *s_client, *s_session, *s_mode, *s_body_left, *s_halves, *s_ooo, *s_base, *s_next, *s_delivered;
static PyObject *s_keep, *s_window, *s_probe, *s_keep_recent, *s_closed, *s_exchanges, *s_client_frames,
    *s_server_frames, *s_events;
static PyObject *s_feed, *s_server, *s_ignored, *s_synack_frame, *s_end, *s_fins;

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t rd32(const unsigned char *p, int big) {
    if (big) return be32(p);
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}
static inline uint16_t rd16(const unsigned char *p, int big) {
    if (big) return be16(p);
    return (uint16_t)((p[1] << 8) | p[0]);
}

/* One pipeline's fast-path spec: Pipeline.record_filter(...).fast =
 * (eoff, l3, conns, source, pipeline, stats, clock, Connection, Mode.BODY, want, FRAMES,
 *  FrameScanner, stream, shard). */
typedef struct {
    PyObject *spec;        /* borrowed: identity of the spec loaded */
    Py_ssize_t eoff, l3;
    PyObject *conns;       /* borrowed from spec */
    PyObject *source;      /* borrowed */
    long long source_v;
    PyObject *pipe, *stats, *clock;
    PyObject *conn_type, *body;   /* flow/connection.py Connection, flow/session.py BODY */
    PyObject *want;               /* the Python filter: asked when the pipeline's times exceed 64 bits */
    PyObject *frames_mode;        /* flow/session.py FRAMES, or NULL: no frames lane (live: stream mode) */
    PyObject *scanner_type;       /* wire/wsframe.py FrameScanner */
    PyObject *bufobj;             /* the buffer being read (for `want`) */
    int big;                      /* the pipeline's now_ns / clock do not fit 64 bits: ask `want` */
    int shard;                    /* engine/shards.py: the half of the flows this process keeps, or -1 */
    /* pipeline state, loaded once per call and written back at the end */
    PyObject *state_pipe;  /* the pipeline whose state is loaded (borrowed), NULL if none */
    PyObject *state_stats, *state_clock, *state_source;
    long long now, clk, skipped;
    int now_dirty, clk_dirty;
    /* the record being decided (the heads lane reads its payload): wire length, payload or NULL */
    long long wirelen;
    const unsigned char *pay;
} Fast;

static int load_spec(Fast *f, PyObject *spec);

static int flush_state(Fast *f) {
    int rc = 0;
    if (f->state_pipe == NULL) return 0;
    if (f->now_dirty) {
        PyObject *v = PyLong_FromLongLong(f->now);
        if (v == NULL || set_attr(f->state_pipe, s_now_ns, v) < 0) rc = -1;
        Py_XDECREF(v);
    }
    if (rc == 0 && f->clk_dirty) {
        PyObject *v = PyLong_FromLongLong(f->clk);
        if (v == NULL || PyDict_SetItem(f->state_clock, f->state_source, v) < 0) rc = -1;
        Py_XDECREF(v);
    }
    if (rc == 0 && f->skipped) {
        PyObject *names[2] = {s_packets, s_tcp};
        for (int i = 0; i < 2 && rc == 0; i++) {
            PyObject *old = get_attr(f->state_stats, names[i]);
            if (old == NULL) { rc = -1; break; }
            PyObject *add = PyLong_FromLongLong(f->skipped);
            PyObject *nv = add ? PyNumber_Add(old, add) : NULL;
            Py_DECREF(old);
            Py_XDECREF(add);
            if (nv == NULL || set_attr(f->state_stats, names[i], nv) < 0) rc = -1;
            Py_XDECREF(nv);
        }
    }
    f->state_pipe = NULL;
    f->now_dirty = f->clk_dirty = 0;
    f->skipped = 0;
    return rc;
}

static int load_state(Fast *f) {
    PyObject *v = get_attr(f->pipe, s_now_ns);
    if (v == NULL) return -1;
    f->now = PyLong_AsLongLong(v);
    Py_DECREF(v);
    f->big = 0;
    if (f->now == -1 && PyErr_Occurred()) goto overflow;
    v = PyDict_GetItemWithError(f->clock, f->source);
    if (v == NULL && PyErr_Occurred()) return -1;
    f->clk = 0;
    if (v != NULL) {
        f->clk = PyLong_AsLongLong(v);
        if (f->clk == -1 && PyErr_Occurred()) goto overflow;
    }
    f->state_pipe = f->pipe;
    f->state_stats = f->stats;
    f->state_clock = f->clock;
    f->state_source = f->source;
    f->now_dirty = f->clk_dirty = 0;
    f->skipped = 0;
    return 0;
overflow:
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
    PyErr_Clear();
    f->big = 1;                  /* times past 2^63 ns: Python's `want` decides, with its integers */
    f->state_pipe = NULL;
    return 0;
}

static int load_spec(Fast *f, PyObject *spec) {
    if (f->spec == spec) return 0;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 14) {
        PyErr_SetString(PyExc_TypeError, "fast spec: a 14-tuple expected");
        return -1;
    }
    Py_ssize_t eoff = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 0));
    Py_ssize_t l3 = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
    if (PyErr_Occurred()) return -1;
    PyObject *conns = PyTuple_GET_ITEM(spec, 2);
    PyObject *clock = PyTuple_GET_ITEM(spec, 6);
    if (!PyDict_CheckExact(conns) || !PyDict_Check(clock) || eoff < 0 || l3 < eoff + 2) {
        PyErr_SetString(PyExc_TypeError, "fast spec: bad fields");
        return -1;
    }
    PyObject *pipe = PyTuple_GET_ITEM(spec, 4);
    if (f->state_pipe != NULL && f->state_pipe != pipe && flush_state(f) < 0) return -1;
    f->spec = spec;
    f->eoff = eoff;
    f->l3 = l3;
    f->conns = conns;
    f->source = PyTuple_GET_ITEM(spec, 3);
    f->source_v = PyLong_AsLongLong(f->source);
    if (f->source_v == -1 && PyErr_Occurred()) return -1;
    f->pipe = pipe;
    f->stats = PyTuple_GET_ITEM(spec, 5);
    f->clock = clock;
    f->conn_type = PyTuple_GET_ITEM(spec, 7);
    f->body = PyTuple_GET_ITEM(spec, 8);
    f->want = PyTuple_GET_ITEM(spec, 9);
    f->frames_mode = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 12)) ? NULL : PyTuple_GET_ITEM(spec, 10);
    f->scanner_type = PyTuple_GET_ITEM(spec, 11);
    long shard = PyLong_AsLong(PyTuple_GET_ITEM(spec, 13));
    if (shard == -1 && PyErr_Occurred()) return -1;
    f->shard = shard == 0 || shard == 1 ? (int)shard : -1;
    if (f->state_pipe == NULL && !f->big && load_state(f) < 0) return -1;
    return 0;
}

/* The Python filter for one record (the pipeline's state flushed first, reloaded after). */
static int ask_want(Fast *f, Py_ssize_t off, Py_ssize_t caplen, long long no, long long ts) {
    if (flush_state(f) < 0) return -1;
    PyObject *r = PyObject_CallFunction(f->want, "OnnLL", f->bufobj, off, caplen, no, ts);
    if (r == NULL) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (t < 0 || load_state(f) < 0) return -1;
    return t;
}

static int set_ll(PyObject *o, PyObject *name, long long v) {
    PyObject *x = PyLong_FromLongLong(v);
    if (x == NULL) return -1;
    int r = set_attr(o, name, x);
    Py_DECREF(x);
    return r;
}

/* 1: o.name is `want` (identity), 0: it is something else, -1: error. */
static int attr_is(PyObject *o, PyObject *name, PyObject *want) {
    PyObject *x = get_attr(o, name);
    if (x == NULL) return -1;
    int r = x == want;
    Py_DECREF(x);
    return r;
}

/* 1: len(o.name) == 0, 0: not empty, -1: error. */
static int attr_empty(PyObject *o, PyObject *name) {
    PyObject *x = get_attr(o, name);
    if (x == NULL) return -1;
    Py_ssize_t n = PyObject_Length(x);
    Py_DECREF(x);
    return n < 0 ? -1 : n == 0;
}

static int get_ll(PyObject *o, PyObject *name, long long *v) {
    PyObject *x = get_attr(o, name);
    if (x == NULL) return -1;
    *v = PyLong_AsLongLong(x);
    Py_DECREF(x);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* Is conn.<name> (an (ip bytes, port) endpoint, as flow/connection.py keeps them) src:sport?
 * 1: yes, 0: no, 2: not that shape (a caller may leave the decision to Python), -1: error. */
static int endpoint_is(PyObject *conn, PyObject *name, const unsigned char *src, unsigned sport) {
    PyObject *ep = get_attr(conn, name);
    if (ep == NULL) return -1;
    int r = 2;
    if (PyTuple_Check(ep) && PyTuple_GET_SIZE(ep) == 2) {
        PyObject *ip = PyTuple_GET_ITEM(ep, 0);
        r = 0;
        if (PyBytes_Check(ip) && PyBytes_GET_SIZE(ip) == 4 && memcmp(PyBytes_AS_STRING(ip), src, 4) == 0) {
            long p = PyLong_AsLong(PyTuple_GET_ITEM(ep, 1));
            r = p == -1 && PyErr_Occurred() ? -1 : p == (long)sport;
        }
    }
    Py_DECREF(ep);
    return r;
}

/* wire/wsframe.py FrameScanner._scan for the common frames, in C. A frame is common when none of
 * FrameScanner._check's anomalies can fire for it (no RSV bit, a known data or ping/pong opcode,
 * masked exactly when the client sent it, a control frame short and final) and it is not a close
 * (whose payload is read for its code), nor part of a compressed message (RSV1 set on its first
 * frame: permessage-deflate's inflater is Python's). The scanner must have read its first bytes
 * (feed's checks of a stream's start stay Python's). At the first
 * frame that is not common, the state so far is written back and the rest of the segment, from
 * that frame boundary, goes to FrameScanner._scan: the result is the same as one Python call.
 * Summaries are made (FrameSummary, with the same preview()) for the frames the scanner keeps,
 * and for a frame still open at the end of the segment (a later call may keep it). */
static PyObject *ws_summary_type, *ws_preview;   /* wire/wsframe.py FrameSummary, preview */
static PyObject *s_count, *s_counter, *s_dropped, *s_frames, *s_preview_bytes, *s_dir, *s_opcode,
    *s_order, *s_preview, *s__cur, *s__cur_mask, *s__cur_payload, *s__cur_off, *s__cur_want, *s__msg_opcode,
    *s__msg_out, *s__msg_total, *s__msg_compressed, *s__cur_inflate, *s__skip, *s__buf, *s__scan, *s_desynced,
    *s_first_data_ts;

typedef struct {
    long long count, counter0, dropped, skip, want, keep, pbytes;
    int client, masked, opcode, started, msg_reset, msg_opcode, msg_compressed;
    unsigned char mask[4];
    PyObject *cur;            /* strong: the open frame's summary, or NULL (none, or one not kept) */
    PyObject *payload;        /* strong bytearray: the open frame's payload kept for its preview */
    PyObject *frames;         /* strong: the scanner's list */
} Scan;

static int ba_append(PyObject *ba, const unsigned char *p, Py_ssize_t k) {
    Py_ssize_t old = PyByteArray_GET_SIZE(ba);
    if (PyByteArray_Resize(ba, old + k) < 0) return -1;
    memcpy(PyByteArray_AS_STRING(ba) + old, p, (size_t)k);
    return 0;
}

/* _end_frame for a common frame: its preview from the kept payload (unmasked), kept or counted. */
static int scan_end(Scan *st) {
    PyObject *f = st->cur;
    st->cur = NULL;
    if (f == NULL) { st->dropped++; return 0; }
    Py_ssize_t n = PyByteArray_GET_SIZE(st->payload);
    if (n > st->pbytes) n = (Py_ssize_t)st->pbytes;
    /* a fresh object (NULL contents: never one of CPython's shared 1-byte bytes), unmasked in place */
    PyObject *pl = PyBytes_FromStringAndSize(NULL, n);
    if (pl == NULL) { Py_DECREF(f); return -1; }
    unsigned char *b = (unsigned char *)PyBytes_AS_STRING(pl);
    const unsigned char *src = (const unsigned char *)PyByteArray_AS_STRING(st->payload);
    for (Py_ssize_t i = 0; i < n; i++) b[i] = st->masked ? src[i] ^ st->mask[i & 3] : src[i];
    PyObject *pv = PyObject_CallFunction(ws_preview, "Ni", pl, st->opcode);
    int rc = -1;
    if (pv != NULL && set_attr(f, s_preview, pv) == 0) {
        if (PyList_GET_SIZE(st->frames) < st->keep) rc = PyList_Append(st->frames, f);
        else { st->dropped++; rc = 0; }
    }
    Py_XDECREF(pv);
    Py_DECREF(f);
    return rc;
}

static int set_obj(PyObject *o, PyObject *name, PyObject *v) {
    if (v == NULL) return -1;
    int r = set_attr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* Write the C state back to the scanner (what the Python methods would have left). */
static int scan_store(PyObject *sc, Scan *st) {
    if (set_ll(sc, s_count, st->count) < 0 || set_ll(sc, s_dropped, st->dropped) < 0
        || set_ll(sc, s__skip, st->skip) < 0)
        return -1;
    PyObject *counter = get_attr(sc, s_counter);
    if (counter == NULL) return -1;
    int r = PyList_Check(counter) && PyList_GET_SIZE(counter) >= 1
        ? PyList_SetItem(counter, 0, PyLong_FromLongLong(st->counter0)) : -1;
    Py_DECREF(counter);
    if (r < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "FrameScanner.counter"); return -1; }
    /* the open frame (None once it ended: _skip is 0 exactly then) and what it still wants kept */
    if (set_attr(sc, s__cur, st->cur ? st->cur : Py_None) < 0 || set_ll(sc, s__cur_want, st->want) < 0)
        return -1;
    if (!st->started) return 0;     /* no frame began here: its other fields are as they were */
    if (set_obj(sc, s__cur_mask, PyBytes_FromStringAndSize(st->masked ? (const char *)st->mask : "", st->masked ? 4 : 0)) < 0
        || set_attr(sc, s__cur_payload, st->payload) < 0
        || set_ll(sc, s__cur_off, 0) < 0 || set_attr(sc, s__cur_inflate, Py_False) < 0)
        return -1;
    if (st->msg_reset) {
        if (set_ll(sc, s__msg_opcode, st->msg_opcode) < 0 || set_attr(sc, s__msg_compressed, Py_False) < 0
            || set_obj(sc, s__msg_out, PyByteArray_FromStringAndSize(NULL, 0)) < 0 || set_ll(sc, s__msg_total, 0) < 0)
            return -1;
    }
    return 0;
}

/* Instances of plain slotted dataclasses (FrameSummary, http1.Field) built at their slots: the
 * dataclass's __init__ only stores its arguments, and calling it was a Python frame per object.
 * Used when the class's __init__ arguments (its __match_args__) are the names given here, in this
 * order, each a plain slot, and it has no __post_init__ (checked once per class object): else
 * through the call, with the same arguments. */
typedef struct {
    const char *names[16];
    int n;
    PyObject *type;               /* the class checked (borrowed: the caller keeps it alive) */
    PyObject *interned[16];
    int plain;                    /* -1: not checked yet for `type` */
} PlainType;

static int plain_check(PlainType *pt, PyObject *type) {
    if (pt->type == type && pt->plain >= 0) return pt->plain;
    pt->type = type;
    pt->plain = 0;
    for (int i = 0; i < pt->n; i++)
        if (pt->interned[i] == NULL && (pt->interned[i] = PyUnicode_InternFromString(pt->names[i])) == NULL) return -1;
    if (!PyType_Check(type)) return 0;
    PyTypeObject *tp = (PyTypeObject *)type;
    PyObject *args = PyObject_GetAttrString(type, "__match_args__");
    if (args == NULL) { PyErr_Clear(); return 0; }
    int ok = PyTuple_Check(args) && PyTuple_GET_SIZE(args) == pt->n && tp->tp_alloc != NULL
             && PyDict_GetItemString(tp->tp_dict, "__post_init__") == NULL;
    for (int i = 0; ok && i < pt->n; i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        ok = PyUnicode_Check(a) && PyUnicode_Compare(a, pt->interned[i]) == 0 && slot_of(tp, pt->interned[i]) >= 0;
    }
    Py_DECREF(args);
    if (PyErr_Occurred()) return -1;
    pt->plain = ok;
    return ok;
}

/* type(*vals) (vals borrowed), at the slots when `type` passed plain_check. */
static PyObject *plain_new(PlainType *pt, PyObject *type, PyObject **vals) {
    int plain = plain_check(pt, type);
    if (plain < 0) return NULL;
    if (!plain) {
        PyObject *args = PyTuple_New(pt->n);
        if (args == NULL) return NULL;
        for (int i = 0; i < pt->n; i++) {
            Py_INCREF(vals[i]);
            PyTuple_SET_ITEM(args, i, vals[i]);
        }
        PyObject *o = PyObject_Call(type, args, NULL);
        Py_DECREF(args);
        return o;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    PyObject *o = tp->tp_alloc(tp, 0);
    for (int i = 0; o != NULL && i < pt->n; i++)
        if (set_attr(o, pt->interned[i], vals[i]) < 0) Py_CLEAR(o);
    return o;
}

static PlainType fs_plain = {{"dir", "frame", "ts_ns", "fin", "rsv1", "rsv2", "rsv3", "opcode", "masked", "length",
                              "close_code", "close_reason", "preview", "order"}, 14, NULL, {NULL}, -1};

/* A FrameSummary for a frame header just read: FrameSummary(dir, no, ts, fin, False, False, False,
 * opcode, masked, length) with `.order = order`. */
static PyObject *new_summary(PyObject *dir, long long no, long long ts, int fin, int opcode, int masked,
                             long long len, long long order) {
    PyObject *vals[14] = {dir, PyLong_FromLongLong(no), PyLong_FromLongLong(ts), fin ? Py_True : Py_False, Py_False,
                          Py_False, Py_False, PyLong_FromLong(opcode), masked ? Py_True : Py_False,
                          PyLong_FromLongLong(len), Py_None, Py_None, Py_None, PyLong_FromLongLong(order)};
    static const int owned[5] = {1, 2, 7, 9, 13};
    PyObject *o = NULL;
    if (vals[1] && vals[2] && vals[7] && vals[9] && vals[13]) o = plain_new(&fs_plain, ws_summary_type, vals);
    for (int i = 0; i < 5; i++) Py_XDECREF(vals[owned[i]]);
    return o;
}

/* wire/http1.py _parse_clean's header lines. clean_fields(raw, first, end, Field): None when the
 * head is not one `_parse_clean` reads (a bare LF before `end`, or a line of raw[first+2:end] that
 * is not token ":" [\t\x20-\x7e]* CRLF, as _CLEAN_FIELDS), else its fields: for each line n
 * (from 2), Field(name, name.lower(), value.strip(b" \t"), n), name what precedes the first colon. */
static PlainType field_plain = {{"raw_name", "name", "value", "line"}, 4, NULL, {NULL}, -1};

static int is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static PyObject *clean_fields(PyObject *self, PyObject *args) {
    const char *raw;
    Py_ssize_t rlen, first, end;
    PyObject *ftype;
    if (!PyArg_ParseTuple(args, "y#nnO", &raw, &rlen, &first, &end, &ftype)) return NULL;
    if (first < 0 || end > rlen || first + 2 > end) Py_RETURN_NONE;
    const unsigned char *r = (const unsigned char *)raw;
    for (Py_ssize_t i = 0; i < end; i++)
        if (r[i] == '\n' && (i == 0 || r[i - 1] != '\r')) Py_RETURN_NONE;      /* a bare LF */
    /* the lines: token ':' [\t\x20-\x7e]* CRLF, up to end exactly */
    Py_ssize_t i = first + 2;
    while (i < end) {
        Py_ssize_t j = i;
        while (j < end && is_tchar(r[j])) j++;
        if (j == i || j >= end || r[j] != ':') Py_RETURN_NONE;
        j++;
        while (j < end && (r[j] == '\t' || (r[j] >= 0x20 && r[j] <= 0x7e))) j++;
        if (j + 2 > end || r[j] != '\r' || r[j + 1] != '\n') Py_RETURN_NONE;
        i = j + 2;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    i = first + 2;
    long n = 2;
    while (i < end) {
        Py_ssize_t colon = i;
        while (r[colon] != ':') colon++;
        Py_ssize_t eol = colon;
        while (r[eol] != '\r') eol++;
        Py_ssize_t vs = colon + 1, ve = eol;
        while (vs < ve && (r[vs] == ' ' || r[vs] == '\t')) vs++;
        while (ve > vs && (r[ve - 1] == ' ' || r[ve - 1] == '\t')) ve--;
        PyObject *name = PyBytes_FromStringAndSize(raw + i, colon - i);
        PyObject *lower = name ? PyBytes_FromStringAndSize(NULL, colon - i) : NULL;
        PyObject *value = lower ? PyBytes_FromStringAndSize(raw + vs, ve - vs) : NULL;
        PyObject *line = value ? PyLong_FromLong(n) : NULL;
        PyObject *f = NULL;
        if (line != NULL) {
            unsigned char *lo = (unsigned char *)PyBytes_AS_STRING(lower);
            for (Py_ssize_t k = 0; k < colon - i; k++) {
                unsigned char c = r[i + k];
                lo[k] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
            }
            PyObject *vals[4] = {name, lower, value, line};
            f = plain_new(&field_plain, ftype, vals);
        }
        Py_XDECREF(name); Py_XDECREF(lower); Py_XDECREF(value); Py_XDECREF(line);
        if (f == NULL || PyList_Append(out, f) < 0) {
            Py_XDECREF(f);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(f);
        i = eol + 2;
        n++;
    }
    return out;
}

/* 0: done (the scanner read the whole segment), 1: not the common case at all (nothing changed:
 * the caller calls FrameScanner.feed), -1: error. */
static int scan_frames_c(PyObject *sc, const unsigned char *data, Py_ssize_t n, long long no, long long ts) {
    Scan st;
    memset(&st, 0, sizeof st);
    int rc = -1, t;
    PyObject *buf = NULL, *dir = NULL, *counter = NULL, *pno = NULL, *pts = NULL, *work = NULL;
    if (ws_summary_type == NULL) {
        PyObject *m = PyImport_ImportModule("wscap.wire.wsframe");
        if (m == NULL) return -1;
        ws_summary_type = PyObject_GetAttrString(m, "FrameSummary");
        ws_preview = PyObject_GetAttrString(m, "preview");
        Py_DECREF(m);
        if (ws_summary_type == NULL || ws_preview == NULL) return -1;
    }
    if ((t = attr_is(sc, s_desynced, Py_False)) <= 0 || (t = attr_is(sc, s__cur_inflate, Py_False)) <= 0)
        return t < 0 ? -1 : 1;
    /* with permessage-deflate, a continuation of a compressed message is the inflater's (Python) */
    if ((t = attr_is(sc, s__msg_compressed, Py_False)) < 0) return -1;
    st.msg_compressed = !t;
    if ((t = attr_is(sc, s_first_data_ts, Py_None)) != 0) return t < 0 ? -1 : 1;
    buf = get_attr(sc, s__buf);
    if (buf == NULL) goto out;
    if (!PyByteArray_CheckExact(buf)) { rc = 1; goto out; }
    Py_ssize_t held = PyByteArray_GET_SIZE(buf);      /* an unfinished header from the last call */
    dir = get_attr(sc, s_dir);
    if (dir == NULL) goto out;
    if (!PyUnicode_Check(dir)) { rc = 1; goto out; }
    st.client = PyUnicode_Compare(dir, s_client) == 0;
    if (PyErr_Occurred()) goto out;
    if (get_ll(sc, s__skip, &st.skip) < 0 || get_ll(sc, s_keep, &st.keep) < 0
        || get_ll(sc, s_preview_bytes, &st.pbytes) < 0 || get_ll(sc, s_count, &st.count) < 0
        || get_ll(sc, s_dropped, &st.dropped) < 0 || get_ll(sc, s__cur_want, &st.want) < 0)
        goto overflow;
    /* a client's segment starting at a frame boundary with a capital: maybe a request line */
    if (st.client && st.skip == 0 && held == 0 && n > 0 && data[0] >= 'A' && data[0] <= 'Z') { rc = 1; goto out; }
    counter = get_attr(sc, s_counter);
    if (counter == NULL) goto out;
    if (!PyList_Check(counter) || PyList_GET_SIZE(counter) < 1) { rc = 1; goto out; }
    st.counter0 = PyLong_AsLongLong(PyList_GET_ITEM(counter, 0));
    if (st.counter0 == -1 && PyErr_Occurred()) goto overflow;
    st.frames = get_attr(sc, s_frames);
    if (st.frames == NULL) goto out;
    if (!PyList_Check(st.frames)) { rc = 1; goto out; }
    if (st.skip > 0) {
        /* a frame begun earlier: common only if it is not a close */
        st.cur = get_attr(sc, s__cur);
        if (st.cur == NULL) goto out;
        if (Py_TYPE(st.cur) != (PyTypeObject *)ws_summary_type) { rc = 1; goto out; }
        long long op;
        if (get_ll(st.cur, s_opcode, &op) < 0) goto overflow;
        if (op == 8 || (op <= 2 && st.msg_compressed)) { rc = 1; goto out; }   /* a close, or compressed */
        st.opcode = (int)op;
        st.payload = get_attr(sc, s__cur_payload);
        if (st.payload == NULL) goto out;
        if (!PyByteArray_CheckExact(st.payload)) { rc = 1; goto out; }
        PyObject *m = get_attr(sc, s__cur_mask);
        if (m == NULL) goto out;
        int ok = PyBytes_Check(m) && (PyBytes_GET_SIZE(m) == 0 || PyBytes_GET_SIZE(m) == 4);
        if (ok && PyBytes_GET_SIZE(m) == 4) { st.masked = 1; memcpy(st.mask, PyBytes_AS_STRING(m), 4); }
        Py_DECREF(m);
        if (!ok) { rc = 1; goto out; }
    }
    /* from here on the scanner is ours: every path writes the state back */
    if (held) {
        /* _scan's `work`: the held header bytes, then the segment's */
        work = PyBytes_FromStringAndSize(NULL, held + n);
        if (work == NULL) goto fail;
        memcpy(PyBytes_AS_STRING(work), PyByteArray_AS_STRING(buf), (size_t)held);
        memcpy(PyBytes_AS_STRING(work) + held, data, (size_t)n);
        if (PyByteArray_Resize(buf, 0) < 0) goto fail;
        data = (const unsigned char *)PyBytes_AS_STRING(work);
        n += held;
    }
    Py_ssize_t pos = 0;
    while (pos < n) {
        if (st.skip) {
            Py_ssize_t take = st.skip < (long long)(n - pos) ? (Py_ssize_t)st.skip : n - pos;
            if (st.want) {
                Py_ssize_t k = take < st.want ? take : (Py_ssize_t)st.want;
                if (ba_append(st.payload, data + pos, k) < 0) goto store_fail;
                st.want -= k;
            }
            pos += take;
            st.skip -= take;
            if (!st.skip && scan_end(&st) < 0) goto store_fail;
            continue;
        }
        /* a frame header (wsframe._parse_header) */
        Py_ssize_t left = n - pos, h = 2;
        if (left < 2) break;
        unsigned b0 = data[pos], b1 = data[pos + 1];
        unsigned long long ln = b1 & 0x7F;
        if (ln == 126) {
            if (left < 4) break;
            ln = be16(data + pos + 2);
            h = 4;
        } else if (ln == 127) {
            if (left < 10) break;
            ln = ((unsigned long long)be32(data + pos + 2) << 32 | be32(data + pos + 6)) & 0x7FFFFFFFFFFFFFFFULL;
            h = 10;
        }
        int masked = (b1 & 0x80) != 0;
        if (masked) {
            if (left < h + 4) break;
            h += 4;
        }
        int opcode = b0 & 0x0F, control = opcode >= 8, fin = (b0 & 0x80) != 0;
        if ((b0 & 0x70) || !(opcode <= 2 || opcode == 9 || opcode == 10) || masked != st.client
            || (control && (ln > 125 || !fin)) || (opcode == 0 && st.msg_compressed)) {
            /* not common: Python reads on from this frame boundary */
            if (scan_store(sc, &st) < 0) goto fail;
            PyObject *rest = PyBytes_FromStringAndSize((const char *)data + pos, n - pos);
            pno = PyLong_FromLongLong(no);
            pts = PyLong_FromLongLong(ts);
            PyObject *r = rest && pno && pts ? PyObject_CallMethodObjArgs(sc, s__scan, rest, pno, pts, NULL) : NULL;
            Py_XDECREF(rest);
            if (r == NULL) goto fail;
            Py_DECREF(r);
            rc = 0;
            goto out;
        }
        /* _start_frame */
        st.count++;
        st.counter0++;
        st.started = 1;
        st.opcode = opcode;
        st.masked = masked;
        if (masked) memcpy(st.mask, data + pos + h - 4, 4);
        if (opcode == 1 || opcode == 2) { st.msg_reset = 1; st.msg_opcode = opcode; st.msg_compressed = 0; }
        long long want = control ? 125 : st.pbytes;
        st.want = (long long)ln < want ? (long long)ln : want;
        st.skip = (long long)ln;
        Py_XDECREF(st.payload);
        st.payload = PyByteArray_FromStringAndSize(NULL, 0);
        if (st.payload == NULL) goto store_fail;
        pos += h;
        /* a summary for a frame that will be kept, or that stays open past this segment */
        if (PyList_GET_SIZE(st.frames) < st.keep || ln > (unsigned long long)(n - pos)) {
            st.cur = new_summary(dir, no, ts, fin, opcode, masked, (long long)ln, st.counter0);
            if (st.cur == NULL) goto store_fail;
        }
        if (ln == 0 && scan_end(&st) < 0) goto store_fail;
    }
    if (pos < n && ba_append(buf, data + pos, n - pos) < 0) goto store_fail;   /* an unfinished header */
    if (scan_store(sc, &st) < 0) goto fail;
    rc = 0;
    goto out;
overflow:
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) { PyErr_Clear(); rc = 1; }
    goto out;
store_fail:
    /* an error half way (out of memory, a failing preview): the exception ends the analysis */
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "frame scan failed");
fail:
    rc = -1;
out:
    Py_XDECREF(buf); Py_XDECREF(dir); Py_XDECREF(counter); Py_XDECREF(pno); Py_XDECREF(pts); Py_XDECREF(work);
    Py_XDECREF(st.cur); Py_XDECREF(st.payload); Py_XDECREF(st.frames);
    return rc;
}

/* The frames lane: an in-order segment of a WebSocket direction (mode FRAMES). The full path
 * would do exactly this: TcpFlow.segment records the window and HalfStream._deliver advances
 * next/delivered (no probe, nothing buffered, no retransmission memory), Connection.handle feeds
 * the bytes to the session (FRAMES -> the current exchange's FrameScanner.feed) and nothing else
 * changes: no session event, no mode a `keep` toggle would follow. So the C does the TCP side and
 * hands the payload to the scanner: scan_frames_c for the common frames, the scanner's own feed
 * for anything else. Only without stream mode (analyze): live decides on every full-path frame.
 * 1: accounted, 0: full path (nothing changed), -1: error. */
static int frames_lane_c(Fast *f, PyObject *conn, PyObject *session, PyObject *half, int dir,
                         const unsigned char *payload, long long paylen, unsigned win, long long no, long long ts) {
    int rc = -1, t;
    PyObject *keep = NULL, *exs = NULL, *sc = NULL, *tcp = NULL, *window = NULL, *data = NULL, *r = NULL;
    long long nx, dl;
    keep = get_attr(conn, s_keep);
    if (keep == NULL) goto out;
    if (!PyList_Check(keep) || PyList_GET_SIZE(keep) != 2 || PyList_GET_ITEM(keep, dir) != Py_False) { rc = 0; goto out; }
    /* the half stream: nothing held as a probe, no retransmission memory kept */
    if ((t = attr_is(half, s_probe, Py_None)) <= 0 || (t = attr_is(half, s_keep_recent, Py_False)) <= 0) {
        rc = t; goto out;
    }
    tcp = get_attr(conn, s_tcp);
    if (tcp == NULL) goto out;
    if ((t = attr_is(tcp, s_closed, Py_False)) <= 0) { rc = t; goto out; }
    window = get_attr(tcp, s_window);
    if (window == NULL) goto out;
    if (!PyList_Check(window) || PyList_GET_SIZE(window) != 2) { rc = 0; goto out; }
    /* the session: no events waiting, the current exchange's scanner of this direction (or none:
     * then the full path feeds nobody either) */
    if ((t = attr_empty(session, s_events)) <= 0) { rc = t; goto out; }
    exs = get_attr(session, s_exchanges);
    if (exs == NULL) goto out;
    if (!PyList_Check(exs) || PyList_GET_SIZE(exs) == 0) { rc = 0; goto out; }
    sc = get_attr(PyList_GET_ITEM(exs, PyList_GET_SIZE(exs) - 1), dir == 0 ? s_client_frames : s_server_frames);
    if (sc == NULL) goto out;
    if (sc != Py_None && Py_TYPE(sc) != (PyTypeObject *)f->scanner_type) { rc = 0; goto out; }
    if (get_ll(half, s_next, &nx) < 0 || get_ll(half, s_delivered, &dl) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) { PyErr_Clear(); rc = 0; }
        goto out;
    }
    /* everything checked: the writes of the full path, in its order */
    if (set_ll(conn, s_last_frame, no) < 0 || set_ll(conn, s_last_ts, ts) < 0) goto out;
    PyObject *w = PyLong_FromUnsignedLong(win);
    if (w == NULL || PyList_SetItem(window, dir, w) < 0) goto out;
    if (set_ll(half, s_next, nx + paylen) < 0 || set_ll(half, s_delivered, dl + paylen) < 0) goto out;
    if (sc != Py_None && paylen > 0) {
        int done = scan_frames_c(sc, payload, (Py_ssize_t)paylen, no, ts);
        if (done < 0) goto out;
        if (done == 1) {
            PyObject *pno = PyLong_FromLongLong(no), *pts = PyLong_FromLongLong(ts);
            data = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)paylen);
            if (pno != NULL && pts != NULL && data != NULL)
                r = PyObject_CallMethodObjArgs(sc, s_feed, data, pno, pts, NULL);
            Py_XDECREF(pno); Py_XDECREF(pts);
            if (r == NULL) goto out;
        }
    }
    rc = 1;
out:
    Py_XDECREF(keep); Py_XDECREF(exs); Py_XDECREF(sc); Py_XDECREF(tcp); Py_XDECREF(window);
    Py_XDECREF(data); Py_XDECREF(r);
    return rc;
}

/* The SYN-ACK of a tracked connection, from its server: TcpFlow.segment sets the server's initial
 * sequence number (when unset) and, the first time, synack_frame with an Opened event, which
 * neither Connection.handle nor Pipeline.feed acts on (only a Closed is). No window is recorded
 * for a SYN. Conditions: no payload, no session event waiting, the connection neither closed nor
 * ignored (Pipeline.feed would retire or forget it). Only without stream mode, like the frames
 * lane. 1: accounted, 0: full path (nothing changed), -1: error. */
static int synack_lane_c(PyObject *conn, const unsigned char *src, unsigned sport, uint32_t seq,
                         long long no, long long ts) {
    int rc = -1, t;
    PyObject *tcp = NULL, *session = NULL, *halves = NULL, *ign = NULL, *base = NULL, *sf = NULL;
    /* from the server, and the client is the other end (a connection to itself is Python's) */
    if ((t = endpoint_is(conn, s_server, src, sport)) != 1) return t < 0 ? -1 : 0;
    if ((t = endpoint_is(conn, s_client, src, sport)) != 0) return t < 0 ? -1 : 0;
    session = get_attr(conn, s_session);
    if (session == NULL) goto out;
    if ((t = attr_empty(session, s_events)) <= 0) { rc = t; goto out; }
    ign = get_attr(session, s_ignored);
    if (ign == NULL) goto out;
    if (ign != Py_False) { rc = 0; goto out; }
    tcp = get_attr(conn, s_tcp);
    if (tcp == NULL) goto out;
    if ((t = attr_is(tcp, s_closed, Py_False)) <= 0) { rc = t; goto out; }
    halves = get_attr(tcp, s_halves);
    if (halves == NULL) goto out;
    if (!PyTuple_Check(halves) || PyTuple_GET_SIZE(halves) != 2) { rc = 0; goto out; }
    PyObject *half = PyTuple_GET_ITEM(halves, 1);
    base = get_attr(half, s_base);
    sf = base ? get_attr(tcp, s_synack_frame) : NULL;
    if (sf == NULL) goto out;
    /* everything checked: Connection.segment's frame/time, then TcpFlow.segment's SYN-ACK writes */
    if (set_ll(conn, s_last_frame, no) < 0 || set_ll(conn, s_last_ts, ts) < 0) goto out;
    if (base == Py_None && set_ll(half, s_base, (long long)((seq + 1u) & 0xFFFFFFFFu)) < 0) goto out;
    if (sf == Py_None && set_ll(tcp, s_synack_frame, no) < 0) goto out;
    rc = 1;
out:
    Py_XDECREF(tcp); Py_XDECREF(session); Py_XDECREF(halves); Py_XDECREF(ign);
    Py_XDECREF(base); Py_XDECREF(sf);
    return rc;
}

/* ---- The heads lane (issue #19) -------------------------------------------------------------
 * Plain keep-alive HTTP/1: an in-order segment of a direction reading heads (HEAD), or one in which
 * the body being skipped ends (BODY, paylen >= body_left), whose bytes the Session's plain fast
 * paths consume entirely: complete heads without an upgrade hint (client: looks_like_request;
 * server: STATUS answering a plain request, pending[0] None), each followed by its body by
 * quick_length; the last body may run past the segment (-> BODY), and the last head may not end in
 * it (its bytes stay buffered, as a head already buffered may end in it). The full path would
 * deliver the bytes (HalfStream._deliver: next, delivered, the retransmission memory while it is
 * kept), count the heads (Session._client_heads / _server_data and framing.plain_requests /
 * plain_responses, including the > 1024-byte pass, which leaves head_first_frame alone), move the
 * mode and toggle keep_recent (Connection.handle). No session event, no anomaly, no limit: so
 * Pipeline.feed does nothing more without stream mode (the lane is off in live/stream mode, where
 * feed decides handshakes by time), except forget a connection left `ignored` (checked). Everything
 * is checked before the first write; anything else (an upgrade hint, chunked or unknown length, a
 * huge Content-Length, a head reaching head_bytes, the first bytes of a connection that could be
 * an HTTP/2 preface, no request/status line...) returns "full path" with nothing changed. The byte tests mirror the regexes of
 * flow/framing.py and wire/http1.py exactly (bytes patterns: ASCII classes, ASCII case folding). */

#define RECENT 4096   /* flow/tcp.py RECENT (tests/test_fastpath.py checks they agree) */
static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";   /* wire/http2.py PREFACE, 24 bytes */
static PyObject *s_buf, *s_pending, *s_plain_requests, *s_limits, *s_head_bytes, *s_head_first_frame, *s_head_last,
    *s_recent, *s_recent_frames, *s_recent_start, *s_append, *s_popleft, *s_HEAD, *s_IGNORE;
static PyObject *g_body, *g_head, *g_ignore;   /* Mode.BODY seen last, and its Mode.HEAD / Mode.IGNORE (strong) */

static inline int h_up(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static inline unsigned char h_lc(unsigned char c) { return h_up(c) ? (unsigned char)(c | 0x20) : c; }
static inline int h_dig(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int h_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13); }   /* bytes \s */

/* p[0:len(lit)] == lit, ASCII case-insensitively (lit is lower case) */
static int h_ieq(const unsigned char *p, const char *lit, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (h_lc(p[i]) != (unsigned char)lit[i]) return 0;
    return 1;
}

/* the leading (?:\r?\n)* (greedy is exact: what follows never matches \r or \n) */
static Py_ssize_t h_nl(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (;;) {
        if (i < n && p[i] == '\n') i++;
        else if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n') i += 2;
        else return i;
    }
}

/* wire/http1.py looks_like_request on data[:24]: _REQUEST_START or _REQUEST_PREFIX */
static int h_request(const unsigned char *p, Py_ssize_t n) {
    if (n > 24) n = 24;
    Py_ssize_t i = h_nl(p, n);
    if (i >= n || !h_up(p[i])) return 0;
    i++;
    Py_ssize_t r = 0;      /* the maximal [A-Z-] run: shorter ones are followed by [A-Z-], never ' ' or the end */
    while (i + r < n && (h_up(p[i + r]) || p[i + r] == '-')) r++;
    Py_ssize_t j = i + r;
    if (r >= 1 && r <= 15 && j + 1 < n && p[j] == ' ' && !h_space(p[j + 1])) return 1;   /* [A-Z][A-Z-]{1,15} \S */
    return r <= 15 && (j == n || (j + 1 == n && p[j] == ' '));                             /* ...{0,15}(?: )?\Z */
}

/* wire/http1.py looks_like_response: _RESPONSE_START on data[:16] ((?:\r?\n)*HTTP/\d), or under 6 bytes
 * that start "HTTP/" */
static int h_response(const unsigned char *p, Py_ssize_t n) {
    if (n < 6 && memcmp(p, "HTTP/", (size_t)n) == 0) return 1;
    if (n > 16) n = 16;
    Py_ssize_t i = h_nl(p, n);
    return n - i >= 6 && memcmp(p + i, "HTTP/", 5) == 0 && h_dig(p[i + 5]);
}

/* framing.STATUS.match(raw): (?:\r?\n)*HTTP/\d\.\d (\d{3}) -> the status, or -1 */
static int h_status(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = h_nl(p, n);
    if (n - i < 12 || memcmp(p + i, "HTTP/", 5) != 0 || !h_dig(p[i + 5]) || p[i + 6] != '.' || !h_dig(p[i + 7])
        || p[i + 8] != ' ' || !h_dig(p[i + 9]) || !h_dig(p[i + 10]) || !h_dig(p[i + 11]))
        return -1;
    return (p[i + 9] - '0') * 100 + (p[i + 10] - '0') * 10 + (p[i + 11] - '0');
}

/* find_head_end(buf, start) within p[:n]: just past the leftmost \n\r?\n, or -1 */
static Py_ssize_t h_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) {
    while (i < n) {
        const unsigned char *q = memchr(p + i, '\n', (size_t)(n - i));
        if (q == NULL) return -1;
        i = q - p;
        if (i + 1 < n && p[i + 1] == '\n') return i + 2;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
        i++;
    }
    return -1;
}

/* UPGRADE_HINT.search: (?i)upgrade|sec-websocket anywhere */
static int h_upgrade(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = h_lc(p[i]);
        if (c == 'u' && n - i >= 7 && h_ieq(p + i, "upgrade", 7)) return 1;
        if (c == 's' && n - i >= 13 && h_ieq(p + i, "sec-websocket", 13)) return 1;
    }
    return 0;
}

static Py_ssize_t h_line_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) {
    const unsigned char *q = i < n ? memchr(p + i, '\n', (size_t)(n - i)) : NULL;
    return q == NULL ? n : q - p;
}

static Py_ssize_t h_blanks(const unsigned char *p, Py_ssize_t i, Py_ssize_t le) {
    while (i < le && (p[i] == ' ' || p[i] == '\t')) i++;
    return i;
}

/* _TE_CHUNKED.search: (?im)^transfer-encoding[ \t]*:[^\n]*chunked */
static int h_chunked(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t ls = 0; ls <= n;) {
        Py_ssize_t le = h_line_end(p, ls, n);
        if (le - ls >= 17 && h_ieq(p + ls, "transfer-encoding", 17)) {
            Py_ssize_t i = h_blanks(p, ls + 17, le);
            if (i < le && p[i] == ':')
                for (Py_ssize_t k = i + 1; k + 7 <= le; k++)
                    if (h_ieq(p + k, "chunked", 7)) return 1;
        }
        ls = le + 1;
    }
    return 0;
}

/* _CL.search: (?im)^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$ (the first line that matches).
 * 1: found (*v), 0: none, -1: more than 18 significant digits (full path). */
static int h_length(const unsigned char *p, Py_ssize_t n, long long *v) {
    for (Py_ssize_t ls = 0; ls <= n;) {
        Py_ssize_t le = h_line_end(p, ls, n);
        if (le - ls >= 14 && h_ieq(p + ls, "content-length", 14)) {
            Py_ssize_t i = h_blanks(p, ls + 14, le);
            if (i < le && p[i] == ':') {
                Py_ssize_t d0 = h_blanks(p, i + 1, le), d1 = d0;
                while (d1 < le && h_dig(p[d1])) d1++;
                Py_ssize_t j = h_blanks(p, d1, le);
                if (j < le && p[j] == '\r') j++;
                if (d1 > d0 && j == le) {          /* $: the end of the raw head or before its '\n' */
                    while (d0 < d1 - 1 && p[d0] == '0') d0++;
                    if (d1 - d0 > 18) return -1;
                    long long x = 0;
                    for (; d0 < d1; d0++) x = x * 10 + (p[d0] - '0');
                    *v = x;
                    return 1;
                }
            }
        }
        ls = le + 1;
    }
    return 0;
}

/* framing.quick_length(raw, status) (status -1: None) -> the length, -1: None, -2: full path */
static long long h_quick(const unsigned char *p, Py_ssize_t n, int status) {
    if (status >= 0 && (status < 200 || status == 204 || status == 304)) return 0;
    if (h_chunked(p, n)) return -1;
    long long v;
    int r = h_length(p, n, &v);
    if (r < 0) return -2;
    if (r) return v;
    return status < 0 ? 0 : -1;
}

/* 1: pending[i] is None, 0: it is not (or there is none), -1: error */
static int h_pending_none(PyObject *pending, Py_ssize_t np, Py_ssize_t i) {
    if (i >= np) return 0;
    PyObject *x = PySequence_GetItem(pending, i);
    if (x == NULL) return -1;
    int r = x == Py_None;
    Py_DECREF(x);
    return r;
}

/* a list of 2 (borrowed items), or NULL with *rc set (0: another shape, -1: error) */
static PyObject *h_pair(PyObject *o, PyObject *name, int *rc) {
    PyObject *x = get_attr(o, name);
    if (x == NULL) { *rc = -1; return NULL; }
    if (!PyList_CheckExact(x) || PyList_GET_SIZE(x) != 2) { Py_DECREF(x); *rc = 0; return NULL; }
    return x;
}

static int h_modes(Fast *f) {
    if (g_body == f->body) return 0;
    PyObject *h = get_attr((PyObject *)Py_TYPE(f->body), s_HEAD);
    PyObject *ig = h ? get_attr((PyObject *)Py_TYPE(f->body), s_IGNORE) : NULL;
    if (ig == NULL) { Py_XDECREF(h); return -1; }
    Py_XDECREF(g_head); Py_XDECREF(g_ignore); Py_XDECREF(g_body);
    g_head = h; g_ignore = ig;
    Py_INCREF(f->body);
    g_body = f->body;
    return 0;
}

/* The heads lane for `half` (direction `dir`, in order: checked by the caller); `bl` is the body
 * left (0 < bl <= paylen) when the direction is in BODY, -1 in HEAD. The payload is f->pay.
 * 1: accounted, 0: full path (nothing changed), -1: error. */
static int heads_lane_c(Fast *f, PyObject *conn, PyObject *session, PyObject *half, PyObject *mode, int dir,
                        long long bl, long long paylen, unsigned win, long long no, long long ts) {
    const unsigned char *pay = f->pay;
    int rc = -1, t, kr;
    PyObject *keep = NULL, *tcp = NULL, *window = NULL, *bufs = NULL, *left = NULL, *exs = NULL, *pending = NULL;
    PyObject *lim = NULL, *hff = NULL, *hlast = NULL, *recent = NULL, *rframes = NULL;
    long long pr, hb, nx, dl, rs = 0;
    unsigned char *wbuf = NULL;
    if (pay == NULL) return 0;
    keep = h_pair(conn, s_keep, &rc);
    if (keep == NULL) goto out;
    rc = -1;
    PyObject *kd = PyList_GET_ITEM(keep, dir);
    if (kd != Py_True && kd != Py_False) { rc = 0; goto out; }
    if ((t = attr_is(half, s_probe, Py_None)) <= 0) { rc = t; goto out; }
    if ((kr = attr_is(half, s_keep_recent, Py_True)) < 0) goto out;
    if (!kr && (t = attr_is(half, s_keep_recent, Py_False)) <= 0) { rc = t; goto out; }
    tcp = get_attr(conn, s_tcp);
    if (tcp == NULL) goto out;
    if ((t = attr_is(tcp, s_closed, Py_False)) <= 0) { rc = t; goto out; }
    if ((window = h_pair(tcp, s_window, &rc)) == NULL) goto out;
    if ((bufs = h_pair(session, s_buf, &rc)) == NULL || (left = h_pair(session, s_body_left, &rc)) == NULL
        || (hff = h_pair(session, s_head_first_frame, &rc)) == NULL || (hlast = h_pair(session, s_head_last, &rc)) == NULL)
        goto out;
    rc = -1;
    PyObject *b = PyList_GET_ITEM(bufs, dir);
    if (!PyByteArray_CheckExact(b)) { rc = 0; goto out; }
    Py_ssize_t lb = PyByteArray_GET_SIZE(b);       /* a head's first bytes, buffered from earlier segments */
    if (lb && bl >= 0) { rc = 0; goto out; }
    if ((t = attr_empty(session, s_events)) <= 0) { rc = t; goto out; }
    if (h_modes(f) < 0) goto out;
    exs = get_attr(session, s_exchanges);
    if (exs == NULL) goto out;
    if (!PyList_CheckExact(exs)) { rc = 0; goto out; }
    Py_ssize_t n_ex = PyList_GET_SIZE(exs);
    /* Pipeline.feed would forget a connection this segment leaves `ignored` (client IGNORE, no exchange) */
    if (dir == 1 && n_ex == 0 && PyList_GET_ITEM(mode, 0) == g_ignore) { rc = 0; goto out; }
    pending = get_attr(session, s_pending);
    if (pending == NULL) goto out;
    if (strcmp(Py_TYPE(pending)->tp_name, "collections.deque") != 0) { rc = 0; goto out; }
    Py_ssize_t np = PySequence_Size(pending);
    if (np < 0) goto out;
    if ((lim = get_attr(session, s_limits)) == NULL) goto out;
    if (get_ll(session, s_plain_requests, &pr) < 0 || get_ll(lim, s_head_bytes, &hb) < 0
        || get_ll(half, s_next, &nx) < 0 || get_ll(half, s_delivered, &dl) < 0)
        goto overflow;
    if (kr) {
        recent = get_attr(half, s_recent);
        rframes = recent ? get_attr(half, s_recent_frames) : NULL;
        if (rframes == NULL) goto out;
        if (!PyByteArray_CheckExact(recent) || !PyList_CheckExact(rframes)) { rc = 0; goto out; }
        if (get_ll(half, s_recent_start, &rs) < 0) goto overflow;
    }
    if (pr < 0 || pr > (1LL << 60) || nx > (1LL << 62) || dl > (1LL << 62) || lb > hb) { rc = 0; goto out; }
    /* the bytes as the session reads them: the buffered head's start, then the segment's. Joined
     * only when the buffered head ends in this segment (once per head): a head arriving a byte at a
     * time is appended, as Python's `buf += data`, not copied whole per segment. */
    const unsigned char *w = pay;
    int append = 0;
    if (lb) {
        const unsigned char *bb = (const unsigned char *)PyByteArray_AS_STRING(b);
        unsigned char jb[6], pre[24];
        Py_ssize_t j = lb > 3 ? lb - 3 : 0, jn = lb - j, k = paylen < 3 ? (Py_ssize_t)paylen : 3;
        memcpy(jb, bb + j, (size_t)jn);                  /* a terminator straddling the two, from lb - 3 */
        memcpy(jb + jn, pay, (size_t)k);
        if (h_end(jb, 0, jn + k) < 0 && h_end(pay, 0, (Py_ssize_t)paylen) < 0) {
            /* still no end: _client_heads / _server_data's first checks on the head's first bytes, then
             * _next_head buffers the segment (within head_bytes) */
            Py_ssize_t m = lb < 24 ? lb : 24, m2 = 24 - m < paylen ? 24 - m : (Py_ssize_t)paylen;
            memcpy(pre, bb, (size_t)m);
            memcpy(pre + m, pay, (size_t)m2);
            m += m2;
            if (dir == 0) {
                if (lb < 24 && !n_ex && !pr && memcmp(pre, H2_PREFACE, (size_t)m) == 0) { rc = 0; goto out; }
                if (lb < 24 && !h_request(pre, m)) { rc = 0; goto out; }
            } else if (lb < 16 && !h_response(pre, m)) { rc = 0; goto out; }
            if (lb + paylen > hb) { rc = 0; goto out; }
            append = 1;
        } else {
            if ((wbuf = PyMem_Malloc((size_t)(lb + paylen))) == NULL) { PyErr_NoMemory(); goto out; }
            memcpy(wbuf, bb, (size_t)lb);
            memcpy(wbuf + lb, pay, (size_t)paylen);
            w = wbuf;
        }
    }

    /* -- what the session would make of the bytes (no writes yet) -- */
    Py_ssize_t n = (Py_ssize_t)paylen + lb, pos = append ? n : bl >= 0 ? (Py_ssize_t)bl : 0, part = -1;
    long long skip_cnt = 0, gen_cnt = 0, new_left = -1;
    Py_ssize_t pops = 0;
    int skipped = 0, first_frame = 0;
    if (pos < n && !lb && n - pos > 1024) {
        if (dir == 0 && (pr || n_ex)) {                         /* _skip_plain_heads: framing.plain_requests */
            Py_ssize_t off = pos;
            while (off < n) {
                Py_ssize_t e = h_end(w, off, n);
                if (e < 0 || e - off > hb) break;
                const unsigned char *raw = w + off;
                if (!h_request(raw, e - off) || h_upgrade(raw, e - off)) break;
                long long ql = h_quick(raw, e - off, -1);
                if (ql < 0 || ql > n - e) break;
                skip_cnt++;
                off = e + (Py_ssize_t)ql;
            }
            if (off > pos) { skipped = 1; pos = off; }
        } else if (dir == 1 && (t = h_pending_none(pending, np, 0)) != 0) {   /* _skip_plain_responses */
            if (t < 0) goto out;
            Py_ssize_t off = pos;
            while (off < n && (t = h_pending_none(pending, np, pops)) > 0) {
                Py_ssize_t e = h_end(w, off, n);
                if (e < 0 || e - off > hb) break;
                const unsigned char *raw = w + off;
                int st = h_status(raw, e - off);
                if (st < 0 || h_upgrade(raw, e - off)) break;
                long long ql = h_quick(raw, e - off, st);
                if (ql < 0 || ql > n - e) break;
                if (!(st >= 100 && st < 200)) pops++;
                off = e + (Py_ssize_t)ql;
            }
            if (t < 0) goto out;
            if (off > pos) { skipped = 1; pos = off; }
        }
    }
    /* _client_heads' / _server_data's loop: `held` bytes of the head were buffered before (the first only) */
    for (Py_ssize_t held = lb; pos < n; held = 0) {
        const unsigned char *p = w + pos;
        Py_ssize_t rem = n - pos;
        if (dir == 0) {
            if (held < 24 && !n_ex && !(pr + skip_cnt + gen_cnt) && memcmp(p, H2_PREFACE, rem < 24 ? rem : 24) == 0) {
                rc = 0; goto out;                               /* could be HTTP/2's preface */
            }
            if (held < 24 && !h_request(p, rem)) { rc = 0; goto out; }
        } else if (held < 16 && !h_response(p, rem)) { rc = 0; goto out; }
        /* _next_head */
        if (!held) first_frame = 1;
        Py_ssize_t e = h_end(w, pos + (held > 3 ? held - 3 : 0), n);
        if (e < 0) {
            if (rem > hb) { rc = 0; goto out; }                 /* the head_bytes cut: full path */
            part = pos;                                         /* buffered until its end arrives */
            break;
        }
        if (e - pos > hb || h_upgrade(p, e - pos)) { rc = 0; goto out; }
        long long ql;
        if (dir == 0) {
            ql = h_quick(p, e - pos, -1);
        } else {
            if ((t = h_pending_none(pending, np, pops)) <= 0) { rc = t; goto out; }
            int st = h_status(p, e - pos);
            if (st < 0) { rc = 0; goto out; }
            ql = h_quick(p, e - pos, st);
            if (!(st >= 100 && st < 200)) pops++;
        }
        if (ql < 0) { rc = 0; goto out; }
        gen_cnt++;
        if (ql > n - e) { new_left = ql - (n - e); pos = n; break; }
        pos = e + (Py_ssize_t)ql;
    }

    /* -- everything checked: the full path's writes -- */
    PyObject *x;
    if (kr) {                                                   /* HalfStream._deliver's memory */
        x = Py_BuildValue("(LL)", nx, no);
        if (x == NULL || PyList_Append(rframes, x) < 0) { Py_XDECREF(x); goto out; }
        Py_DECREF(x);
        if (PyList_GET_SIZE(rframes) > 64 && PyList_SetSlice(rframes, 0, 32, NULL) < 0) goto out;
        Py_ssize_t old = PyByteArray_GET_SIZE(recent);
        if (PyByteArray_Resize(recent, old + (Py_ssize_t)paylen) < 0) goto out;
        memcpy(PyByteArray_AS_STRING(recent) + old, pay, (size_t)paylen);
        if (old + (Py_ssize_t)paylen > RECENT) {
            Py_ssize_t drop = old + (Py_ssize_t)paylen - RECENT;
            if (PySequence_DelSlice(recent, 0, drop) < 0 || set_ll(half, s_recent_start, rs + drop) < 0) goto out;
        }
    }
    if (set_ll(half, s_next, nx + paylen) < 0 || set_ll(half, s_delivered, dl + paylen) < 0) goto out;
    if ((x = PyLong_FromUnsignedLong(win)) == NULL || PyList_SetItem(window, dir, x) < 0) goto out;
    if (set_ll(conn, s_last_frame, no) < 0 || set_ll(conn, s_last_ts, ts) < 0) goto out;
    if (bl >= 0) {                                              /* _body_bytes: the body ended here */
        if ((x = PyLong_FromLong(0)) == NULL || PyList_SetItem(left, dir, x) < 0) goto out;
        Py_INCREF(g_head);
        PyList_SetItem(mode, dir, g_head);
    }
    if (skipped || gen_cnt || part >= 0 || append) {
        x = Py_BuildValue("(LL)", no, ts);
        if (x == NULL || PyList_SetItem(hlast, dir, x) < 0) goto out;
    }
    if (append) {                                               /* the buffered head grows */
        if (PyByteArray_Resize(b, lb + (Py_ssize_t)paylen) < 0) goto out;
        memcpy(PyByteArray_AS_STRING(b) + lb, pay, (size_t)paylen);
    } else if (lb || part >= 0) {                               /* what stays buffered: the last head's start */
        Py_ssize_t keep_n = part >= 0 ? n - part : 0;
        if (PyByteArray_Resize(b, keep_n) < 0) goto out;
        if (keep_n) memcpy(PyByteArray_AS_STRING(b), w + part, (size_t)keep_n);
    }
    if (first_frame) {
        if ((x = PyLong_FromLongLong(no)) == NULL || PyList_SetItem(hff, dir, x) < 0) goto out;
    }
    if (dir == 0 && skip_cnt + gen_cnt) {
        if (set_ll(session, s_plain_requests, pr + skip_cnt + gen_cnt) < 0) goto out;
        for (long long i = 0; i < skip_cnt + gen_cnt; i++) {
            x = PyObject_CallMethodOneArg(pending, s_append, Py_None);
            if (x == NULL) goto out;
            Py_DECREF(x);
        }
    }
    for (Py_ssize_t i = 0; i < pops; i++) {
        x = PyObject_CallMethodNoArgs(pending, s_popleft);
        if (x == NULL) goto out;
        Py_DECREF(x);
    }
    if (new_left >= 0) {                                        /* _skip_body: the last body runs on */
        if ((x = PyLong_FromLongLong(new_left)) == NULL || PyList_SetItem(left, dir, x) < 0) goto out;
        Py_INCREF(f->body);
        PyList_SetItem(mode, dir, f->body);
    }
    /* Connection.handle: retransmission memory only while heads are read */
    PyObject *want_keep = new_left >= 0 ? Py_False : Py_True;
    if (kd != want_keep) {
        Py_INCREF(want_keep);
        PyList_SetItem(keep, dir, want_keep);
        if (set_attr(half, s_keep_recent, want_keep) < 0) goto out;
    }
    rc = 1;
    goto out;
overflow:
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) { PyErr_Clear(); rc = 0; }
out:
    Py_XDECREF(keep); Py_XDECREF(tcp); Py_XDECREF(window); Py_XDECREF(bufs); Py_XDECREF(left); Py_XDECREF(exs);
    Py_XDECREF(pending); Py_XDECREF(lim); Py_XDECREF(hff); Py_XDECREF(hlast); Py_XDECREF(recent); Py_XDECREF(rframes);
    PyMem_Free(wbuf);
    return rc;
}

/* Connection.fast_lane (flow/connection.py) for a Connection exactly: Session.skippable,
 * TcpFlow.advance (HalfStream.advance), Session.skipped, then the connection's last frame/time.
 * 1: accounted, 0: the full path is needed (nothing changed), 2: ask the Python method (a shape or
 * size this does not mirror; nothing changed), -1: error. */
static int fast_lane_c(Fast *f, PyObject *conn, const unsigned char *src, unsigned sport, uint32_t seq,
                       long long paylen, long long no, long long ts, unsigned win) {
    int frames = 0, over = 0, heads = 0, heads_ok;
    long long bl = 0;
    int rc = -1, dir = 1;
    PyObject *session = NULL, *mode = NULL, *left = NULL, *tcp = NULL, *halves = NULL;
    PyObject *half = NULL, *ooo = NULL, *base = NULL;
    int side = endpoint_is(conn, s_client, src, sport);
    if (side < 0) goto out;
    if (side == 2) { rc = 2; goto out; }     /* not the shape this mirrors: Python's fast_lane decides */
    if (side) dir = 0;
    session = get_attr(conn, s_session);
    if (session == NULL) goto out;
    mode = get_attr(session, s_mode);
    if (mode == NULL) goto out;
    if (!PyList_Check(mode) || PyList_GET_SIZE(mode) != 2) { rc = 2; goto out; }
    if (f->frames_mode != NULL && f->pay != NULL && PyList_GET_ITEM(mode, dir) == f->frames_mode) {
        frames = 1;
        goto stream;
    }
    heads_ok = f->frames_mode != NULL && f->pay != NULL;    /* the heads lane: not in stream mode */
    if (heads_ok) {
        if (h_modes(f) < 0) goto out;
        if (PyList_GET_ITEM(mode, dir) == g_head) { heads = 1; bl = -1; goto stream; }
    }
    if (PyList_GET_ITEM(mode, dir) != f->body) { rc = 0; goto out; }
    left = get_attr(session, s_body_left);
    if (left == NULL) goto out;
    if (!PyList_Check(left) || PyList_GET_SIZE(left) != 2) { rc = 2; goto out; }
    bl = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(left, dir), &over);
    if (bl == -1 && PyErr_Occurred()) goto out;
    if (over < 0 || !(paylen > 0 && (over > 0 || paylen < bl))) {
        if (!(heads_ok && over == 0 && bl > 0 && paylen >= bl)) { rc = 0; goto out; }
        heads = 1;                            /* the body ends in this segment: the heads lane */
    }
stream:
    tcp = get_attr(conn, s_tcp);
    if (tcp == NULL) goto out;
    halves = get_attr(tcp, s_halves);
    if (halves == NULL) goto out;
    if (!PyTuple_Check(halves) || PyTuple_GET_SIZE(halves) != 2) { rc = 2; goto out; }
    half = PyTuple_GET_ITEM(halves, dir);
    Py_INCREF(half);
    ooo = get_attr(half, s_ooo);
    if (ooo == NULL) goto out;
    int busy = PyObject_IsTrue(ooo);
    if (busy < 0) goto out;
    if (busy) { rc = 0; goto out; }
    base = get_attr(half, s_base);
    if (base == NULL) goto out;
    if (base == Py_None) { rc = 0; goto out; }
    long long base_v = PyLong_AsLongLong(base), next_v, deliv;
    if (base_v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) { PyErr_Clear(); rc = 2; }
        goto out;
    }
    if (get_ll(half, s_next, &next_v) < 0 || get_ll(half, s_delivered, &deliv) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) { PyErr_Clear(); rc = 2; }
        goto out;
    }
    if ((uint32_t)((long long)seq - base_v) != (uint32_t)next_v) { rc = 0; goto out; }
    if (frames) {
        rc = frames_lane_c(f, conn, session, half, dir, f->pay, paylen, win, no, ts);
        goto out;
    }
    if (heads) {
        rc = heads_lane_c(f, conn, session, half, mode, dir, bl, paylen, win, no, ts);
        goto out;
    }
    if (over) { rc = 2; goto out; }           /* a body over 2^63 bytes: Python's integers */
    /* everything checked: the same writes as advance() + skipped() + the frame/time */
    if (set_ll(half, s_next, next_v + paylen) < 0 || set_ll(half, s_delivered, deliv + paylen) < 0) goto out;
    PyObject *nl = PyLong_FromLongLong(bl - paylen);
    if (nl == NULL) goto out;
    if (PyList_SetItem(left, dir, nl) < 0) goto out;      /* steals nl */
    if (set_ll(conn, s_last_frame, no) < 0 || set_ll(conn, s_last_ts, ts) < 0) goto out;
    rc = 1;
out:
    Py_XDECREF(session); Py_XDECREF(mode); Py_XDECREF(left); Py_XDECREF(tcp);
    Py_XDECREF(halves); Py_XDECREF(half); Py_XDECREF(ooo); Py_XDECREF(base);
    return rc;
}

/* Flow keys as engine/core.py flow_key() builds them: (lo ip, lo port, hi ip, hi port), wrapped as
 * (source, key) for source != 0. A small direct-mapped cache of recent keys saves the objects'
 * allocation and their bytes' hashing per packet; keys are plain values, so a cached one is
 * equal to a fresh one whatever happened to the flow table since. */
#define KC_SIZE 4096
typedef struct {
    unsigned char raw[12];
    long long source;
    PyObject *key;        /* strong reference, NULL while empty */
} KeyEnt;
static KeyEnt kcache[KC_SIZE];

static PyObject *flow_key(const unsigned char *src, unsigned sport, const unsigned char *dst, unsigned dport,
                          int fwd, PyObject *source, long long source_v) {
    unsigned char raw[12];
    const unsigned char *lo = fwd ? src : dst, *hi = fwd ? dst : src;
    unsigned lp = fwd ? sport : dport, hp = fwd ? dport : sport;
    memcpy(raw, lo, 4);
    raw[4] = (unsigned char)(lp >> 8); raw[5] = (unsigned char)lp;
    memcpy(raw + 6, hi, 4);
    raw[10] = (unsigned char)(hp >> 8); raw[11] = (unsigned char)hp;
    uint32_t h = 2166136261u;                     /* FNV-1a */
    for (int i = 0; i < 12; i++) h = (h ^ raw[i]) * 16777619u;
    h ^= (uint32_t)source_v * 2654435761u;
    KeyEnt *e = &kcache[h & (KC_SIZE - 1)];
    if (e->key != NULL && e->source == source_v && memcmp(e->raw, raw, 12) == 0) {
        Py_INCREF(e->key);
        return e->key;
    }
    PyObject *a = PyBytes_FromStringAndSize((const char *)lo, 4), *b = PyBytes_FromStringAndSize((const char *)hi, 4);
    PyObject *pa = PyLong_FromUnsignedLong(lp), *pb = PyLong_FromUnsignedLong(hp);
    PyObject *key = NULL;
    if (a && b && pa && pb) {
        key = PyTuple_Pack(4, a, pa, b, pb);
        if (key != NULL && source_v) {
            PyObject *outer = PyTuple_Pack(2, source, key);
            Py_DECREF(key);
            key = outer;
        }
    }
    Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(pa); Py_XDECREF(pb);
    if (key == NULL) return NULL;
    Py_XDECREF(e->key);
    Py_INCREF(key);
    e->key = key;
    e->source = source_v;
    memcpy(e->raw, raw, 12);
    return key;
}

/* A connection's first FIN, without payload: TcpFlow.segment records the window, then note_end
 * makes a TcpEnd("fin", by, frame, ts) that becomes the connection's end and its first entry in
 * `fins`; with no other FIN or RST seen the connection is neither closed nor does a Closed event
 * come, so neither Connection.handle nor Pipeline.feed acts (Pipeline.feed would forget an
 * ignored session: that stays the full path's). 1: accounted, 0: full path (nothing changed), -1. */
static PyObject *tcp_end_type;        /* flow/tcp.py TcpEnd */
static int fin_lane_c(PyObject *conn, const unsigned char *src, unsigned sport, unsigned win, long long no,
                      long long ts) {
    int rc = -1, t, dir;
    PyObject *tcp = NULL, *session = NULL, *fins = NULL, *window = NULL, *ign = NULL, *end = NULL;
    if (tcp_end_type == NULL) {
        PyObject *m = PyImport_ImportModule("wscap.flow.tcp");
        if (m == NULL) return -1;
        tcp_end_type = PyObject_GetAttrString(m, "TcpEnd");
        Py_DECREF(m);
        if (tcp_end_type == NULL) return -1;
    }
    if ((t = endpoint_is(conn, s_client, src, sport)) < 0 || t == 2) return t < 0 ? -1 : 0;
    dir = t ? 0 : 1;
    tcp = get_attr(conn, s_tcp);
    if (tcp == NULL) goto out;
    if ((t = attr_is(tcp, s_closed, Py_False)) <= 0 || (t = attr_is(tcp, s_end, Py_None)) <= 0) { rc = t; goto out; }
    fins = get_attr(tcp, s_fins);
    if (fins == NULL) goto out;
    if (!PyList_CheckExact(fins) || PyList_GET_SIZE(fins) != 0) { rc = 0; goto out; }
    window = get_attr(tcp, s_window);
    if (window == NULL) goto out;
    if (!PyList_Check(window) || PyList_GET_SIZE(window) != 2) { rc = 0; goto out; }
    session = get_attr(conn, s_session);
    if (session == NULL) goto out;
    ign = get_attr(session, s_ignored);
    if (ign == NULL) goto out;
    if (ign != Py_False) { rc = 0; goto out; }
    end = PyObject_CallFunction(tcp_end_type, "sOLL", "fin", dir == 0 ? s_client : s_server, no, ts);
    if (end == NULL) goto out;
    /* everything checked: Connection.segment's frame/time, the window, then note_end's writes */
    if (set_ll(conn, s_last_frame, no) < 0 || set_ll(conn, s_last_ts, ts) < 0) goto out;
    PyObject *w = PyLong_FromUnsignedLong(win);
    if (w == NULL || PyList_SetItem(window, dir, w) < 0) goto out;
    if (set_attr(tcp, s_end, end) < 0 || PyList_Append(fins, end) < 0) goto out;
    rc = 1;
out:
    Py_XDECREF(tcp); Py_XDECREF(session); Py_XDECREF(fins); Py_XDECREF(window);
    Py_XDECREF(ign); Py_XDECREF(end);
    return rc;
}

/* The record filter. 0: accounted for (skip), 1: full path, -1: error. Mirrors core.py `want`. */
static int decide(Fast *f, const unsigned char *rec, Py_ssize_t caplen, long long no, long long ts) {
    Py_ssize_t l3 = f->l3;
    if (f->big) return ask_want(f, rec - (const unsigned char *)PyBytes_AS_STRING(f->bufobj), caplen, no, ts);
    if (caplen < l3 + 40) return 1;
    const unsigned char *ip = rec + l3, *tcp = ip + 20;
    unsigned et = be16(rec + f->eoff);
    unsigned vi = ip[0], totlen = be16(ip + 2), frag = be16(ip + 6), proto = ip[9];
    unsigned flags = tcp[13], offx = tcp[12], win = be16(tcp + 14);
    /* FIN 1, SYN 2, RST 4. A SYN may start or revive a connection: the full path's, except a
     * SYN-ACK, which may take its own lane below (analyze only). FIN and RST are decided per flow. */
    unsigned special = flags & 7;
    int synack = special == 2 && (flags & 0x10) && f->frames_mode != NULL;
    if (et != 0x0800 || vi != 0x45 || proto != 6 || (frag & 0x3FFF)) return 1;
    const unsigned char *src = ip + 12, *dst = ip + 16;
    unsigned sport = be16(tcp), dport = be16(tcp + 2);
    if (f->shard >= 0 && (int)((sport ^ dport) & 1) != f->shard) {
        /* the other process's flow (engine/shards.py): counted and timed as the decoder would
         * (a whole IPv4/TCP packet: one packet, one TCP packet), then left to it. Anything the
         * decoder could say more of (truncated, odd lengths), and DNS, which both read: full path,
         * where Pipeline.feed asks the same question after decoding. */
        unsigned hl = (offx >> 4) << 2;
        if (hl < 20 || totlen < 20 + hl || caplen < l3 + (Py_ssize_t)totlen || sport == 53 || dport == 53
            || memcmp(src, RESOLVER, 4) == 0 || memcmp(dst, RESOLVER, 4) == 0)
            return 1;
        if (ts > f->now) { f->now = ts; f->now_dirty = 1; }
        if (ts > f->clk) { f->clk = ts; f->clk_dirty = 1; }
        f->skipped++;
        return 0;
    }
    if ((special & 2) && !synack) return 1;
    uint32_t seq = be32(tcp + 4);
    int c = memcmp(src, dst, 4);
    int fwd = c < 0 || (c == 0 && sport < dport);
    PyObject *key = flow_key(src, sport, dst, dport, fwd, f->source, f->source_v);
    PyObject *bsrc = NULL, *psport = NULL;
    int rc = -1;
    if (key == NULL) goto done;
    PyObject *conn = PyDict_GetItemWithError(f->conns, key);
    if (conn == NULL) {
        if (PyErr_Occurred()) goto done;
        /* unseen: the full path creates it, except for a segment without SYN and without payload
         * (the last ACK, FIN or RST after both FINs retired the flow): Pipeline._new_connection
         * starts nothing for it. DNS over TCP (port 53, Docker's resolver) is evidence: full path. */
        unsigned hl = (offx >> 4) << 2;
        if (synack || hl < 20 || totlen != 20 + hl || caplen < l3 + (Py_ssize_t)totlen || sport == 53 || dport == 53
            || memcmp(src, RESOLVER, 4) == 0 || memcmp(dst, RESOLVER, 4) == 0) {
            rc = 1;
            goto done;
        }
        if (ts > f->now) { f->now = ts; f->now_dirty = 1; }
        if (ts > f->clk) { f->clk = ts; f->clk_dirty = 1; }
        f->skipped++;
        rc = 0;
        goto done;
    }
    Py_INCREF(conn);
    if (ts > f->now) { f->now = ts; f->now_dirty = 1; }
    if (ts > f->clk) { f->clk = ts; f->clk_dirty = 1; }
    if (conn == Py_None && (special & 5)) {
        /* a FIN or RST of a known-uninteresting flow ends it: Pipeline.feed forgets the key (a
         * later flow on the same 4-tuple is judged afresh) */
        if (PyDict_DelItem(f->conns, key) < 0) { Py_DECREF(conn); goto done; }
    }
    if (conn != Py_None) {
        if (totlen < 40) { rc = 1; Py_DECREF(conn); goto done; }
        if (win == 0) { rc = 1; Py_DECREF(conn); goto done; }
        PyObject *tcpflow = get_attr(conn, s_tcp);
        if (tcpflow == NULL) { Py_DECREF(conn); goto done; }
        PyObject *zw = get_attr(tcpflow, s_zw);
        Py_DECREF(tcpflow);
        if (zw == NULL) { Py_DECREF(conn); goto done; }
        int zwt = PyObject_IsTrue(zw);
        Py_DECREF(zw);
        if (zwt) { rc = zwt < 0 ? -1 : 1; Py_DECREF(conn); goto done; }
        long paylen = (long)totlen - 20 - (long)((offx >> 4) << 2);
        /* the payload as the decoder finds it (a data offset under 5 words, or an IP length past the
         * wire length, is the decoder's business: no payload for the lanes that read or judge it) */
        f->pay = (offx >> 4) >= 5 && (long long)totlen <= f->wirelen - l3 ? tcp + ((offx >> 4) << 2) : NULL;
        int lane;
        if (special) {
            /* a SYN-ACK, or a first FIN (analyze only); any other FIN or RST: full path */
            lane = 0;
            if (paylen == 0 && f->pay != NULL && Py_TYPE(conn) == (PyTypeObject *)f->conn_type
                && f->frames_mode != NULL) {
                if (synack) lane = synack_lane_c(conn, src, sport, seq, no, ts);
                else if (special == 1) lane = fin_lane_c(conn, src, sport, win, no, ts);
            }
            Py_DECREF(conn);
            if (lane <= 0) { rc = lane < 0 ? -1 : 1; goto done; }
            f->skipped++;
            rc = 0;
            goto done;
        }
        PyObject *pno = PyLong_FromLongLong(no), *pts = PyLong_FromLongLong(ts);
        if (pno == NULL || pts == NULL) { Py_XDECREF(pno); Py_XDECREF(pts); Py_DECREF(conn); goto done; }
        if (paylen <= 0) {
            /* a pure ACK of a tracked connection: Connection.touch(no, ts) */
            if (set_attr(conn, s_last_frame, pno) < 0 || set_attr(conn, s_last_ts, pts) < 0) {
                Py_DECREF(pno); Py_DECREF(pts); Py_DECREF(conn); goto done;
            }
        } else if (caplen < l3 + (Py_ssize_t)totlen) {
            Py_DECREF(pno); Py_DECREF(pts); Py_DECREF(conn);
            rc = 1;
            goto done;
        } else if (Py_TYPE(conn) == (PyTypeObject *)f->conn_type
                   && (lane = fast_lane_c(f, conn, src, sport, seq, paylen, no, ts, win)) != 2) {
            if (lane <= 0) { Py_DECREF(pno); Py_DECREF(pts); Py_DECREF(conn); rc = lane < 0 ? -1 : 1; goto done; }
        } else {
            PyObject *pseq = PyLong_FromUnsignedLong(seq), *ppay = PyLong_FromLong(paylen);
            bsrc = PyBytes_FromStringAndSize((const char *)src, 4);
            psport = PyLong_FromUnsignedLong(sport);
            PyObject *r = (pseq && ppay && bsrc && psport) ? PyObject_CallMethodObjArgs(conn, s_fast_lane, bsrc, psport, pseq, ppay,
                                                                     pno, pts, NULL) : NULL;
            Py_XDECREF(pseq); Py_XDECREF(ppay);
            if (r == NULL) { Py_DECREF(pno); Py_DECREF(pts); Py_DECREF(conn); goto done; }
            int ok = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (ok <= 0) { Py_DECREF(pno); Py_DECREF(pts); Py_DECREF(conn); rc = ok < 0 ? -1 : 1; goto done; }
        }
        Py_DECREF(pno);
        Py_DECREF(pts);
    }
    Py_DECREF(conn);
    f->skipped++;
    rc = 0;
done:
    Py_XDECREF(bsrc); Py_XDECREF(psport);
    Py_XDECREF(key);
    return rc;
}

/* first/last timestamps: the caller's objects (any int, or None) unless this call set them. */
static PyObject *opt_ll(PyObject *orig, long long v, int set) {
    if (!set) { Py_INCREF(orig); return orig; }
    return PyLong_FromLongLong(v);
}

/* What both scans share: a Fast over the call's buffer (bytes only: `want` slices it), the first
 * and last record times, and the end of a call (the buffer released, the pipeline's state written
 * back, the times as the caller's objects unless this call set them). */
typedef struct {
    long long first, last;
    int has_first, set_first, set_last;
} Times;

static inline void times_note(Times *tm, long long t) {
    if (!tm->has_first) { tm->first = t; tm->has_first = tm->set_first = 1; }
    tm->last = t;
    tm->set_last = 1;
}

static int scan_begin(Fast *f, Py_buffer *view, Times *tm, PyObject *pfirst) {
    memset(f, 0, sizeof *f);
    memset(tm, 0, sizeof *tm);
    tm->has_first = pfirst != Py_None;
    f->bufobj = view->obj;
    if (!PyBytes_Check(view->obj)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "buf: bytes expected");
        return -1;
    }
    return 0;
}

/* 0 with *pf, *pl set (new references), or -1. */
static int scan_finish(Fast *f, Py_buffer *view, int err, Times *tm, PyObject *pfirst, PyObject *plast,
                       PyObject **pf, PyObject **pl) {
    PyBuffer_Release(view);
    if (flush_state(f) < 0 || err) return -1;
    *pf = opt_ll(pfirst, tm->first, tm->set_first);
    *pl = opt_ll(plast, tm->last, tm->set_last);
    if (*pf == NULL || *pl == NULL) { Py_XDECREF(*pf); Py_XDECREF(*pl); return -1; }
    return 0;
}

/* pcap_scan(buf, pos, big, ts_mult, spec, no, nbytes, first, last, linktype, source)
 *   -> (status, pos, no, nbytes, first, last, empty, frame): frame the RawFrame of the record at
 *   which it stopped (ST_FRAME), else None
 * spec: the pipeline's fast spec, or None to hand every record with bytes back (no filter). */
/* The RawFrame (wscap/model/raw.py) of a record that needs the full path, made here: a tuple of
 * its 7 fields, as RawFrame(no, ts, linktype, data, wirelen, 0, source) makes it (checked once:
 * a tuple subclass with those fields), else by that call. */
static PyObject *raw_frame_type;
static int raw_frame_plain = -1;

static PyObject *new_raw_frame(long long no, long long ts, PyObject *linktype, const unsigned char *data,
                               Py_ssize_t caplen, long long wirelen, PyObject *source) {
    if (raw_frame_type == NULL) {
        PyObject *m = PyImport_ImportModule("wscap.model.raw");
        if (m == NULL) return NULL;
        raw_frame_type = PyObject_GetAttrString(m, "RawFrame");
        Py_DECREF(m);
        if (raw_frame_type == NULL) return NULL;
    }
    if (raw_frame_plain < 0) {
        PyObject *fields = PyObject_GetAttrString(raw_frame_type, "_fields");
        PyObject *want = Py_BuildValue("(sssssss)", "no", "ts_ns", "linktype", "data", "wirelen", "iface", "source");
        int eq = fields != NULL && want != NULL ? PyObject_RichCompareBool(fields, want, Py_EQ) : -1;
        Py_XDECREF(fields);
        Py_XDECREF(want);
        if (eq < 0) PyErr_Clear();
        raw_frame_plain = eq > 0 && PyType_Check(raw_frame_type)
                          && PyType_IsSubtype((PyTypeObject *)raw_frame_type, &PyTuple_Type);
    }
    PyObject *vals[7] = {PyLong_FromLongLong(no), PyLong_FromLongLong(ts), linktype,
                         PyBytes_FromStringAndSize((const char *)data, caplen), PyLong_FromLongLong(wirelen),
                         NULL, source};
    vals[5] = PyLong_FromLong(0);
    PyObject *o = NULL;
    if (vals[0] && vals[1] && vals[3] && vals[4] && vals[5]) {
        if (raw_frame_plain) {
            PyTypeObject *tp = (PyTypeObject *)raw_frame_type;
            o = tp->tp_alloc(tp, 7);
            for (int i = 0; o != NULL && i < 7; i++) {
                Py_INCREF(vals[i]);
                PyTuple_SET_ITEM(o, i, vals[i]);
            }
        } else {
            o = PyObject_CallFunctionObjArgs(raw_frame_type, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5],
                                             vals[6], NULL);
        }
    }
    Py_XDECREF(vals[0]); Py_XDECREF(vals[1]); Py_XDECREF(vals[3]); Py_XDECREF(vals[4]); Py_XDECREF(vals[5]);
    return o;
}

/* wire/decode.py Decoder.decode for its commonest frame, in C: untagged Ethernet, IPv4 (not a
 * fragment, header length >= 20) carrying a TCP header of 20 bytes or more, all captured.
 * decode_tcp4(frame, stats, Segment) -> the Segment Decoder.decode returns, with stats.packets,
 * stats.tcp (and stats.truncated for a payload cut by the snap length) counted as it counts them;
 * None for any other frame, with nothing counted: Decoder.decode reads it. */
static PyObject *segment_type_seen;
static int segment_plain = -1;
static PyObject *s_truncated;

static int bump(PyObject *o, PyObject *name) {
    PyObject *v = get_attr(o, name);
    if (v == NULL) return -1;
    PyObject *one = PyLong_FromLong(1);
    PyObject *nv = one ? PyNumber_Add(v, one) : NULL;
    Py_DECREF(v);
    Py_XDECREF(one);
    if (nv == NULL) return -1;
    int r = set_attr(o, name, nv);
    Py_DECREF(nv);
    return r;
}

static PyObject *decode_tcp4(PyObject *self, PyObject *args) {
    PyObject *frame, *stats, *segtype;
    if (!PyArg_ParseTuple(args, "OOO", &frame, &stats, &segtype)) return NULL;
    if (segment_type_seen != segtype || segment_plain < 0) {
        PyObject *fields = PyObject_GetAttrString(segtype, "_fields");
        PyObject *want = Py_BuildValue("(ssssssssssssss)", "frame", "ts_ns", "src", "sport", "dst", "dport", "seq",
                                       "ack", "flags", "payload", "paylen", "source", "window", "tunnel");
        int eq = fields != NULL && want != NULL ? PyObject_RichCompareBool(fields, want, Py_EQ) : -1;
        Py_XDECREF(fields);
        Py_XDECREF(want);
        if (eq < 0) PyErr_Clear();
        segment_type_seen = segtype;
        segment_plain = eq > 0 && PyType_Check(segtype) && PyType_IsSubtype((PyTypeObject *)segtype, &PyTuple_Type);
    }
    if (!segment_plain || !PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 7) Py_RETURN_NONE;
    PyObject *lt = PyTuple_GET_ITEM(frame, 2), *data = PyTuple_GET_ITEM(frame, 3);
    if (!PyLong_Check(lt) || PyLong_AsLong(lt) != 1 || !PyBytes_CheckExact(data)) {
        if (PyErr_Occurred()) PyErr_Clear();
        Py_RETURN_NONE;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n < 34 || be16(d + 12) != 0x0800 || (d[14] >> 4) != 4) Py_RETURN_NONE;
    const unsigned char *ip = d + 14;
    Py_ssize_t ihl = (ip[0] & 0x0F) * 4;
    unsigned total = be16(ip + 2), frag = be16(ip + 6), proto = ip[9];
    if (ihl < 20 || proto != 6 || (frag & 0x3FFF)) Py_RETURN_NONE;
    long long wirelen = PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 4));
    if (wirelen == -1 && PyErr_Occurred()) { PyErr_Clear(); Py_RETURN_NONE; }
    long long tot = total;
    if (tot == 0 || tot > wirelen - 14) tot = wirelen - 14;     /* TSO/GSO: the frame's length is the truth */
    Py_ssize_t p = 14 + ihl;
    if (n < p + 20) Py_RETURN_NONE;                             /* truncated: Python counts it */
    const unsigned char *t = d + p;
    Py_ssize_t hl = (t[12] >> 4) * 4;
    if (hl < 20) Py_RETURN_NONE;
    long long end = 14 + tot, start = p + hl;
    long long paylen = end - start > 0 ? end - start : 0;
    /* data[start:end], as Python slices it */
    Py_ssize_t a = start < n ? (Py_ssize_t)start : n, b = end < 0 ? 0 : (end < n ? (Py_ssize_t)end : n);
    if (b < a) b = a;
    PyObject *vals[14] = {PyTuple_GET_ITEM(frame, 0), PyTuple_GET_ITEM(frame, 1),
                          PyBytes_FromStringAndSize((const char *)ip + 12, 4), PyLong_FromLong(be16(t)),
                          PyBytes_FromStringAndSize((const char *)ip + 16, 4), PyLong_FromLong(be16(t + 2)),
                          PyLong_FromUnsignedLong(be32(t + 4)), PyLong_FromUnsignedLong(be32(t + 8)),
                          PyLong_FromLong(t[13]), PyBytes_FromStringAndSize((const char *)d + a, b - a),
                          PyLong_FromLongLong(paylen), PyTuple_GET_ITEM(frame, 6), PyLong_FromLong(be16(t + 14)),
                          Py_None};
    PyObject *seg = NULL;
    int ok = 1;
    for (int i = 2; i < 13; i++) if (vals[i] == NULL) ok = 0;
    if (ok && bump(stats, s_packets) == 0 && bump(stats, s_tcp) == 0
        && ((long long)(b - a) >= paylen || bump(stats, s_truncated) == 0)) {
        PyTypeObject *tp = (PyTypeObject *)segtype;
        seg = tp->tp_alloc(tp, 14);
        for (int i = 0; seg != NULL && i < 14; i++) {
            Py_INCREF(vals[i]);
            PyTuple_SET_ITEM(seg, i, vals[i]);
        }
    }
    for (int i = 2; i < 11; i++) Py_XDECREF(vals[i]);
    Py_XDECREF(vals[12]);
    return seg;
}

/* make(cls, *fields): cls(*fields) for the model's frozen values (wscap/model/value.py
 * pickled_by_fields: every field an __init__ argument, no __post_init__), written at their slots:
 * a frozen dataclass's __init__ sets each field through object.__setattr__, and the codec makes
 * several per leg. Used when every name of cls.__match_args__ is a plain object slot, cls has the
 * default __new__ and no __post_init__, and all the fields are given (checked once per class);
 * anything else is a call of cls. */
#define MAKE_CLASSES 32
#define MAKE_FIELDS 32
typedef struct {
    PyObject *cls;                /* strong */
    unsigned int tag;
    Py_ssize_t n;                 /* -1: not plain */
    Py_ssize_t off[MAKE_FIELDS];
} MakeEnt;
static MakeEnt make_ents[MAKE_CLASSES];

static MakeEnt *make_ent(PyObject *cls) {
    PyTypeObject *tp = (PyTypeObject *)cls;
    for (int i = 0; i < MAKE_CLASSES; i++) {
        MakeEnt *e = &make_ents[i];
        if (e->cls == cls && e->tag == tp->tp_version_tag && e->tag != 0) return e;
    }
    MakeEnt *e = NULL;
    for (int i = 0; i < MAKE_CLASSES && e == NULL; i++)
        if (make_ents[i].cls == NULL || make_ents[i].cls == cls) e = &make_ents[i];
    if (e == NULL) return NULL;   /* table full: calls */
    Py_ssize_t n = -1;
    PyObject *args = PyObject_GetAttrString(cls, "__match_args__");
    if (args == NULL) PyErr_Clear();
    int post = PyObject_HasAttrString(cls, "__post_init__");
    if (args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) <= MAKE_FIELDS && !post
        && tp->tp_new == PyBaseObject_Type.tp_new && tp->tp_alloc != NULL) {
        n = PyTuple_GET_SIZE(args);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *d = _PyType_Lookup(tp, PyTuple_GET_ITEM(args, i));
            if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type
                || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) { n = -1; break; }
            e->off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        }
    }
    Py_XDECREF(args);
    if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) || tp->tp_version_tag == 0) return NULL;
    Py_INCREF(cls);
    Py_XSETREF(e->cls, cls);
    e->tag = tp->tp_version_tag;
    e->n = n;
    return e;
}

static PyObject *make(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "make(cls, *fields)");
        return NULL;
    }
    PyObject *cls = args[0];
    MakeEnt *e = make_ent(cls);
    if (e == NULL || e->n != nargs - 1) return PyObject_Vectorcall(cls, args + 1, (size_t)(nargs - 1), NULL);
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *o = tp->tp_alloc(tp, 0);
    if (o == NULL) return NULL;
    for (Py_ssize_t i = 0; i < e->n; i++) {
        Py_INCREF(args[i + 1]);
        *(PyObject **)((char *)o + e->off[i]) = args[i + 1];
    }
    return o;
}

static PyObject *pcap_scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    int big;
    long long ts_mult, no, nbytes;
    PyObject *spec, *pfirst, *plast, *linktype, *source;
    if (!PyArg_ParseTuple(args, "y*npLOLLOOOO", &view, &pos, &big, &ts_mult, &spec, &no, &nbytes, &pfirst, &plast,
                          &linktype, &source))
        return NULL;
    Fast f;
    Times tm;
    if (scan_begin(&f, &view, &tm, pfirst) < 0) return NULL;
    if (spec != Py_None && load_spec(&f, spec) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t blen = view.len;
    long long empty = 0;
    int status = ST_MORE;
    Py_ssize_t start = 0, caplen = 0;
    long long wirelen = 0, ts = 0;
    int err = 0;
    while (blen - pos >= 16) {
        const unsigned char *h = buf + pos;
        uint32_t sec = rd32(h, big), frac = rd32(h + 4, big), cl = rd32(h + 8, big), wl = rd32(h + 12, big);
        if (cl > MAX_RECORD) { status = ST_SLOW; break; }
        Py_ssize_t st = pos + 16, end = st + (Py_ssize_t)cl;
        if (end > blen) break;
        pos = end;
        no++;
        long long t = (long long)sec * 1000000000LL + (long long)frac * ts_mult;
        times_note(&tm, t);
        nbytes += cl;
        if (!cl) { empty++; continue; }
        if (spec != Py_None) {
            f.wirelen = wl;
            int d = decide(&f, buf + st, (Py_ssize_t)cl, no, t);
            if (d < 0) { err = 1; break; }
            if (d == 0) continue;
        }
        status = ST_FRAME;
        start = st; caplen = cl; wirelen = wl; ts = t;
        break;
    }
    PyObject *frame = NULL;
    if (status == ST_FRAME && !err) {
        /* made while the buffer is held; on failure the state still goes back, then the error */
        frame = new_raw_frame(no, ts, linktype, buf + start, caplen, wirelen, source);
        if (frame == NULL) {
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            PyObject *pf, *pl;
            if (scan_finish(&f, &view, 0, &tm, pfirst, plast, &pf, &pl) == 0) {
                Py_DECREF(pf);
                Py_DECREF(pl);
            }
            PyErr_Restore(et, ev, tb);
            return NULL;
        }
    }
    PyObject *pf, *pl;
    if (scan_finish(&f, &view, err, &tm, pfirst, plast, &pf, &pl) < 0) {
        Py_XDECREF(frame);
        return NULL;
    }
    if (frame == NULL) {
        Py_INCREF(Py_None);
        frame = Py_None;
    }
    return Py_BuildValue("(inLLNNLN)", status, pos, no, nbytes, pf, pl, empty, frame);
}

/* One pcapng interface as pcapio.py hands it over: (linktype, mul, div, offset_ns, spec) where spec
 * is the fast spec, None (no filter: every packet is a frame) or False (a Python filter: slow). */
typedef struct {
    long long mul, div, offset;
    int usable;           /* 0: every packet of it goes to Python */
    PyObject *spec;       /* borrowed; Py_None for no filter */
} IfaceC;

/* pcapng_scan(buf, pos, big, ifaces, no, nbytes, first, last)
 *   -> (status, pos, no, nbytes, first, last, empty, blocks, start, caplen, wirelen, ts, ifid)
 * Reads Enhanced Packet Blocks only; anything else (a section or interface block, damage, an
 * interface it cannot time) stops it with ST_SLOW at that block. */
static PyObject *pcapng_scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    int big;
    long long no, nbytes;
    PyObject *ifaces, *pfirst, *plast;
    if (!PyArg_ParseTuple(args, "y*npO!LLOO", &view, &pos, &big, &PyTuple_Type, &ifaces, &no, &nbytes, &pfirst, &plast))
        return NULL;
    Fast f;
    Times tm;
    if (scan_begin(&f, &view, &tm, pfirst) < 0) return NULL;
    Py_ssize_t nif = PyTuple_GET_SIZE(ifaces);
    IfaceC ifs_small[8];
    IfaceC *ifs = nif <= 8 ? ifs_small : PyMem_Malloc(sizeof(IfaceC) * (size_t)nif);
    if (ifs == NULL) { PyBuffer_Release(&view); return PyErr_NoMemory(); }
    for (Py_ssize_t i = 0; i < nif; i++) {
        PyObject *t = PyTuple_GET_ITEM(ifaces, i);
        IfaceC *c = &ifs[i];
        c->usable = 0;
        c->spec = Py_None;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 5) continue;
        int o1, o2, o3;
        c->mul = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(t, 1), &o1);
        c->div = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(t, 2), &o2);
        c->offset = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(t, 3), &o3);
        if (PyErr_Occurred()) { PyErr_Clear(); continue; }
        PyObject *sp = PyTuple_GET_ITEM(t, 4);
        if (o1 || o2 || o3 || c->mul <= 0 || c->div <= 0 || sp == Py_False) continue;
        c->spec = sp;
        c->usable = 1;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    long long empty = 0, blocks = 0;
    int status = ST_MORE, err = 0;
    Py_ssize_t start = 0, caplen = 0;
    long long wirelen = 0, ts = 0, ifid_out = 0;
    while (n - pos >= 8) {
        const unsigned char *h = buf + pos;
        if (memcmp(h, "\x0a\x0d\x0d\x0a", 4) == 0) { status = ST_SLOW; break; }
        uint32_t btype = rd32(h, big), bl = rd32(h + 4, big);
        if (btype != 6 || bl < 32 || bl % 4 || bl > MAX_RECORD + 64) {
            /* not an EPB, or one Python has to judge (damage, too short) */
            if (btype != 6 && bl >= 12 && bl % 4 == 0 && bl <= MAX_RECORD + 64 && btype != 1 && btype != 2
                && btype != 3 && btype != 4) {
                /* statistics, custom blocks...: skipped, counted as blocks (pcapio.py does the same) */
                if (n - pos < (Py_ssize_t)bl) break;
                pos += bl;
                blocks++;
                continue;
            }
            status = ST_SLOW;
            break;
        }
        if (n - pos < (Py_ssize_t)bl) break;
        uint32_t ifid = rd32(h + 8, big), hi = rd32(h + 12, big), lo = rd32(h + 16, big);
        uint32_t cl = rd32(h + 20, big), wl = rd32(h + 24, big);
        if ((Py_ssize_t)ifid >= nif || !ifs[ifid].usable || cl > bl - 32) { status = ST_SLOW; break; }
        IfaceC *c = &ifs[ifid];
        unsigned __int128 raw = ((unsigned __int128)hi << 32) | lo;
        __int128 tv = (__int128)(raw * (unsigned __int128)c->mul / (unsigned __int128)c->div) + c->offset;
        if (tv > (__int128)INT64_MAX || tv < (__int128)INT64_MIN) { status = ST_SLOW; break; }
        long long t = (long long)tv;
        Py_ssize_t data = pos + 28;
        pos += bl;
        blocks++;
        no++;
        nbytes += cl;
        times_note(&tm, t);
        if (!cl) { empty++; continue; }
        if (c->spec != Py_None) {
            if (load_spec(&f, c->spec) < 0) { err = 1; break; }
            f.wirelen = wl;
            int d = decide(&f, buf + data, (Py_ssize_t)cl, no, t);
            if (d < 0) { err = 1; break; }
            if (d == 0) continue;
        }
        status = ST_FRAME;
        start = data; caplen = cl; wirelen = wl; ts = t; ifid_out = ifid;
        break;
    }
    if (ifs != ifs_small) PyMem_Free(ifs);
    PyObject *pf, *pl;
    if (scan_finish(&f, &view, err, &tm, pfirst, plast, &pf, &pl) < 0) return NULL;
    return Py_BuildValue("(inLLNNLLnnLLL)", status, pos, no, nbytes, pf, pl, empty, blocks, start, caplen, wirelen,
                         ts, ifid_out);
}

static PyMethodDef methods[] = {
    {"pcap_scan", pcap_scan, METH_VARARGS, "pcap records from the buffer until one needs the full path."},
    {"pcapng_scan", pcapng_scan, METH_VARARGS, "pcapng Enhanced Packet Blocks until one needs Python."},
    {"clean_fields", clean_fields, METH_VARARGS, "http1._parse_clean's header lines, or None."},
    {"decode_tcp4", decode_tcp4, METH_VARARGS, "Decoder.decode of an Ethernet/IPv4/TCP frame, or None."},
    {"make", (PyCFunction)(void (*)(void))make, METH_FASTCALL, "cls(*fields) for a model value, at its slots."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "wscap.wire._fastpath",
                                    "The capture reader's record loop and fast-path filter in C.", -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    s_now_ns = PyUnicode_InternFromString("now_ns");
    s_truncated = PyUnicode_InternFromString("truncated");
    if (s_truncated == NULL) return NULL;
    s_packets = PyUnicode_InternFromString("packets");
    s_tcp = PyUnicode_InternFromString("tcp");
    s_zw = PyUnicode_InternFromString("zw");
    s_last_frame = PyUnicode_InternFromString("last_frame");
    s_last_ts = PyUnicode_InternFromString("last_ts");
    s_fast_lane = PyUnicode_InternFromString("fast_lane");
    s_client = PyUnicode_InternFromString("client");
    s_session = PyUnicode_InternFromString("session");
    s_mode = PyUnicode_InternFromString("mode");
    s_body_left = PyUnicode_InternFromString("body_left");
    s_halves = PyUnicode_InternFromString("halves");
    s_ooo = PyUnicode_InternFromString("ooo");
    s_base = PyUnicode_InternFromString("base");
    s_next = PyUnicode_InternFromString("next");
    s_delivered = PyUnicode_InternFromString("delivered");
    s_keep = PyUnicode_InternFromString("keep");
    s_window = PyUnicode_InternFromString("window");
    s_probe = PyUnicode_InternFromString("probe");
    s_keep_recent = PyUnicode_InternFromString("keep_recent");
    s_closed = PyUnicode_InternFromString("closed");
    s_exchanges = PyUnicode_InternFromString("exchanges");
    s_client_frames = PyUnicode_InternFromString("client_frames");
    s_server_frames = PyUnicode_InternFromString("server_frames");
    s_events = PyUnicode_InternFromString("events");
    s_count = PyUnicode_InternFromString("count");
    s_counter = PyUnicode_InternFromString("counter");
    s_dropped = PyUnicode_InternFromString("dropped");
    s_frames = PyUnicode_InternFromString("frames");
    s_preview_bytes = PyUnicode_InternFromString("preview_bytes");
    s_dir = PyUnicode_InternFromString("dir");
    s_opcode = PyUnicode_InternFromString("opcode");
    s_order = PyUnicode_InternFromString("order");
    s_preview = PyUnicode_InternFromString("preview");
    s__cur = PyUnicode_InternFromString("_cur");
    s__cur_mask = PyUnicode_InternFromString("_cur_mask");
    s__cur_payload = PyUnicode_InternFromString("_cur_payload");
    s__cur_off = PyUnicode_InternFromString("_cur_off");
    s__cur_want = PyUnicode_InternFromString("_cur_want");
    s__msg_opcode = PyUnicode_InternFromString("_msg_opcode");
    s__msg_out = PyUnicode_InternFromString("_msg_out");
    s__msg_total = PyUnicode_InternFromString("_msg_total");
    s__msg_compressed = PyUnicode_InternFromString("_msg_compressed");
    s__cur_inflate = PyUnicode_InternFromString("_cur_inflate");
    s__skip = PyUnicode_InternFromString("_skip");
    s__buf = PyUnicode_InternFromString("_buf");
    s__scan = PyUnicode_InternFromString("_scan");
    s_desynced = PyUnicode_InternFromString("desynced");
    s_first_data_ts = PyUnicode_InternFromString("first_data_ts");
    if (!s_count || !s_counter || !s_dropped || !s_frames || !s_preview_bytes || !s_dir || !s_opcode || !s_order || !s_preview || !s__cur || !s__cur_mask || !s__cur_payload || !s__cur_off || !s__cur_want || !s__msg_opcode || !s__msg_out || !s__msg_total || !s__msg_compressed || !s__cur_inflate || !s__skip || !s__buf || !s__scan || !s_desynced || !s_first_data_ts)
        return NULL;
    s_feed = PyUnicode_InternFromString("feed");
    s_server = PyUnicode_InternFromString("server");
    s_ignored = PyUnicode_InternFromString("ignored");
    s_synack_frame = PyUnicode_InternFromString("synack_frame");
    s_end = PyUnicode_InternFromString("end");
    s_fins = PyUnicode_InternFromString("fins");
    if (!s_feed || !s_server || !s_ignored || !s_synack_frame || !s_end || !s_fins)
        return NULL;
    s_buf = PyUnicode_InternFromString("buf");
    s_pending = PyUnicode_InternFromString("pending");
    s_plain_requests = PyUnicode_InternFromString("plain_requests");
    s_limits = PyUnicode_InternFromString("limits");
    s_head_bytes = PyUnicode_InternFromString("head_bytes");
    s_head_first_frame = PyUnicode_InternFromString("head_first_frame");
    s_head_last = PyUnicode_InternFromString("head_last");
    s_recent = PyUnicode_InternFromString("recent");
    s_recent_frames = PyUnicode_InternFromString("recent_frames");
    s_recent_start = PyUnicode_InternFromString("recent_start");
    s_append = PyUnicode_InternFromString("append");
    s_popleft = PyUnicode_InternFromString("popleft");
    s_HEAD = PyUnicode_InternFromString("HEAD");
    s_IGNORE = PyUnicode_InternFromString("IGNORE");
    if (!s_buf || !s_pending || !s_plain_requests || !s_limits || !s_head_bytes || !s_head_first_frame || !s_head_last
        || !s_recent || !s_recent_frames || !s_recent_start || !s_append || !s_popleft || !s_HEAD || !s_IGNORE)
        return NULL;
    if (!s_keep || !s_window || !s_probe || !s_keep_recent || !s_closed || !s_exchanges || !s_client_frames
        || !s_server_frames || !s_events)
        return NULL;
    if (!s_client || !s_session || !s_mode || !s_body_left || !s_halves || !s_ooo || !s_base || !s_next
        || !s_delivered)
        return NULL;
    if (!s_now_ns || !s_packets || !s_tcp || !s_zw || !s_last_frame || !s_last_ts || !s_fast_lane)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL) return NULL;
    /* API: bumped whenever the calls change, so a stale build (an editable install not rebuilt)
     * is ignored by pcapio.py rather than called wrongly. */
    if (PyModule_AddIntConstant(m, "API", 9) < 0 || PyModule_AddIntConstant(m, "ST_MORE", ST_MORE) < 0 || PyModule_AddIntConstant(m, "ST_FRAME", ST_FRAME) < 0
        || PyModule_AddIntConstant(m, "ST_SLOW", ST_SLOW) < 0 || PyModule_AddIntConstant(m, "MAX_RECORD", MAX_RECORD) < 0
        || PyModule_AddIntConstant(m, "RECENT", RECENT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
