/* The RTP pacer's socket calls in C: one call sends a batch, one call reads every ready socket.
 *
 * Python's socket methods cost about 1 us of interpreter work per datagram and release and
 * retake the GIL around every system call; at 600 calls (30,000 packets each way per second)
 * that is a third of a core. These two functions take the GIL off once per batch and make no
 * Python objects per packet sent. They only move bytes: which packets, to which sockets, and
 * what a received packet means stay in drivers/sip/pacer.py and drivers/sip/media.py, which
 * fall back to the socket methods when this module is not built.
 *
 * send_all(items) -> (sent, failed)
 *     items: a list of (fd, bytes) pairs, each fd a connected UDP socket. Every packet is
 *     sent with send(MSG_DONTWAIT); a failure (full buffer, ICMP unreachable) loses that
 *     packet, as on the wire, and is counted.
 *
 * recv_ready(epfd, max_events) -> list of (fd, bytes, ipv4, port)
 *     One epoll_wait(timeout 0) on epfd, then one recvfrom(MSG_DONTWAIT) on each ready
 *     socket. ipv4 is the source address as an int (0 for other families), port its port.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_DATAGRAM 2048

typedef struct {
    int fd;
    const char *data;
    Py_ssize_t size;
} outgoing;

static PyObject *send_all(PyObject *self, PyObject *items) {
    (void)self;
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "send_all expects a list of (fd, bytes) pairs");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0)
        return Py_BuildValue("(nn)", (Py_ssize_t)0, (Py_ssize_t)0);
    outgoing *out = PyMem_Malloc(sizeof(outgoing) * (size_t)n);
    if (out == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
            PyMem_Free(out);
            PyErr_SetString(PyExc_TypeError, "send_all expects a list of (fd, bytes) pairs");
            return NULL;
        }
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        if (fd == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            return NULL;
        }
        PyObject *packet = PyTuple_GET_ITEM(item, 1);
        out[i].fd = (int)fd;
        out[i].data = PyBytes_AS_STRING(packet);
        out[i].size = PyBytes_GET_SIZE(packet);
    }
    Py_ssize_t sent = 0, failed = 0;
    /* the list (and so every bytes object) is kept alive by the caller meanwhile */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (send(out[i].fd, out[i].data, (size_t)out[i].size, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            failed++;
        else
            sent++;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(out);
    return Py_BuildValue("(nn)", sent, failed);
}

typedef struct {
    int fd;
    ssize_t size;
    unsigned long ipv4;
    int port;
} incoming;

static PyObject *recv_ready(PyObject *self, PyObject *args) {
    (void)self;
    int epfd, max_events;
    if (!PyArg_ParseTuple(args, "ii", &epfd, &max_events))
        return NULL;
    if (max_events < 1 || max_events > 65536) {
        PyErr_SetString(PyExc_ValueError, "max_events must be 1..65536");
        return NULL;
    }
    /* the scratch space is kept between calls (one reader: the pacer's thread) */
    static struct epoll_event *events = NULL;
    static incoming *got = NULL;
    static char *buffers = NULL;
    static int capacity = 0, busy = 0;
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "recv_ready is already running in another thread");
        return NULL;
    }
    if (max_events > capacity) {
        PyMem_Free(events);
        PyMem_Free(got);
        PyMem_Free(buffers);
        events = PyMem_Malloc(sizeof(struct epoll_event) * (size_t)max_events);
        got = PyMem_Malloc(sizeof(incoming) * (size_t)max_events);
        buffers = PyMem_Malloc((size_t)MAX_DATAGRAM * (size_t)max_events);
        capacity = max_events;
        if (events == NULL || got == NULL || buffers == NULL) {
            PyMem_Free(events);
            PyMem_Free(got);
            PyMem_Free(buffers);
            events = NULL;
            got = NULL;
            buffers = NULL;
            capacity = 0;
            return PyErr_NoMemory();
        }
    }
    busy = 1;
    int ready, err = 0;
    Py_BEGIN_ALLOW_THREADS
    ready = epoll_wait(epfd, events, max_events, 0);
    if (ready < 0)
        err = errno;
    for (int i = 0; i < ready; i++) {
        struct sockaddr_storage source;
        socklen_t length = sizeof(source);
        got[i].fd = events[i].data.fd;
        got[i].size = recvfrom(got[i].fd, buffers + (size_t)i * MAX_DATAGRAM, MAX_DATAGRAM,
                               MSG_DONTWAIT, (struct sockaddr *)&source, &length);
        got[i].ipv4 = 0;
        got[i].port = 0;
        if (got[i].size >= 0 && source.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&source;
            got[i].ipv4 = ntohl(in->sin_addr.s_addr);
            got[i].port = ntohs(in->sin_port);
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (ready < 0) {
        errno = err;
        if (err == EINTR) {
            result = PyList_New(0);
        } else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        goto done;
    }
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    for (int i = 0; i < ready; i++) {
        if (got[i].size < 0)
            continue; /* nothing after all, or ICMP unreachable from the peer */
        PyObject *item = Py_BuildValue("(iy#ki)", got[i].fd, buffers + (size_t)i * MAX_DATAGRAM,
                                       (Py_ssize_t)got[i].size, got[i].ipv4, got[i].port);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(item);
    }
done:
    busy = 0;
    return result;
}

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_O, "Send each (fd, bytes) pair; returns (sent, failed)."},
    {"recv_ready", recv_ready, METH_VARARGS,
     "One datagram from each ready socket of an epoll set: [(fd, bytes, ipv4, port)]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpio", "The RTP pacer's socket calls in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__rtpio(void) { return PyModule_Create(&module); }
