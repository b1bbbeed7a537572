/* rootless-monitor: the small process that stays with a running container.
 *
 * The rootless CLI forks, starts the container (which becomes this process's
 * child), and then execs this program, handing over the container's pid and its
 * stdio fds. From then on the monitor
 *   - copies the container's output to its log file (CRI "k8s-file" format) and to
 *     every attached client,
 *   - forwards attached clients' input and terminal resizes to the container,
 *   - on exit, writes the exit status atomically to the exit files and tells the
 *     clients,
 * so that `attach`, `logs -f`, `wait` and exit codes work after the CLI is gone.
 * It is a separate C program so that it costs about a megabyte, not a Python
 * interpreter.
 *
 * Usage: rootless-monitor --pid N --socket-fd FD --log PATH --exit-file PATH
 *          [--exit-file PATH] [--pty-fd FD | --stdin-fd FD --stdout-fd FD --stderr-fd FD]
 *          [--client-fd FD] [--notify-fd FD] [--on-exit PROGRAM ARG...]
 *
 * --notify-fd is the seccomp listener of a --fakeroot container: the monitor
 * answers its chown calls with success and records the requested owner in the
 * file's user.containers.override_stat xattr (what `rootless commit` packs).
 *
 * --on-exit must come last: that command runs (and is waited for) after the exit
 * status is written and before attached clients hear of the exit; `run --rm` uses
 * it so the container is removed even when the CLI is gone.
 *
 * Wire protocol on the attach socket (both directions): frames of
 *   1 byte type, 4 bytes big-endian payload length, payload.
 * Client -> monitor: 'I' input bytes, 'E' end of input, 'W' resize (rows u16, cols u16).
 * Monitor -> client: 'O' stdout bytes, 'R' stderr bytes, 'X' exit (int32 status).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 32
#define MAX_EXIT_FILES 4
#define BUF 65536
#define FRAME_HDR 5

struct client {
    int fd;
    unsigned char in[BUF + FRAME_HDR];
    size_t in_len;
};

struct stream {
    int fd;                /* container output, -1 once closed */
    char type;             /* 'O' or 'R' */
    const char *name;      /* "stdout" / "stderr" */
    char line[BUF];        /* pending partial line for the log */
    size_t line_len;
};

static struct {
    pid_t pid;
    int listen_fd;
    int log_fd;
    int input_fd;          /* pty master or stdin pipe, -1 when none */
    int is_tty;
    const char *exit_files[MAX_EXIT_FILES];
    int n_exit_files;
    struct client clients[MAX_CLIENTS];
    int n_clients;
    struct stream streams[2];
    int n_streams;
    char **on_exit;
    int notify_fd;
    /* Input for the container, written as it can take it: the monitor never blocks
     * on the container's stdin (it must keep draining the container's output). */
    char *in_buf;
    size_t in_len, in_cap;
    int in_eof; /* close stdin once in_buf is written */
} M;

#define IN_HIGH_WATER (4u << 20) /* stop reading clients' input above this */

static void close_input(void)
{
    if (M.input_fd >= 0 && !M.is_tty)
        close(M.input_fd);
    if (!M.is_tty)
        M.input_fd = -1;
    M.in_len = 0;
}

static void queue_input(const unsigned char *p, uint32_t len)
{
    if (M.in_len + len > M.in_cap) {
        size_t cap = M.in_cap ? M.in_cap : 65536;
        while (cap < M.in_len + len)
            cap *= 2;
        char *b = realloc(M.in_buf, cap);
        if (b == NULL)
            return; /* out of memory: this input is lost, the container goes on */
        M.in_buf = b;
        M.in_cap = cap;
    }
    memcpy(M.in_buf + M.in_len, p, len);
    M.in_len += len;
}

static void flush_input(void)
{
    while (M.in_len > 0 && M.input_fd >= 0) {
        ssize_t n = write(M.input_fd, M.in_buf, M.in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                close_input(); /* the container closed its stdin */
            break;
        }
        memmove(M.in_buf, M.in_buf + n, M.in_len - (size_t)n);
        M.in_len -= (size_t)n;
    }
    if (M.in_len == 0 && M.in_eof && !M.is_tty && M.input_fd >= 0) {
        close(M.input_fd); /* the container sees EOF on stdin */
        M.input_fd = -1;
    }
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < -1 || v > 1 << 30)
        return -1;
    *out = (int)v;
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, 1000) <= 0)
                    return -1; /* a stuck client is dropped rather than blocking the container */
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void drop_client(int i)
{
    close(M.clients[i].fd);
    M.clients[i] = M.clients[--M.n_clients];
}

static void send_frame(int i, char type, const void *data, uint32_t len)
{
    unsigned char hdr[FRAME_HDR] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                                    (unsigned char)(len >> 8), (unsigned char)len};
    if (write_all(M.clients[i].fd, hdr, sizeof(hdr)) < 0 || write_all(M.clients[i].fd, data, len) < 0)
        drop_client(i);
}

static void broadcast(char type, const void *data, uint32_t len)
{
    for (int i = M.n_clients - 1; i >= 0; i--)
        send_frame(i, type, data, len);
}

static void timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%09ldZ", ts.tv_nsec);
}

/* One CRI log record: "<time> <stream> <F|P> <text>\n". */
static void log_record(struct stream *s, const char *text, size_t len, char tag)
{
    if (M.log_fd < 0)
        return;
    char hdr[96];
    char ts[64];
    timestamp(ts, sizeof(ts));
    int n = snprintf(hdr, sizeof(hdr), "%s %s %c ", ts, s->name, tag);
    if (write_all(M.log_fd, hdr, (size_t)n) < 0 || write_all(M.log_fd, text, len) < 0 ||
        write_all(M.log_fd, "\n", 1) < 0) {
        /* disk full: keep relaying to clients, stop logging */
        close(M.log_fd);
        M.log_fd = -1;
    }
}

static void log_output(struct stream *s, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            size_t l = s->line_len;
            if (M.is_tty && l > 0 && s->line[l - 1] == '\r')
                l--;
            log_record(s, s->line, l, 'F');
            s->line_len = 0;
            continue;
        }
        if (s->line_len == sizeof(s->line)) {
            log_record(s, s->line, s->line_len, 'P');
            s->line_len = 0;
        }
        s->line[s->line_len++] = c;
    }
}


static void flush_partial(struct stream *s)
{
    if (s->line_len > 0) {
        log_record(s, s->line, s->line_len, 'P');
        s->line_len = 0;
    }
}

/* Returns 0 at EOF/EIO (the stream is done). */
static int pump_stream(struct stream *s)
{
    char buf[BUF];
    ssize_t n = read(s->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0) {
        flush_partial(s);
        return 0;
    }
    log_output(s, buf, (size_t)n);
    /* A prompt has no newline: log what is pending as a partial record now (CRI "P"),
     * so `logs` shows it, instead of waiting for a newline that may never come. */
    flush_partial(s);
    broadcast(s->type, buf, (uint32_t)n);
    return 1;
}

static void handle_frame(int i, char type, const unsigned char *p, uint32_t len)
{
    if (type == 'I' && M.input_fd >= 0) {
        queue_input(p, len);
        flush_input();
    } else if (type == 'E' && M.input_fd >= 0 && !M.is_tty) {
        M.in_eof = 1;
        flush_input();
    } else if (type == 'W' && M.is_tty && len == 4) {
        struct winsize ws;
        memset(&ws, 0, sizeof(ws));
        ws.ws_row = (unsigned short)((p[0] << 8) | p[1]);
        ws.ws_col = (unsigned short)((p[2] << 8) | p[3]);
        ioctl(M.input_fd, TIOCSWINSZ, &ws);
    }
    (void)i;
}

static void pump_client(int i)
{
    struct client *c = &M.clients[i];
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        drop_client(i);
        return;
    }
    c->in_len += (size_t)n;
    size_t off = 0;
    while (c->in_len - off >= FRAME_HDR) {
        const unsigned char *h = c->in + off;
        uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        if (len > BUF) {
            drop_client(i);
            return;
        }
        if (c->in_len - off < FRAME_HDR + len)
            break;
        handle_frame(i, (char)h[0], h + FRAME_HDR, len);
        off += FRAME_HDR + len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void add_client(int fd)
{
    if (M.n_clients == MAX_CLIENTS) {
        close(fd);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    M.clients[M.n_clients].fd = fd;
    M.clients[M.n_clients].in_len = 0;
    M.n_clients++;
}

static void write_exit_files(int status)
{
    char text[96];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(text, sizeof(text), "%d %lld.%09ld\n", status, (long long)ts.tv_sec, ts.tv_nsec);
    for (int i = 0; i < M.n_exit_files; i++) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", M.exit_files[i]);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            continue;
        int ok = write_all(fd, text, (size_t)n) == 0 && fsync(fd) == 0;
        close(fd);
        if (ok)
            rename(tmp, M.exit_files[i]);
        else
            unlink(tmp);
    }
}

static int exit_code(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return 255;
}

static int parse_args(int argc, char **argv, int *client_fd)
{
    int out_fd = -1, err_fd = -1, pty_fd = -1, in_fd = -1;
    const char *log_path = NULL;
    *client_fd = -1;
    M.listen_fd = -1;
    M.notify_fd = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--on-exit") == 0) {
            M.on_exit = &argv[i + 1];
            break;
        }
        int *target = NULL;
        if (strcmp(k, "--pid") == 0)
            target = &M.pid;
        else if (strcmp(k, "--socket-fd") == 0)
            target = &M.listen_fd;
        else if (strcmp(k, "--client-fd") == 0)
            target = client_fd;
        else if (strcmp(k, "--notify-fd") == 0)
            target = &M.notify_fd;
        else if (strcmp(k, "--pty-fd") == 0)
            target = &pty_fd;
        else if (strcmp(k, "--stdin-fd") == 0)
            target = &in_fd;
        else if (strcmp(k, "--stdout-fd") == 0)
            target = &out_fd;
        else if (strcmp(k, "--stderr-fd") == 0)
            target = &err_fd;
        else if (strcmp(k, "--log") == 0)
            log_path = v;
        else if (strcmp(k, "--exit-file") == 0 && M.n_exit_files < MAX_EXIT_FILES)
            M.exit_files[M.n_exit_files++] = v;
        else
            return -1;
        if (target != NULL && parse_int(v, target) < 0)
            return -1;
    }
    if (M.pid <= 0)
        return -1;
    M.log_fd = log_path ? open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
    M.is_tty = pty_fd >= 0;
    M.input_fd = M.is_tty ? pty_fd : in_fd;
    if (M.input_fd >= 0)
        fcntl(M.input_fd, F_SETFL, fcntl(M.input_fd, F_GETFL) | O_NONBLOCK);
    if (M.is_tty) {
        M.streams[M.n_streams++] = (struct stream){.fd = pty_fd, .type = 'O', .name = "stdout"};
    } else {
        if (out_fd >= 0)
            M.streams[M.n_streams++] = (struct stream){.fd = out_fd, .type = 'O', .name = "stdout"};
        if (err_fd >= 0)
            M.streams[M.n_streams++] = (struct stream){.fd = err_fd, .type = 'R', .name = "stderr"};
    }
    return 0;
}

/* ---------------------------------------------------------------- --fakeroot chown */

static int read_string(pid_t pid, unsigned long long addr, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, buf, cap - 1, (off_t)addr);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (strlen(buf) < (size_t)n || n < (ssize_t)(cap - 1)) ? 0 : (errno = ENAMETOOLONG, -1);
}

static int record_owner(const char *path, int follow, long long uid, long long gid)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return 0; /* symlinks carry no user xattrs */
    const char *name = "user.containers.override_stat";
    char old[128], val[128], kind[32];
    long long ou = 0, og = 0;
    unsigned mode = st.st_mode & 07777;
    snprintf(kind, sizeof(kind), "%s", S_ISDIR(st.st_mode) ? "dir" : "file");
    ssize_t n = follow ? getxattr(path, name, old, sizeof(old) - 1) : lgetxattr(path, name, old, sizeof(old) - 1);
    if (n > 0) {
        old[n] = '\0';
        char k2[32] = "";
        if (sscanf(old, "%lld:%lld:%o:%31s", &ou, &og, &mode, k2) >= 3 && k2[0] != '\0')
            snprintf(kind, sizeof(kind), "%s", k2);
    }
    if (uid == 0xFFFFFFFFLL || uid < 0)
        uid = ou;
    if (gid == 0xFFFFFFFFLL || gid < 0)
        gid = og;
    int len = snprintf(val, sizeof(val), "%lld:%lld:0%o:%s", uid, gid, mode, kind);
    int rc = follow ? setxattr(path, name, val, (size_t)len, 0) : lsetxattr(path, name, val, (size_t)len, 0);
    return rc < 0 ? 0 : 0; /* no xattr support must not break the package manager */
}

static int target_path(const struct seccomp_notif *n, char *out, size_t cap, int *follow, long long *uid,
                       long long *gid)
{
    pid_t pid = (pid_t)n->pid;
    const unsigned long long *a = n->data.args;
    char rel[4096];
    int dirfd = AT_FDCWD;
    *follow = 1;
    switch (n->data.nr) {
#ifdef __NR_chown
    case __NR_chown:
#endif
#ifdef __NR_lchown
    case __NR_lchown:
#endif
#if defined(__NR_chown) || defined(__NR_lchown)
        if (read_string(pid, a[0], rel, sizeof(rel)) < 0)
            return -EFAULT;
#ifdef __NR_lchown
        *follow = n->data.nr != __NR_lchown;
#endif
        *uid = (long long)(a[1] & 0xFFFFFFFF);
        *gid = (long long)(a[2] & 0xFFFFFFFF);
        break;
#endif
    case __NR_fchown:
        snprintf(out, cap, "/proc/%d/fd/%d", (int)pid, (int)a[0]);
        *uid = (long long)(a[1] & 0xFFFFFFFF);
        *gid = (long long)(a[2] & 0xFFFFFFFF);
        return 0;
    case __NR_fchownat:
        dirfd = (int)a[0];
        *uid = (long long)(a[2] & 0xFFFFFFFF);
        *gid = (long long)(a[3] & 0xFFFFFFFF);
        *follow = !(a[4] & AT_SYMLINK_NOFOLLOW);
        if (read_string(pid, a[1], rel, sizeof(rel)) < 0)
            return -EFAULT;
        if (rel[0] == '\0' && (a[4] & AT_EMPTY_PATH)) {
            snprintf(out, cap, "/proc/%d/fd/%d", (int)pid, dirfd);
            return 0;
        }
        break;
    default:
        return -ENOSYS;
    }
    if (rel[0] == '/')
        snprintf(out, cap, "/proc/%d/root%s", (int)pid, rel);
    else if (dirfd == AT_FDCWD)
        snprintf(out, cap, "/proc/%d/cwd/%s", (int)pid, rel);
    else
        snprintf(out, cap, "/proc/%d/fd/%d/%s", (int)pid, dirfd, rel);
    return 0;
}

/* Returns 0 when the listener is done (every process of the container is gone). */
static int serve_notification(void)
{
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    memset(&req, 0, sizeof(req));
    if (ioctl(M.notify_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
        return errno == EINTR || errno == ENOENT;
    char path[4200];
    int follow;
    long long uid = -1, gid = -1;
    int err = target_path(&req, path, sizeof(path), &follow, &uid, &gid);
    if (err == 0)
        err = record_owner(path, follow, uid, gid);
    if (err != -ENOENT && err != -ENOTDIR && err != -EBADF && err != -ELOOP)
        err = 0; /* like the real call: only a missing target fails */
    memset(&resp, 0, sizeof(resp));
    resp.id = req.id;
    resp.error = err;
    ioctl(M.notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    return 1;
}

int main(int argc, char **argv)
{
    int client_fd;
    if (parse_args(argc, argv, &client_fd) < 0) {
        fprintf(stderr, "rootless-monitor: bad arguments (this program is started by rootless)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (chdir("/") < 0) {
        /* not fatal */
    }
    if (client_fd >= 0)
        add_client(client_fd);
    int status = -1, exited = 0;
    for (;;) {
        /* A SIGCHLD that came before signalfd existed is lost: ask directly too. */
        if (!exited) {
            int w;
            if (waitpid(M.pid, &w, WNOHANG) == M.pid) {
                status = exit_code(w);
                exited = 1;
            }
        }
        struct pollfd fds[5 + MAX_CLIENTS + 2];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = M.listen_fd, .events = POLLIN};
        int stream_base = n;
        for (int i = 0; i < M.n_streams; i++)
            fds[n++] = (struct pollfd){.fd = M.streams[i].fd, .events = POLLIN};
        int client_base = n;
        short client_events = M.in_len > IN_HIGH_WATER ? 0 : POLLIN; /* backpressure */
        for (int i = 0; i < M.n_clients; i++)
            fds[n++] = (struct pollfd){.fd = M.clients[i].fd, .events = client_events};
        int input_at = -1;
        if (M.in_len > 0 && M.input_fd >= 0) {
            input_at = n;
            fds[n++] = (struct pollfd){.fd = M.input_fd, .events = POLLOUT};
        }
        int notify_at = -1;
        if (M.notify_fd >= 0) {
            notify_at = n;
            fds[n++] = (struct pollfd){.fd = M.notify_fd, .events = POLLIN};
        }
        int open_streams = 0;
        for (int i = 0; i < M.n_streams; i++)
            open_streams += M.streams[i].fd >= 0;
        if (exited && open_streams == 0)
            break;
        /* After the container exited, drain what is left without waiting forever. */
        int rc = poll(fds, (nfds_t)n, exited ? 200 : -1);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc == 0 && exited)
            break;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si))
                ;
            int w;
            pid_t p;
            while ((p = waitpid(-1, &w, WNOHANG)) > 0)
                if (p == M.pid) {
                    status = exit_code(w);
                    exited = 1;
                }
        }
        if (fds[1].revents & POLLIN) {
            int c = accept4(M.listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                add_client(c);
        }
        for (int i = 0; i < M.n_streams; i++) {
            struct stream *s = &M.streams[i];
            if (s->fd >= 0 && (fds[stream_base + i].revents & (POLLIN | POLLHUP | POLLERR)) && !pump_stream(s)) {
                if (!(M.is_tty && s->fd == M.input_fd))
                    close(s->fd);
                s->fd = -1;
            }
        }
        if (input_at >= 0 && fds[input_at].revents)
            flush_input();
        int clients_end = input_at >= 0 ? input_at : (notify_at >= 0 ? notify_at : n);
        for (int i = M.n_clients - 1; i >= 0; i--)
            if (client_base + i < clients_end)
                if (fds[client_base + i].revents & (POLLIN | POLLHUP | POLLERR))
                    pump_client(i);
        if (notify_at >= 0 && fds[notify_at].revents) {
            if (!(fds[notify_at].revents & POLLIN) || !serve_notification()) {
                close(M.notify_fd);
                M.notify_fd = -1;
            }
        }
    }
    if (!exited) {
        int w;
        if (waitpid(M.pid, &w, 0) == M.pid)
            status = exit_code(w);
    }
    for (int i = 0; i < M.n_streams; i++)
        flush_partial(&M.streams[i]);
    write_exit_files(status);
    if (M.on_exit != NULL) {
        pid_t p = fork();
        if (p == 0) {
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            execv(M.on_exit[0], M.on_exit);
            _exit(127);
        }
        int w;
        while (p > 0 && waitpid(p, &w, 0) < 0 && errno == EINTR)
            ;
    }
    unsigned char code[4] = {(unsigned char)(status >> 24), (unsigned char)(status >> 16),
                             (unsigned char)(status >> 8), (unsigned char)status};
    broadcast('X', code, 4);
    for (int i = M.n_clients - 1; i >= 0; i--)
        drop_client(i);
    return 0;
}
