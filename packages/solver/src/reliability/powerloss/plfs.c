/*
 * plfs: a power-loss simulating FUSE filesystem (reliability case T33).
 *
 * An in-memory filesystem that keeps, for every inode, its live state (what every
 * process sees) and its durable state (what would be on the disk after a power cut),
 * and only moves changes from the first to the second when POSIX promises they are
 * durable: fsync/fdatasync of a file makes that file's data and attributes durable;
 * fsync of a directory makes the namespace operations done in it (create, mkdir,
 * mknod, symlink, link, unlink, rmdir, rename) durable, together with every earlier
 * operation of any other directory that a rename among them also touched (a rename
 * is atomic: it is never half applied). Nothing else is durable: not close(), not
 * the creation of a directory before its parent is fsynced, not sync(2)/syncfs(2)
 * (libfuse 3.14 has no operation for them: see README.md).
 *
 * Control, by signal (each is acknowledged by a line on stdout):
 *   SIGUSR1  power cut: the mount is detached, every inode reverts to its durable
 *            state (what nothing durable names is gone), and the same mount point is
 *            mounted again on a new FUSE connection ("mounted <n>")
 *   SIGHUP   a torn power cut: the same, but first each file keeps a random prefix of
 *            the writes and truncates it had since its last fsync, and each directory a
 *            random prefix of its namespace operations not yet durable (with what they
 *            depend on), as when a disk wrote back some of its cache before the cut
 *   SIGUSR2  checkpoint: everything is made durable, like a clean sync ("checkpoint <n>")
 *   SIGTERM, SIGINT  unmount and exit
 *
 * Usage: plfs [--seed N] MOUNTPOINT   (N seeds the torn cuts' choices)
 *
 * Built by the reliability test with: gcc -O2 -Wall plfs.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static const double TIMEOUT = 1.0;

struct xattr {
  char *name;
  char *val;
  size_t len;
};

/* One version of an inode's contents: the live one or the durable one. */
struct ver {
  mode_t mode;
  uid_t uid;
  gid_t gid;
  dev_t rdev;
  struct timespec atime, mtime, ctime;
  char *data; /* file bytes, or a symlink's target */
  size_t size, cap;
  struct xattr *xa;
  size_t nxa;
};

struct dent {
  char *name;
  uint64_t ino;
  uint64_t cookie; /* stable readdir offset */
};

struct dentries {
  struct dent *v;
  size_t n, cap;
};

/* A write or truncate since the last fsync (only kept with --torn). */
struct wlog {
  off_t off;
  size_t len;
  char *data; /* NULL: a truncate to `off` */
};

enum { OP_LINK, OP_UNLINK, OP_RENAME, OP_EXCHANGE };

/* A namespace operation not yet durable. */
struct op {
  uint64_t seq;
  int kind;
  uint64_t d1, d2; /* directories involved (d2 == d1 when one) */
  char *n1, *n2;
  uint64_t ino, ino2; /* what n1 names (link, rename), and n2 (exchange) */
  int marked;
};

struct inode {
  uint64_t ino;
  struct ver live, dur;
  struct dentries ents;  /* directories: live entries */
  struct dentries dents; /* directories: durable entries */
  uint64_t next_cookie;
  struct op **pend; /* directories: pending namespace ops involving it, by seq */
  size_t npend, cappend;
  unsigned nlink;   /* live directory entries naming it */
  unsigned durrefs; /* durable directory entries naming it */
  unsigned oprefs;  /* pending ops naming it */
  uint64_t nlookup;
  unsigned nopen;
  struct wlog *log;
  size_t nlog, caplog;
};

static struct inode **tab;
static size_t tabcap;
static uint64_t next_ino = FUSE_ROOT_ID; /* the first inode made is the root */
static uint64_t seq;
static int torn; /* the cut in progress is a torn one */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "plfs: out of memory\n");
    abort();
  }
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) {
    fprintf(stderr, "plfs: out of memory\n");
    abort();
  }
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = xmalloc(n);
  memcpy(p, s, n);
  return p;
}

static struct inode *get(uint64_t ino) {
  return ino < tabcap ? tab[ino] : NULL;
}

static int is_dir(const struct inode *n) {
  return S_ISDIR(n->live.mode);
}

static struct timespec now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

/* ---- versions ---------------------------------------------------------------- */

static void ver_free(struct ver *v) {
  free(v->data);
  for (size_t i = 0; i < v->nxa; i++) {
    free(v->xa[i].name);
    free(v->xa[i].val);
  }
  free(v->xa);
  memset(v, 0, sizeof *v);
}

/* dst := a deep copy of src */
static void ver_copy(struct ver *dst, const struct ver *src) {
  ver_free(dst);
  *dst = *src;
  dst->data = NULL;
  dst->cap = src->size;
  if (src->size > 0 || src->data) {
    dst->data = xmalloc(src->size);
    if (src->size) memcpy(dst->data, src->data, src->size);
  }
  dst->xa = NULL;
  if (src->nxa) {
    dst->xa = xmalloc(src->nxa * sizeof *dst->xa);
    for (size_t i = 0; i < src->nxa; i++) {
      dst->xa[i].name = xstrdup(src->xa[i].name);
      dst->xa[i].len = src->xa[i].len;
      dst->xa[i].val = xmalloc(src->xa[i].len);
      memcpy(dst->xa[i].val, src->xa[i].val, src->xa[i].len);
    }
  }
}

static void data_resize(struct ver *v, size_t size) {
  if (size > v->cap) {
    size_t cap = v->cap ? v->cap : 4096;
    while (cap < size) cap *= 2;
    v->data = xrealloc(v->data, cap);
    v->cap = cap;
  }
  if (size > v->size) memset(v->data + v->size, 0, size - v->size);
  v->size = size;
}

static void data_write(struct ver *v, off_t off, const char *buf, size_t len) {
  if ((size_t)off + len > v->size) data_resize(v, (size_t)off + len);
  memcpy(v->data + off, buf, len);
}

/* ---- directory entries -------------------------------------------------------- */

static struct dent *dfind(struct dentries *d, const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->v[i].name, name) == 0) return &d->v[i];
  return NULL;
}

static void dadd(struct dentries *d, const char *name, uint64_t ino, uint64_t cookie) {
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 8;
    d->v = xrealloc(d->v, d->cap * sizeof *d->v);
  }
  d->v[d->n].name = xstrdup(name);
  d->v[d->n].ino = ino;
  d->v[d->n].cookie = cookie;
  d->n++;
}

static void ddel(struct dentries *d, struct dent *e) {
  size_t i = (size_t)(e - d->v);
  free(e->name);
  memmove(&d->v[i], &d->v[i + 1], (d->n - i - 1) * sizeof *d->v);
  d->n--;
}

static void dfree(struct dentries *d) {
  for (size_t i = 0; i < d->n; i++) free(d->v[i].name);
  free(d->v);
  memset(d, 0, sizeof *d);
}

/* ---- inodes -------------------------------------------------------------------- */

static void log_clear(struct inode *n) {
  for (size_t i = 0; i < n->nlog; i++) free(n->log[i].data);
  free(n->log);
  n->log = NULL;
  n->nlog = n->caplog = 0;
}

static void log_add(struct inode *n, off_t off, const char *buf, size_t len) {
  if (n->nlog == n->caplog) {
    n->caplog = n->caplog ? n->caplog * 2 : 8;
    n->log = xrealloc(n->log, n->caplog * sizeof *n->log);
  }
  struct wlog *w = &n->log[n->nlog++];
  w->off = off;
  w->len = len;
  w->data = NULL;
  if (buf) {
    w->data = xmalloc(len);
    memcpy(w->data, buf, len);
  }
}

static void inode_free(struct inode *n) {
  tab[n->ino] = NULL;
  ver_free(&n->live);
  ver_free(&n->dur);
  dfree(&n->ents);
  dfree(&n->dents);
  free(n->pend);
  log_clear(n);
  free(n);
}

static void maybe_free(struct inode *n) {
  if (n && n->ino != FUSE_ROOT_ID && n->nlink == 0 && n->durrefs == 0 && n->oprefs == 0 && n->nlookup == 0 && n->nopen == 0)
    inode_free(n);
}

static struct inode *inode_new(mode_t mode, uid_t uid, gid_t gid, dev_t rdev) {
  struct inode *n = calloc(1, sizeof *n);
  if (!n) abort();
  n->ino = next_ino++;
  if (n->ino >= tabcap) {
    size_t cap = tabcap ? tabcap * 2 : 1024;
    while (cap <= n->ino) cap *= 2;
    tab = xrealloc(tab, cap * sizeof *tab);
    memset(tab + tabcap, 0, (cap - tabcap) * sizeof *tab);
    tabcap = cap;
  }
  tab[n->ino] = n;
  n->live.mode = mode;
  n->live.uid = uid;
  n->live.gid = gid;
  n->live.rdev = rdev;
  n->live.atime = n->live.mtime = n->live.ctime = now();
  n->next_cookie = 3;
  /* a new inode is durable as created (empty) once a durable entry names it */
  ver_copy(&n->dur, &n->live);
  return n;
}

static void fill_stat(const struct inode *n, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = n->ino;
  st->st_mode = n->live.mode;
  st->st_uid = n->live.uid;
  st->st_gid = n->live.gid;
  st->st_rdev = n->live.rdev;
  st->st_atim = n->live.atime;
  st->st_mtim = n->live.mtime;
  st->st_ctim = n->live.ctime;
  st->st_blksize = 4096;
  if (is_dir(n)) {
    nlink_t l = 2;
    for (size_t i = 0; i < n->ents.n; i++) {
      struct inode *c = get(n->ents.v[i].ino);
      if (c && is_dir(c)) l++;
    }
    st->st_nlink = l;
    st->st_size = 4096;
  } else {
    st->st_nlink = n->nlink;
    st->st_size = (off_t)n->live.size;
  }
  st->st_blocks = (st->st_size + 511) / 512;
}

static void reply_entry(fuse_req_t req, struct inode *n) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = n->ino;
  e.attr_timeout = TIMEOUT;
  e.entry_timeout = TIMEOUT;
  fill_stat(n, &e.attr);
  n->nlookup++;
  fuse_reply_entry(req, &e);
}

static void touch_dir(struct inode *d) {
  d->live.mtime = d->live.ctime = now();
}

/* ---- pending namespace operations and their durability ------------------------- */

static void pend_add(struct inode *d, struct op *o) {
  if (d->npend == d->cappend) {
    d->cappend = d->cappend ? d->cappend * 2 : 8;
    d->pend = xrealloc(d->pend, d->cappend * sizeof *d->pend);
  }
  d->pend[d->npend++] = o;
}

static void ref(uint64_t ino) {
  struct inode *n = get(ino);
  if (n) n->oprefs++;
}

static void unref(uint64_t ino) {
  struct inode *n = get(ino);
  if (n) {
    n->oprefs--;
    maybe_free(n);
  }
}

static void op_record(int kind, uint64_t d1, const char *n1, uint64_t d2, const char *n2, uint64_t ino, uint64_t ino2) {
  struct op *o = calloc(1, sizeof *o);
  if (!o) abort();
  o->seq = ++seq;
  o->kind = kind;
  o->d1 = d1;
  o->d2 = d2;
  o->n1 = xstrdup(n1);
  o->n2 = n2 ? xstrdup(n2) : NULL;
  o->ino = ino;
  o->ino2 = ino2;
  pend_add(get(d1), o);
  ref(d1);
  if (d2 != d1) {
    pend_add(get(d2), o);
    ref(d2);
  }
  if (ino) ref(ino);
  if (ino2) ref(ino2);
}

/* durable: dir[name] := ino (0 removes) */
static void dur_set(struct inode *d, const char *name, uint64_t ino) {
  struct dent *e = dfind(&d->dents, name);
  if (e) {
    struct inode *old = get(e->ino);
    if (old) old->durrefs--;
    if (ino) {
      e->ino = ino;
    } else {
      ddel(&d->dents, e);
    }
    if (old) maybe_free(old);
  } else if (ino) {
    dadd(&d->dents, name, ino, 0);
  }
  if (ino) get(ino)->durrefs++;
}

static void op_apply(struct op *o) {
  struct inode *d1 = get(o->d1), *d2 = get(o->d2);
  switch (o->kind) {
  case OP_LINK:
    dur_set(d1, o->n1, o->ino);
    break;
  case OP_UNLINK:
    dur_set(d1, o->n1, 0);
    break;
  case OP_RENAME:
    get(o->ino)->durrefs++; /* keep it alive between the two halves */
    dur_set(d1, o->n1, 0);
    dur_set(d2, o->n2, o->ino);
    get(o->ino)->durrefs--;
    break;
  case OP_EXCHANGE:
    dur_set(d1, o->n1, o->ino2);
    dur_set(d2, o->n2, o->ino);
    break;
  }
}

static void op_free(struct op *o) {
  unref(o->d1);
  if (o->d2 != o->d1) unref(o->d2);
  if (o->ino) unref(o->ino);
  if (o->ino2) unref(o->ino2);
  free(o->n1);
  free(o->n2);
  free(o);
}

struct oplist {
  struct op **v;
  size_t n, cap;
};

static void oplist_push(struct oplist *l, struct op *o) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 16;
    l->v = xrealloc(l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = o;
}

/* marks the pending ops of `d` with seq < upto */
static void mark_prefix(struct inode *d, uint64_t upto, struct oplist *marked, struct oplist *work) {
  for (size_t i = 0; i < d->npend && d->pend[i]->seq < upto; i++) {
    struct op *o = d->pend[i];
    if (o->marked) continue;
    o->marked = 1;
    oplist_push(marked, o);
    oplist_push(work, o);
  }
}

static int by_seq(const void *a, const void *b) {
  uint64_t x = (*(struct op *const *)a)->seq, y = (*(struct op *const *)b)->seq;
  return x < y ? -1 : x > y;
}

static void drop_applied(struct inode *d) {
  size_t k = 0;
  for (size_t i = 0; i < d->npend; i++)
    if (!d->pend[i]->marked) d->pend[k++] = d->pend[i];
  d->npend = k;
}

/*
 * fsync of a directory: its pending ops with seq < upto (and what they depend on) become
 * durable, and with `meta` its own attributes
 */
static void dir_sync_upto(struct inode *d, uint64_t upto, int meta) {
  struct oplist marked = {0}, work = {0};
  d->oprefs++; /* not freed while its own ops are */
  mark_prefix(d, upto, &marked, &work);
  while (work.n > 0) {
    struct op *o = work.v[--work.n];
    mark_prefix(get(o->d1), o->seq, &marked, &work);
    if (o->d2 != o->d1) mark_prefix(get(o->d2), o->seq, &marked, &work);
  }
  qsort(marked.v, marked.n, sizeof *marked.v, by_seq);
  for (size_t i = 0; i < marked.n; i++) op_apply(marked.v[i]);
  for (size_t i = 0; i < marked.n; i++) {
    struct op *o = marked.v[i];
    drop_applied(get(o->d1));
    if (o->d2 != o->d1) drop_applied(get(o->d2));
  }
  for (size_t i = 0; i < marked.n; i++) op_free(marked.v[i]);
  free(marked.v);
  free(work.v);
  if (meta) ver_copy(&d->dur, &d->live);
  d->oprefs--;
  maybe_free(d);
}

static void dir_sync(struct inode *d) {
  dir_sync_upto(d, UINT64_MAX, 1);
}

/* fsync of a file: its bytes and attributes become durable */
static void file_sync(struct inode *n) {
  ver_copy(&n->dur, &n->live);
  log_clear(n);
}

static uint64_t checkpoints, cuts;

/* everything becomes durable */
static void checkpoint(void) {
  for (uint64_t i = 1; i < tabcap; i++) {
    struct inode *n = tab[i];
    if (!n) continue;
    if (is_dir(n)) {
      dir_sync(n);
    } else {
      file_sync(n);
    }
  }
}

/* power cut: every inode reverts to its durable state; unreachable ones are freed */
static void cut(void) {
  if (torn) {
    /* some of the namespace operations reached the disk: a random prefix of each directory's */
    for (uint64_t i = 1; i < tabcap; i++) {
      struct inode *n = tab[i];
      if (!n || !is_dir(n) || n->npend == 0) continue;
      size_t keep = (size_t)(rnd() % (n->npend + 1));
      if (keep > 0) dir_sync_upto(n, n->pend[keep - 1]->seq + 1, 0);
    }
  }
  for (uint64_t i = 1; i < tabcap; i++) {
    struct inode *n = tab[i];
    if (!n) continue;
    for (size_t k = 0; k < n->npend; k++) {
      struct op *o = n->pend[k];
      if (o->d1 == n->ino) { /* freed once, by its first directory */
        free(o->n1);
        free(o->n2);
        free(o);
      }
    }
    free(n->pend);
    n->pend = NULL;
    n->npend = n->cappend = 0;
  }
  for (uint64_t i = 1; i < tabcap; i++) {
    struct inode *n = tab[i];
    if (!n) continue;
    n->oprefs = 0;
    n->nlookup = 0;
    n->nopen = 0;
    n->nlink = 0;
    n->durrefs = 0;
    if (torn && n->nlog > 0 && S_ISREG(n->live.mode)) {
      size_t keep = (size_t)(rnd() % (n->nlog + 1));
      struct ver v = {0};
      ver_copy(&v, &n->dur);
      for (size_t k = 0; k < keep; k++) {
        struct wlog *w = &n->log[k];
        if (w->data) data_write(&v, w->off, w->data, w->len);
        else data_resize(&v, (size_t)w->off);
      }
      ver_copy(&n->dur, &v);
      ver_free(&v);
    }
    log_clear(n);
    ver_copy(&n->live, &n->dur);
    dfree(&n->ents);
    for (size_t k = 0; k < n->dents.n; k++) dadd(&n->ents, n->dents.v[k].name, n->dents.v[k].ino, k + 3);
    n->next_cookie = n->dents.n + 3;
  }
  /* reachability from the root */
  char *seen = calloc(tabcap, 1);
  uint64_t *stack = xmalloc(tabcap * sizeof *stack);
  size_t sp = 0;
  seen[FUSE_ROOT_ID] = 1;
  stack[sp++] = FUSE_ROOT_ID;
  while (sp > 0) {
    struct inode *d = tab[stack[--sp]];
    for (size_t k = 0; k < d->ents.n; k++) {
      uint64_t c = d->ents.v[k].ino;
      struct inode *ci = get(c);
      if (!ci) continue;
      ci->nlink++;
      ci->durrefs++;
      /* a directory has one name: a second durable name (two renames, one synced) is dropped */
      if (is_dir(ci) && seen[c]) {
        struct dent *e = &d->ents.v[k];
        struct dent *de = dfind(&d->dents, e->name);
        if (de) ddel(&d->dents, de);
        ddel(&d->ents, e);
        ci->nlink--;
        ci->durrefs--;
        k--;
        continue;
      }
      if (!seen[c]) {
        seen[c] = 1;
        if (is_dir(ci)) stack[sp++] = c;
      }
    }
  }
  for (uint64_t i = 1; i < tabcap; i++)
    if (tab[i] && !seen[i]) inode_free(tab[i]);
  free(seen);
  free(stack);
}

/* ---- FUSE operations --------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE; /* every write reaches us at once */
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct inode *d = get(parent);
  if (!d || !is_dir(d)) return (void)fuse_reply_err(req, ENOTDIR);
  struct dent *e = dfind(&d->ents, name);
  if (!e) return (void)fuse_reply_err(req, ENOENT);
  reply_entry(req, get(e->ino));
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  struct inode *n = get(ino);
  if (n) {
    n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
    maybe_free(n);
  }
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) {
  for (size_t i = 0; i < count; i++) {
    struct inode *n = get(f[i].ino);
    if (n) {
      n->nlookup = n->nlookup > f[i].nlookup ? n->nlookup - f[i].nlookup : 0;
      maybe_free(n);
    }
  }
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  fill_stat(n, &st);
  fuse_reply_attr(req, &st, TIMEOUT);
}

static void truncate_to(struct inode *n, size_t size) {
  if (size == n->live.size) return;
  data_resize(&n->live, size);
  log_add(n, (off_t)size, NULL, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  struct timespec t = now();
  if (to_set & FUSE_SET_ATTR_MODE) n->live.mode = (n->live.mode & S_IFMT) | (attr->st_mode & 07777);
  if (to_set & FUSE_SET_ATTR_UID) n->live.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) n->live.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (!S_ISREG(n->live.mode)) return (void)fuse_reply_err(req, is_dir(n) ? EISDIR : EINVAL);
    truncate_to(n, (size_t)attr->st_size);
    n->live.mtime = t;
  }
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) n->live.atime = t;
  else if (to_set & FUSE_SET_ATTR_ATIME) n->live.atime = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) n->live.mtime = t;
  else if (to_set & FUSE_SET_ATTR_MTIME) n->live.mtime = attr->st_mtim;
  if (to_set & FUSE_SET_ATTR_CTIME) n->live.ctime = attr->st_ctim;
  else n->live.ctime = t;
  struct stat st;
  fill_stat(n, &st);
  fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  struct inode *n = get(ino);
  if (!n || !S_ISLNK(n->live.mode)) return (void)fuse_reply_err(req, EINVAL);
  char *s = xmalloc(n->live.size + 1);
  memcpy(s, n->live.data, n->live.size);
  s[n->live.size] = 0;
  fuse_reply_readlink(req, s);
  free(s);
}

/* a new inode named `name` in `parent`, or an errno */
static int make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev, const char *target, struct inode **out) {
  struct inode *d = get(parent);
  if (!d || !is_dir(d)) return ENOTDIR;
  if (strlen(name) > 255) return ENAMETOOLONG;
  if (dfind(&d->ents, name)) return EEXIST;
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  gid_t gid = ctx->gid;
  if (d->live.mode & S_ISGID) {
    gid = d->live.gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  struct inode *n = inode_new(mode, ctx->uid, gid, rdev);
  if (target) {
    data_write(&n->live, 0, target, strlen(target));
    ver_copy(&n->dur, &n->live); /* a symlink's target is written with its inode */
  }
  dadd(&d->ents, name, n->ino, d->next_cookie++);
  n->nlink = 1;
  touch_dir(d);
  op_record(OP_LINK, parent, name, parent, NULL, n->ino, 0);
  *out = n;
  return 0;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  struct inode *n;
  int err = make(req, parent, name, mode, rdev, NULL, &n);
  if (err) return (void)fuse_reply_err(req, err);
  reply_entry(req, n);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  struct inode *n;
  int err = make(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, &n);
  if (err) return (void)fuse_reply_err(req, err);
  reply_entry(req, n);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  struct inode *n;
  int err = make(req, parent, name, S_IFLNK | 0777, 0, link, &n);
  if (err) return (void)fuse_reply_err(req, err);
  reply_entry(req, n);
}

static int remove_entry(fuse_ino_t parent, const char *name, int dir) {
  struct inode *d = get(parent);
  if (!d || !is_dir(d)) return ENOTDIR;
  struct dent *e = dfind(&d->ents, name);
  if (!e) return ENOENT;
  struct inode *n = get(e->ino);
  if (dir && !is_dir(n)) return ENOTDIR;
  if (!dir && is_dir(n)) return EISDIR;
  if (dir && n->ents.n > 0) return ENOTEMPTY;
  uint64_t ino = n->ino;
  ddel(&d->ents, e);
  n->nlink--;
  n->live.ctime = now();
  touch_dir(d);
  op_record(OP_UNLINK, parent, name, parent, NULL, 0, 0);
  maybe_free(get(ino));
  return 0;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  fuse_reply_err(req, remove_entry(parent, name, 0));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  fuse_reply_err(req, remove_entry(parent, name, 1));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  struct inode *d1 = get(parent), *d2 = get(newparent);
  if (!d1 || !d2 || !is_dir(d1) || !is_dir(d2)) return (void)fuse_reply_err(req, ENOTDIR);
  if (strlen(newname) > 255) return (void)fuse_reply_err(req, ENAMETOOLONG);
  struct dent *e1 = dfind(&d1->ents, name);
  if (!e1) return (void)fuse_reply_err(req, ENOENT);
  struct inode *src = get(e1->ino);
  struct dent *e2 = dfind(&d2->ents, newname);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return (void)fuse_reply_err(req, EINVAL);
  if (flags & RENAME_EXCHANGE) {
    if (!e2) return (void)fuse_reply_err(req, ENOENT);
    struct inode *dst = get(e2->ino);
    e1->ino = dst->ino;
    e2->ino = src->ino;
    touch_dir(d1);
    touch_dir(d2);
    op_record(OP_EXCHANGE, parent, name, newparent, newname, src->ino, dst->ino);
    return (void)fuse_reply_err(req, 0);
  }
  if (e2) {
    if (flags & RENAME_NOREPLACE) return (void)fuse_reply_err(req, EEXIST);
    struct inode *dst = get(e2->ino);
    if (dst == src) return (void)fuse_reply_err(req, 0); /* hard links of one inode: nothing to do */
    if (is_dir(src) && !is_dir(dst)) return (void)fuse_reply_err(req, ENOTDIR);
    if (!is_dir(src) && is_dir(dst)) return (void)fuse_reply_err(req, EISDIR);
    if (is_dir(dst) && dst->ents.n > 0) return (void)fuse_reply_err(req, ENOTEMPTY);
  }
  uint64_t ino = src->ino;
  ddel(&d1->ents, e1);
  e2 = dfind(&d2->ents, newname); /* ddel may have moved it */
  uint64_t replaced = 0;
  if (e2) {
    replaced = e2->ino;
    e2->ino = ino;
  } else {
    dadd(&d2->ents, newname, ino, d2->next_cookie++);
  }
  src->live.ctime = now();
  touch_dir(d1);
  touch_dir(d2);
  op_record(OP_RENAME, parent, name, newparent, newname, ino, 0);
  if (replaced) {
    struct inode *r = get(replaced);
    r->nlink--;
    maybe_free(r);
  }
  fuse_reply_err(req, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  struct inode *n = get(ino), *d = get(newparent);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (!d || !is_dir(d)) return (void)fuse_reply_err(req, ENOTDIR);
  if (is_dir(n)) return (void)fuse_reply_err(req, EPERM);
  if (dfind(&d->ents, newname)) return (void)fuse_reply_err(req, EEXIST);
  dadd(&d->ents, newname, ino, d->next_cookie++);
  n->nlink++;
  n->live.ctime = now();
  touch_dir(d);
  op_record(OP_LINK, newparent, newname, newparent, NULL, ino, 0);
  reply_entry(req, n);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (is_dir(n)) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_TRUNC) && S_ISREG(n->live.mode) && (fi->flags & O_ACCMODE) != O_RDONLY) {
    truncate_to(n, 0);
    n->live.mtime = n->live.ctime = now();
  }
  n->nopen++;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

/* replies to a create with the opened inode `n` */
static void reply_create(fuse_req_t req, struct inode *n, struct fuse_file_info *fi) {
  n->nopen++;
  fi->keep_cache = 1;
  struct fuse_entry_param ep;
  memset(&ep, 0, sizeof ep);
  ep.ino = n->ino;
  ep.attr_timeout = ep.entry_timeout = TIMEOUT;
  fill_stat(n, &ep.attr);
  n->nlookup++;
  fuse_reply_create(req, &ep, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  struct inode *d = get(parent);
  struct dent *e = d && is_dir(d) ? dfind(&d->ents, name) : NULL;
  if (e) {
    if (fi->flags & O_EXCL) return (void)fuse_reply_err(req, EEXIST);
    struct inode *n = get(e->ino);
    if ((fi->flags & O_TRUNC) && S_ISREG(n->live.mode)) truncate_to(n, 0);
    return reply_create(req, n, fi);
  }
  struct inode *n;
  int err = make(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, &n);
  if (err) return (void)fuse_reply_err(req, err);
  reply_create(req, n, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if ((size_t)off >= n->live.size) return (void)fuse_reply_buf(req, NULL, 0);
  size_t len = n->live.size - (size_t)off;
  if (len > size) len = size;
  fuse_reply_buf(req, n->live.data + off, len);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (fi->flags & O_APPEND) off = (off_t)n->live.size;
  data_write(&n->live, off, buf, size);
  log_add(n, off, buf, size);
  n->live.mtime = n->live.ctime = now();
  fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *n = get(ino);
  if (n) {
    if (n->nopen > 0) n->nopen--;
    maybe_free(n);
  }
  fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)datasync;
  (void)fi;
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (is_dir(n)) dir_sync(n);
  else file_sync(n);
  fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (!is_dir(n)) return (void)fuse_reply_err(req, ENOTDIR);
  n->nopen++;
  fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *d = get(ino);
  if (!d || !is_dir(d)) return (void)fuse_reply_err(req, ENOTDIR);
  char *buf = xmalloc(size);
  size_t used = 0;
  struct stat st;
  memset(&st, 0, sizeof st);
  if (off < 1) {
    st.st_ino = d->ino;
    st.st_mode = S_IFDIR;
    size_t l = fuse_add_direntry(req, buf + used, size - used, ".", &st, 1);
    if (l > size - used) goto done;
    used += l;
  }
  if (off < 2) {
    st.st_ino = 1;
    st.st_mode = S_IFDIR;
    size_t l = fuse_add_direntry(req, buf + used, size - used, "..", &st, 2);
    if (l > size - used) goto done;
    used += l;
  }
  for (size_t i = 0; i < d->ents.n; i++) {
    struct dent *e = &d->ents.v[i];
    if ((off_t)e->cookie <= off) continue;
    struct inode *c = get(e->ino);
    st.st_ino = e->ino;
    st.st_mode = c ? c->live.mode & S_IFMT : 0;
    size_t l = fuse_add_direntry(req, buf + used, size - used, e->name, &st, (off_t)e->cookie);
    if (l > size - used) break;
    used += l;
  }
done:
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  op_release(req, ino, fi);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  op_fsync(req, ino, datasync, fi);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs s;
  memset(&s, 0, sizeof s);
  s.f_bsize = s.f_frsize = 4096;
  s.f_blocks = s.f_bfree = s.f_bavail = 1ULL << 28; /* 1 TiB */
  s.f_files = s.f_ffree = s.f_favail = 1ULL << 24;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

static struct xattr *xfind(struct ver *v, const char *name) {
  for (size_t i = 0; i < v->nxa; i++)
    if (strcmp(v->xa[i].name, name) == 0) return &v->xa[i];
  return NULL;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  /* no POSIX ACLs (like ext4 mounted noacl): stored as a plain xattr, an ACL would not
     change the mode, and `cp -a` would lose it; refused, cp falls back to chmod */
  if (strncmp(name, "system.posix_acl_", 17) == 0) return (void)fuse_reply_err(req, EOPNOTSUPP);
  struct xattr *x = xfind(&n->live, name);
  if (x && (flags & XATTR_CREATE)) return (void)fuse_reply_err(req, EEXIST);
  if (!x && (flags & XATTR_REPLACE)) return (void)fuse_reply_err(req, ENODATA);
  if (!x) {
    n->live.xa = xrealloc(n->live.xa, (n->live.nxa + 1) * sizeof *n->live.xa);
    x = &n->live.xa[n->live.nxa++];
    x->name = xstrdup(name);
  } else {
    free(x->val);
  }
  x->val = xmalloc(size);
  memcpy(x->val, value, size);
  x->len = size;
  n->live.ctime = now();
  fuse_reply_err(req, 0);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  struct xattr *x = xfind(&n->live, name);
  if (!x) return (void)fuse_reply_err(req, ENODATA);
  if (size == 0) return (void)fuse_reply_xattr(req, x->len);
  if (size < x->len) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, x->val, x->len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  size_t len = 0;
  for (size_t i = 0; i < n->live.nxa; i++) len += strlen(n->live.xa[i].name) + 1;
  if (size == 0) return (void)fuse_reply_xattr(req, len);
  if (size < len) return (void)fuse_reply_err(req, ERANGE);
  char *buf = xmalloc(len);
  size_t p = 0;
  for (size_t i = 0; i < n->live.nxa; i++) {
    size_t l = strlen(n->live.xa[i].name) + 1;
    memcpy(buf + p, n->live.xa[i].name, l);
    p += l;
  }
  fuse_reply_buf(req, buf, len);
  free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  struct xattr *x = xfind(&n->live, name);
  if (!x) return (void)fuse_reply_err(req, ENODATA);
  size_t i = (size_t)(x - n->live.xa);
  free(x->name);
  free(x->val);
  memmove(&n->live.xa[i], &n->live.xa[i + 1], (n->live.nxa - i - 1) * sizeof *x);
  n->live.nxa--;
  n->live.ctime = now();
  fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)fi;
  struct inode *n = get(ino);
  if (!n) return (void)fuse_reply_err(req, ENOENT);
  if (mode & ~FALLOC_FL_KEEP_SIZE) return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (!(mode & FALLOC_FL_KEEP_SIZE) && (size_t)(off + len) > n->live.size) {
    truncate_to(n, (size_t)(off + len));
    n->live.mtime = n->live.ctime = now();
  }
  fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    /* no getlk/setlk/flock: the kernel keeps POSIX and BSD locks itself (one host) */
};

/* ---- main loop --------------------------------------------------------------- */

static int sigpipe[2];

static void on_signal(int sig) {
  char c = sig == SIGUSR1 ? 'c' : sig == SIGHUP ? 't' : sig == SIGUSR2 ? 's' : 'q';
  ssize_t r = write(sigpipe[1], &c, 1);
  (void)r;
}

static struct fuse_session *mount_at(const char *mnt) {
  char *argv[] = {"plfs", "-o", "allow_other,default_permissions,fsname=plfs,subtype=plfs", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, argv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se) return NULL;
  if (fuse_session_mount(se, mnt) != 0) {
    fuse_session_destroy(se);
    return NULL;
  }
  return se;
}

int main(int argc, char **argv) {
  const char *mnt = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) rng = strtoull(argv[++i], NULL, 0) | 1;
    else mnt = argv[i];
  }
  if (!mnt) {
    fprintf(stderr, "usage: plfs [--seed N] MOUNTPOINT\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct inode *root = inode_new(S_IFDIR | 0755, 0, 0, 0);
  root->nlink = 1;

  if (pipe2(sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct fuse_session *se = mount_at(mnt);
  if (!se) {
    fprintf(stderr, "plfs: cannot mount on %s\n", mnt);
    return 1;
  }
  printf("mounted 0\n");
  struct fuse_buf buf = {0};
  int status = 0;
  for (;;) {
    struct pollfd p[2] = {{.fd = fuse_session_fd(se), .events = POLLIN}, {.fd = sigpipe[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      status = 1;
      break;
    }
    if (p[1].revents & POLLIN) {
      char c;
      int quit = 0, docut = 0;
      while (read(sigpipe[0], &c, 1) == 1) {
        if (c == 'q') quit = 1;
        else if (c == 'c' || c == 't') docut = c;
        else if (c == 's') {
          checkpoint();
          printf("checkpoint %llu\n", (unsigned long long)++checkpoints);
        }
      }
      if (quit) break;
      if (docut) {
        fuse_session_unmount(se);
        fuse_session_destroy(se);
        torn = docut == 't';
        cut();
        se = mount_at(mnt);
        if (!se) {
          fprintf(stderr, "plfs: cannot mount again on %s\n", mnt);
          return 1;
        }
        printf("mounted %llu\n", (unsigned long long)++cuts);
        continue;
      }
    }
    if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) {
      int res = fuse_session_receive_buf(se, &buf);
      if (res == -EINTR || res == -EAGAIN) continue;
      if (res <= 0) {
        if (res < 0 && res != -ENODEV) status = 1;
        break; /* unmounted from outside */
      }
      fuse_session_process_buf(se, &buf);
    }
  }
  free(buf.mem);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  return status;
}
