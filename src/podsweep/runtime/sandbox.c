/*
 * podsweep-sandbox: shows each volume's SRC at its DST, then becomes the pod's command.
 *
 *   podsweep-sandbox [--bind SRC DST | --ro-bind SRC DST]... [--hide DIR]... [--pid]
 *                    [--chdir DIR] -- COMMAND [ARG...]
 *
 * sandbox.py's docstring is the contract (what the pod sees); this is how it is kept, one
 * function per step, in this order:
 *
 *   resolve_sources     each SRC's real path on the host, while the host's tree is still /
 *   enter_namespaces    a mount namespace of our own; as a user other than root, inside a
 *                       user namespace that maps the user and the group onto themselves
 *   follow_host_mounts  every mount made a slave: what the host mounts later still shows
 *                       here, and nothing mounted here reaches the host
 *   enter_tmpfs_root    a new tmpfs becomes / (pivot_root); the host's tree waits under it
 *                       at /OLDROOT
 *   show_host_entries   the host's top-level entries in that root: bound (recursively) as
 *                       they are, symlinks made again
 *   mount_volumes       each SRC bound at DST in the order given (a mount inside another
 *                       comes after it); missing parents of DST made in the tmpfs, never on
 *                       the host; read-only ones remounted so, their submounts too
 *   drop_host_tree      /OLDROOT detached and removed
 *   hide_dirs           --hide DIR: an empty read-only tmpfs over DIR, and over where a
 *                       volume shows DIR (a volume of a parent of DIR); a DIR that is not
 *                       there is skipped. With no volume the steps from follow_host_mounts
 *                       to here are only this one: the pod keeps the host's tree, in a
 *                       mount namespace of its own
 *   enter_working_dir   --chdir DIR, else the directory we were started in (else /)
 *   run_command         execvp in place: no process stays behind, so the pod's process is
 *                       the command itself, its signals and exit code the command's own
 *
 * With --pid (run_in_pid_namespace), nothing outlives the pod: the sandbox (the pod's main
 * process, as the supervisor sees it) stays outside a pid namespace of its own, and forks
 * its init (pid 1 there), which mounts a fresh /proc (the control plane's processes, their
 * /proc/PID/root and fds, are out of sight) and forks the command. Both die with their
 * parent (PR_SET_PDEATHSIG): when the supervisor is SIGKILLed, the sandbox dies, its init
 * dies, and the kernel kills everything in the namespace, setsid'd daemons included.
 *   - Signals: HUP, INT, QUIT, TERM, USR1 and USR2 sent to the sandbox go to init, which
 *     sends them to every process of the pod (kill(-1)); init is in a process group of its
 *     own so that the supervisor's killpg reaches it once, through the sandbox.
 *   - The end: once the command (init's child) ends, init ends too, and the kernel
 *     SIGKILLs what is left; after a signal was forwarded, init first waits for the rest
 *     (it may be shutting down; the supervisor's grace period bounds that). The sandbox
 *     then ends as the command did: its exit code, or killed by its signal.
 *   - As root, init also enters a user namespace mapping every id onto itself: the pod is
 *     still root for files, but the mounts above are locked, so it cannot unmount the
 *     tmpfs that hides a directory.
 *
 * Exit codes, as for env(1), chroot(1) and `docker run`: 125 the sandbox could not be made
 * (the one line on stderr says why: a namespace refused, a mount that failed); 126 the
 * command was found but cannot be run; 127 the command or the working directory is not
 * there; anything else is the command's own.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define CODE_SANDBOX 125
#define CODE_NOT_EXECUTABLE 126
#define CODE_NOT_FOUND 127

#ifndef ST_NOSYMFOLLOW
#define ST_NOSYMFOLLOW 0x2000
#endif

#define USAGE "usage: podsweep-sandbox [--bind SRC DST | --ro-bind SRC DST]... " \
              "[--hide DIR]... [--pid] [--chdir DIR] -- COMMAND [ARG...]"

enum mount_kind {
    MOUNT_BIND,         /* --bind SRC DST */
    MOUNT_RO_BIND,      /* --ro-bind SRC DST */
};

struct mount_op {
    enum mount_kind kind;
    const char *src;    /* as given */
    char *host_src;     /* its real path on the host (resolve_sources) */
    char *dst;          /* normalized: absolute, single slashes, no trailing one */
};

struct options {
    struct mount_op *mounts;
    size_t n_mounts;
    char **hides;       /* --hide DIR: real paths on the host; NULL where DIR is not there */
    const char **hides_given;
    size_t n_hides;
    int pid;            /* --pid */
    const char *chdir;  /* NULL: the directory we were started in, where the pod sees it */
    char **command;
};

/* The host's top-level entries, read before the host's tree moves. */
struct names {
    char **v;
    size_t n;
};

/* One line on stderr (the pod's log), then exit. */
static __attribute__((noreturn, format(printf, 2, 3))) void die(int code, const char *fmt,
                                                                   ...)
{
    char line[2 * PATH_MAX + 512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "podsweep: %s\n", line);
    exit(code);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL)
        die(CODE_SANDBOX, "sandbox: out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        die(CODE_SANDBOX, "sandbox: out of memory");
    return p;
}

/* "/" + a + "/" + b ... into buf, or die if it does not fit. */
static void join(char *buf, size_t size, const char *a, const char *b)
{
    if ((size_t)snprintf(buf, size, "%s%s", a, b) >= size)
        die(CODE_SANDBOX, "sandbox: path too long: %s%s", a, b);
}

/* An absolute path with single slashes and no trailing one; NULL if it has "." or ".." or
 * is "/" itself. */
static char *normalize(const char *path)
{
    char *out = xcalloc(strlen(path) + 1, 1), *o = out;
    const char *p = path, *end;
    size_t len;

    if (*p != '/')
        goto bad;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        end = strchrnul(p, '/');
        len = (size_t)(end - p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            goto bad;
        *o++ = '/';
        memcpy(o, p, len);
        o += len;
        p = end;
    }
    if (o == out)
        goto bad;
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static void parse_options(int argc, char **argv, struct options *opt)
{
    int i = 1;

    memset(opt, 0, sizeof *opt);
    opt->mounts = xcalloc((size_t)argc, sizeof *opt->mounts);
    opt->hides_given = xcalloc((size_t)argc, sizeof *opt->hides_given);
    opt->hides = xcalloc((size_t)argc, sizeof *opt->hides);
    while (i < argc && strcmp(argv[i], "--") != 0) {
        if ((strcmp(argv[i], "--bind") == 0 || strcmp(argv[i], "--ro-bind") == 0) &&
            i + 2 < argc) {
            struct mount_op *m = &opt->mounts[opt->n_mounts++];

            m->kind = strcmp(argv[i], "--ro-bind") == 0 ? MOUNT_RO_BIND : MOUNT_BIND;
            m->src = argv[i + 1];
            m->dst = normalize(argv[i + 2]);
            if (m->src[0] != '/' || m->dst == NULL)
                die(CODE_SANDBOX, "sandbox: %s %s %s: SRC and DST must be absolute paths, "
                    "DST not / and without . or ..; " USAGE, argv[i], argv[i + 1],
                    argv[i + 2]);
            i += 3;
        } else if (strcmp(argv[i], "--hide") == 0 && i + 1 < argc) {
            if (argv[i + 1][0] != '/')
                die(CODE_SANDBOX, "sandbox: --hide %s: DIR must be an absolute path; " USAGE,
                    argv[i + 1]);
            opt->hides_given[opt->n_hides++] = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "--pid") == 0) {
            opt->pid = 1;
            i += 1;
        } else if (strcmp(argv[i], "--chdir") == 0 && i + 1 < argc) {
            opt->chdir = argv[i + 1];
            i += 2;
        } else {
            die(CODE_SANDBOX, "sandbox: unexpected %s; " USAGE, argv[i]);
        }
    }
    if (i + 1 >= argc)
        die(CODE_SANDBOX, "sandbox: no command; " USAGE);
    opt->command = argv + i + 1;
}

/* Whether PATH is DIR or below it (both real paths). */
static int is_within(const char *path, const char *dir)
{
    size_t len = strlen(dir);

    if (strcmp(dir, "/") == 0)
        return 1;
    return strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

static void resolve_sources(struct options *opt)
{
    size_t i, j;

    for (i = 0; i < opt->n_mounts; i++) {
        struct mount_op *m = &opt->mounts[i];

        m->host_src = realpath(m->src, NULL);
        if (m->host_src == NULL)
            die(CODE_SANDBOX, "volume %s:%s: %s: %s", m->src, m->dst, m->src,
                strerror(errno));
    }
    for (i = 0; i < opt->n_hides; i++) {
        opt->hides[i] = realpath(opt->hides_given[i], NULL);
        if (opt->hides[i] == NULL && errno != ENOENT && errno != ENOTDIR)
            die(CODE_SANDBOX, "sandbox: --hide %s: %s", opt->hides_given[i], strerror(errno));
    }
    for (i = 0; i < opt->n_mounts; i++)
        for (j = 0; j < opt->n_hides; j++)
            if (opt->hides[j] != NULL && is_within(opt->mounts[i].host_src, opt->hides[j]))
                die(CODE_SANDBOX, "volume %s:%s: %s lies in %s, which pods may not see",
                    opt->mounts[i].src, opt->mounts[i].dst, opt->mounts[i].host_src,
                    opt->hides[j]);
}

/* Why a namespace may be refused, to say with the error. */
static const char *namespace_hint(int err, int user)
{
    if (user && err == ENOSPC)
        return " (user namespaces disabled: user.max_user_namespaces is 0, or all used)";
    if (user && (err == EPERM || err == EACCES))
        return " (user namespaces disabled or restricted here?)";
    if (err == EPERM)
        return " (no CAP_SYS_ADMIN: a container without the privilege?)";
    if (err == EINVAL || err == ENOSYS)
        return " (a kernel without namespaces?)";
    return "";
}

/* One of the user namespace's own files (uid_map, ...). */
/* What the namespaces are for, to say when they are refused. */
static const char *purpose = "volumes (-v) need a mount namespace";

static void write_proc_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), failed;

    failed = fd < 0;
    if (!failed) {
        failed = write(fd, text, strlen(text)) != (ssize_t)strlen(text);
        close(fd);
    }
    if (failed)
        die(CODE_SANDBOX, "%s: cannot write %s: %s%s", purpose, path, strerror(errno),
            namespace_hint(errno, 1));
}

static void enter_namespaces(const struct options *opt)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char map[64];

    if (uid != 0) {
        /* A user namespace gives us the right to mount in a mount namespace it owns. The
         * user is mapped onto itself (files keep their owner); setgroups must be denied
         * before an unprivileged process may write its gid_map. */
        if (unshare(CLONE_NEWUSER) < 0)
            die(CODE_SANDBOX, "%s: unshare(CLONE_NEWUSER) failed: %s%s", purpose,
                strerror(errno), namespace_hint(errno, 1));
        write_proc_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
        write_proc_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        write_proc_file("/proc/self/gid_map", map);
    }
    if (unshare(CLONE_NEWNS | (opt->pid ? CLONE_NEWPID : 0)) < 0)
        die(CODE_SANDBOX, "%s: unshare(%s) failed: %s%s", purpose,
            opt->pid ? "CLONE_NEWNS|CLONE_NEWPID" : "CLONE_NEWNS", strerror(errno),
            namespace_hint(errno, uid != 0));
}

static void follow_host_mounts(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        die(CODE_SANDBOX, "sandbox: cannot make / a slave of the host's mounts: %s",
            strerror(errno));
}

static void read_host_top_level(struct names *host)
{
    DIR *dir = opendir("/");
    struct dirent *e;
    size_t cap = 64;

    if (dir == NULL)
        die(CODE_SANDBOX, "sandbox: cannot read /: %s", strerror(errno));
    host->n = 0;
    host->v = xcalloc(cap, sizeof *host->v);
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (host->n == cap) {
            cap *= 2;
            host->v = realloc(host->v, cap * sizeof *host->v);
            if (host->v == NULL)
                die(CODE_SANDBOX, "sandbox: out of memory");
        }
        host->v[host->n++] = xstrdup(e->d_name);
    }
    closedir(dir);
}

/* Whether NAME is the first component of PATH ("/NAME" or "/NAME/..."). */
static int first_component_is(const char *path, const char *name)
{
    size_t len = strlen(name);

    return strncmp(path + 1, name, len) == 0 && (path[len + 1] == '/' || !path[len + 1]);
}

/* A name for the host's tree in the new root that neither the host nor a DST uses. */
static const char *pick_oldroot(const struct names *host, const struct options *opt)
{
    static char name[64];
    size_t i;
    int n, taken;

    for (n = 0;; n++) {
        snprintf(name, sizeof name, n ? ".podsweep-oldroot-%d" : ".podsweep-oldroot", n);
        taken = 0;
        for (i = 0; i < host->n && !taken; i++)
            taken = strcmp(host->v[i], name) == 0;
        for (i = 0; i < opt->n_mounts && !taken; i++)
            taken = first_component_is(opt->mounts[i].dst, name);
        if (!taken)
            return name;
    }
}

/* Where to mount the new root's tmpfs before the pivot: any directory of the host will
 * do (it is hidden in this namespace only), /tmp by preference. */
static const char *tmpfs_base(const struct names *host)
{
    static char path[PATH_MAX];
    struct stat st;
    size_t i;

    if (lstat("/tmp", &st) == 0 && S_ISDIR(st.st_mode))
        return "/tmp";
    for (i = 0; i < host->n; i++) {
        join(path, sizeof path, "/", host->v[i]);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return path;
    }
    die(CODE_SANDBOX, "sandbox: the host's / has no directory to mount a tmpfs on");
}

static void enter_tmpfs_root(const struct names *host, const char *oldroot)
{
    const char *base = tmpfs_base(host);
    char put_old[PATH_MAX];

    if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
        die(CODE_SANDBOX, "sandbox: cannot mount a tmpfs for the new root: %s",
            strerror(errno));
    if ((size_t)snprintf(put_old, sizeof put_old, "%s/%s", base, oldroot) >= sizeof put_old)
        die(CODE_SANDBOX, "sandbox: path too long: %s/%s", base, oldroot);
    if (mkdir(put_old, 0700) < 0)
        die(CODE_SANDBOX, "sandbox: cannot make %s: %s", put_old, strerror(errno));
    if (syscall(SYS_pivot_root, base, put_old) < 0)
        die(CODE_SANDBOX, "sandbox: pivot_root into the new root failed: %s",
            strerror(errno));
    if (chdir("/") < 0)
        die(CODE_SANDBOX, "sandbox: cannot change into the new root: %s", strerror(errno));
}

static int is_volume_target(const char *path, const struct options *opt)
{
    size_t i;

    for (i = 0; i < opt->n_mounts; i++)
        if (strcmp(opt->mounts[i].dst, path) == 0)
            return 1;
    return 0;
}

/* An empty file to bind a non-directory on. */
static int make_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static void show_host_entries(const struct names *host, const char *oldroot,
                              const struct options *opt)
{
    char path[PATH_MAX], src[PATH_MAX], prefix[PATH_MAX], target[PATH_MAX];
    struct stat st;
    ssize_t len;
    size_t i;

    snprintf(prefix, sizeof prefix, "/%s/", oldroot);
    for (i = 0; i < host->n; i++) {
        join(path, sizeof path, "/", host->v[i]);
        join(src, sizeof src, prefix, host->v[i]);
        if (is_volume_target(path, opt))
            continue;          /* a volume takes its place */
        if (lstat(src, &st) < 0) {
            if (errno == ENOENT)
                continue;      /* gone since we read the directory */
            die(CODE_SANDBOX, "sandbox: cannot show the host's %s: %s", path,
                strerror(errno));
        }
        if (S_ISLNK(st.st_mode)) {
            len = readlink(src, target, sizeof target - 1);
            if (len < 0)
                die(CODE_SANDBOX, "sandbox: cannot read the host's symlink %s: %s", path,
                    strerror(errno));
            target[len] = '\0';
            if (symlink(target, path) < 0)
                die(CODE_SANDBOX, "sandbox: cannot make the symlink %s: %s", path,
                    strerror(errno));
            continue;
        }
        if ((S_ISDIR(st.st_mode) ? mkdir(path, 0755) : make_file(path)) < 0 ||
            mount(src, path, NULL, MS_BIND | MS_REC, NULL) < 0)
            die(CODE_SANDBOX, "sandbox: cannot show the host's %s: %s", path,
                strerror(errno));
    }
}

/* DST's missing parents, and DST itself, made where they may be: in the sandbox's own
 * tmpfs. A missing one inside anything of the host's (a bound entry, a volume) would have
 * to be made on the host, which the sandbox never does. */
static void make_mount_point(const struct mount_op *m, int is_dir, dev_t root_dev)
{
    char path[PATH_MAX], *p, *cut;
    struct stat st;
    dev_t parent_dev = root_dev;
    int leaf;

    join(path, sizeof path, m->dst, "");
    for (p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        leaf = *p == '\0';
        cut = p;
        *cut = '\0';
        if (stat(path, &st) == 0) {
            if (!leaf && !S_ISDIR(st.st_mode))
                die(CODE_SANDBOX, "volume %s:%s: %s is not a directory", m->src, m->dst,
                    path);
        } else if (errno != ENOENT) {
            die(CODE_SANDBOX, "volume %s:%s: %s: %s", m->src, m->dst, path,
                strerror(errno));
        } else if (parent_dev != root_dev) {
            die(CODE_SANDBOX, "volume %s:%s: %s does not exist, and the sandbox makes no "
                "mount point on the host's file systems (create it first)", m->src, m->dst,
                path);
        } else if (((leaf && !is_dir) ? make_file(path) : mkdir(path, 0755)) < 0 ||
                   stat(path, &st) < 0) {
            die(CODE_SANDBOX, "volume %s:%s: cannot make %s: %s", m->src, m->dst, path,
                strerror(errno));
        }
        if (leaf)
            return;
        parent_dev = st.st_dev;
        *cut = '/';
    }
}

/* A bind remount with MS_RDONLY. In a user namespace the host's nosuid, nodev and noexec
 * are locked: a remount that leaves one out is refused, so they are repeated; the atime
 * flags, also locked, are kept by passing none. */
static int remount_read_only(const char *path)
{
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
    struct statvfs sv;

    if (statvfs(path, &sv) < 0)
        return -1;
    if (sv.f_flag & ST_NOSUID)
        flags |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        flags |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOSYMFOLLOW)
        flags |= MS_NOSYMFOLLOW;
    return mount(NULL, path, NULL, flags, NULL);
}

struct mount_entry {
    int id, parent, in_volume;
    char *point;
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static size_t read_mountinfo(struct mount_entry **out)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL, *point, *end;
    size_t cap = 0, n = 0, size = 64;
    int id, parent, at;

    if (f == NULL)
        die(CODE_SANDBOX, "sandbox: cannot read /proc/self/mountinfo: %s", strerror(errno));
    *out = xcalloc(size, sizeof **out);
    while (getline(&line, &cap, f) > 0) {
        at = -1;
        if (sscanf(line, "%d %d %*s %*s %n", &id, &parent, &at) < 2 || at < 0)
            continue;
        point = line + at;
        end = strchr(point, ' ');
        if (end == NULL)
            continue;
        *end = '\0';
        unescape(point);
        if (n == size) {
            size *= 2;
            *out = realloc(*out, size * sizeof **out);
            if (*out == NULL)
                die(CODE_SANDBOX, "sandbox: out of memory");
        }
        (*out)[n++] = (struct mount_entry){id, parent, 0, xstrdup(point)};
    }
    free(line);
    fclose(f);
    return n;
}

/* The volume at DST and every mount under it that came with it (SRC's own submounts). */
static void make_read_only(const struct mount_op *m)
{
    struct mount_entry *mounts;
    size_t n, i, j;
    int top = -1, grew = 1;

    if (remount_read_only(m->dst) < 0)
        die(CODE_SANDBOX, "volume %s:%s:ro: cannot make it read-only: %s", m->src, m->dst,
            strerror(errno));
    n = read_mountinfo(&mounts);
    for (i = 0; i < n; i++)          /* the newest mount on DST: ours */
        if (strcmp(mounts[i].point, m->dst) == 0)
            top = (int)i;
    if (top < 0)
        die(CODE_SANDBOX, "volume %s:%s:ro: not found in /proc/self/mountinfo", m->src,
            m->dst);
    mounts[top].in_volume = 1;
    while (grew) {                   /* the volume's tree: children of what is in it */
        grew = 0;
        for (i = 0; i < n; i++)
            for (j = 0; j < n && !mounts[i].in_volume; j++)
                if (mounts[j].in_volume && mounts[j].id == mounts[i].parent) {
                    mounts[i].in_volume = 1;
                    grew = 1;
                    if (remount_read_only(mounts[i].point) < 0)
                        die(CODE_SANDBOX, "volume %s:%s:ro: cannot make %s read-only: %s",
                            m->src, m->dst, mounts[i].point, strerror(errno));
                }
    }
    for (i = 0; i < n; i++)
        free(mounts[i].point);
    free(mounts);
}

static void mount_volumes(const struct options *opt, const char *oldroot)
{
    char src[PATH_MAX], prefix[PATH_MAX];
    struct stat st, root;
    size_t i;

    if (stat("/", &root) < 0)
        die(CODE_SANDBOX, "sandbox: cannot stat the new root: %s", strerror(errno));
    snprintf(prefix, sizeof prefix, "/%s", oldroot);
    for (i = 0; i < opt->n_mounts; i++) {
        const struct mount_op *m = &opt->mounts[i];

        join(src, sizeof src, prefix, m->host_src);
        if (stat(src, &st) < 0)
            die(CODE_SANDBOX, "volume %s:%s: %s: %s", m->src, m->dst, m->src,
                strerror(errno));
        make_mount_point(m, S_ISDIR(st.st_mode), root.st_dev);
        if (mount(src, m->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
            die(CODE_SANDBOX, "volume %s:%s: cannot mount it: %s", m->src, m->dst,
                strerror(errno));
        if (m->kind == MOUNT_RO_BIND)
            make_read_only(m);
    }
}

static void drop_host_tree(const char *oldroot)
{
    char path[PATH_MAX];

    join(path, sizeof path, "/", oldroot);
    if (umount2(path, MNT_DETACH) < 0 || rmdir(path) < 0)
        die(CODE_SANDBOX, "sandbox: cannot detach the host's tree: %s", strerror(errno));
}

/* An empty read-only tmpfs over PATH, if PATH is a directory here. */
static void hide_at(const char *path, const char *dir)
{
    struct stat st;

    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return;
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=4k,mode=0555") < 0)
        die(CODE_SANDBOX, "sandbox: cannot hide %s (%s): %s", dir, path, strerror(errno));
}

static void hide_dirs(const struct options *opt)
{
    char path[PATH_MAX];
    size_t i, j, len;

    for (i = 0; i < opt->n_hides; i++) {
        const char *dir = opt->hides[i];

        if (dir == NULL)
            continue;
        hide_at(dir, dir);
        /* where a volume of one of its parents shows it */
        for (j = 0; j < opt->n_mounts; j++) {
            const struct mount_op *m = &opt->mounts[j];

            if (!is_within(dir, m->host_src))
                continue;
            len = strcmp(m->host_src, "/") == 0 ? 0 : strlen(m->host_src);
            join(path, sizeof path, m->dst, dir + len);
            hide_at(path, dir);
        }
    }
}

static int start_failure_code(int err)
{
    return err == EACCES || err == EPERM ? CODE_NOT_EXECUTABLE : CODE_NOT_FOUND;
}

static void enter_working_dir(const struct options *opt, const char *started_in)
{
    if (opt->chdir != NULL) {
        if (chdir(opt->chdir) < 0)
            die(start_failure_code(errno), "cannot start the pod's command: cannot change "
                "into %s: %s", opt->chdir, strerror(errno));
    } else if (started_in == NULL || chdir(started_in) < 0) {
        /* shadowed by a volume, or out of the user's reach: as su(1) would */
        if (chdir("/") < 0)
            die(CODE_SANDBOX, "sandbox: cannot change into /: %s", strerror(errno));
    }
}

static __attribute__((noreturn)) void run_command(const struct options *opt)
{
    execvp(opt->command[0], opt->command);
    die(start_failure_code(errno), "cannot start the pod's command: %s: %s",
        opt->command[0], strerror(errno));
}

/* The signals the sandbox passes on to init, and init to every process of the pod. */
static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static void waited_signals(sigset_t *set)
{
    size_t i;

    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    for (i = 0; i < N_FORWARDED; i++)
        sigaddset(set, forwarded[i]);
}

/* Die with our parent, unless it is gone already (then we were orphaned before asking). */
static void die_with_parent(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        die(CODE_SANDBOX, "sandbox: prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
    if (getppid() != parent)
        _exit(CODE_SANDBOX);
}

static void write_all_or_die(int fd, const void *buf, size_t len)
{
    if (write(fd, buf, len) != (ssize_t)len)
        die(CODE_SANDBOX, "sandbox: cannot write to a pipe: %s", strerror(errno));
}

static void read_byte_or_die(int fd)
{
    char c;
    ssize_t n;

    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(CODE_SANDBOX);   /* the other side died, and said why if it could */
}

/* pid 1 of the pod's pid namespace; see the top of this file. */
static __attribute__((noreturn)) void run_init(const struct options *opt,
                                               const char *started_in, mode_t umask_was,
                                               const sigset_t *pod_mask, int alive_r,
                                               int report_w, int ready_w, int go_r)
{
    struct pollfd parent = {alive_r, POLLIN, 0};
    sigset_t set;
    pid_t command, pid;
    int sig, raw, status = 0, done = 0, signalled = 0;

    /* the sandbox, our parent, is outside the namespace: getppid() says 0 either way, so
     * the pipe it holds tells whether it is still there */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
        poll(&parent, 1, 0) != 0)
        _exit(CODE_SANDBOX);
    setpgid(0, 0);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die(CODE_SANDBOX, "%s: cannot mount a /proc of the pod's own: %s", purpose,
            strerror(errno));
    if (ready_w >= 0) {
        /* root: a user namespace whose maps the sandbox writes (we could map only
         * ourselves from inside), then a mount namespace it owns, where every mount made
         * so far is locked */
        if (unshare(CLONE_NEWUSER) < 0)
            die(CODE_SANDBOX, "%s: unshare(CLONE_NEWUSER) failed: %s%s", purpose,
                strerror(errno), namespace_hint(errno, 1));
        write_all_or_die(ready_w, "u", 1);
        read_byte_or_die(go_r);
        if (unshare(CLONE_NEWNS) < 0)
            die(CODE_SANDBOX, "%s: unshare(CLONE_NEWNS) in the user namespace failed: %s",
                purpose, strerror(errno));
        close(ready_w);
        close(go_r);
    }
    enter_working_dir(opt, started_in);
    command = fork();
    if (command < 0)
        die(CODE_SANDBOX, "sandbox: fork: %s", strerror(errno));
    if (command == 0) {
        /* the pod's command gets the signal mask the sandbox was started with: nothing
         * of ours stays blocked in it */
        sigprocmask(SIG_SETMASK, pod_mask, NULL);
        umask(umask_was);
        run_command(opt);
    }
    waited_signals(&set);
    for (;;) {
        sig = sigwaitinfo(&set, NULL);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            if (sig != SIGUSR1 && sig != SIGUSR2)
                signalled = 1;
            kill(-1, sig);
            continue;
        }
        while ((pid = waitpid(-1, &raw, WNOHANG)) > 0)
            if (pid == command) {
                status = raw;
                done = 1;
            }
        if (done && (!signalled || (pid < 0 && errno == ECHILD)))
            break;
    }
    write_all_or_die(report_w, &status, sizeof status);
    _exit(0);   /* the kernel kills what is left of the namespace */
}

/* End as the wait status RAW says: its exit code, or killed by its signal. */
static __attribute__((noreturn)) void end_as(int raw)
{
    sigset_t one;
    int sig;

    if (!WIFSIGNALED(raw))
        exit(WIFEXITED(raw) ? WEXITSTATUS(raw) : CODE_SANDBOX);
    sig = WTERMSIG(raw);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);    /* the command dumped its core, if any */
    signal(sig, SIG_DFL);
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    exit(128 + sig);
}

/* As root, write init's maps: every id onto itself. */
static void map_ids(int ready_r, int go_w)
{
    read_byte_or_die(ready_r);
    /* init mounted the pod's /proc, where it is pid 1, in the mount namespace we share */
    write_proc_file("/proc/1/uid_map", "0 0 4294967295\n");
    write_proc_file("/proc/1/gid_map", "0 0 4294967295\n");
    write_all_or_die(go_w, "g", 1);
}

static __attribute__((noreturn)) void run_in_pid_namespace(const struct options *opt,
                                                           const char *started_in,
                                                           mode_t umask_was)
{
    int alive[2], report[2], ready[2] = {-1, -1}, go[2] = {-1, -1}, raw = 0, status, sig;
    int as_root = geteuid() == 0;
    sigset_t set, old;
    pid_t init, pid;
    ssize_t n;

    if (pipe2(alive, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0 ||
        (as_root && (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)))
        die(CODE_SANDBOX, "sandbox: pipe: %s", strerror(errno));
    waited_signals(&set);
    sigprocmask(SIG_BLOCK, &set, &old);
    init = fork();
    if (init < 0)
        die(CODE_SANDBOX, "sandbox: fork: %s", strerror(errno));
    if (init == 0) {
        close(alive[1]);
        close(report[0]);
        if (as_root) {
            close(ready[0]);
            close(go[1]);
        }
        run_init(opt, started_in, umask_was, &old, alive[0], report[1], ready[1], go[0]);
    }
    close(alive[0]);
    close(report[1]);
    if (as_root) {
        close(ready[1]);
        close(go[0]);
        map_ids(ready[0], go[1]);
    }
    for (;;) {
        sig = sigwaitinfo(&set, NULL);
        if (sig == SIGCHLD) {
            pid = waitpid(init, &raw, WNOHANG);
            if (pid == init)
                break;
        } else if (sig > 0) {
            kill(init, sig);     /* init sends it on to the whole pod */
        }
    }
    n = read(report[0], &status, sizeof status);
    /* no report: init ended before the command did (a setup step failed: its own code) */
    end_as(n == (ssize_t)sizeof status ? status : raw);
}

int main(int argc, char **argv)
{
    struct options opt;
    struct names host;
    const char *oldroot;
    char *started_in;
    mode_t umask_was;
    pid_t parent = getppid();

    parse_options(argc, argv, &opt);
    if (opt.pid)
        die_with_parent(parent);
    if (opt.n_mounts == 0)
        purpose = "isolating the pod needs namespaces";
    /* the mount points we make are 0755 whatever the pod's umask; it gets its own back */
    umask_was = umask(022);
    started_in = getcwd(NULL, 0);
    resolve_sources(&opt);
    enter_namespaces(&opt);
    if (opt.pid)
        die_with_parent(parent);     /* again: a change of credentials may clear it */
    follow_host_mounts();
    if (opt.n_mounts > 0) {
        read_host_top_level(&host);
        oldroot = pick_oldroot(&host, &opt);
        enter_tmpfs_root(&host, oldroot);
        show_host_entries(&host, oldroot, &opt);
        mount_volumes(&opt, oldroot);
        drop_host_tree(oldroot);
    }
    hide_dirs(&opt);
    if (opt.pid)
        run_in_pid_namespace(&opt, started_in, umask_was);
    enter_working_dir(&opt, started_in);
    umask(umask_was);
    run_command(&opt);
}
