/*
 * podsweep-supervisor: the per-pod supervisor, in C.
 *
 *   podsweep-supervisor [--ready-fd FD] [--cpus LIST] [--cwd DIR] [--log-limit BYTES]
 *                       LOG GRACE POD_DIR -- COMMAND [ARG...]
 *
 * The same process and the same files as supervisor.py (whose docstring is the contract):
 * it starts COMMAND in a session and process group of its own, with stdin from /dev/null
 * and stdout and stderr drained through a pipe and appended to LOG (LOG moved to LOG.1 each
 * time it would pass half of BYTES, so the two hold at most BYTES, the newest kept), writes POD_DIR/state.json, closes FD, watches the
 * pod until every process of it is gone and writes POD_DIR/exit.json. SIGTERM or SIGINT:
 * SIGTERM to the pod's group, SIGKILL once GRACE seconds have passed; SIGUSR1: SIGKILL at
 * once. What it has to say goes to POD_DIR/supervisor.log, made only then. It holds an
 * exclusive flock on POD_DIR from its first step to its exit (see supervisor.py).
 *
 * What differs is only how it is told what to run: the command on its command line, and
 * the pod's environment as its own (the command is looked up in the pod's PATH, and the
 * environment, which may hold secrets, stays out of /proc/PID/cmdline, which anyone may
 * read). There is no spec.json: the pod's directory, made by the launcher just before it
 * starts the supervisor, is what tells a restarted control plane that a pod may be there.
 *
 * It writes state.json and exit.json in place, not by rename, as supervisor.py does: each is
 * reserved first thing (RESERVED spaces), then overwritten in one write padded with spaces,
 * so the record of a pod's end needs no new block on a full disk; a reader takes a file
 * that does not parse (spaces, or cut short) for one not written yet. No file is created
 * per write, which also counts on a busy machine.
 *
 * It is started with posix_spawn, so it costs its parent no copy of its page tables, with
 * the signals it waits for already blocked: none sent before it is ready is lost. The
 * launcher blocks until it has exec'd; on a busy machine a new process can wait milliseconds
 * for a CPU, so the launcher may pin itself to its own CPU for the spawn (the child, placed
 * there, runs as soon as the launcher blocks) and pass its real CPU list (--cpus, e.g.
 * "0-3,6"), which the supervisor takes back first thing: the pod inherits that one.
 * Linked statically where the C library allows it: no dynamic loader to start, and no
 * LD_PRELOAD or LD_LIBRARY_PATH meant for the pod applied to the supervisor.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/file.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CODE_NOT_FOUND 127
#define CODE_NOT_EXECUTABLE 126
/* Once the main process is over, how long to wait for the SIGKILLed rest to be reaped: a
 * process stuck in uninterruptible I/O must not keep the end unrecorded. */
#define REAP_TIMEOUT 10.0

static const char *pod_dir;

/* The pod's log, written by us from the pipe its stdout and stderr go to. */
static struct {
    int fd;
    const char *path;
    long long size, limit;
} sink = {-1, NULL, 0, 100LL << 20};

/* Append to the log; move it to LOG.1 first when it would pass half the limit. A write
 * that fails (a full disk) drops the output: the pod goes on. */
static void sink_write(const char *buf, size_t len)
{
    char old[4200];
    int fd;

    if (sink.fd < 0)
        return;
    if (sink.size > 0 && sink.size + (long long)len > sink.limit / 2) {
        snprintf(old, sizeof old, "%s.1", sink.path);
        fd = -1;
        if (rename(sink.path, old) == 0)
            fd = open(sink.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(sink.fd);
            sink.fd = fd;
        } else if (ftruncate(sink.fd, 0) < 0) {
            return;                         /* keep the limit rather than the output */
        }
        sink.size = 0;
    }
    while (len > 0) {
        ssize_t n = write(sink.fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
        sink.size += n;
    }
}

/* Move what the pipe holds now to the log; 0 once every writer has closed it. */
static int drain(int fd)
{
    char buf[65536];
    ssize_t n;

    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n > 0)
            sink_write(buf, (size_t)n);
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return n < 0 && errno == EAGAIN;
    }
}
static sigset_t watched;          /* SIGCHLD, SIGTERM, SIGINT, SIGUSR1: taken by sigtimedwait */

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The whole of a small file, NUL-terminated; -1 if it cannot be read. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd;
    ssize_t n;
    size_t got = 0;

    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    while (got < size - 1) {
        n = read(fd, buf + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

#define RESERVED 512       /* bytes reserved for state.json and exit.json, as in supervisor.py */

/* POD_DIR/name, written over the space reserved in it, padded with spaces to its size, in
 * one write (see the top of this file); with reserve, the file made of RESERVED spaces.
 * No fsync: see write_json_atomic in supervisor.py. */
static int write_file(const char *name, const char *text, int reserve)
{
    char path[4096], buf[RESERVED];
    size_t len = strlen(text), size;
    struct stat st;
    ssize_t n;
    int fd, failed = 0;

    if (snprintf(path, sizeof path, "%s/%s", pod_dir, name) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    do
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (reserve ? O_TRUNC : 0), 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    if (reserve)
        size = sizeof buf;
    else
        size = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
    if (len <= sizeof buf && size <= sizeof buf) {
        if (size < len)
            size = len;
        memset(buf, ' ', sizeof buf);
        memcpy(buf, text, len);
        do
            n = pwrite(fd, buf, size, 0);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)size) {
            if (n >= 0)
                errno = ENOSPC;
            failed = 1;
        }
    } else {
        failed = write_all(fd, text, len);
    }
    if (close(fd) < 0)
        failed = 1;
    return failed ? -1 : 0;
}

struct proc_stat {
    char state;
    long long ppid, pgrp, start;
};

/* Fields 3, 4, 5 and 22 of /proc/PID/stat; -1 if there is no such process. */
static int proc_stat(pid_t pid, struct proc_stat *out)
{
    char path[64], buf[1024], *p, *end;
    long long value;
    int field;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    /* The command name (field 2) may itself hold spaces and parentheses. */
    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0')
        return -1;
    out->state = p[2];
    p += 3;
    for (field = 4; field <= 22; field++) {
        value = strtoll(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
        if (field == 4)
            out->ppid = value;
        else if (field == 5)
            out->pgrp = value;
        else if (field == 22)
            out->start = value;
    }
    return 0;
}

static void boot_id(char *out, size_t size)
{
    char buf[128];
    size_t i, n = 0;

    if (read_small("/proc/sys/kernel/random/boot_id", buf, sizeof buf) < 0)
        buf[0] = '\0';
    /* a UUID: anything else is dropped rather than escaped */
    for (i = 0; buf[i] != '\0' && n + 1 < size; i++)
        if ((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f') ||
            buf[i] == '-')
            out[n++] = buf[i];
    out[n] = '\0';
}

/* A line to POD_DIR/supervisor.log, made on first use. */
static void say(const char *fmt, ...)
{
    char path[4096], line[8192];
    va_list ap;
    int fd, n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    snprintf(path, sizeof path, "%s/supervisor.log", pod_dir);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        fd = dup(2);
    if (fd >= 0) {
        write_all(fd, "podsweep-supervisor: ", 21);
        write_all(fd, line, (size_t)n);
        close(fd);
    }
}

/* SIGKILL the pod's group and every child of ours, orphans that left the group included.
 *
 * Once the main process is reaped (main_reaped), the group's id may be free, and then
 * another session's (another pod's) to take, with members of its own: the group is
 * signalled only while /proc shows a child of ours in it (live or not yet reaped, which
 * only we do), which keeps the id from being reused; else only our children are. */
static void kill_everything(pid_t pgid, int main_reaped)
{
    siginfo_t info;
    DIR *proc;
    struct dirent *entry;
    struct proc_stat st;
    pid_t me = getpid(), pid;
    int in_group = 0;
    char *end;

    if (!main_reaped)
        killpg(pgid, SIGKILL);
    /* a peek that reaps nothing: with no child at all nothing of the pod is left (we are
     * its subreaper) and the scan of /proc is skipped */
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
        return;
    proc = opendir("/proc");
    if (proc == NULL)
        return;
    while ((entry = readdir(proc)) != NULL) {
        pid = (pid_t)strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || proc_stat(pid, &st) < 0)
            continue;
        if (st.pgrp == pgid && st.ppid == me)
            in_group = 1;
        if (st.ppid == me && st.state != 'Z' && st.state != 'X')
            kill(pid, SIGKILL);
    }
    closedir(proc);
    if (main_reaped && in_group)
        killpg(pgid, SIGKILL);
}

/* SIGTERM to the pod's group, on the same terms as kill_everything's SIGKILL. */
static void terminate_group(pid_t pgid, int main_reaped)
{
    DIR *proc;
    struct dirent *entry;
    struct proc_stat st;
    pid_t me = getpid(), pid;
    char *end;

    if (!main_reaped) {
        killpg(pgid, SIGTERM);
        return;
    }
    proc = opendir("/proc");
    if (proc == NULL)
        return;
    while ((entry = readdir(proc)) != NULL) {
        pid = (pid_t)strtol(entry->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && proc_stat(pid, &st) == 0 && st.pgrp == pgid &&
            st.ppid == me) {
            killpg(pgid, SIGTERM);
            break;
        }
    }
    closedir(proc);
}

/* Reap every child that has ended; 1 while any child is left. *status gets the main
 * process's wait status once it is reaped (*reaped then set). */
static int reap(pid_t main_pid, int *status, int *reaped)
{
    int raw;
    pid_t pid;

    for (;;) {
        pid = waitpid(-1, &raw, WNOHANG);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            return 0;                       /* ECHILD: nothing left */
        }
        if (pid == 0)
            return 1;
        if (pid == main_pid) {
            *status = raw;
            *reaped = 1;
        }
    }
}

static int exit_code(int status)
{
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* Watch the pod until every process of it is gone; the code, as in supervisor.py. */
static int supervise(pid_t main_pid, double grace, int *signalled, int log_r)
{
    int status = 0, reaped = 0, known = 0, code = -SIGKILL, sig, left, sfd, ready;
    double now, wait, deadline, kill_at = -1.0, give_up_at = -1.0;
    struct signalfd_siginfo info;
    struct pollfd fds[2];
    sigset_t pending;

    /* the signals, still blocked, read from a descriptor: one poll waits for them and for
     * the pod's output alike */
    sfd = signalfd(-1, &watched, SFD_CLOEXEC | SFD_NONBLOCK);

    for (;;) {
        int was_reaped = reaped;

        left = reap(main_pid, &status, &reaped);
        now = monotonic();
        if (reaped && !was_reaped) {
            code = exit_code(status);
            known = 1;
            /* After a SIGTERM the rest of the group keeps its grace period: the main
             * process may be a wrapper (a shell script) that dies of the SIGTERM at once. */
            if (!*signalled) {
                kill_everything(main_pid, reaped);
                give_up_at = now + REAP_TIMEOUT;
            }
        }
        if (!left)
            break;
        if (kill_at >= 0 && now >= kill_at) {
            kill_everything(main_pid, reaped);
            kill_at = -1.0;
            give_up_at = now + REAP_TIMEOUT;
        } else if (give_up_at >= 0) {
            if (now >= give_up_at)
                break;
            /* a process forked while the group was being killed would otherwise linger */
            kill_everything(main_pid, reaped);
        }
        deadline = now + 1.0;
        if (kill_at >= 0 && kill_at < deadline)
            deadline = kill_at;
        if (give_up_at >= 0 && give_up_at < deadline)
            deadline = give_up_at;
        wait = deadline > now ? deadline - now : 0.0;
        if (sfd < 0) {                      /* no signalfd: the output waits a moment */
            struct timespec ts = {0, 0};

            if (log_r >= 0 && wait > 0.05)
                wait = 0.05;
            ts.tv_sec = (time_t)wait;
            ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
            sig = sigtimedwait(&watched, NULL, &ts);
            if (log_r >= 0 && !drain(log_r)) {
                close(log_r);
                log_r = -1;
            }
            if (sig < 0)
                continue;                   /* EAGAIN (timed out) or EINTR */
        } else {
            fds[0].fd = sfd;
            fds[0].events = POLLIN;
            fds[1].fd = log_r;
            fds[1].events = POLLIN;
            ready = poll(fds, log_r >= 0 ? 2 : 1, (int)(wait * 1000.0) + 1);
            if (ready <= 0)
                continue;
            if (log_r >= 0 && fds[1].revents && !drain(log_r)) {
                close(log_r);               /* every writer is gone */
                log_r = -1;
            }
            if (!(fds[0].revents & POLLIN) ||
                read(sfd, &info, sizeof info) != (ssize_t)sizeof info)
                continue;
            sig = (int)info.ssi_signo;
        }
        if (sig == SIGUSR1) {
            *signalled = 1;
            kill_everything(main_pid, reaped);
            kill_at = -1.0;
            if (give_up_at < 0)
                give_up_at = monotonic() + REAP_TIMEOUT;
        } else if ((sig == SIGTERM || sig == SIGINT) && !*signalled) {
            *signalled = 1;
            terminate_group(main_pid, reaped);
            if (!known)
                kill_at = monotonic() + grace;
        }
    }
    if (log_r >= 0) {                       /* what the pod wrote last */
        drain(log_r);
        close(log_r);
    }
    if (sfd >= 0)
        close(sfd);
    /* A request that came as everything was ending still counts: the caller asked for it. */
    if (sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 ||
                                      sigismember(&pending, SIGINT) == 1 ||
                                      sigismember(&pending, SIGUSR1) == 1))
        *signalled = 1;
    return known ? code : -SIGKILL;
}

static int write_exit(int code, int signalled)
{
    char text[256];

    snprintf(text, sizeof text, "{\"code\": %d, \"finished\": %.6f, \"signalled\": %s}",
             code, wall_clock(), signalled ? "true" : "false");
    if (write_file("exit.json", text, 0) < 0) {
        say("cannot write %s/exit.json: %s", pod_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_state(long long start, const char *boot, double started, pid_t pid,
                       long long pod_start)
{
    char text[512], pids[128], starts[2][32];

    /* a start time that could not be read is null, as in supervisor.py */
    snprintf(starts[0], sizeof starts[0], start >= 0 ? "%lld" : "null", start);
    snprintf(starts[1], sizeof starts[1], pod_start >= 0 ? "%lld" : "null", pod_start);
    if (pid > 0)
        snprintf(pids, sizeof pids, "\"pid\": %d, \"pgid\": %d, \"pod_start\": %s",
                 (int)pid, (int)pid, starts[1]);
    else
        snprintf(pids, sizeof pids, "\"pid\": null, \"pgid\": null, \"pod_start\": null");
    snprintf(text, sizeof text, "{\"supervisor_pid\": %d, \"supervisor_start\": %s, "
             "\"boot_id\": \"%s\", %s, \"started\": %.6f}",
             (int)getpid(), starts[0], boot, pids, started);
    if (write_file("state.json", text, 0) < 0) {
        say("cannot write %s/state.json: %s", pod_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* What the child of vfork() reports: it shares our memory until it execs or exits. */
static volatile int spawn_errno;

/* Every place COMMAND may be, in order: itself if it holds a '/', else PATH's entries. */
static __attribute__((noinline)) char **candidates(const char *command)
{
    const char *path = getenv("PATH"), *p, *colon;
    size_t n = 1, len = strlen(command), dir;
    char **out;

    if (strchr(command, '/') != NULL || len == 0) {
        out = calloc(2, sizeof *out);
        if (out != NULL && (out[0] = strdup(command)) == NULL) {
            free(out);
            out = NULL;
        }
        return out;
    }
    if (path == NULL)
        path = "/bin:/usr/bin";
    for (p = path; *p; p++)
        n += *p == ':';
    out = calloc(n + 1, sizeof *out);
    if (out == NULL)
        return NULL;
    for (n = 0, p = path;; p = colon + 1) {
        colon = strchrnul(p, ':');
        dir = (size_t)(colon - p);
        out[n] = malloc(dir + len + 2);
        if (out[n] == NULL)
            break;
        /* an empty entry is the working directory, as for execvp */
        snprintf(out[n], dir + len + 2, "%.*s%s%s", (int)dir, p, dir ? "/" : "", command);
        n++;
        if (*colon == '\0')
            break;
    }
    return out;
}

/* Start the pod's command: a session of its own, nothing blocked, every signal at its
 * default, stdin from /dev/null, stdout and stderr to the log. 0, or an errno.
 *
 * vfork, like posix_spawn, but with one step posix_spawn cannot take: we wait for the
 * child's exec, and on a busy machine a new process can wait milliseconds for a CPU; so we
 * pin ourselves to our CPU, the child starts there and runs as soon as we block, and it
 * takes back CPUS (ours) just before its exec. We hold no signal handlers, so nothing of
 * ours can run in the child. */
static int spawn(char **argv, int log_fd, const cpu_set_t *cpus, pid_t *child)
{
    char **paths = candidates(argv[0]);
    sigset_t all, old, none;
    cpu_set_t here;
    int cpu, pinned = 0, err, i, sig, null_fd;
    pid_t pid;

    if (paths == NULL)
        return ENOMEM;
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        err = errno;
        goto out;
    }
    sigfillset(&all);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &all, &old);
    if (cpus != NULL && CPU_COUNT(cpus) > 1 && (cpu = sched_getcpu()) >= 0 &&
        CPU_ISSET(cpu, cpus)) {
        CPU_ZERO(&here);
        CPU_SET(cpu, &here);
        pinned = sched_setaffinity(0, sizeof here, &here) == 0;
    }
    spawn_errno = 0;
    pid = vfork();
    if (pid == 0) {
        int denied = 0;

        if (pinned)
            sched_setaffinity(0, sizeof *cpus, cpus);
        setsid();
        /* not SIGKILL and SIGSTOP (they have no other), nor the C library's own real-time
         * signals below SIGRTMIN */
        for (sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP && !(sig >= 32 && sig < SIGRTMIN))
                signal(sig, SIG_DFL);
        if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) {
            spawn_errno = errno;
            _exit(127);
        }
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (i = 0; paths[i] != NULL; i++) {
            execve(paths[i], argv, environ);
            if (errno == EACCES)
                denied = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                     errno != ENODEV && errno != ETIMEDOUT)
                break;
        }
        spawn_errno = (paths[i] == NULL && denied) ? EACCES : errno;
        _exit(127);
    }
    err = pid < 0 ? errno : spawn_errno;
    if (pinned)
        sched_setaffinity(0, sizeof *cpus, cpus);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(null_fd);
    if (pid > 0 && err != 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (err == 0)
        *child = pid;
out:
    for (i = 0; paths[i] != NULL; i++)
        free(paths[i]);
    free(paths);
    return err;
}

/* "0-3,6" into *set; -1 if it does not parse. */
static int parse_cpus(const char *list, cpu_set_t *set)
{
    const char *p = list;
    char *end;
    long first, last;

    CPU_ZERO(set);
    while (*p) {
        first = strtol(p, &end, 10);
        if (end == p || first < 0)
            return -1;
        last = first;
        if (*end == '-') {
            p = end + 1;
            last = strtol(p, &end, 10);
            if (end == p || last < first)
                return -1;
        }
        if (last >= CPU_SETSIZE)
            return -1;
        for (; first <= last; first++)
            CPU_SET((int)first, set);
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        p = end;
    }
    return CPU_COUNT(set) > 0 ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: podsweep-supervisor [--ready-fd FD] [--cpus LIST] [--cwd DIR] "
            "[--log-limit BYTES] LOG GRACE POD_DIR -- COMMAND [ARG...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *log_path, *cwd = NULL;
    char boot[64], *end;
    int i = 1, ready_fd = -1, lock_fd, log_fd, err, code, signalled = 0, have_cpus = 0;
    int out[2] = {-1, -1};
    struct stat log_st;
    long long start = -1, pod_start = -1;
    double grace, started;
    struct proc_stat st;
    cpu_set_t cpus;
    pid_t child;

    for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2]; i += 2) {
        if (strcmp(argv[i], "--ready-fd") == 0) {
            ready_fd = (int)strtol(argv[i + 1], &end, 10);
            if (*end != '\0' || ready_fd < 0)
                return usage();
        } else if (strcmp(argv[i], "--cwd") == 0) {
            cwd = argv[i + 1];
        } else if (strcmp(argv[i], "--log-limit") == 0) {
            sink.limit = strtoll(argv[i + 1], &end, 10);
            if (*end != '\0' || end == argv[i + 1] || sink.limit < 2)
                return usage();
        } else if (strcmp(argv[i], "--cpus") == 0) {
            if (parse_cpus(argv[i + 1], &cpus) < 0)
                return usage();
            /* the launcher's own CPUs, before anything else runs pinned to one */
            sched_setaffinity(0, sizeof cpus, &cpus);
            have_cpus = 1;
        } else {
            return usage();
        }
    }
    if (argc - i < 5 || strcmp(argv[i + 3], "--") != 0)
        return usage();
    log_path = argv[i];
    grace = strtod(argv[i + 1], &end);
    if (*end != '\0' || end == argv[i + 1] || !(grace >= 0))
        return usage();
    pod_dir = argv[i + 2];
    argv += i + 4;

    /* posix_spawn closes nothing: a pod holding this pipe would hide our readiness */
    if (ready_fd >= 0 && fcntl(ready_fd, F_SETFD, FD_CLOEXEC) < 0)
        return usage();
    if (strlen(pod_dir) > 3000)
        return usage();
    /* First thing, and for our whole life: an exclusive flock on POD_DIR tells a restarted
     * control plane that finds no state.json yet that we are alive and starting the pod
     * (which may take long: a stalled mount), not lost. Close-on-exec: the pod holds none. */
    lock_fd = open(pod_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX) < 0) {
        say("cannot lock %s: %s", pod_dir, strerror(errno));
        return 1;
    }

    /* The records of the pod's start and end, reserved before anything else: on a full disk
     * the pod does not start rather than end unrecorded (and run twice). */
    if (write_file("state.json", "", 1) < 0 || write_file("exit.json", "", 1) < 0) {
        say("cannot reserve the pod's records in %s: %s", pod_dir, strerror(errno));
        return 1;
    }

    /* Blocked by the launcher already (a SIGTERM sent at once stays pending); dispositions
     * inherited as ignored would make SIGCHLD reap our children behind our back. */
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGTERM);
    sigaddset(&watched, SIGINT);
    sigaddset(&watched, SIGUSR1);
    sigprocmask(SIG_BLOCK, &watched, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    /* No terminal is ours (a session of our own); a stray SIGHUP must not lose the pod. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Orphans of the pod are re-parented to us, so we can kill and reap them, and "no
     * child left" means "nothing of the pod left". */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    /* run by hand, or by a launcher that did not pin itself: our own CPUs are the pod's */
    if (!have_cpus && sched_getaffinity(0, sizeof cpus, &cpus) == 0)
        have_cpus = 1;
    if (proc_stat(getpid(), &st) == 0)
        start = st.start;
    boot_id(boot, sizeof boot);
    started = wall_clock();
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        say("cannot open the pod's log %s: %s", log_path, strerror(errno));
        return 1;
    }
    if (log_fd <= 2) {                       /* dup2 onto itself would keep O_CLOEXEC */
        int moved = fcntl(log_fd, F_DUPFD_CLOEXEC, 3);
        close(log_fd);
        log_fd = moved;
    }
    sink.fd = log_fd;
    sink.path = log_path;
    sink.size = fstat(log_fd, &log_st) == 0 ? (long long)log_st.st_size : 0;
    err = 0;
    /* the pod's output through a pipe we drain: the log's size is ours to keep */
    if (pipe2(out, O_CLOEXEC) < 0) {
        err = errno;
        dprintf(log_fd, "podsweep: cannot start the pod's command: a pipe: %s\n",
                strerror(err));
    } else if (cwd != NULL && chdir(cwd) < 0) {
        err = errno;
        dprintf(log_fd, "podsweep: cannot start the pod's command: cannot change into "
                "%s: %s\n", cwd, strerror(err));
    } else if ((err = spawn(argv, out[1], have_cpus ? &cpus : NULL, &child)) != 0) {
        dprintf(log_fd, "podsweep: cannot start the pod's command: %s: %s\n", argv[0],
                strerror(err));
    }
    if (out[1] >= 0)
        close(out[1]);                      /* the pod's now: EOF once all of it is gone */
    if (out[0] >= 0)
        fcntl(out[0], F_SETFL, O_NONBLOCK);
    if (err != 0) {
        if (out[0] >= 0)
            close(out[0]);
        close(log_fd);
        code = (err == EACCES || err == EPERM) ? CODE_NOT_EXECUTABLE : CODE_NOT_FOUND;
        if (write_state(start, boot, started, 0, -1) < 0)
            return 1;
        if (ready_fd >= 0)
            close(ready_fd);
        return write_exit(code, 0) < 0 ? 1 : 0;
    }
    if (proc_stat(child, &st) == 0)          /* unreaped: there even if it ended already */
        pod_start = st.start;
    if (write_state(start, boot, started, child, pod_start) < 0) {
        /* a pod nobody can find would hold its GPUs for good */
        kill_everything(child, 0);
        return 1;
    }
    if (ready_fd >= 0)
        close(ready_fd);
    code = supervise(child, grace, &signalled, out[0]);
    close(sink.fd);
    return write_exit(code, signalled) < 0 ? 1 : 0;
}
