/*
 * wscap-capture: capture with libpcap and write the evidence file ourselves.
 *
 * Why a separate C program: `wscap live` used to read tcpdump's pcap stream in
 * Python and write --write from the same loop as the analysis, so whatever the
 * analysis lost under load the file lost too. Here the capture and the file are
 * one tight loop on its own core; the Python analysis follows the file behind
 * it, guided by the `flush` watermark lines this program prints.
 *
 *   wscap-capture -w FILE [-i IFACE]... [-f BPF] [-s SNAPLEN] [-B MB] [-t MS] [-p]
 *                 [-C BYTES -W NFILES] [-n NRBFILE] [-Z UID:GID] [-c COUNT]
 *
 * Capture: one pcap handle per -i, not in immediate mode, so libpcap uses
 * TPACKET_V3 whose blocks pack frames (a big snaplen costs no ring slots) and
 * the block-retire timeout (-t) bounds the latency. Handles are non-blocking;
 * one ppoll() waits on all of them, stdin (EOF = the parent is gone) and the
 * stop signals.
 *
 * Output: classic pcap for FILE ending .pcap/.cap (one interface only), else
 * pcapng (SHB, one IDB per interface with if_tsresol, the -n blocks verbatim,
 * EPBs). Records go through a 1 MiB buffer written after every dispatch round;
 * the record boundaries in the buffer are kept, so a failed write (disk full)
 * is cut back to the last whole record and the file stays readable.
 *
 * Status protocol (stdout, one line per event; see capturer.py):
 *   file seq=K path=ABS_PATH
 *   ready linktypes=L1,L2 snaplen=N tsresol=9|6 format=pcapng|pcap
 *   flush ts=NS packets=N file=K offset=BYTES
 *   stats if=I recv=N drop=N ifdrop=N
 *   error KIND MESSAGE      (usage nodev perm filter open write ifgone)
 *   end reason=stopped|count|write-error|ifgone packets=N
 * stdout is non-blocking: if the reader falls behind, superseded flush/stats
 * lines are coalesced instead of stalling the capture.
 *
 * Exit status: 0 (ended normally, incl. ifgone), 2 startup error, 3 write error.
 */
#define _GNU_SOURCE
#include <pcap/pcap.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_IFACES 64
#define WBUF_SIZE (1u << 20)         /* room for the largest record (256 KiB) and more */
#ifndef FLUSH_AT
#define FLUSH_AT (64u << 10)         /* write once this much is buffered (see below) */
#endif
#define MAX_BOUNDS (WBUF_SIZE / 16 + 8)
#define MAX_SNAPLEN 262144
#define MAX_NRB (16u << 20)
#define HEARTBEAT_MS 100
#define STATS_MS 500
#define STATUS_PENDING_MAX (4u << 20)

#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#endif

/* ---- options -------------------------------------------------------------------------- */

static const char *opt_ifaces[MAX_IFACES];
static int n_ifaces;
static const char *opt_write;
static const char *opt_bpf = "";
static unsigned opt_snaplen = MAX_SNAPLEN;
static unsigned opt_buffer_mb = 32;
static int opt_timeout_ms = 20;
static int opt_promisc = 1;
static unsigned long long opt_ring_bytes;
static unsigned long opt_ring_files;
static const char *opt_nrb;
static int opt_drop = 0;
static uid_t opt_uid;
static gid_t opt_gid;
static unsigned long long opt_count;

/* ---- state ---------------------------------------------------------------------------- */

struct iface {
    const char *name;
    pcap_t *p;
    int fd;
    int linktype;
    unsigned snaplen;
    int nano;
    int alive;
    struct pcap_stat st;
};

static struct iface ifs[MAX_IFACES];
static int pcapng;                   /* output format */
static char *abs_path;               /* -w made absolute */
static char *ring_stem, *ring_ext;   /* os.path.splitext(abs_path) */
static unsigned char *nrb;           /* -n bytes */
static size_t nrb_len;

static int out_fd = -1;
static unsigned long long cur_seq;
static unsigned long long file_off;  /* bytes of the current file already written */
static unsigned long long file_pkts; /* packets in the current file (written or buffered) */
static unsigned long long packets_written;   /* handed to the kernel by write() */
static unsigned long long packets_total;     /* accepted (buffered or written) */

static unsigned char *wbuf;
static size_t wlen;
static uint32_t *bound_end;          /* end offset of each record in wbuf */
static unsigned char *bound_pkt;     /* 1 when that record is a packet */
static size_t nbounds;
static size_t buf_pkts;

static int write_failed;
static int count_reached;
static volatile sig_atomic_t stop_signal;
static pid_t parent_pid;

enum { END_STOPPED, END_COUNT, END_WRITE, END_IFGONE };
static int end_reason = END_STOPPED;
static const char *end_names[] = {"stopped", "count", "write-error", "ifgone"};

/* ---- status output (non-blocking, coalescing) ---------------------------------------- */

static char *st_pending;             /* bytes not yet accepted by the pipe */
static size_t st_pending_len;
static char st_flush_slot[256];      /* newest superseded-able flush line, if pending */
static char *st_stats_slot[MAX_IFACES];

static void st_append(const char *s, size_t n)
{
    if (st_pending_len + n > STATUS_PENDING_MAX)
        return;                      /* the reader is gone or stuck; never grow without bound */
    char *np = realloc(st_pending, st_pending_len + n);
    if (!np)
        return;
    st_pending = np;
    memcpy(st_pending + st_pending_len, s, n);
    st_pending_len += n;
}

static void st_move_slots(void)
{
    if (st_flush_slot[0]) {
        st_append(st_flush_slot, strlen(st_flush_slot));
        st_flush_slot[0] = 0;
    }
    for (int i = 0; i < n_ifaces; i++)
        if (st_stats_slot[i]) {
            st_append(st_stats_slot[i], strlen(st_stats_slot[i]));
            free(st_stats_slot[i]);
            st_stats_slot[i] = NULL;
        }
}

/* Write what is pending; returns when the pipe would block (or everything is out). */
static void st_pump(void)
{
    for (;;) {
        if (!st_pending_len) {
            int any = st_flush_slot[0] != 0;
            for (int i = 0; i < n_ifaces && !any; i++)
                any = st_stats_slot[i] != NULL;
            if (!any)
                return;
            st_move_slots();
            if (!st_pending_len)
                return;
        }
        ssize_t n = write(STDOUT_FILENO, st_pending, st_pending_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                st_pending_len = 0;  /* EPIPE: nobody listens any more */
                st_flush_slot[0] = 0;
                for (int i = 0; i < n_ifaces; i++) {
                    free(st_stats_slot[i]);
                    st_stats_slot[i] = NULL;
                }
            }
            return;
        }
        memmove(st_pending, st_pending + n, st_pending_len - (size_t)n);
        st_pending_len -= (size_t)n;
    }
}

/* kind: 0 = must arrive in order; 1 = flush (superseded by the next); 2+i = stats of iface i */
static void status(int kind, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)(sizeof line - 2);
    for (int i = 0; i < n; i++)      /* one event, one line */
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    line[n] = 0;
    if (st_pending_len || st_flush_slot[0]) {
        if (kind == 1 && (size_t)n < sizeof st_flush_slot) {
            memcpy(st_flush_slot, line, (size_t)n + 1);
            st_pump();
            return;
        }
        if (kind >= 2) {
            free(st_stats_slot[kind - 2]);
            st_stats_slot[kind - 2] = strdup(line);
            st_pump();
            return;
        }
        st_move_slots();
    }
    st_append(line, (size_t)n);
    st_pump();
}

/* At exit: wait for the reader to take everything (it may be slow, not gone). */
static void status_finish(void)
{
    int fl = fcntl(STDOUT_FILENO, F_GETFL);
    if (fl >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, fl & ~O_NONBLOCK);
    st_move_slots();
    st_pump();
}

static void die_startup(const char *kind, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    status(0, "error %s %s", kind, msg);
    status_finish();
    if (out_fd >= 0)
        close(out_fd);
    exit(2);
}

/* ---- helpers -------------------------------------------------------------------------- */

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned long long real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static int parse_ull(const char *s, unsigned long long *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static int dlt_to_linktype(int dlt)
{
    /* The few DLT_ values whose file LINKTYPE_ differs (pcap-common.c's table). */
    switch (dlt) {
#ifdef DLT_RAW
    case DLT_RAW: return 101;
#endif
#if defined(DLT_ATM_RFC1483) && DLT_ATM_RFC1483 != 100
    case DLT_ATM_RFC1483: return 100;
#endif
    default: return dlt;
    }
}

/* Python's os.path.splitext: the extension starts at the last dot of the last path
 * component, unless everything before that dot in the component is dots. */
static void split_ext(const char *path, char **stem, char **ext)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t cut = strlen(path);
    if (dot) {
        for (const char *q = base; q < dot; q++)
            if (*q != '.') {
                cut = (size_t)(dot - path);
                break;
            }
    }
    *stem = strndup(path, cut);
    *ext = strdup(path + cut);
}

static char *file_name(unsigned long long seq)
{
    if (!opt_ring_files)
        return strdup(abs_path);
    size_t n = strlen(ring_stem) + strlen(ring_ext) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s_%05llu%s", ring_stem, seq, ring_ext);
    return s;
}

/* ---- the buffered writer -------------------------------------------------------------- */

static void write_error(int err);

/* Write the buffer. On failure cut the file back to the last whole record. */
static int flush_buf(void)
{
    if (!wlen || out_fd < 0) {
        wlen = nbounds = buf_pkts = 0;
        return write_failed ? -1 : 0;
    }
    size_t done = 0;
    int err = 0;
    while (done < wlen) {
        ssize_t n = write(out_fd, wbuf + done, wlen - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (n == 0) {
            err = ENOSPC;
            break;
        }
        done += (size_t)n;
    }
    if (!err) {
        file_off += wlen;
        packets_written += buf_pkts;
        wlen = nbounds = buf_pkts = 0;
        return 0;
    }
    size_t good = 0, pk = 0;
    for (size_t i = 0; i < nbounds && bound_end[i] <= done; i++) {
        good = bound_end[i];
        pk += bound_pkt[i];
    }
    if (good < done) {
        if (ftruncate(out_fd, (off_t)(file_off + good)) != 0) {
            /* nothing better to do: the reader stops at the cut record */
        }
    }
    file_off += good;
    packets_written += pk;
    packets_total = packets_written;
    wlen = nbounds = buf_pkts = 0;
    write_error(err);
    return -1;
}

static int buf_reserve(size_t need)
{
    if (wlen + need > WBUF_SIZE || nbounds + 1 >= MAX_BOUNDS)
        return flush_buf();
    return 0;
}

static void buf_put(const void *p, size_t n)
{
    memcpy(wbuf + wlen, p, n);
    wlen += n;
}

static void buf_pad(size_t n)
{
    memset(wbuf + wlen, 0, n);
    wlen += n;
}

static void buf_u32(uint32_t v) { buf_put(&v, 4); }
static void buf_u16(uint16_t v) { buf_put(&v, 2); }

static void buf_end_record(int is_pkt)
{
    bound_end[nbounds] = (uint32_t)wlen;
    bound_pkt[nbounds] = (unsigned char)is_pkt;
    nbounds++;
    buf_pkts += (size_t)is_pkt;
}

static void buf_opt(uint16_t code, const void *val, uint16_t len)
{
    buf_u16(code);
    buf_u16(len);
    buf_put(val, len);
    buf_pad((4 - len % 4) % 4);
}

static int put_header_blocks(void)
{
    if (!pcapng) {
        struct iface *f = &ifs[0];
        if (buf_reserve(24))
            return -1;
        buf_u32(f->nano ? 0xA1B23C4D : 0xA1B2C3D4);
        buf_u16(2);
        buf_u16(4);
        buf_u32(0);
        buf_u32(0);
        buf_u32(f->snaplen);
        buf_u32((uint32_t)f->linktype);
        buf_end_record(0);
        return 0;
    }
    static const char app[] = "wscap-capture";
    uint16_t applen = (uint16_t)strlen(app);
    uint32_t shb_len = 28 + 4 + ((applen + 3u) & ~3u) + 4;
    if (buf_reserve(shb_len))
        return -1;
    buf_u32(0x0A0D0D0A);
    buf_u32(shb_len);
    buf_u32(0x1A2B3C4D);
    buf_u16(1);
    buf_u16(0);
    uint64_t seclen = UINT64_MAX;    /* -1: unknown */
    buf_put(&seclen, 8);
    buf_opt(4, app, applen);         /* shb_userappl */
    buf_u32(0);                      /* opt_endofopt */
    buf_u32(shb_len);
    buf_end_record(0);
    for (int i = 0; i < n_ifaces; i++) {
        struct iface *f = &ifs[i];
        uint16_t nl = (uint16_t)strlen(f->name);
        uint32_t len = 20 + 4 + ((nl + 3u) & ~3u) + 8 + 4;
        if (buf_reserve(len))
            return -1;
        buf_u32(1);
        buf_u32(len);
        buf_u16((uint16_t)f->linktype);
        buf_u16(0);
        buf_u32(f->snaplen);
        buf_opt(2, f->name, nl);     /* if_name */
        unsigned char res = f->nano ? 9 : 6;
        buf_opt(9, &res, 1);         /* if_tsresol */
        buf_u32(0);
        buf_u32(len);
        buf_end_record(0);
    }
    size_t pos = 0;                  /* -n blocks, validated at startup */
    while (pos < nrb_len) {
        uint32_t bl;
        memcpy(&bl, nrb + pos + 4, 4);
        if (buf_reserve(bl))
            return -1;
        if (bl > WBUF_SIZE - wlen)   /* larger than the buffer: write it through */
            return -1;
        buf_put(nrb + pos, bl);
        buf_end_record(0);
        pos += bl;
    }
    return 0;
}

/* Open the next file (the first, or the next of the ring) and write its header blocks. */
static int open_next_file(int startup)
{
    if (flush_buf())
        return -1;
    unsigned long long seq = cur_seq + 1;
    char *name = file_name(seq);
    if (!name) {
        if (startup)
            die_startup("open", "out of memory");
        write_error(ENOMEM);
        return -1;
    }
    /* O_NOFOLLOW: every file of a ring, not only the first (which wscap checked before
     * starting), may have been planted as a symlink since; opening one fails with ELOOP. */
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int e = errno;
        const char *why = e == ELOOP ? "is a symbolic link; refusing to follow it" : strerror(e);
        if (startup)
            die_startup("open", "%s: %s", name, why);
        if (e == ELOOP && !write_failed) {
            write_failed = 1;
            end_reason = END_WRITE;
            status(0, "error write %s: %s", name, why);
        } else {
            write_error(e);
        }
        free(name);
        return -1;
    }
    if (out_fd >= 0)
        close(out_fd);
    out_fd = fd;
    cur_seq = seq;
    file_off = 0;
    file_pkts = 0;
    if (opt_ring_files && seq > opt_ring_files) {
        char *old = file_name(seq - opt_ring_files);
        if (old) {
            unlink(old);
            free(old);
        }
    }
    status(0, "file seq=%llu path=%s", seq, name);
    free(name);
    if (put_header_blocks() || flush_buf())
        return -1;                   /* write_error() has said why */
    return 0;
}

static void write_error(int err)
{
    if (write_failed)
        return;
    write_failed = 1;
    end_reason = END_WRITE;
    status(0, "error write %s", strerror(err));
}

/* ---- packets -------------------------------------------------------------------------- */

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    struct iface *f = (struct iface *)user;
    if (write_failed || count_reached)
        return;
    uint32_t caplen = h->caplen;
    size_t rec = pcapng ? 32 + ((caplen + 3u) & ~3u) : 16 + caplen;
    if (opt_ring_files && file_pkts > 0 && file_off + wlen + rec > opt_ring_bytes) {
        if (open_next_file(0)) {
            pcap_breakloop(f->p);
            return;
        }
    }
    if (buf_reserve(rec)) {
        pcap_breakloop(f->p);
        return;
    }
    if (pcapng) {
        uint64_t ts = f->nano
            ? (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec
            : (uint64_t)h->ts.tv_sec * 1000000ull + (uint64_t)h->ts.tv_usec;
        buf_u32(6);
        buf_u32((uint32_t)rec);
        buf_u32((uint32_t)(f - ifs));
        buf_u32((uint32_t)(ts >> 32));
        buf_u32((uint32_t)ts);
        buf_u32(caplen);
        buf_u32(h->len);
        buf_put(data, caplen);
        buf_pad((4 - caplen % 4) % 4);
        buf_u32((uint32_t)rec);
    } else {
        buf_u32((uint32_t)h->ts.tv_sec);
        buf_u32((uint32_t)h->ts.tv_usec);
        buf_u32(caplen);
        buf_u32(h->len);
        buf_put(data, caplen);
    }
    buf_end_record(1);
    file_pkts++;
    packets_total++;
    /* Write in chunks of ~64 KiB rather than 1 MiB: the kernel then copies into the page
     * cache from data still in the CPU cache. Measured with big GSO frames on a veth
     * bridge (scripts/bench/capturer_rate.py, bulk): 1 MiB chunks cost ~4x the kernel
     * copy time and dropped 30-40% where 64 KiB chunks dropped as little as tcpdump. */
    if (wlen >= FLUSH_AT && flush_buf()) {
        pcap_breakloop(f->p);
        return;
    }
    if (opt_count && packets_total >= opt_count) {
        count_reached = 1;
        end_reason = END_COUNT;
        pcap_breakloop(f->p);
    }
}

/* ---- interfaces ----------------------------------------------------------------------- */

static int n_alive(void)
{
    int n = 0;
    for (int i = 0; i < n_ifaces; i++)
        n += ifs[i].alive;
    return n;
}

static void iface_gone(struct iface *f, const char *msg)
{
    if (!f->alive)
        return;
    pcap_stats(f->p, &f->st);        /* the last numbers, when it still answers */
    f->alive = 0;
    status(0, "error ifgone %s %s", f->name, msg);
}

/* One pcap_dispatch on one handle; returns packets handled (>= 0) or -1 when it failed. */
static int dispatch(struct iface *f, short revents)
{
    if (!f->alive || write_failed || count_reached)
        return 0;
    int rc = pcap_dispatch(f->p, -1, on_packet, (u_char *)f);
    if (rc == PCAP_ERROR_BREAK)
        return 0;
    if (rc < 0) {
        iface_gone(f, pcap_geterr(f->p));
        return -1;
    }
    if (rc == 0 && (revents & (POLLERR | POLLHUP | POLLNVAL))) {
        /* libpcap saw nothing but the socket reports an error: the device went away. */
        int err = 0;
        socklen_t len = sizeof err;
        if (revents & POLLNVAL)
            iface_gone(f, "capture descriptor closed");
        else if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
            iface_gone(f, strerror(err));
        else if (revents & POLLHUP)
            iface_gone(f, "hangup on packet socket");
    }
    return rc;
}

static void print_stats(void)
{
    for (int i = 0; i < n_ifaces; i++) {
        struct iface *f = &ifs[i];
        if (f->alive)
            pcap_stats(f->p, &f->st);
        status(2 + i, "stats if=%d recv=%u drop=%u ifdrop=%u", i,
               f->st.ps_recv, f->st.ps_drop, f->st.ps_ifdrop);
    }
}

static void print_flush(void)
{
    status(1, "flush ts=%llu packets=%llu file=%llu offset=%llu",
           real_ns(), packets_written, cur_seq, file_off);
}

static void open_iface(struct iface *f)
{
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    f->p = pcap_create(f->name, errbuf);
    if (!f->p)
        die_startup("open", "%s: %s", f->name, errbuf);
    pcap_set_snaplen(f->p, (int)opt_snaplen);
    pcap_set_promisc(f->p, opt_promisc);
    pcap_set_buffer_size(f->p, (int)(opt_buffer_mb > 2047 ? 2047u << 20 : opt_buffer_mb << 20));
    pcap_set_timeout(f->p, opt_timeout_ms);
    f->nano = pcap_set_tstamp_precision(f->p, PCAP_TSTAMP_PRECISION_NANO) == 0;
    int rc = pcap_activate(f->p);
    if (rc < 0) {
        const char *msg = pcap_geterr(f->p);
        if (rc == PCAP_ERROR_NO_SUCH_DEVICE)
            die_startup("nodev", "%s: %s", f->name, msg && *msg ? msg : "no such device");
        if (rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED)
            die_startup("perm", "%s: %s", f->name, msg && *msg ? msg : "permission denied");
        if (rc == PCAP_ERROR_IFACE_NOT_UP)
            die_startup("open", "%s: interface is not up", f->name);
        die_startup("open", "%s: %s", f->name, msg && *msg ? msg : pcap_statustostr(rc));
    }
    if (strcmp(f->name, "any") == 0)
        pcap_set_datalink(f->p, DLT_LINUX_SLL2);   /* keeps the interface index; best effort */
    if (f->nano && pcap_get_tstamp_precision(f->p) != PCAP_TSTAMP_PRECISION_NANO)
        f->nano = 0;
    if (opt_bpf[0]) {
        struct bpf_program prog;
        if (pcap_compile(f->p, &prog, opt_bpf, 1, PCAP_NETMASK_UNKNOWN) != 0)
            die_startup("filter", "%s", pcap_geterr(f->p));
        if (pcap_setfilter(f->p, &prog) != 0)
            die_startup("filter", "%s", pcap_geterr(f->p));
        pcap_freecode(&prog);
    }
    if (pcap_setnonblock(f->p, 1, errbuf) != 0)
        die_startup("open", "%s: %s", f->name, errbuf);
    f->fd = pcap_get_selectable_fd(f->p);
    if (f->fd < 0)
        die_startup("open", "%s: no selectable descriptor", f->name);
    f->linktype = dlt_to_linktype(pcap_datalink(f->p));
    int snap = pcap_snapshot(f->p);
    f->snaplen = snap > 0 ? (unsigned)snap : opt_snaplen;
    f->alive = 1;
}

/* ---- startup -------------------------------------------------------------------------- */

static void usage_error(const char *msg)
{
    die_startup("usage", "%s (usage: wscap-capture -w FILE [-i IFACE]... [-f BPF] [-s SNAPLEN] "
                "[-B MB] [-t MS] [-p] [-C BYTES -W NFILES] [-n NRBFILE] [-Z UID:GID] [-c COUNT])", msg);
}

static void read_nrb(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_startup("open", "-n %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (unsigned long long)sb.st_size > MAX_NRB)
        die_startup("usage", "-n %s: not a regular file of at most %u bytes", path, MAX_NRB);
    nrb_len = (size_t)sb.st_size;
    nrb = malloc(nrb_len ? nrb_len : 1);
    if (!nrb)
        die_startup("open", "-n %s: out of memory", path);
    size_t got = 0;
    while (got < nrb_len) {
        ssize_t n = read(fd, nrb + got, nrb_len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die_startup("open", "-n %s: %s", path, n < 0 ? strerror(errno) : "short read");
        got += (size_t)n;
    }
    close(fd);
    /* A whole number of well-formed blocks in our byte order, none that would
     * start a section or describe an interface (that would shift the ids). */
    size_t pos = 0;
    while (pos < nrb_len) {
        uint32_t type, len, tail;
        if (nrb_len - pos < 12)
            die_startup("usage", "-n %s: truncated block at byte %zu", path, pos);
        memcpy(&type, nrb + pos, 4);
        memcpy(&len, nrb + pos + 4, 4);
        if (len < 12 || len % 4 || len > nrb_len - pos || len > WBUF_SIZE / 2)
            die_startup("usage", "-n %s: bad block length %u at byte %zu", path, len, pos);
        memcpy(&tail, nrb + pos + len - 4, 4);
        if (tail != len)
            die_startup("usage", "-n %s: block at byte %zu: trailing length %u != %u", path, pos, tail, len);
        if (type == 0x0A0D0D0A || type == 1)
            die_startup("usage", "-n %s: block at byte %zu is a section header or interface "
                        "description block", path, pos);
        pos += len;
    }
}

static void set_pdeathsig(void)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent_pid)     /* the parent died before the line above */
        _exit(1);
}

static void on_signal(int sig)
{
    stop_signal = sig;
}

int main(int argc, char **argv)
{
    parent_pid = getppid();
    set_pdeathsig();
    signal(SIGPIPE, SIG_IGN);
    {
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl >= 0)
            fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK);
        fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);    /* fails harmlessly if not a pipe */
    }
    sigset_t stopset, waitmask;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGHUP);
    sigprocmask(SIG_BLOCK, &stopset, &waitmask);   /* delivered only inside ppoll() */
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGHUP);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int c;
    unsigned long long v;
    int have_C = 0, have_W = 0;
    opterr = 0;
    while ((c = getopt(argc, argv, "w:i:f:s:B:t:pC:W:n:Z:c:")) != -1) {
        switch (c) {
        case 'w': opt_write = optarg; break;
        case 'i':
            if (n_ifaces >= MAX_IFACES)
                usage_error("too many -i");
            if (!*optarg || strlen(optarg) > 255 || strpbrk(optarg, " \t\r\n="))
                usage_error("bad interface name");
            for (int i = 0; i < n_ifaces; i++)
                if (strcmp(opt_ifaces[i], optarg) == 0)
                    usage_error("interface given twice");
            opt_ifaces[n_ifaces++] = optarg;
            break;
        case 'f': opt_bpf = optarg; break;
        case 's':
            if (parse_ull(optarg, &v))
                usage_error("-s needs a number");
            opt_snaplen = (v == 0 || v > MAX_SNAPLEN) ? MAX_SNAPLEN : (unsigned)v;
            break;
        case 'B':
            if (parse_ull(optarg, &v) || v == 0 || v > 4096)
                usage_error("-B needs a size in MB (1..4096)");
            opt_buffer_mb = (unsigned)v;
            break;
        case 't':
            /* 0 (libpcap: "no timeout") leaves TPACKET_V3 blocks unretired until full:
             * a quiet capture would never reach the file. */
            if (parse_ull(optarg, &v) || v < 1 || v > 10000)
                usage_error("-t needs milliseconds (1..10000)");
            opt_timeout_ms = (int)v;
            break;
        case 'p': opt_promisc = 0; break;
        case 'C':
            if (parse_ull(optarg, &v) || v < 1024)
                usage_error("-C needs a size in bytes (>= 1024)");
            opt_ring_bytes = v;
            have_C = 1;
            break;
        case 'W':
            if (parse_ull(optarg, &v) || v == 0 || v > 100000)
                usage_error("-W needs a file count (1..100000)");
            opt_ring_files = (unsigned long)v;
            have_W = 1;
            break;
        case 'n': opt_nrb = optarg; break;
        case 'Z': {
            unsigned long long u, g;
            char *colon = strchr(optarg, ':');
            if (!colon)
                usage_error("-Z needs UID:GID");
            *colon = 0;
            if (parse_ull(optarg, &u) || parse_ull(colon + 1, &g) || u > UINT32_MAX - 1 || g > UINT32_MAX - 1)
                usage_error("-Z needs numeric UID:GID");
            opt_uid = (uid_t)u;
            opt_gid = (gid_t)g;
            opt_drop = 1;
            break;
        }
        case 'c':
            if (parse_ull(optarg, &v) || v == 0)
                usage_error("-c needs a packet count (>= 1)");
            opt_count = v;
            break;
        default: {
            char m[64];
            snprintf(m, sizeof m, "unknown option or missing value: -%c", optopt ? optopt : '?');
            usage_error(m);
        }
        }
    }
    if (optind < argc)
        usage_error("unexpected argument (quote the filter and pass it with -f)");
    if (!opt_write || !*opt_write)
        usage_error("-w FILE is required");
    if (strpbrk(opt_write, "\r\n"))
        usage_error("-w: the file name must not contain a line break");
    if (have_C != have_W)
        usage_error("-C and -W go together");
    if (!n_ifaces)
        opt_ifaces[n_ifaces++] = "any";
    pcapng = !(ends_with_ci(opt_write, ".pcap") || ends_with_ci(opt_write, ".cap"));
    if (!pcapng && n_ifaces > 1)
        usage_error("classic pcap (.pcap/.cap) holds one interface; use a .pcapng file for several");
    if (!pcapng && opt_nrb)
        usage_error("-n needs pcapng output (the file name must not end in .pcap/.cap)");
    if (opt_write[0] == '/') {
        abs_path = strdup(opt_write);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            die_startup("open", "getcwd: %s", strerror(errno));
        size_t n = strlen(cwd) + strlen(opt_write) + 2;
        abs_path = malloc(n);
        if (abs_path)
            snprintf(abs_path, n, "%s/%s", cwd, opt_write);
    }
    if (!abs_path)
        die_startup("open", "out of memory");
    split_ext(abs_path, &ring_stem, &ring_ext);
    wbuf = malloc(WBUF_SIZE);
    bound_end = malloc(MAX_BOUNDS * sizeof *bound_end);
    bound_pkt = malloc(MAX_BOUNDS);
    if (!wbuf || !bound_end || !bound_pkt || !ring_stem || !ring_ext)
        die_startup("open", "out of memory");
    if (opt_nrb)
        read_nrb(opt_nrb);

    for (int i = 0; i < n_ifaces; i++) {
        ifs[i].name = opt_ifaces[i];
        ifs[i].fd = -1;
        open_iface(&ifs[i]);
    }

    if (opt_drop) {
        if (setgroups(0, NULL) != 0 || setgid(opt_gid) != 0 || setuid(opt_uid) != 0)
            die_startup("perm", "cannot switch to uid %lu gid %lu: %s",
                        (unsigned long)opt_uid, (unsigned long)opt_gid, strerror(errno));
        set_pdeathsig();             /* setuid cleared it */
    }

    if (open_next_file(1))
        die_startup("open", "%s: cannot write the file header", abs_path);
    {
        char lts[MAX_IFACES * 12] = "";
        size_t off = 0;
        unsigned snap = 0;
        int all_nano = 1;
        for (int i = 0; i < n_ifaces; i++) {
            off += (size_t)snprintf(lts + off, sizeof lts - off, "%s%d", i ? "," : "", ifs[i].linktype);
            if (ifs[i].snaplen > snap)
                snap = ifs[i].snaplen;
            all_nano &= ifs[i].nano;
        }
        status(0, "ready linktypes=%s snaplen=%u tsresol=%d format=%s", lts, snap,
               all_nano ? 9 : 6, pcapng ? "pcapng" : "pcap");
    }

    /* Watch stdin only when it can report the parent going away (a pipe, socket or tty);
     * /dev/null would read EOF at once. */
    int watch_stdin = 0;
    {
        struct stat sb;
        if (fstat(STDIN_FILENO, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)
                                              || isatty(STDIN_FILENO))) {
            watch_stdin = 1;
            int fl = fcntl(STDIN_FILENO, F_GETFL);
            if (fl >= 0)
                fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK);
        }
    }

    struct pollfd pfd[MAX_IFACES + 2];
    int idx[MAX_IFACES + 2];
    long long now = mono_ms();
    long long last_flush_line = now, next_stats = now;
    int stopping = 0;

    while (!stopping) {
        int n = 0;
        for (int i = 0; i < n_ifaces; i++)
            if (ifs[i].alive) {
                pfd[n].fd = ifs[i].fd;
                pfd[n].events = POLLIN;
                pfd[n].revents = 0;
                idx[n++] = i;
            }
        int stdin_slot = -1;
        if (watch_stdin) {
            stdin_slot = n;
            pfd[n].fd = STDIN_FILENO;
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            idx[n++] = -1;
        }
        int out_slot = -1;
        if (st_pending_len) {
            out_slot = n;
            pfd[n].fd = STDOUT_FILENO;
            pfd[n].events = POLLOUT;
            pfd[n].revents = 0;
            idx[n++] = -2;
        }
        now = mono_ms();
        long long wait = last_flush_line + HEARTBEAT_MS - now;
        if (next_stats - now < wait)
            wait = next_stats - now;
        if (wait < 0)
            wait = 0;
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000};
        int r = ppoll(pfd, (nfds_t)n, &ts, &waitmask);
        if (r < 0 && errno != EINTR) {
            status(0, "error open poll: %s", strerror(errno));
            break;
        }
        if (stop_signal)
            break;
        if (r > 0 && stdin_slot >= 0 && pfd[stdin_slot].revents) {
            char junk[256];
            ssize_t k = read(STDIN_FILENO, junk, sizeof junk);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                break;               /* the parent closed the pipe (or died) */
        }
        for (int j = 0; j < n; j++)
            if (idx[j] >= 0)
                dispatch(&ifs[idx[j]], r > 0 ? pfd[j].revents : 0);
        if (out_slot >= 0)
            st_pump();
        if (wlen) {
            unsigned long long before = packets_written;
            if (flush_buf() == 0 && packets_written >= before) {
                print_flush();
                last_flush_line = mono_ms();
            }
        }
        if (write_failed || count_reached)
            break;
        if (!n_alive()) {
            end_reason = END_IFGONE;
            break;
        }
        now = mono_ms();
        if (now - last_flush_line >= HEARTBEAT_MS) {
            print_flush();
            last_flush_line = now;
        }
        if (now >= next_stats) {
            print_stats();
            next_stats = now + STATS_MS;
        }
    }

    /* Drain: what the kernel ring already holds, including the current block, which
     * the kernel hands over only when its retire timeout (-t) fires. */
    if (!write_failed && !count_reached && n_alive()) {
        long long t0 = mono_ms();
        long long settle = t0 + 2LL * opt_timeout_ms + 50;
        long long hard = settle + 3000;
        for (;;) {
            int got = 0;
            for (int i = 0; i < n_ifaces; i++) {
                int k = dispatch(&ifs[i], 0);
                if (k > 0)
                    got += k;
            }
            if (wlen) {
                if (flush_buf() == 0)
                    print_flush();
            }
            if (write_failed || count_reached || !n_alive())
                break;
            now = mono_ms();
            if ((now >= settle && !got) || now >= hard)
                break;
            if (!got) {
                struct pollfd dp[MAX_IFACES];
                int m = 0;
                for (int i = 0; i < n_ifaces; i++)
                    if (ifs[i].alive) {
                        dp[m].fd = ifs[i].fd;
                        dp[m].events = POLLIN;
                        dp[m++].revents = 0;
                    }
                long long w = settle - now;
                if (w > 10)
                    w = 10;
                if (w < 0)
                    w = 0;
                poll(dp, (nfds_t)m, (int)w);
            }
        }
        if (!n_alive() && end_reason == END_STOPPED)
            end_reason = END_IFGONE;
    }
    if (!write_failed)
        flush_buf();
    print_flush();
    print_stats();
    if (out_fd >= 0) {
        close(out_fd);
        out_fd = -1;
    }
    status(0, "end reason=%s packets=%llu", end_names[end_reason], packets_written);
    status_finish();
    for (int i = 0; i < n_ifaces; i++)
        if (ifs[i].p)
            pcap_close(ifs[i].p);
    return write_failed ? 3 : 0;
}
