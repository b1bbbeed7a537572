/* rl_error.c: fill a fixed-size error record without allocating (usable in the
 * cloned child, where malloc and stdio are off limits). */
#include "rootless.h"

static size_t put_str(char *buf, size_t pos, size_t cap, const char *s)
{
    if (s == NULL)
        s = "(null)";
    while (*s != '\0' && pos + 1 < cap)
        buf[pos++] = *s++;
    return pos;
}

static size_t put_num(char *buf, size_t pos, size_t cap, unsigned long long v, int neg, unsigned base)
{
    char tmp[32];
    size_t n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v != 0 && n < sizeof(tmp));
    if (neg && pos + 1 < cap)
        buf[pos++] = '-';
    while (n > 0 && pos + 1 < cap)
        buf[pos++] = tmp[--n];
    return pos;
}

static void format(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t pos = 0;
    for (const char *p = fmt; *p != '\0' && pos + 1 < cap; p++) {
        if (*p != '%') {
            buf[pos++] = *p;
            continue;
        }
        p++;
        int is_long = 0;
        while (*p == 'l') {
            is_long++;
            p++;
        }
        switch (*p) {
        case 's':
            pos = put_str(buf, pos, cap, va_arg(ap, const char *));
            break;
        case 'd': {
            long long v = is_long ? va_arg(ap, long long) : va_arg(ap, int);
            pos = put_num(buf, pos, cap, v < 0 ? (unsigned long long)(-v) : (unsigned long long)v, v < 0, 10);
            break;
        }
        case 'u':
            pos = put_num(buf, pos, cap, is_long ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 0, 10);
            break;
        case 'x':
            pos = put_num(buf, pos, cap, is_long ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 0, 16);
            break;
        case '%':
            buf[pos++] = '%';
            break;
        case '\0':
            p--;
            break;
        default:
            buf[pos++] = '?';
            break;
        }
    }
    buf[pos] = '\0';
}

int rl_error_set(struct rl_error *err, int errnum, int stage, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        err->errnum = errnum;
        err->stage = stage;
        format(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    errno = errnum;
    return -1;
}

void rl_cleanup_close(int *fd)
{
    if (fd != NULL && *fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
        *fd = -1;
    }
}
