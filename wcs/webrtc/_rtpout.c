/*
 * The inner loop of the fast RTP sender, in C.
 *
 * An RtpStream is one viewer's track: its socket and address, its libsrtp
 * session (the one aiortc made, used through pylibsrtp's own srtp_protect), its
 * SSRC, payload type, sequence number and timestamp base, and its header
 * extension block. send() writes a sample's packets for one viewer; send_all()
 * does it for every viewer of a broadcast in one call, so per viewer only the
 * header, the protection and one sendmmsg remain.
 *
 * wcs/webrtc/rtpstream.py has the same thing in Python, which gives the same
 * bytes; tests/test_rtpstream.py checks that they do.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PACKET 1500
#define TRAILER 148 /* libsrtp's SRTP_MAX_TRAILER_LEN, with room to spare */
#define BATCH 64
#define MAX_EXTENSION 64
#define SENT_HISTORY 256 /* samples remembered per stream, to map NACKed numbers */

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

static unsigned char buffers[BATCH][MAX_PACKET + TRAILER];

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *session; /* what owns ``context``: kept alive while we use it */
    struct sockaddr_storage address;
    socklen_t address_length;
    protect_fn protect;
    void *context;
    uint32_t ssrc;
    int payload_type;
    uint16_t seq;
    uint32_t ts_base;
    unsigned char extension[MAX_EXTENSION];
    Py_ssize_t extension_length;
    Py_ssize_t abs_send_time_at; /* where the 3 bytes go in the block, or -1 */
    int video;
    int need_key;
    unsigned long long packets;
    unsigned long long octets;
    unsigned long long dropped;
    uint32_t last_rtp;
    double last_time; /* wall clock of the last packet, for sender reports */
    /* the first sequence number each recent sample got, and the sample's number */
    uint16_t sent_seq[SENT_HISTORY];
    uint32_t sent_ts[SENT_HISTORY];
    long long sent_sample[SENT_HISTORY];
    unsigned char sent_count[SENT_HISTORY];
    unsigned int sent_next;
} RtpStream;

static int stream_init(RtpStream *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"fd", "host", "port", "protect", "context", "session",
                               "ssrc", "payload_type", "seq", "ts_base", "extension",
                               "abs_send_time_at", "video", NULL};
    PyObject *session;
    const char *host;
    int port, video;
    unsigned long long protect_address, context_address;
    unsigned long ssrc, seq, ts_base;
    Py_buffer extension;
    Py_ssize_t abs_send_time_at;
    int fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "isiKKOkikky*np", keywords, &fd,
                                     &host, &port, &protect_address, &context_address,
                                     &session, &ssrc, &self->payload_type, &seq, &ts_base,
                                     &extension, &abs_send_time_at, &video))
        return -1;
    Py_INCREF(session);
    Py_XSETREF(self->session, session);
    if (extension.len > MAX_EXTENSION ||
        (abs_send_time_at >= 0 && abs_send_time_at + 3 > extension.len)) {
        PyBuffer_Release(&extension);
        PyErr_SetString(PyExc_ValueError, "bad header extension block");
        return -1;
    }
    memcpy(self->extension, extension.buf, extension.len);
    self->extension_length = extension.len;
    PyBuffer_Release(&extension);
    memset(&self->address, 0, sizeof self->address);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&self->address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&self->address;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        self->address_length = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        self->address_length = sizeof *v6;
    } else {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return -1;
    }
    /* its own descriptor of the socket: the number stays this socket's while we live */
    if (self->fd >= 0)
        close(self->fd);
    self->fd = dup(fd);
    if (self->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->protect = (protect_fn)(uintptr_t)protect_address;
    self->context = (void *)(uintptr_t)context_address;
    self->ssrc = (uint32_t)ssrc;
    self->seq = (uint16_t)seq;
    self->ts_base = (uint32_t)ts_base;
    self->abs_send_time_at = abs_send_time_at;
    self->video = video;
    self->need_key = video;
    self->packets = self->octets = self->dropped = 0;
    self->last_rtp = 0;
    self->last_time = 0.0;
    memset(self->sent_count, 0, sizeof self->sent_count);
    self->sent_next = 0;
    return 0;
}

/* Sends one sample's packets; returns -1 with a Python error set on misuse. */
static int send_one(RtpStream *self, PyObject *payloads, uint32_t media_ts, int keyframe,
                    uint32_t abs_send_time, long long sample, double now) {
    if (self->need_key) {
        if (!keyframe)
            return 0;
        self->need_key = 0;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(payloads);
    uint32_t ts = self->ts_base + media_ts;
    Py_ssize_t header = 12 + self->extension_length;
    if (self->abs_send_time_at >= 0) {
        unsigned char *at = self->extension + self->abs_send_time_at;
        at[0] = (abs_send_time >> 16) & 0xff;
        at[1] = (abs_send_time >> 8) & 0xff;
        at[2] = abs_send_time & 0xff;
    }
    uint16_t first = self->seq;
    Py_ssize_t done = 0;
    while (done < count) {
        struct mmsghdr messages[BATCH];
        struct iovec vectors[BATCH];
        Py_ssize_t sizes[BATCH];
        int batch = 0;
        while (batch < BATCH && done + batch < count) {
            Py_ssize_t index = done + batch;
            char *data;
            Py_ssize_t size;
            if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(payloads, index), &data, &size) < 0)
                return -1;
            if (header + size > MAX_PACKET) {
                PyErr_SetString(PyExc_ValueError, "RTP packet too large");
                return -1;
            }
            unsigned char *packet = buffers[batch];
            uint16_t number = (uint16_t)(first + index);
            packet[0] = self->extension_length ? 0x90 : 0x80;
            packet[1] = (unsigned char)((index == count - 1 ? 0x80 : 0) | self->payload_type);
            packet[2] = number >> 8;
            packet[3] = number & 0xff;
            packet[4] = ts >> 24;
            packet[5] = (ts >> 16) & 0xff;
            packet[6] = (ts >> 8) & 0xff;
            packet[7] = ts & 0xff;
            packet[8] = self->ssrc >> 24;
            packet[9] = (self->ssrc >> 16) & 0xff;
            packet[10] = (self->ssrc >> 8) & 0xff;
            packet[11] = self->ssrc & 0xff;
            memcpy(packet + 12, self->extension, self->extension_length);
            memcpy(packet + header, data, size);
            int length = (int)(header + size);
            int status = self->protect(self->context, packet, &length);
            if (status != 0) {
                PyErr_Format(PyExc_RuntimeError, "srtp_protect failed (%d)", status);
                return -1;
            }
            vectors[batch].iov_base = packet;
            vectors[batch].iov_len = (size_t)length;
            memset(&messages[batch], 0, sizeof messages[batch]);
            messages[batch].msg_hdr.msg_name = &self->address;
            messages[batch].msg_hdr.msg_namelen = self->address_length;
            messages[batch].msg_hdr.msg_iov = &vectors[batch];
            messages[batch].msg_hdr.msg_iovlen = 1;
            sizes[batch] = size;
            batch++;
        }
        /* non-blocking, and the GIL is kept: the buffers are this module's own */
        int sent = sendmmsg(self->fd, messages, (unsigned int)batch, MSG_DONTWAIT);
        if (sent < 0)
            sent = 0;
        for (int i = 0; i < sent; i++)
            self->octets += sizes[i];
        done += sent;
        if (sent < batch) {
            /* the socket could take no more: drop the rest, wait for a keyframe */
            self->dropped++;
            self->need_key = self->video;
            break;
        }
    }
    if (done > 0) {
        unsigned int slot = self->sent_next++ % SENT_HISTORY;
        self->sent_seq[slot] = first;
        self->sent_ts[slot] = ts;
        self->sent_sample[slot] = sample;
        self->sent_count[slot] = done > 255 ? 255 : (unsigned char)done;
        self->seq = (uint16_t)(first + done);
        self->packets += done;
        self->last_rtp = ts;
        self->last_time = now;
    }
    return 0;
}

static PyObject *stream_send(RtpStream *self, PyObject *args) {
    PyObject *payloads;
    unsigned long media_ts, abs_send_time;
    int keyframe;
    long long sample;
    double now;
    if (!PyArg_ParseTuple(args, "O!kpkLd", &PyTuple_Type, &payloads, &media_ts, &keyframe,
                          &abs_send_time, &sample, &now))
        return NULL;
    if (send_one(self, payloads, (uint32_t)media_ts, keyframe, (uint32_t)abs_send_time,
                 sample, now) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    RtpStream *self = (RtpStream *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

static void stream_dealloc(RtpStream *self) {
    if (self->fd >= 0)
        close(self->fd);
    Py_XDECREF(self->session);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* find(seq) -> (sample, index, timestamp) of a packet sent recently, or None */
static PyObject *stream_find(RtpStream *self, PyObject *args) {
    unsigned long seq;
    if (!PyArg_ParseTuple(args, "k", &seq))
        return NULL;
    for (unsigned int i = 0; i < SENT_HISTORY; i++) {
        if (!self->sent_count[i])
            continue;
        uint16_t offset = (uint16_t)((uint16_t)seq - self->sent_seq[i]);
        if (offset < self->sent_count[i])
            return Py_BuildValue("Lik", self->sent_sample[i], (int)offset,
                                 (unsigned long)self->sent_ts[i]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef stream_methods[] = {
    {"send", (PyCFunction)stream_send, METH_VARARGS,
     "send(payloads, media_ts, keyframe, abs_send_time, sample, now): one sample."},
    {"find", (PyCFunction)stream_find, METH_VARARGS,
     "find(seq) -> (sample, index, timestamp) of a recent packet, or None."},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_seq(RtpStream *self, void *closure) { return PyLong_FromLong(self->seq); }
static PyObject *get_packets(RtpStream *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->packets);
}
static PyObject *get_octets(RtpStream *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->octets);
}
static PyObject *get_dropped(RtpStream *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->dropped);
}
static PyObject *get_last_rtp(RtpStream *self, void *closure) {
    return PyLong_FromUnsignedLong(self->last_rtp);
}
static PyObject *get_last_time(RtpStream *self, void *closure) {
    return PyFloat_FromDouble(self->last_time);
}
static PyObject *get_ts_base(RtpStream *self, void *closure) {
    return PyLong_FromUnsignedLong(self->ts_base);
}
static PyObject *get_need_key(RtpStream *self, void *closure) {
    return PyBool_FromLong(self->need_key);
}
static int set_need_key(RtpStream *self, PyObject *value, void *closure) {
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return -1;
    self->need_key = truth && self->video;
    return 0;
}

static PyGetSetDef stream_getset[] = {
    {"seq", (getter)get_seq, NULL, "The next sequence number.", NULL},
    {"packets", (getter)get_packets, NULL, "Packets sent.", NULL},
    {"octets", (getter)get_octets, NULL, "Payload octets sent.", NULL},
    {"dropped", (getter)get_dropped, NULL, "Samples cut short by a full socket.", NULL},
    {"last_rtp", (getter)get_last_rtp, NULL, "RTP timestamp of the last packet.", NULL},
    {"last_time", (getter)get_last_time, NULL, "Wall clock of the last packet.", NULL},
    {"ts_base", (getter)get_ts_base, NULL, "What media timestamps are offset by.", NULL},
    {"need_key", (getter)get_need_key, (setter)set_need_key,
     "Whether only a keyframe may go next.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RtpStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wcs.webrtc._rtpout.RtpStream",
    .tp_basicsize = sizeof(RtpStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One viewer's RTP track: header, SRTP, sendmmsg.",
    .tp_new = stream_new,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_init = (initproc)stream_init,
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
};

/* send_all(streams, payloads, media_ts, keyframe, abs_send_time, sample, now) */
static PyObject *send_all(PyObject *module, PyObject *args) {
    PyObject *streams, *payloads;
    unsigned long media_ts, abs_send_time;
    int keyframe;
    long long sample;
    double now;
    if (!PyArg_ParseTuple(args, "O!O!kpkLd", &PyList_Type, &streams, &PyTuple_Type,
                          &payloads, &media_ts, &keyframe, &abs_send_time, &sample, &now))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(streams);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(streams, i);
        if (!PyObject_TypeCheck(item, &RtpStreamType)) {
            PyErr_SetString(PyExc_TypeError, "send_all takes RtpStream objects");
            return NULL;
        }
        if (send_one((RtpStream *)item, payloads, (uint32_t)media_ts, keyframe,
                     (uint32_t)abs_send_time, sample, now) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_VARARGS,
     "send_all(streams, payloads, media_ts, keyframe, abs_send_time, sample, now)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpout", "The fast RTP sender's inner loop.", -1, methods,
};

PyMODINIT_FUNC PyInit__rtpout(void) {
    if (PyType_Ready(&RtpStreamType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RtpStreamType);
    if (PyModule_AddObject(m, "RtpStream", (PyObject *)&RtpStreamType) < 0) {
        Py_DECREF(&RtpStreamType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
