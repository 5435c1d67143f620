/*
 * The inner loop of the fast RTP sender, in C.
 *
 * An RtpStream is one viewer's track: a descriptor of its socket of its own, its
 * address, its libsrtp session (the one aiortc made, used through pylibsrtp's
 * own srtp_protect, and kept alive by holding the pylibsrtp object), its SSRC,
 * payload type, sequence number and timestamp base, and its header extension
 * block. send() writes a sample's packets for one viewer; send_all() does it for
 * every viewer of a broadcast in one call, so per viewer only the header, the
 * protection and one sendmmsg remain. It remembers the last SENT_HISTORY samples
 * it sent (their payloads, first sequence number and timestamp) so that find()
 * answers a NACK.
 *
 * wcs/webrtc/rtpstream.py has the same thing in Python, which gives the same
 * bytes; tests/test_rtpstream.py checks that they do. rtpstream.py takes this
 * path only when pylibsrtp's srtp_protect has the libsrtp 2 signature below
 * (protect_fn); the address it passes is that function's.
 *
 * Given the DTLS-SRTP master key of an AES-GCM profile (RFC 7714), a stream
 * protects its packets itself: the session key and salt are derived once
 * (RFC 3711's AES-CM PRF, as libsrtp applies it to AEAD: the 96-bit salt padded
 * to 112), and each packet costs one AES-GCM pass with that viewer's own OpenSSL
 * context. libsrtp's srtp_protect also finds the stream by SSRC and keeps a
 * replay window on send: across a thousand viewers' sessions those lookups were
 * cache misses, more than a third of its time. The rollover counter follows the
 * sequence numbers sent; protect() gives a resent packet the counter of its
 * number. tests/test_rtpstream.py checks the bytes against libsrtp's.
 *
 * Over TCP (ICE-TCP, RFC 6544) a stream writes through a TcpSink instead: each
 * packet goes out with RFC 4571's two-byte length before it, and a sink never
 * blocks nor queues more than the rest of one frame the kernel took in part
 * (that rest must go first, or the byte stream would be torn): a full socket
 * refuses whole frames, and the video then waits for a keyframe, as over UDP.
 *
 * Safe by construction: every argument is range-checked before anything
 * changes; only exact tuples, bytes and lists are taken (no subclass can run
 * Python code from a __del__ or __len__ half-way through a send), and send_all
 * works on a snapshot of its list. tests/test_rtpstream_asan.py runs the tests
 * against an AddressSanitizer build; setup.py builds with -Wall -Wextra -Werror.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* Linux 4.18's UDP GSO, for older headers */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
/* what one GSO datagram may carry: the kernel's segment limit, and an IP packet */
#define GSO_SEGMENTS 64
#define GSO_BYTES 60000

#define MAX_PACKET 1500
#define TRAILER 148 /* libsrtp's SRTP_MAX_TRAILER_LEN, with room to spare */
#define GCM_TAG 16
#define GCM_SALT 12
#define BATCH 64
#define MAX_EXTENSION 64
#define SENT_HISTORY 256

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

#define FRAMING 2 /* RFC 4571: a packet's length, before it on a TCP stream */
#define MAX_FRAME 65535

/* the GIL is held throughout (nothing here blocks), so one set of buffers serves;
 * each packet is written FRAMING bytes in, leaving room for its length over TCP */
static unsigned char buffers[BATCH][FRAMING + MAX_PACKET + TRAILER];

/* ---- TcpSink: one ICE-TCP connection's writing side ---- */

typedef struct {
    PyObject_HEAD
    int fd;
    int broken; /* the connection failed: nothing more is written */
    unsigned char *rest; /* the unsent end of the one frame the kernel took in part */
    size_t rest_length, rest_sent;
    unsigned long long frames, refused;
} TcpSink;

static PyTypeObject TcpSinkType;

static void sink_forget_rest(TcpSink *self) {
    PyMem_Free(self->rest);
    self->rest = NULL;
    self->rest_length = self->rest_sent = 0;
}

static void sink_close_fd(TcpSink *self) {
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    sink_forget_rest(self);
}

/* 1 if the socket is writable from a frame boundary (any rest has gone out) */
static int sink_flush(TcpSink *self) {
    if (self->fd < 0 || self->broken)
        return 0;
    while (self->rest != NULL) {
        ssize_t sent = send(self->fd, self->rest + self->rest_sent,
                            self->rest_length - self->rest_sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                self->broken = 1;
            return 0;
        }
        self->rest_sent += (size_t)sent;
        if (self->rest_sent >= self->rest_length)
            sink_forget_rest(self);
    }
    return 1;
}

/* Writes whole frames, each made of the iovecs up to ends[i] (exclusive), in one
 * sendmsg; returns how many frames are the kernel's now (a frame it took in part
 * counts: its rest is kept and goes first next time). The others are refused. */
static int sink_send(TcpSink *self, struct iovec *vectors, const int *ends, int count) {
    if (count <= 0 || !sink_flush(self)) {
        if (count > 0)
            self->refused += (unsigned long long)count;
        return 0;
    }
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = vectors;
    message.msg_iovlen = (size_t)ends[count - 1];
    ssize_t sent;
    do
        sent = sendmsg(self->fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            self->broken = 1;
        sent = 0;
    }
    size_t left = (size_t)sent;
    int taken = 0, first = 0;
    for (int frame = 0; frame < count && left > 0; frame++) {
        size_t length = 0;
        for (int i = first; i < ends[frame]; i++)
            length += vectors[i].iov_len;
        if (left >= length) {
            left -= length;
        } else { /* the kernel took the first ``left`` bytes of this frame: keep the rest */
            unsigned char *rest = PyMem_Malloc(length - left);
            if (rest == NULL) { /* cannot keep it: the stream is torn, give it up */
                self->broken = 1;
                break;
            }
            size_t at = 0, skip = left;
            for (int i = first; i < ends[frame]; i++) {
                size_t part = vectors[i].iov_len;
                if (skip >= part) {
                    skip -= part;
                    continue;
                }
                memcpy(rest + at, (unsigned char *)vectors[i].iov_base + skip, part - skip);
                at += part - skip;
                skip = 0;
            }
            self->rest = rest;
            self->rest_length = length - left;
            self->rest_sent = 0;
            left = 0;
        }
        taken++;
        first = ends[frame];
    }
    self->frames += (unsigned long long)taken;
    self->refused += (unsigned long long)(count - taken);
    return taken;
}

/* one message of Python's (STUN, DTLS, RTCP): framed, whole or not at all */
static int sink_send_one(TcpSink *self, const void *data, size_t length) {
    unsigned char header[FRAMING] = {(unsigned char)(length >> 8), (unsigned char)(length & 0xff)};
    struct iovec vectors[2] = {{header, FRAMING}, {(void *)data, length}};
    int ends[1] = {2};
    return sink_send(self, vectors, ends, 1);
}

static int sink_init(TcpSink *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"fd", NULL};
    int fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i", keywords, &fd))
        return -1;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "fd must be a descriptor");
        return -1;
    }
    int own = dup(fd);
    if (own < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    sink_close_fd(self);
    self->fd = own;
    self->broken = 0;
    self->frames = self->refused = 0;
    return 0;
}

static PyObject *sink_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                          PyObject *Py_UNUSED(kwargs)) {
    TcpSink *self = (TcpSink *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

static void sink_dealloc(TcpSink *self) {
    sink_close_fd(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* write(data) -> bool: one framed message, whole, or refused (a full socket) */
static PyObject *sink_write(TcpSink *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    if (data.len > MAX_FRAME) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "a frame holds at most 65535 bytes");
        return NULL;
    }
    int taken = sink_send_one(self, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyBool_FromLong(taken);
}

static PyObject *sink_close(TcpSink *self, PyObject *Py_UNUSED(unused)) {
    sink_close_fd(self);
    Py_RETURN_NONE;
}

static PyObject *sink_get_closed(TcpSink *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->fd < 0);
}
static PyObject *sink_get_broken(TcpSink *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->broken);
}
static PyObject *sink_get_waiting(TcpSink *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->rest ? self->rest_length - self->rest_sent : 0);
}
static PyObject *sink_get_frames(TcpSink *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->frames);
}
static PyObject *sink_get_refused(TcpSink *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->refused);
}

static PyMethodDef sink_methods[] = {
    {"write", (PyCFunction)sink_write, METH_VARARGS,
     "write(data) -> bool: one message, framed; False when the socket is full."},
    {"close", (PyCFunction)sink_close, METH_NOARGS, "Write nothing more."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sink_getset[] = {
    {"closed", (getter)sink_get_closed, NULL, "Whether close() was called.", NULL},
    {"broken", (getter)sink_get_broken, NULL, "Whether the connection failed.", NULL},
    {"waiting", (getter)sink_get_waiting, NULL, "Bytes of a frame still to go.", NULL},
    {"frames", (getter)sink_get_frames, NULL, "Frames the kernel took.", NULL},
    {"refused", (getter)sink_get_refused, NULL, "Frames refused: the socket was full.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TcpSinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wcs.webrtc._rtpout.TcpSink",
    .tp_basicsize = sizeof(TcpSink),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A TCP socket's writing side, RFC 4571 framed, never blocking.",
    .tp_new = sink_new,
    .tp_dealloc = (destructor)sink_dealloc,
    .tp_init = (initproc)sink_init,
    .tp_methods = sink_methods,
    .tp_getset = sink_getset,
};

/* ---- RtpStream ---- */

typedef struct {
    PyObject_HEAD
    int fd;
    TcpSink *sink; /* over TCP: where packets go, framed (fd is then unused) */
    PyObject *session; /* owns ``context``: kept alive while we may use it */
    protect_fn protect;
    void *context;
    struct sockaddr_storage address;
    socklen_t address_length;
    uint32_t ssrc;
    int payload_type;
    uint16_t seq;
    uint32_t ts_base;
    unsigned char extension[MAX_EXTENSION];
    Py_ssize_t extension_length;
    Py_ssize_t abs_send_time_at; /* where the 3 bytes go in the block, or -1 */
    int video;
    int need_key;
    int gso; /* equal-size packets of a sample go as one UDP GSO datagram */
    EVP_CIPHER_CTX *gcm; /* AES-GCM with the session key; NULL: libsrtp protects */
    unsigned char gcm_salt[GCM_SALT];
    uint32_t roc; /* the rollover counter of ``seq`` (RFC 3711 3.3.1) */
    unsigned long long packets, octets, dropped, datagrams;
    uint32_t last_rtp;
    double last_time; /* wall clock of the last packet, for sender reports */
    /* the recent samples sent: payloads, first sequence number, count, timestamp */
    PyObject *sent_payloads[SENT_HISTORY];
    uint16_t sent_seq[SENT_HISTORY];
    uint16_t sent_count[SENT_HISTORY];
    uint32_t sent_ts[SENT_HISTORY];
    unsigned int sent_next;
} RtpStream;

static void forget_history(RtpStream *self) {
    for (int i = 0; i < SENT_HISTORY; i++) {
        Py_CLEAR(self->sent_payloads[i]);
        self->sent_count[i] = 0;
    }
    self->sent_next = 0;
}

static void close_fd(RtpStream *self) {
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_CLEAR(self->sink);
}

/* RFC 3711 4.3.1's AES-CM PRF keyed with the master key: ``length`` bytes of
 * keystream from the counter block (master salt, padded to 14 bytes, with
 * ``label`` XORed into its eighth byte) || a 16-bit block count. 0 on success. */
static int derive(const unsigned char *master_key, int key_length,
                  const unsigned char *master_salt, unsigned char label, unsigned char *out,
                  int length) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL &&
             EVP_EncryptInit_ex(ctx, key_length == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb(),
                                NULL, master_key, NULL) == 1 &&
             EVP_CIPHER_CTX_set_padding(ctx, 0) == 1;
    for (int block = 0; ok && block * 16 < length; block++) {
        unsigned char counter[16] = {0}, stream[32];
        int made = 0;
        memcpy(counter, master_salt, GCM_SALT);
        counter[7] ^= label;
        counter[14] = (unsigned char)(block >> 8);
        counter[15] = (unsigned char)(block & 0xff);
        ok = EVP_EncryptUpdate(ctx, stream, &made, counter, 16) == 1 && made == 16;
        if (ok)
            memcpy(out + block * 16, stream, length - block * 16 < 16 ? length - block * 16 : 16);
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* An AES-GCM context with the session key derived from ``master`` (key || 12-byte
 * salt, 28 or 44 bytes), and the session salt into ``salt``; NULL if OpenSSL fails. */
static EVP_CIPHER_CTX *gcm_context(const unsigned char *master, Py_ssize_t length,
                                   unsigned char *salt) {
    int key_length = (int)length - GCM_SALT;
    unsigned char session_key[32];
    EVP_CIPHER_CTX *ctx = NULL;
    if (derive(master, key_length, master + key_length, 0x00, session_key, key_length) == 0 &&
        derive(master, key_length, master + key_length, 0x02, salt, GCM_SALT) == 0)
        ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL &&
        (EVP_EncryptInit_ex(ctx, key_length == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm(), NULL,
                            NULL, NULL) != 1 ||
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
         EVP_EncryptInit_ex(ctx, NULL, NULL, session_key, NULL) != 1)) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    memset(session_key, 0, sizeof session_key);
    return ctx;
}

/* RFC 7714: the packet's payload (after ``header`` bytes, authenticated as they
 * are) encrypted in place and the 16-byte tag appended. 0 on success. */
static int gcm_protect(RtpStream *self, unsigned char *packet, int *length, int header,
                       uint32_t roc) {
    unsigned char iv[12];
    int made = 0, payload = *length - header;
    memcpy(iv, self->gcm_salt, sizeof iv);
    for (int i = 0; i < 4; i++)
        iv[2 + i] ^= packet[8 + i]; /* the SSRC */
    iv[6] ^= (unsigned char)(roc >> 24);
    iv[7] ^= (unsigned char)(roc >> 16);
    iv[8] ^= (unsigned char)(roc >> 8);
    iv[9] ^= (unsigned char)roc;
    iv[10] ^= packet[2]; /* the sequence number */
    iv[11] ^= packet[3];
    if (EVP_EncryptInit_ex(self->gcm, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(self->gcm, NULL, &made, packet, header) != 1 ||
        (payload > 0 &&
         EVP_EncryptUpdate(self->gcm, packet + header, &made, packet + header, payload) != 1) ||
        EVP_EncryptFinal_ex(self->gcm, packet + *length, &made) != 1 ||
        EVP_CIPHER_CTX_ctrl(self->gcm, EVP_CTRL_GCM_GET_TAG, GCM_TAG, packet + *length) != 1)
        return -1;
    *length += GCM_TAG;
    return 0;
}

/* Protects a packet of ``header`` header bytes whose number has rollover
 * counter ``roc``: with our AES-GCM, or libsrtp's srtp_protect. */
static int protect(RtpStream *self, unsigned char *packet, int *length, int header,
                   uint32_t roc) {
    if (self->gcm != NULL)
        return gcm_protect(self, packet, length, header, roc);
    return self->protect(self->context, packet, length) != 0 ? -1 : 0;
}

static int stream_init(RtpStream *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"fd", "host", "port", "protect", "context", "session",
                               "ssrc", "payload_type", "seq", "ts_base", "extension",
                               "abs_send_time_at", "video", "sink", "gso", "key", NULL};
    const char *host;
    int fd, port, video, payload_type;
    unsigned long long protect_address, context_address;
    long long ssrc, seq, ts_base;
    PyObject *session, *sink = Py_None, *key = Py_None;
    Py_buffer extension;
    Py_ssize_t abs_send_time_at;
    int gso = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "isiKKOLiLLy*np|OpO", keywords, &fd, &host,
                                     &port, &protect_address, &context_address, &session,
                                     &ssrc, &payload_type, &seq, &ts_base, &extension,
                                     &abs_send_time_at, &video, &sink, &gso, &key))
        return -1;
    int framed = sink != Py_None;
    /* every check before anything of ours changes; no sum that could overflow */
    const char *bad = NULL;
    if (framed && !Py_IS_TYPE(sink, &TcpSinkType))
        bad = "sink must be a TcpSink";
    else if (!framed && fd < 0)
        bad = "fd must be a descriptor";
    else if (port < 0 || port > 65535)
        bad = "port must be 0-65535";
    else if (protect_address == 0 || context_address == 0)
        bad = "protect and context must be addresses";
    else if (ssrc < 0 || ssrc > 0xFFFFFFFFLL)
        bad = "ssrc must be 0-4294967295";
    else if (payload_type < 0 || payload_type > 127)
        bad = "payload_type must be 0-127";
    else if (seq < 0 || seq > 0xFFFF)
        bad = "seq must be 0-65535";
    else if (ts_base < 0 || ts_base > 0xFFFFFFFFLL)
        bad = "ts_base must be 0-4294967295";
    else if (extension.len > MAX_EXTENSION || extension.len % 4 != 0)
        bad = "extension must be a multiple of 4 bytes, at most 64";
    else if (abs_send_time_at < -1 ||
             (abs_send_time_at >= 0 && abs_send_time_at > extension.len - 3))
        bad = "abs_send_time_at must be -1 or leave 3 bytes inside the extension";
    else if (key != Py_None && (!PyBytes_CheckExact(key) ||
                                (PyBytes_GET_SIZE(key) != 16 + GCM_SALT &&
                                 PyBytes_GET_SIZE(key) != 32 + GCM_SALT)))
        bad = "key must be None or an AES-GCM master key and salt (28 or 44 bytes)";
    if (bad != NULL) {
        PyBuffer_Release(&extension);
        PyErr_Format(PyExc_ValueError, "bad RtpStream parameters: %s", bad);
        return -1;
    }
    struct sockaddr_storage address;
    socklen_t address_length = 0;
    memset(&address, 0, sizeof address);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    if (framed) {
        /* the connection is the sink's: no address, no descriptor of ours */
    } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        address_length = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        address_length = sizeof *v6;
    } else {
        PyBuffer_Release(&extension);
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return -1;
    }
    unsigned char salt[GCM_SALT];
    EVP_CIPHER_CTX *gcm = NULL;
    if (key != Py_None) {
        gcm = gcm_context((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                          salt);
        if (gcm == NULL) {
            PyBuffer_Release(&extension);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not make the AES-GCM context");
            return -1;
        }
    }
    int own = framed ? -1 : dup(fd); /* the number stays this socket's while we live */
    if (!framed && own < 0) {
        PyBuffer_Release(&extension);
        EVP_CIPHER_CTX_free(gcm);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    EVP_CIPHER_CTX_free(self->gcm);
    self->gcm = gcm;
    if (gcm != NULL)
        memcpy(self->gcm_salt, salt, GCM_SALT);
    self->roc = 0;
    close_fd(self);
    forget_history(self);
    self->fd = own;
    if (framed) {
        Py_INCREF(sink);
        self->sink = (TcpSink *)sink;
    }
    Py_INCREF(session);
    Py_XSETREF(self->session, session);
    self->protect = (protect_fn)(uintptr_t)protect_address;
    self->context = (void *)(uintptr_t)context_address;
    self->address = address;
    self->address_length = address_length;
    memcpy(self->extension, extension.buf, extension.len);
    self->extension_length = extension.len;
    PyBuffer_Release(&extension);
    self->abs_send_time_at = abs_send_time_at;
    self->ssrc = (uint32_t)ssrc;
    self->payload_type = payload_type;
    self->seq = (uint16_t)seq;
    self->ts_base = (uint32_t)ts_base;
    self->video = video;
    self->need_key = video;
    self->gso = gso && !framed;
    self->packets = self->octets = self->dropped = self->datagrams = 0;
    self->last_rtp = 0;
    self->last_time = 0.0;
    return 0;
}

/* Checks a sample's payloads before any is sent; -1 with a Python error if unfit.
 * Exact types only: a tuple is immutable and bytes hold their buffer, so nothing
 * checked here can change or run code before the send is done. */
static int check_payloads(PyObject *payloads, Py_ssize_t header_room) {
    if (!PyTuple_CheckExact(payloads)) {
        PyErr_SetString(PyExc_TypeError, "payloads must be a tuple");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(payloads);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *payload = PyTuple_GET_ITEM(payloads, i);
        if (!PyBytes_CheckExact(payload)) {
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
            return -1;
        }
        if (12 + header_room + PyBytes_GET_SIZE(payload) > MAX_PACKET) {
            PyErr_SetString(PyExc_ValueError, "RTP packet too large");
            return -1;
        }
    }
    return 0;
}

/* Sends ``count`` protected packets over UDP, in order; returns how many went.
 * With gso, each run of equal-size packets (and one shorter packet ending it)
 * goes as one datagram that the kernel cuts at that size: one pass through the
 * stack for a sample's packets, not one each. A kernel or route that refuses
 * GSO turns it off for this stream, and the packets go one by one. */
static int udp_send(RtpStream *self, struct iovec *vectors, int count) {
    struct mmsghdr messages[BATCH];
    int segments[BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[BATCH];
    int done = 0;
    while (done < count) {
        int m = 0;
        for (int i = done; i < count; m++) {
            size_t size = vectors[i].iov_len, total = size;
            int n = 1;
            while (self->gso && i + n < count && n < GSO_SEGMENTS &&
                   vectors[i + n].iov_len <= size && total + vectors[i + n].iov_len <= GSO_BYTES) {
                total += vectors[i + n].iov_len;
                if (vectors[i + n++].iov_len < size)
                    break; /* only the last segment may be shorter */
            }
            memset(&messages[m], 0, sizeof messages[m]);
            struct msghdr *header = &messages[m].msg_hdr;
            header->msg_name = &self->address;
            header->msg_namelen = self->address_length;
            header->msg_iov = &vectors[i];
            header->msg_iovlen = (size_t)n;
            if (n > 1) {
                header->msg_control = controls[m].buf;
                header->msg_controllen = sizeof controls[m].buf;
                struct cmsghdr *control = CMSG_FIRSTHDR(header);
                control->cmsg_level = SOL_UDP;
                control->cmsg_type = UDP_SEGMENT;
                control->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t segment = (uint16_t)size;
                memcpy(CMSG_DATA(control), &segment, sizeof segment);
            }
            segments[m] = n;
            i += n;
        }
        int sent = sendmmsg(self->fd, messages, (unsigned int)m, MSG_DONTWAIT);
        if (sent < 0) {
            if (segments[0] > 1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
                self->gso = 0; /* refused (EIO, EINVAL...): again, one by one */
                continue;
            }
            return done; /* the socket could take no more */
        }
        for (int k = 0; k < sent; k++)
            done += segments[k];
        self->datagrams += (unsigned long long)sent;
        /* fewer than asked: full, or a GSO datagram refused (its error is lost
         * after a first success); the next call tells them apart */
    }
    return done;
}

/* Sends one checked sample's packets; a packet that cannot be protected or sent
 * ends the sample there (the video then waits for a keyframe). Never fails. */
static void send_one(RtpStream *self, PyObject *payloads, uint32_t media_ts, int keyframe,
                     uint32_t abs_send_time, double now) {
    Py_ssize_t count = PyTuple_GET_SIZE(payloads);
    if ((self->fd < 0 && self->sink == NULL) || self->protect == NULL || count == 0)
        return;
    if (self->need_key) {
        if (!keyframe)
            return;
        self->need_key = 0;
    }
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
    int cut = 0;
    while (done < count && !cut) {
        struct iovec vectors[BATCH];
        int ends[BATCH];
        Py_ssize_t sizes[BATCH];
        int batch = 0;
        while (batch < BATCH && done + batch < count) {
            Py_ssize_t index = done + batch;
            PyObject *payload = PyTuple_GET_ITEM(payloads, index);
            Py_ssize_t size = PyBytes_GET_SIZE(payload);
            unsigned char *packet = buffers[batch] + FRAMING;
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
            memcpy(packet + header, PyBytes_AS_STRING(payload), size);
            int length = (int)(header + size);
            uint32_t roc = self->roc + ((uint32_t)first + (uint32_t)index > 0xFFFF ? 1 : 0);
            if (protect(self, packet, &length, (int)header, roc) != 0) {
                cut = 1;
                break;
            }
            if (self->sink != NULL) { /* the frame: its length, then the packet */
                buffers[batch][0] = (unsigned char)(length >> 8);
                buffers[batch][1] = (unsigned char)(length & 0xff);
                vectors[batch].iov_base = buffers[batch];
                vectors[batch].iov_len = (size_t)length + FRAMING;
                ends[batch] = batch + 1;
            } else {
                vectors[batch].iov_base = packet;
                vectors[batch].iov_len = (size_t)length;
            }
            sizes[batch] = size;
            batch++;
        }
        int sent;
        if (batch == 0)
            sent = 0;
        else if (self->sink != NULL)
            sent = sink_send(self->sink, vectors, ends, batch);
        else
            sent = udp_send(self, vectors, batch);
        if (sent < 0)
            sent = 0;
        for (int i = 0; i < sent; i++)
            self->octets += sizes[i];
        done += sent;
        if (sent < batch)
            cut = 1; /* the socket could take no more */
    }
    if (cut) {
        self->dropped++;
        self->need_key = self->video;
    }
    if (done > 0) {
        unsigned int slot = self->sent_next++ % SENT_HISTORY;
        Py_INCREF(payloads);
        Py_XSETREF(self->sent_payloads[slot], payloads);
        self->sent_seq[slot] = first;
        self->sent_count[slot] = (uint16_t)(done > 65535 ? 65535 : done);
        self->sent_ts[slot] = ts;
        if ((uint32_t)first + (uint32_t)done > 0xFFFF)
            self->roc++; /* the numbers wrapped */
        self->seq = (uint16_t)(first + done);
        self->packets += done;
        self->last_rtp = ts;
        self->last_time = now;
    }
}

static PyObject *stream_send(RtpStream *self, PyObject *args) {
    PyObject *payloads;
    unsigned long media_ts, abs_send_time;
    int keyframe;
    double now;
    /* media_ts and abs_send_time are taken modulo 2**32, as RTP's clock wraps */
    if (!PyArg_ParseTuple(args, "Okpkd", &payloads, &media_ts, &keyframe, &abs_send_time, &now))
        return NULL;
    if (check_payloads(payloads, self->extension_length) < 0)
        return NULL;
    send_one(self, payloads, (uint32_t)media_ts, keyframe, (uint32_t)abs_send_time, now);
    Py_RETURN_NONE;
}

/* send_raw(data): one datagram already made (a retransmission, a report) */
static PyObject *stream_send_raw(RtpStream *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    if (self->sink != NULL) {
        if (data.len <= MAX_FRAME)
            sink_send_one(self->sink, data.buf, (size_t)data.len);
    } else if (self->fd >= 0) {
        sendto(self->fd, data.buf, (size_t)data.len, MSG_DONTWAIT,
               (struct sockaddr *)&self->address, self->address_length);
    }
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

/* protect(packet) -> the packet protected as this stream protects its own (a
 * resend: its number's rollover counter is estimated from the last one sent,
 * RFC 3711 Appendix A) */
static PyObject *stream_protect(RtpStream *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    Py_ssize_t header = 12;
    const unsigned char *in = data.buf;
    if (data.len >= 12) {
        header += 4 * (in[0] & 0x0f);
        if ((in[0] & 0x10) && data.len >= header + 4)
            header += 4 + 4 * ((in[header + 2] << 8) | in[header + 3]);
        else if (in[0] & 0x10)
            header = data.len + 1;
    }
    if (data.len < 12 || header > data.len || data.len > MAX_PACKET || (in[0] >> 6) != 2 ||
        self->protect == NULL) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "not an RTP packet this stream can protect");
        return NULL;
    }
    unsigned char packet[MAX_PACKET + TRAILER];
    int length = (int)data.len;
    memcpy(packet, data.buf, data.len);
    PyBuffer_Release(&data);
    uint16_t seq = (uint16_t)((packet[2] << 8) | packet[3]);
    uint16_t last = (uint16_t)(self->seq - 1);
    uint32_t roc = self->roc - (self->seq == 0 ? 1 : 0); /* the last one sent's */
    if (last < 32768 && seq > last && seq - last > 32768)
        roc--; /* from before the wrap */
    else if (last >= 32768 && seq < last - 32768)
        roc++;
    if (protect(self, packet, &length, (int)header, roc) != 0) {
        PyErr_SetString(PyExc_ValueError, "protection failed");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)packet, length);
}

/* find(seq) -> (payloads, index, timestamp) of a packet sent recently, or None */
static PyObject *stream_find(RtpStream *self, PyObject *args) {
    unsigned long seq;
    if (!PyArg_ParseTuple(args, "k", &seq))
        return NULL;
    for (int i = 0; i < SENT_HISTORY; i++) {
        if (!self->sent_count[i] || self->sent_payloads[i] == NULL)
            continue;
        uint16_t offset = (uint16_t)((uint16_t)seq - self->sent_seq[i]);
        if (offset < self->sent_count[i])
            return Py_BuildValue("Oik", self->sent_payloads[i], (int)offset,
                                 (unsigned long)self->sent_ts[i]);
    }
    Py_RETURN_NONE;
}

/* close(): send nothing more, give the socket and the history back */
static PyObject *stream_close(RtpStream *self, PyObject *Py_UNUSED(unused)) {
    close_fd(self);
    forget_history(self);
    Py_RETURN_NONE;
}

static PyObject *stream_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                            PyObject *Py_UNUSED(kwargs)) {
    RtpStream *self = (RtpStream *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

static int stream_traverse(RtpStream *self, visitproc visit, void *arg) {
    Py_VISIT(self->session);
    Py_VISIT(self->sink);
    for (int i = 0; i < SENT_HISTORY; i++)
        Py_VISIT(self->sent_payloads[i]);
    return 0;
}

static int stream_clear(RtpStream *self) {
    forget_history(self);
    Py_CLEAR(self->session);
    Py_CLEAR(self->sink);
    self->protect = NULL;
    return 0;
}

static void stream_dealloc(RtpStream *self) {
    PyObject_GC_UnTrack(self);
    close_fd(self);
    stream_clear(self);
    EVP_CIPHER_CTX_free(self->gcm);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef stream_methods[] = {
    {"send", (PyCFunction)stream_send, METH_VARARGS,
     "send(payloads, media_ts, keyframe, abs_send_time, now): one sample's packets."},
    {"send_raw", (PyCFunction)stream_send_raw, METH_VARARGS,
     "send_raw(data): one datagram already protected."},
    {"protect", (PyCFunction)stream_protect, METH_VARARGS,
     "protect(packet) -> the packet protected as this stream's are (a resend)."},
    {"find", (PyCFunction)stream_find, METH_VARARGS,
     "find(seq) -> (payloads, index, timestamp) of a recent packet, or None."},
    {"close", (PyCFunction)stream_close, METH_NOARGS, "Send nothing more."},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_seq(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLong(self->seq);
}
static PyObject *get_packets(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->packets);
}
static PyObject *get_datagrams(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->datagrams);
}
static PyObject *get_gso(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->gso);
}
static PyObject *get_octets(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->octets);
}
static PyObject *get_dropped(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->dropped);
}
static PyObject *get_last_rtp(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->last_rtp);
}
static PyObject *get_last_time(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyFloat_FromDouble(self->last_time);
}
static PyObject *get_ts_base(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->ts_base);
}
static PyObject *get_closed(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->fd < 0 && self->sink == NULL);
}
static PyObject *get_own_srtp(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->gcm != NULL);
}
static PyObject *get_need_key(RtpStream *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->need_key);
}
static int set_need_key(RtpStream *self, PyObject *value, void *Py_UNUSED(closure)) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "need_key cannot be deleted");
        return -1;
    }
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
    {"dropped", (getter)get_dropped, NULL, "Samples cut short.", NULL},
    {"datagrams", (getter)get_datagrams, NULL, "UDP datagrams sent (GSO: fewer than packets).",
     NULL},
    {"gso", (getter)get_gso, NULL, "Whether a sample's packets go as one GSO datagram.", NULL},
    {"last_rtp", (getter)get_last_rtp, NULL, "RTP timestamp of the last packet.", NULL},
    {"last_time", (getter)get_last_time, NULL, "Wall clock of the last packet.", NULL},
    {"ts_base", (getter)get_ts_base, NULL, "What media timestamps are offset by.", NULL},
    {"closed", (getter)get_closed, NULL, "Whether close() was called.", NULL},
    {"own_srtp", (getter)get_own_srtp, NULL, "Whether it protects with its own AES-GCM.", NULL},
    {"need_key", (getter)get_need_key, (setter)set_need_key,
     "Whether only a keyframe may go next.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RtpStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wcs.webrtc._rtpout.RtpStream",
    .tp_basicsize = sizeof(RtpStream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One viewer's RTP track: header, SRTP, sendmmsg.",
    .tp_new = stream_new,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_clear = (inquiry)stream_clear,
    .tp_init = (initproc)stream_init,
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
};

/* send_all(streams, payloads, media_ts, keyframe, abs_send_time, now) */
static PyObject *send_all(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *streams, *payloads;
    unsigned long media_ts, abs_send_time;
    int keyframe;
    double now;
    if (!PyArg_ParseTuple(args, "OOkpkd", &streams, &payloads, &media_ts, &keyframe,
                          &abs_send_time, &now))
        return NULL;
    if (!PyList_CheckExact(streams)) {
        PyErr_SetString(PyExc_TypeError, "send_all takes a list of RtpStream objects");
        return NULL;
    }
    if (check_payloads(payloads, MAX_EXTENSION) < 0)
        return NULL;
    /* a snapshot that holds every stream: the list may change, they stay */
    PyObject *snapshot = PyList_AsTuple(streams);
    if (snapshot == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(snapshot);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!Py_IS_TYPE(PyTuple_GET_ITEM(snapshot, i), &RtpStreamType)) {
            Py_DECREF(snapshot);
            PyErr_SetString(PyExc_TypeError, "send_all takes RtpStream objects");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++)
        send_one((RtpStream *)PyTuple_GET_ITEM(snapshot, i), payloads, (uint32_t)media_ts,
                 keyframe, (uint32_t)abs_send_time, now);
    Py_DECREF(snapshot);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_VARARGS,
     "send_all(streams, payloads, media_ts, keyframe, abs_send_time, now)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rtpout",
    .m_doc = "The fast RTP sender's inner loop.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rtpout(void) {
    if (PyType_Ready(&RtpStreamType) < 0 || PyType_Ready(&TcpSinkType) < 0)
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
    Py_INCREF(&TcpSinkType);
    if (PyModule_AddObject(m, "TcpSink", (PyObject *)&TcpSinkType) < 0) {
        Py_DECREF(&TcpSinkType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
