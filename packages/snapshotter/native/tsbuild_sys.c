/*
 * tsbuild_sys: the few Linux system calls the snapshotter otherwise reaches by spawning
 * mount(8), umount(8), getfattr and setfattr: mount(2), umount2(2), and the l*xattr
 * family; hashTar, the sha256 of a layer tar read straight from the files (the
 * hash-only export of a big layer: one thread reads, another hashes); scanTree; and
 * writeFiles, a batch of a layer's small regular files created on a pool thread (the
 * applier keeps two batches in flight: file creation scales with threads). Every call runs on
 * libuv's thread pool (napi_async_work) and returns a Promise; failures reject with an
 * Error carrying `code` (the errno name, as Node's fs errors do), `errno` (negative, as
 * Node's), `syscall` and `path`.
 *
 * Loaded by src/util/native.ts; when it is absent the spawn path is used (see there).
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>
/* from <linux/fs.h>, which clashes with <sys/mount.h> on some glibc versions */
#ifndef FS_IOC_GETFLAGS
#define FS_IOC_GETFLAGS _IOR('f', 1, long)
#define FS_IOC_SETFLAGS _IOW('f', 2, long)
#endif
#ifndef FS_TOPDIR_FL
#define FS_TOPDIR_FL 0x00020000
#endif

/* SHA-256 from the OpenSSL inside the node process (node exports its symbols to addons).
 * Weak, so that a node without them still loads the addon: hashTar then fails with
 * ENOSYS and the caller hashes in JS. */
#include <openssl/evp.h>
extern __typeof(EVP_MD_CTX_new) EVP_MD_CTX_new __attribute__((weak));
extern __typeof(EVP_MD_CTX_free) EVP_MD_CTX_free __attribute__((weak));
extern __typeof(EVP_DigestInit_ex) EVP_DigestInit_ex __attribute__((weak));
extern __typeof(EVP_DigestUpdate) EVP_DigestUpdate __attribute__((weak));
extern __typeof(EVP_DigestFinal_ex) EVP_DigestFinal_ex __attribute__((weak));
extern __typeof(EVP_sha256) EVP_sha256 __attribute__((weak));

/* inflate from the zlib inside the node process (Chromium's, as node's own zlib module
 * uses), bound weakly as OpenSSL above: without them gunzipOpen returns null. */
#include <zlib.h>
extern __typeof(inflateInit2_) inflateInit2_ __attribute__((weak));
extern __typeof(inflate) inflate __attribute__((weak));
extern __typeof(inflateReset) inflateReset __attribute__((weak));
extern __typeof(inflateEnd) inflateEnd __attribute__((weak));

#define CHECK(call)                                  \
  do {                                               \
    if ((call) != napi_ok) {                         \
      napi_throw_error(env, NULL, "napi: " #call);   \
      return NULL;                                   \
    }                                                \
  } while (0)

/* ---- growable byte buffer (records handed from the pool thread to the main thread) ---- */

typedef struct {
  char *data;
  size_t len, cap;
  int oom;
} buf_t;

static void buf_put(buf_t *b, const void *p, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->oom = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void buf_put_chunk(buf_t *b, const void *p, uint32_t n) {
  buf_put(b, &n, sizeof n);
  buf_put(b, p, n);
}

/* ---- one request ---- */

enum op { OP_MOUNT, OP_UMOUNT, OP_TREE_XATTRS, OP_SET_XATTRS, OP_HASH_TAR, OP_SCAN_TREE, OP_WRITE_FILES, OP_GUNZIP };

typedef struct gz gz_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  enum op op;
  /* mount: source, target, fstype, data, cwd; umount: target; tree: dir */
  char *s[5];
  unsigned long flags;
  /* set xattrs: paths[i], names[i], values[i] (value_lens[i] bytes) */
  char **paths;
  char **names;
  char **values;
  size_t *value_lens;
  size_t count;
  /* hash tar: the caller's buffers, held by refs[] until complete() */
  napi_ref refs[4];
  const uint8_t *hdr;
  size_t hdr_len;
  const double *plan;
  size_t plan_len;
  const char *path_list;
  size_t path_list_len;
  const int32_t *abort_flag;
  /* write files: the bodies' chunks (the caller's Buffers, held by refs[2]) */
  const uint8_t **chunk_ptr;
  size_t *chunk_len;
  size_t chunk_count;
  /* gunzip: the stream (held by refs[0]) and the caller's output Buffer (refs[1]) */
  gz_t *gz;
  uint8_t *out_ptr;
  size_t out_len, produced;
  unsigned char digest[32];
  uint64_t total;
  /* result */
  int err;
  const char *syscall;
  char *err_path;
  /* a message of our own (code ECHANGED unless `code` says otherwise): a file whose
   * size changed while it was read, a corrupt gzip stream */
  char *msg;
  const char *code;
  buf_t out;
} req_t;

static char *dup_string(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return NULL;
  size_t n;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return NULL;
  char *s = malloc(n + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

static void req_free(req_t *r) {
  for (int i = 0; i < 5; i++) free(r->s[i]);
  for (size_t i = 0; i < r->count; i++) {
    if (r->paths) free(r->paths[i]);
    if (r->names) free(r->names[i]);
    if (r->values) free(r->values[i]);
  }
  free(r->paths);
  free(r->names);
  free(r->values);
  free(r->value_lens);
  free(r->chunk_ptr);
  free(r->chunk_len);
  free(r->err_path);
  free(r->msg);
  free(r->out.data);
  free(r);
}

static void fail(req_t *r, int err, const char *syscall, const char *path) {
  if (r->err) return;
  r->err = err;
  r->syscall = syscall;
  free(r->err_path);
  r->err_path = path ? strdup(path) : NULL;
}

/* ---- mount ---- */

/* Runs mount(2) with a private cwd (relative overlay dirs): a thread of its own that
 * unshares its fs context, so the process's cwd never changes. */
static void *mount_in_cwd(void *arg) {
  req_t *r = arg;
  if (unshare(CLONE_FS) != 0) {
    fail(r, errno, "unshare", NULL);
    return NULL;
  }
  if (chdir(r->s[4]) != 0) {
    fail(r, errno, "chdir", r->s[4]);
    return NULL;
  }
  if (mount(r->s[0], r->s[1], r->s[2], r->flags, r->s[3]) != 0) fail(r, errno, "mount", r->s[1]);
  return NULL;
}

static void do_mount(req_t *r) {
  unsigned long flags = r->flags;
  if ((flags & MS_REMOUNT) && (flags & MS_BIND)) {
    /* as mount(8) does for "remount,bind,ro": keep the mount's other per-mount flags
     * (a remount sets exactly the flags given, and locked ones would fail with EPERM) */
    struct statvfs sv;
    if (statvfs(r->s[1], &sv) != 0) {
      fail(r, errno, "statvfs", r->s[1]);
      return;
    }
    if (sv.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    r->flags = flags;
  }
  if (r->s[4] == NULL) {
    if (mount(r->s[0], r->s[1], r->s[2], r->flags, r->s[3]) != 0) fail(r, errno, "mount", r->s[1]);
    return;
  }
  pthread_t t;
  int e = pthread_create(&t, NULL, mount_in_cwd, r);
  if (e != 0) {
    fail(r, e, "pthread_create", NULL);
    return;
  }
  pthread_join(t, NULL);
}

/* ---- xattrs ---- */

/* Appends [path][name][value] records for every xattr of `path` (not following a symlink).
 * `key` is what the record names the file by. ENOTSUP/ENODATA mean "none". */
static void xattrs_of(req_t *r, const char *path, const char *key) {
  char stack[4096];
  char *list = stack;
  ssize_t n = llistxattr(path, stack, sizeof stack);
  if (n < 0 && errno == ERANGE) {
    n = llistxattr(path, NULL, 0);
    if (n >= 0) {
      list = malloc((size_t)n + 1);
      if (!list) {
        fail(r, ENOMEM, "llistxattr", path);
        return;
      }
      n = llistxattr(path, list, (size_t)n);
    }
  }
  if (n < 0) {
    if (errno != ENOTSUP) fail(r, errno, "llistxattr", path);
    goto out;
  }
  for (ssize_t i = 0; i < n;) {
    const char *name = list + i;
    size_t nl = strlen(name);
    i += (ssize_t)nl + 1;
    if (nl == 0) continue;
    char vstack[1024];
    char *v = vstack;
    ssize_t vn = lgetxattr(path, name, vstack, sizeof vstack);
    if (vn < 0 && errno == ERANGE) {
      vn = lgetxattr(path, name, NULL, 0);
      if (vn >= 0) {
        v = malloc((size_t)vn + 1);
        if (!v) {
          fail(r, ENOMEM, "lgetxattr", path);
          goto out;
        }
        vn = lgetxattr(path, name, v, (size_t)vn);
      }
    }
    if (vn < 0) {
      if (errno != ENODATA) fail(r, errno, "lgetxattr", path);
    } else {
      buf_put_chunk(&r->out, key, (uint32_t)strlen(key));
      buf_put_chunk(&r->out, name, (uint32_t)nl);
      buf_put_chunk(&r->out, v, (uint32_t)vn);
    }
    if (v != vstack) free(v);
    if (r->err) goto out;
  }
out:
  if (list != stack) free(list);
}

static __thread req_t *tree_req;
static __thread size_t tree_prefix;

static int tree_visit(const char *fpath, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  req_t *r = tree_req;
  if (flag == FTW_DNR || flag == FTW_NS) {
    fail(r, errno ? errno : EACCES, flag == FTW_NS ? "lstat" : "opendir", fpath);
    return 1;
  }
  const char *rel = fpath + tree_prefix;
  if (*rel == '/') rel++;
  xattrs_of(r, fpath, rel);
  return r->err ? 1 : 0;
}

static void do_tree_xattrs(req_t *r) {
  tree_req = r;
  tree_prefix = strlen(r->s[0]);
  if (nftw(r->s[0], tree_visit, 32, FTW_PHYS) < 0) fail(r, errno, "nftw", r->s[0]);
  tree_req = NULL;
}

/* ---- hashTar ---- */

/* The producer (the pool thread) fills 1 MiB chunks with the tar's bytes in order
 * (headers copied from the caller's buffer, file bodies read into the chunk, zero
 * padding); a second thread hashes full chunks. RING chunks bound the memory. */
#define HT_CHUNK (1 << 20)
#define HT_RING 4

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *buf[HT_RING];
  size_t len[HT_RING];
  uint64_t head, tail; /* chunks handed over / hashed */
  int done;
  EVP_MD_CTX *ctx;
  int hash_failed;
  /* the chunk being filled */
  char *cur;
  size_t fill;
} ring_t;

static void *ht_hasher(void *arg) {
  ring_t *g = arg;
  for (;;) {
    pthread_mutex_lock(&g->mu);
    while (g->head == g->tail && !g->done) pthread_cond_wait(&g->cv, &g->mu);
    if (g->head == g->tail) {
      pthread_mutex_unlock(&g->mu);
      return NULL;
    }
    int i = (int)(g->tail % HT_RING);
    pthread_mutex_unlock(&g->mu);
    if (!g->hash_failed && EVP_DigestUpdate(g->ctx, g->buf[i], g->len[i]) != 1) g->hash_failed = 1;
    pthread_mutex_lock(&g->mu);
    g->tail++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
  }
}

/* Hands the current chunk to the hasher (when it holds anything) and waits for a free one. */
static void ht_rotate(ring_t *g) {
  pthread_mutex_lock(&g->mu);
  if (g->fill > 0) {
    g->len[g->head % HT_RING] = g->fill;
    g->head++;
    pthread_cond_broadcast(&g->cv);
  }
  while (g->head - g->tail >= HT_RING) pthread_cond_wait(&g->cv, &g->mu);
  g->cur = g->buf[g->head % HT_RING];
  g->fill = 0;
  pthread_mutex_unlock(&g->mu);
}

static void ht_put(ring_t *g, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    if (g->fill == HT_CHUNK) ht_rotate(g);
    size_t k = HT_CHUNK - g->fill < n ? HT_CHUNK - g->fill : n;
    if (s) {
      memcpy(g->cur + g->fill, s, k);
      s += k;
    } else {
      memset(g->cur + g->fill, 0, k);
    }
    g->fill += k;
    n -= k;
  }
}

static void ht_changed(req_t *r, const char *path, uint64_t expected, uint64_t found, int more) {
  if (r->err) return;
  char m[4600];
  if (more) snprintf(m, sizeof m, "file %s changed while archiving: expected %llu bytes, found more", path, (unsigned long long)expected);
  else snprintf(m, sizeof m, "file %s changed while archiving: expected %llu bytes, found %llu", path, (unsigned long long)expected, (unsigned long long)found);
  fail(r, EIO, "read", path);
  r->msg = strdup(m);
}

/* One file body: exactly `size` bytes of `path` (not following a symlink), then the
 * padding to 512. A file of another size fails the hash. */
static void ht_file(req_t *r, ring_t *g, const char *path, uint64_t size) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    fail(r, errno, "open", path);
    return;
  }
  uint64_t left = size;
  while (left > 0) {
    if (g->fill == HT_CHUNK) ht_rotate(g);
    size_t room = HT_CHUNK - g->fill;
    ssize_t n = read(fd, g->cur + g->fill, left < room ? (size_t)left : room);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(r, errno, "read", path);
      break;
    }
    if (n == 0) {
      ht_changed(r, path, size, size - left, 0);
      break;
    }
    g->fill += (size_t)n;
    left -= (uint64_t)n;
  }
  if (!r->err) {
    char probe;
    ssize_t n;
    while ((n = read(fd, &probe, 1)) < 0 && errno == EINTR) {
    }
    if (n < 0) fail(r, errno, "read", path);
    else if (n > 0) ht_changed(r, path, size, 0, 1);
  }
  close(fd);
  if (!r->err && size % 512 != 0) ht_put(g, NULL, 512 - size % 512);
}

static void do_hash_tar(req_t *r) {
  if (!EVP_MD_CTX_new || !EVP_DigestInit_ex || !EVP_DigestUpdate || !EVP_DigestFinal_ex || !EVP_sha256 || !EVP_MD_CTX_free) {
    fail(r, ENOSYS, "EVP_sha256", NULL);
    return;
  }
  ring_t g;
  memset(&g, 0, sizeof g);
  pthread_mutex_init(&g.mu, NULL);
  pthread_cond_init(&g.cv, NULL);
  g.ctx = EVP_MD_CTX_new();
  int ok = g.ctx != NULL && EVP_DigestInit_ex(g.ctx, EVP_sha256(), NULL) == 1;
  for (int i = 0; ok && i < HT_RING; i++) ok = (g.buf[i] = malloc(HT_CHUNK)) != NULL;
  pthread_t th;
  if (!ok || pthread_create(&th, NULL, ht_hasher, &g) != 0) {
    fail(r, ok ? EAGAIN : ENOMEM, ok ? "pthread_create" : "malloc", NULL);
    for (int i = 0; i < HT_RING; i++) free(g.buf[i]);
    if (g.ctx) EVP_MD_CTX_free(g.ctx);
    return;
  }
  g.cur = g.buf[0];
  size_t hoff = 0, noff = 0;
  uint64_t total = 0;
  for (size_t i = 0; i + 1 < r->plan_len && !r->err; i += 2) {
    if (__atomic_load_n(r->abort_flag, __ATOMIC_RELAXED) != 0) {
      fail(r, ECANCELED, "hashTar", NULL);
      break;
    }
    double hl = r->plan[i], fs = r->plan[i + 1];
    if (!(hl >= 0) || (size_t)hl > r->hdr_len - hoff || !(fs >= 0) || fs > 9007199254740992.0) {
      fail(r, EINVAL, "hashTar", NULL);
      break;
    }
    ht_put(&g, r->hdr + hoff, (size_t)hl);
    hoff += (size_t)hl;
    total += (uint64_t)hl;
    uint64_t size = (uint64_t)fs;
    if (size == 0) continue;
    const char *path = r->path_list + noff;
    size_t pl = noff < r->path_list_len ? strnlen(path, r->path_list_len - noff) : 0;
    if (noff >= r->path_list_len || noff + pl >= r->path_list_len) {
      fail(r, EINVAL, "hashTar", NULL);
      break;
    }
    noff += pl + 1;
    ht_file(r, &g, path, size);
    total += size + (size % 512 ? 512 - size % 512 : 0);
  }
  if (!r->err && hoff != r->hdr_len) fail(r, EINVAL, "hashTar", NULL);
  /* the last chunk, then stop the hasher */
  pthread_mutex_lock(&g.mu);
  if (g.fill > 0 && !r->err) {
    while (g.head - g.tail >= HT_RING) pthread_cond_wait(&g.cv, &g.mu);
    g.len[g.head % HT_RING] = g.fill;
    g.head++;
  }
  g.done = 1;
  pthread_cond_broadcast(&g.cv);
  pthread_mutex_unlock(&g.mu);
  pthread_join(th, NULL);
  unsigned int dl = 0;
  if (!r->err && (g.hash_failed || EVP_DigestFinal_ex(g.ctx, r->digest, &dl) != 1 || dl != 32)) fail(r, EIO, "EVP_DigestFinal_ex", NULL);
  r->total = total;
  EVP_MD_CTX_free(g.ctx);
  for (int i = 0; i < HT_RING; i++) free(g.buf[i]);
  pthread_mutex_destroy(&g.mu);
  pthread_cond_destroy(&g.cv);
}

/* ---- scanTree ---- */

/* One record per entry below the root (the root itself is not one), in walk order:
 * [u32 path length][path][u32 mode][u32 uid][u32 gid][i64 size][i64 mtime s][i64 mtime ns]
 * [u64 nlink][u64 dev][u64 ino][u64 rdev], little-endian as the host (x86_64, arm64). */
static int scan_visit(const char *fpath, const struct stat *sb, int flag, struct FTW *ftw) {
  req_t *r = tree_req;
  if (flag == FTW_DNR || flag == FTW_NS) {
    fail(r, errno ? errno : EACCES, flag == FTW_NS ? "lstat" : "opendir", fpath);
    return 1;
  }
  if (ftw->level == 0) {
    if (!S_ISDIR(sb->st_mode)) {
      fail(r, ENOTDIR, "scandir", fpath);
      return 1;
    }
    return 0;
  }
  const char *rel = fpath + tree_prefix;
  if (*rel == '/') rel++;
  uint32_t u[3] = {(uint32_t)sb->st_mode, (uint32_t)sb->st_uid, (uint32_t)sb->st_gid};
  int64_t i[3] = {(int64_t)sb->st_size, (int64_t)sb->st_mtim.tv_sec, (int64_t)sb->st_mtim.tv_nsec};
  uint64_t q[4] = {(uint64_t)sb->st_nlink, (uint64_t)sb->st_dev, (uint64_t)sb->st_ino, (uint64_t)sb->st_rdev};
  buf_put_chunk(&r->out, rel, (uint32_t)strlen(rel));
  buf_put(&r->out, u, sizeof u);
  buf_put(&r->out, i, sizeof i);
  buf_put(&r->out, q, sizeof q);
  return r->out.oom ? 1 : 0;
}

static void do_scan_tree(req_t *r) {
  tree_req = r;
  tree_prefix = strlen(r->s[0]);
  if (nftw(r->s[0], scan_visit, 64, FTW_PHYS) < 0 && !r->err) fail(r, errno, "nftw", r->s[0]);
  tree_req = NULL;
}

/* ---- writeFiles ---- */

/* Each file of the batch, in order: created (O_EXCL, never through a symlink), its
 * chunks written, chowned when meta asks, chmodded after the chown (which clears
 * setuid/setgid), its times set, closed. Stops at the first failure. */
#define WF_FIELDS 6
#define WF_CHOWN 1

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void do_write_files(req_t *r) {
  size_t poff = 0, ci = 0;
  for (size_t f = 0; f < r->plan_len && !r->err; f += WF_FIELDS) {
    const double *m = r->plan + f;
    const char *path = r->path_list + poff;
    size_t pl = strnlen(path, r->path_list_len - poff);
    size_t n = (size_t)m[0];
    if (poff + pl >= r->path_list_len || n > r->chunk_count - ci) {
      fail(r, EINVAL, "writeFiles", NULL);
      return;
    }
    poff += pl + 1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      fail(r, errno, "open", path);
      return;
    }
    for (size_t k = 0; k < n && !r->err; k++)
      if (write_all(fd, r->chunk_ptr[ci + k], r->chunk_len[ci + k]) != 0) fail(r, errno, "write", path);
    ci += n;
    if (!r->err && ((int)m[5] & WF_CHOWN) && fchown(fd, (uid_t)m[1], (gid_t)m[2]) != 0) fail(r, errno, "fchown", path);
    if (!r->err && fchmod(fd, (mode_t)m[3]) != 0) fail(r, errno, "fchmod", path);
    struct timespec ts[2] = {{(time_t)m[4], 0}, {(time_t)m[4], 0}};
    if (!r->err && futimens(fd, ts) != 0) fail(r, errno, "futimens", path);
    if (close(fd) != 0) fail(r, errno, "close", path);
  }
  if (!r->err && (poff != r->path_list_len || ci != r->chunk_count)) fail(r, EINVAL, "writeFiles", NULL);
}

/* ---- gunzip ---- */

/* A gzip file inflated into the caller's buffers, one gunzipRead at a time (the JS side
 * never starts a read before the last one settled). Concatenated members are one
 * stream; after a member, a zero byte ends it (padding, ignored), as in node's zlib.
 * Optionally the sha256 of the output (a layer's diffID). */
#define GZ_IN (1 << 20)

struct gz {
  int fd;
  z_stream z;
  unsigned char *in;
  int in_eof;     /* the file is read to its end */
  int member_end; /* the last inflate() ended a member */
  int finished;   /* no more output */
  EVP_MD_CTX *md;
};

static void gz_free(gz_t *g) {
  if (!g) return;
  if (g->fd >= 0) close(g->fd);
  inflateEnd(&g->z);
  free(g->in);
  if (g->md) EVP_MD_CTX_free(g->md);
  free(g);
}

static void gz_corrupt(req_t *r, const char *code, const char *what) {
  if (r->err) return;
  fail(r, EINVAL, "inflate", NULL);
  r->code = code;
  r->msg = strdup(what);
}

static int gz_fill(req_t *r, gz_t *g) {
  for (;;) {
    ssize_t n = read(g->fd, g->in, GZ_IN);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fail(r, errno, "read", NULL);
      return -1;
    }
    if (n == 0) g->in_eof = 1;
    g->z.next_in = g->in;
    g->z.avail_in = (uInt)n;
    return 0;
  }
}

static void do_gunzip(req_t *r) {
  gz_t *g = r->gz;
  g->z.next_out = r->out_ptr;
  g->z.avail_out = (uInt)r->out_len;
  while (g->z.avail_out > 0 && !g->finished) {
    if (g->z.avail_in == 0 && !g->in_eof && gz_fill(r, g) != 0) break;
    if (g->member_end) {
      /* as node's zlib: the end (the file's, or zero padding), else another member */
      if ((g->z.avail_in == 0 && g->in_eof) || (g->z.avail_in > 0 && g->z.next_in[0] == 0)) {
        g->finished = 1;
        break;
      }
      if (g->z.avail_in == 0) continue; /* read more first */
      if (inflateReset(&g->z) != Z_OK) {
        gz_corrupt(r, "Z_STREAM_ERROR", "inflateReset failed");
        break;
      }
      g->member_end = 0;
    }
    if (g->z.avail_in == 0 && g->in_eof) {
      gz_corrupt(r, "Z_BUF_ERROR", "unexpected end of file");
      break;
    }
    int ret = inflate(&g->z, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) {
      g->member_end = 1;
    } else if (ret == Z_BUF_ERROR) {
      /* no progress: more input is read above, or the file ended inside a member */
      if (g->in_eof && g->z.avail_in == 0) {
        gz_corrupt(r, "Z_BUF_ERROR", "unexpected end of file");
        break;
      }
    } else if (ret != Z_OK) {
      gz_corrupt(r, ret == Z_DATA_ERROR ? "Z_DATA_ERROR" : ret == Z_MEM_ERROR ? "Z_MEM_ERROR" : ret == Z_NEED_DICT ? "Z_NEED_DICT" : "Z_STREAM_ERROR",
                 g->z.msg ? g->z.msg : "invalid gzip data");
      break;
    }
  }
  r->produced = r->out_len - g->z.avail_out;
  if (!r->err && g->md && r->produced > 0 && EVP_DigestUpdate(g->md, r->out_ptr, r->produced) != 1) fail(r, EIO, "EVP_DigestUpdate", NULL);
}

static void execute(napi_env env, void *data) {
  (void)env;
  req_t *r = data;
  switch (r->op) {
    case OP_MOUNT:
      do_mount(r);
      break;
    case OP_UMOUNT:
      if (umount2(r->s[0], (int)r->flags) != 0) fail(r, errno, "umount2", r->s[0]);
      break;
    case OP_TREE_XATTRS:
      do_tree_xattrs(r);
      break;
    case OP_HASH_TAR:
      do_hash_tar(r);
      break;
    case OP_SCAN_TREE:
      do_scan_tree(r);
      break;
    case OP_WRITE_FILES:
      do_write_files(r);
      break;
    case OP_GUNZIP:
      do_gunzip(r);
      break;
    case OP_SET_XATTRS:
      for (size_t i = 0; i < r->count && !r->err; i++) {
        if (lsetxattr(r->paths[i], r->names[i], r->values[i], r->value_lens[i], 0) != 0) fail(r, errno, "lsetxattr", r->paths[i]);
      }
      break;
  }
  if (!r->err && r->out.oom) fail(r, ENOMEM, "malloc", NULL);
}

static const char *errno_name(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  if (n) return n;
#endif
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case ENOMEM: return "ENOMEM";
    default: return "EUNKNOWN";
  }
}

static napi_value make_error(napi_env env, req_t *r) {
  char msg[4600];
  const char *code = r->code ? r->code : r->msg ? "ECHANGED" : errno_name(r->err);
  if (r->msg) snprintf(msg, sizeof msg, "%s", r->msg);
  else if (r->err_path) snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(r->err), r->syscall, r->err_path);
  else snprintf(msg, sizeof msg, "%s: %s, %s", code, strerror(r->err), r->syscall);
  napi_value m, c, err, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &err);
  napi_set_named_property(env, err, "code", c);
  napi_create_int32(env, -r->err, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, r->syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  if (r->err_path) {
    napi_create_string_utf8(env, r->err_path, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, err, "path", v);
  }
  return err;
}

/* Records → a flat array [key, name, Buffer, key, name, Buffer, ...]. */
static napi_value records(napi_env env, buf_t *b) {
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t idx = 0;
  size_t off = 0;
  while (off + 4 <= b->len) {
    for (int f = 0; f < 3; f++) {
      uint32_t n;
      memcpy(&n, b->data + off, 4);
      off += 4;
      napi_value v;
      if (f < 2) napi_create_string_utf8(env, b->data + off, n, &v);
      else napi_create_buffer_copy(env, n, b->data + off, NULL, &v);
      off += n;
      napi_set_element(env, arr, idx++, v);
    }
  }
  return arr;
}

static void complete(napi_env env, napi_status status, void *data) {
  req_t *r = data;
  if (status != napi_ok && !r->err) fail(r, ECANCELED, "async_work", NULL);
  if (r->err) {
    napi_reject_deferred(env, r->deferred, make_error(env, r));
  } else if (r->op == OP_TREE_XATTRS) {
    napi_resolve_deferred(env, r->deferred, records(env, &r->out));
  } else if (r->op == OP_SCAN_TREE) {
    napi_value b;
    napi_create_buffer_copy(env, r->out.len, r->out.len ? r->out.data : "", NULL, &b);
    napi_resolve_deferred(env, r->deferred, b);
  } else if (r->op == OP_GUNZIP) {
    napi_value n;
    napi_create_double(env, (double)r->produced, &n);
    napi_resolve_deferred(env, r->deferred, n);
  } else if (r->op == OP_HASH_TAR) {
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", r->digest[i]);
    napi_value o, v;
    napi_create_object(env, &o);
    napi_create_string_utf8(env, hex, 64, &v);
    napi_set_named_property(env, o, "digest", v);
    napi_create_double(env, (double)r->total, &v);
    napi_set_named_property(env, o, "size", v);
    napi_resolve_deferred(env, r->deferred, o);
  } else {
    napi_value u;
    napi_get_undefined(env, &u);
    napi_resolve_deferred(env, r->deferred, u);
  }
  for (int i = 0; i < 4; i++)
    if (r->refs[i]) napi_delete_reference(env, r->refs[i]);
  napi_delete_async_work(env, r->work);
  req_free(r);
}

static napi_value start(napi_env env, req_t *r) {
  napi_value promise, name;
  if (napi_create_promise(env, &r->deferred, &promise) != napi_ok) {
    req_free(r);
    napi_throw_error(env, NULL, "napi_create_promise failed");
    return NULL;
  }
  napi_create_string_utf8(env, "tsbuild_sys", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, r, &r->work);
  napi_queue_async_work(env, r->work);
  return promise;
}

static napi_value args_of(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < want) {
    napi_throw_type_error(env, NULL, "tsbuild_sys: too few arguments");
    return NULL;
  }
  napi_value ok;
  napi_get_boolean(env, 1, &ok);
  return ok;
}

/* Optional string: null/undefined → NULL (ok); anything but a string → type error. */
static int opt_string(napi_env env, napi_value v, char **out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  *out = NULL;
  if (t == napi_null || t == napi_undefined) return 1;
  if (t != napi_string) return 0;
  *out = dup_string(env, v);
  return *out != NULL;
}

/* The arguments and a fresh request for `op`; NULL with a JS exception pending. */
static req_t *new_req(napi_env env, napi_callback_info info, size_t n, napi_value *argv, enum op op) {
  if (!args_of(env, info, n, argv)) return NULL;
  req_t *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, NULL, "tsbuild_sys: out of memory");
    return NULL;
  }
  r->op = op;
  return r;
}

/* Frees a request whose arguments did not parse (and the references it took) and throws
 * a TypeError naming the call. */
static napi_value bad_args(napi_env env, req_t *r, const char *usage) {
  for (int i = 0; i < 4; i++)
    if (r->refs[i]) napi_delete_reference(env, r->refs[i]);
  req_free(r);
  napi_throw_type_error(env, NULL, usage);
  return NULL;
}

/* mount(source|null, target, fstype|null, flags, data|null, cwd|null): Promise<void> */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  req_t *r = new_req(env, info, 6, argv, OP_MOUNT);
  if (!r) return NULL;
  int64_t flags;
  int ok = opt_string(env, argv[0], &r->s[0]) && (r->s[1] = dup_string(env, argv[1])) != NULL && opt_string(env, argv[2], &r->s[2]) &&
           napi_get_value_int64(env, argv[3], &flags) == napi_ok && opt_string(env, argv[4], &r->s[3]) && opt_string(env, argv[5], &r->s[4]);
  if (!ok) return bad_args(env, r, "mount(source, target, fstype, flags, data, cwd): bad argument");
  r->flags = (unsigned long)flags;
  return start(env, r);
}

/* umount2(target, flags): Promise<void> */
static napi_value js_umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  req_t *r = new_req(env, info, 2, argv, OP_UMOUNT);
  if (!r) return NULL;
  int64_t flags;
  if ((r->s[0] = dup_string(env, argv[0])) == NULL || napi_get_value_int64(env, argv[1], &flags) != napi_ok) return bad_args(env, r, "umount2(target, flags): bad argument");
  r->flags = (unsigned long)flags;
  return start(env, r);
}

/* A call whose one argument is a directory path: starts `op` on it. */
static napi_value dir_op(napi_env env, napi_callback_info info, enum op op, const char *usage) {
  napi_value argv[1];
  req_t *r = new_req(env, info, 1, argv, op);
  if (!r) return NULL;
  if ((r->s[0] = dup_string(env, argv[0])) == NULL) return bad_args(env, r, usage);
  return start(env, r);
}

/* treeXattrs(dir): Promise<[rel, name, Buffer, ...]> (physical walk; '' is dir itself) */
static napi_value js_tree_xattrs(napi_env env, napi_callback_info info) {
  return dir_op(env, info, OP_TREE_XATTRS, "treeXattrs(dir): bad argument");
}

/* hashTar(headers: Buffer, plan: Float64Array, names: Buffer, abort: Int32Array):
 *   Promise<{ digest: hex string, size }>
 * The sha256 and length of: for each pair (h, s) of `plan`, the next h bytes of
 * `headers`, then when s > 0 exactly s bytes of the next NUL-terminated path of `names`
 * and zeros to a multiple of 512. abort[0] != 0 stops it (ECANCELED). The buffers are
 * read in place: the caller must not change them until the promise settles. */
static int ref_view(napi_env env, req_t *r, int slot, napi_value v, napi_typedarray_type want, const void **data, size_t *count) {
  bool is = false;
  if (want == napi_uint8_array) {
    if (napi_is_buffer(env, v, &is) != napi_ok || !is) return 0;
    void *p;
    size_t n;
    if (napi_get_buffer_info(env, v, &p, &n) != napi_ok) return 0;
    *data = p;
    *count = n;
  } else {
    if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
    napi_typedarray_type t;
    size_t n, off;
    void *p;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &t, &n, &p, &ab, &off) != napi_ok || t != want) return 0;
    *data = p;
    *count = n;
  }
  return napi_create_reference(env, v, 1, &r->refs[slot]) == napi_ok;
}

static napi_value js_hash_tar(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  req_t *r = new_req(env, info, 4, argv, OP_HASH_TAR);
  if (!r) return NULL;
  const void *h, *p, *n, *a;
  size_t hn, pn, nn, an;
  int ok = ref_view(env, r, 0, argv[0], napi_uint8_array, &h, &hn) && ref_view(env, r, 1, argv[1], napi_float64_array, &p, &pn) &&
           ref_view(env, r, 2, argv[2], napi_uint8_array, &n, &nn) && ref_view(env, r, 3, argv[3], napi_int32_array, &a, &an) && an >= 1 && pn % 2 == 0;
  if (!ok) return bad_args(env, r, "hashTar(headers: Buffer, plan: Float64Array, names: Buffer, abort: Int32Array): bad argument");
  r->hdr = h;
  r->hdr_len = hn;
  r->plan = p;
  r->plan_len = pn;
  r->path_list = n;
  r->path_list_len = nn;
  r->abort_flag = a;
  return start(env, r);
}

/* scanTree(dir): Promise<Buffer> (records as described at scan_visit; physical walk) */
static napi_value js_scan_tree(napi_env env, napi_callback_info info) {
  return dir_op(env, info, OP_SCAN_TREE, "scanTree(dir): bad argument");
}

/* writeFiles(paths: Buffer, meta: Float64Array, chunks: Buffer[]): Promise<void>
 * Creates the files of one batch in order (see do_write_files): the i-th NUL-terminated
 * path of `paths` gets the next meta[6i] Buffers of `chunks` as its content, then
 * uid meta[6i+1] and gid meta[6i+2] when meta[6i+5] & 1, mode meta[6i+3], mtime and
 * atime meta[6i+4] (whole seconds). The buffers are read in place: the caller must not
 * change them until the promise settles. */
static napi_value js_write_files(napi_env env, napi_callback_info info) {
  static const char usage[] = "writeFiles(paths: Buffer, meta: Float64Array, chunks: Buffer[]): bad argument";
  napi_value argv[3];
  req_t *r = new_req(env, info, 3, argv, OP_WRITE_FILES);
  if (!r) return NULL;
  const void *p, *m;
  size_t pn, mn;
  uint32_t cn = 0;
  bool is_array = false;
  int ok = ref_view(env, r, 0, argv[0], napi_uint8_array, &p, &pn) && ref_view(env, r, 1, argv[1], napi_float64_array, &m, &mn) && mn % WF_FIELDS == 0 &&
           napi_is_array(env, argv[2], &is_array) == napi_ok && is_array && napi_get_array_length(env, argv[2], &cn) == napi_ok &&
           napi_create_reference(env, argv[2], 1, &r->refs[2]) == napi_ok;
  if (ok) {
    r->chunk_ptr = calloc(cn ? cn : 1, sizeof *r->chunk_ptr);
    r->chunk_len = calloc(cn ? cn : 1, sizeof *r->chunk_len);
    ok = r->chunk_ptr && r->chunk_len;
  }
  for (uint32_t i = 0; ok && i < cn; i++) {
    napi_value v;
    bool isbuf = false;
    void *d;
    size_t len;
    ok = napi_get_element(env, argv[2], i, &v) == napi_ok && napi_is_buffer(env, v, &isbuf) == napi_ok && isbuf && napi_get_buffer_info(env, v, &d, &len) == napi_ok;
    if (ok) {
      r->chunk_ptr[i] = d;
      r->chunk_len[i] = len;
    }
  }
  if (!ok) return bad_args(env, r, usage);
  r->chunk_count = cn;
  r->path_list = p;
  r->path_list_len = pn;
  r->plan = m;
  r->plan_len = mn;
  return start(env, r);
}

/* gunzipOpen(path, hash: boolean): object | null (synchronous: open, 3 bytes read)
 * null when the file is not gzip (no 1f 8b 08 magic) or this node has no zlib (or, with
 * `hash`, no SHA-256) to bind; errors of open/read throw. */
static void gz_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  gz_free(data);
}

static napi_value js_gunzip_open(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  if (!args_of(env, info, 2, argv)) return NULL;
  bool hash = false;
  char *path = dup_string(env, argv[0]);
  if (!path || napi_get_value_bool(env, argv[1], &hash) != napi_ok) {
    free(path);
    napi_throw_type_error(env, NULL, "gunzipOpen(path: string, hash: boolean): bad argument");
    return NULL;
  }
  napi_get_null(env, &out);
  if (!inflateInit2_ || !inflate || !inflateReset || !inflateEnd || (hash && (!EVP_MD_CTX_new || !EVP_sha256))) {
    free(path);
    return out;
  }
  req_t r = {0};
  gz_t *g = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  unsigned char magic[3];
  ssize_t n = -1;
  if (fd < 0) fail(&r, errno, "open", path);
  else if ((n = pread(fd, magic, 3, 0)) < 0) fail(&r, errno, "pread", path);
  if (!r.err && n == 3 && magic[0] == 0x1f && magic[1] == 0x8b && magic[2] == 0x08) {
    g = calloc(1, sizeof *g);
    if (g) {
      g->fd = fd;
      fd = -1;
      g->in = malloc(GZ_IN);
      int ok = g->in && inflateInit2(&g->z, 16 + MAX_WBITS) == Z_OK;
      if (ok && hash) ok = (g->md = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(g->md, EVP_sha256(), NULL) == 1;
      if (!ok) {
        if (!g->in) fail(&r, ENOMEM, "malloc", NULL);
        else fail(&r, ENOMEM, "inflateInit2", NULL);
        free(g->in);
        if (g->md) EVP_MD_CTX_free(g->md);
        close(g->fd);
        free(g);
        g = NULL;
      }
    } else {
      fail(&r, ENOMEM, "malloc", NULL);
    }
  }
  if (fd >= 0) close(fd);
  free(path);
  if (r.err) {
    napi_throw(env, make_error(env, &r));
    free(r.err_path);
    return NULL;
  }
  if (g && napi_create_external(env, g, gz_finalize, NULL, &out) != napi_ok) {
    gz_free(g);
    napi_throw_error(env, NULL, "napi_create_external failed");
    return NULL;
  }
  return out;
}

static gz_t *gz_of(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* gunzipRead(stream, out: Buffer): Promise<number> — inflates into `out` until it is
 * full or the stream ends: the bytes written (0: the end). One read at a time per
 * stream; `out` must stay unchanged until the promise settles. A corrupt or truncated
 * stream rejects with code Z_DATA_ERROR / Z_BUF_ERROR (as node's zlib). */
static napi_value js_gunzip_read(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  req_t *r = new_req(env, info, 2, argv, OP_GUNZIP);
  if (!r) return NULL;
  const void *o;
  size_t on;
  r->gz = gz_of(env, argv[0]);
  int ok = r->gz != NULL && r->gz->fd >= 0 && napi_create_reference(env, argv[0], 1, &r->refs[0]) == napi_ok &&
           ref_view(env, r, 1, argv[1], napi_uint8_array, &o, &on) && on > 0 && on <= UINT32_MAX;
  if (!ok) return bad_args(env, r, "gunzipRead(stream: from gunzipOpen, out: non-empty Buffer): bad argument");
  r->out_ptr = (uint8_t *)o;
  r->out_len = on;
  return start(env, r);
}

/* gunzipClose(stream): string | null (synchronous) — frees the stream; the hex sha256 of
 * all output when it was opened with `hash` and read to its end, else null. Never while
 * a read is in flight. */
static napi_value js_gunzip_close(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!args_of(env, info, 1, argv)) return NULL;
  gz_t *g = gz_of(env, argv[0]);
  if (!g) {
    napi_throw_type_error(env, NULL, "gunzipClose(stream: from gunzipOpen): bad argument");
    return NULL;
  }
  napi_get_null(env, &out);
  if (g->fd < 0) return out;
  if (g->md && g->finished) {
    unsigned char d[32];
    unsigned int dl = 0;
    if (EVP_DigestFinal_ex(g->md, d, &dl) == 1 && dl == 32) {
      char hex[65];
      for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
      napi_create_string_utf8(env, hex, 64, &out);
    }
  }
  /* the External keeps the struct until it is collected; release what it holds now */
  close(g->fd);
  g->fd = -1;
  inflateEnd(&g->z);
  free(g->in);
  g->in = NULL;
  if (g->md) EVP_MD_CTX_free(g->md);
  g->md = NULL;
  return out;
}

static int string_array(napi_env env, napi_value arr, char ***out, size_t *count) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok) return 0;
  *count = n;
  *out = calloc(n ? n : 1, sizeof(char *));
  if (!*out) return 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, arr, i, &v);
    if (((*out)[i] = dup_string(env, v)) == NULL) return 0;
  }
  return 1;
}

/* setXattrs(paths, names, values: Buffer[]): Promise<void> (lsetxattr each, in order) */
static napi_value js_set_xattrs(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  req_t *r = new_req(env, info, 3, argv, OP_SET_XATTRS);
  if (!r) return NULL;
  size_t nn = 0;
  uint32_t nv = 0;
  int ok = string_array(env, argv[0], &r->paths, &r->count);
  if (ok) {
    char **names = NULL;
    ok = string_array(env, argv[1], &names, &nn) && nn == r->count;
    r->names = names;
    if (!ok && names && nn != r->count) {
      for (size_t i = 0; i < nn; i++) free(names[i]);
      free(names);
      r->names = NULL;
    }
  }
  if (ok) ok = napi_get_array_length(env, argv[2], &nv) == napi_ok && nv == r->count;
  if (ok) {
    r->values = calloc(r->count ? r->count : 1, sizeof(char *));
    r->value_lens = calloc(r->count ? r->count : 1, sizeof(size_t));
    ok = r->values && r->value_lens;
    for (size_t i = 0; ok && i < r->count; i++) {
      napi_value v;
      bool isbuf = false;
      void *p;
      size_t len;
      napi_get_element(env, argv[2], (uint32_t)i, &v);
      ok = napi_is_buffer(env, v, &isbuf) == napi_ok && isbuf && napi_get_buffer_info(env, v, &p, &len) == napi_ok;
      if (ok) {
        r->values[i] = malloc(len ? len : 1);
        ok = r->values[i] != NULL;
        if (ok) memcpy(r->values[i], p, len);
        r->value_lens[i] = len;
      }
    }
  }
  if (!ok) return bad_args(env, r, "setXattrs(paths: string[], names: string[], values: Buffer[]): bad argument");
  return start(env, r);
}

/* cloexecAbove(fd): marks every descriptor above `fd` close-on-exec (synchronous: one
 * close_range(2) call, or a /proc/self/fd walk on kernels before 5.11). Inherited
 * descriptors then never reach a spawned child; the process itself keeps using them. */
static napi_value js_cloexec_above(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  int32_t low;
  if (napi_get_value_int32(env, argv[0], &low) != napi_ok || low < 0) {
    napi_throw_type_error(env, NULL, "cloexecAbove(fd: number >= 0): bad argument");
    return NULL;
  }
  req_t r = {0};
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
  if (syscall(SYS_close_range, (unsigned)low + 1, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return NULL;
  if (errno != ENOSYS && errno != EINVAL) fail(&r, errno, "close_range", NULL);
#endif
  if (!r.err) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
      fail(&r, errno, "opendir", "/proc/self/fd");
    } else {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int fd = atoi(e->d_name);
        if (fd <= low || fd == dirfd(d)) continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
          fail(&r, errno, "fcntl", NULL);
          break;
        }
      }
      closedir(d);
    }
  }
  if (r.err) {
    napi_throw(env, make_error(env, &r));
    free(r.err_path);
  }
  return NULL;
}

/* topDir(dir): sets the inode flag FS_TOPDIR_FL ("chattr +T") on a directory: ext2/3/4's
 * Orlov allocator then places each new subdirectory of `dir` as it places top-level
 * directories (in a block group with few directories and free space above average)
 * instead of next to `dir`, and the subdirectory's files follow it. Synchronous: an
 * open and two ioctls. true when the flag is set (already or now); false when the
 * filesystem has no such flag (ENOTTY, EOPNOTSUPP, EINVAL, EPERM, EACCES); other errors throw. */
static int no_such_flag(int err) {
  return err == ENOTTY || err == EOPNOTSUPP || err == EINVAL || err == EPERM || err == EACCES;
}

static napi_value js_top_dir(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  char *path = dup_string(env, argv[0]);
  if (!path) {
    napi_throw_type_error(env, NULL, "topDir(dir: string): bad argument");
    return NULL;
  }
  req_t r = {0};
  int set = 0;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    fail(&r, errno, "open", path);
  } else {
    int flags = 0;
    int ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (ok && !(flags & FS_TOPDIR_FL)) {
      flags |= FS_TOPDIR_FL;
      ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    if (ok) set = 1;
    else if (!no_such_flag(errno)) fail(&r, errno, "ioctl", path);
    close(fd);
  }
  free(path);
  if (r.err) {
    napi_throw(env, make_error(env, &r));
    free(r.err_path);
    return NULL;
  }
  napi_value out;
  napi_get_boolean(env, set, &out);
  return out;
}

static void set_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

static void set_int(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value n;
  napi_create_int64(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static napi_value init(napi_env env, napi_value exports) {
  set_fn(env, exports, "mount", js_mount);
  set_fn(env, exports, "umount2", js_umount2);
  set_fn(env, exports, "treeXattrs", js_tree_xattrs);
  set_fn(env, exports, "setXattrs", js_set_xattrs);
  set_fn(env, exports, "cloexecAbove", js_cloexec_above);
  set_fn(env, exports, "hashTar", js_hash_tar);
  set_fn(env, exports, "scanTree", js_scan_tree);
  set_fn(env, exports, "topDir", js_top_dir);
  set_fn(env, exports, "writeFiles", js_write_files);
  set_fn(env, exports, "gunzipOpen", js_gunzip_open);
  set_fn(env, exports, "gunzipRead", js_gunzip_read);
  set_fn(env, exports, "gunzipClose", js_gunzip_close);
  napi_value c;
  napi_create_object(env, &c);
  set_int(env, c, "MS_RDONLY", MS_RDONLY);
  set_int(env, c, "MS_NOSUID", MS_NOSUID);
  set_int(env, c, "MS_NODEV", MS_NODEV);
  set_int(env, c, "MS_NOEXEC", MS_NOEXEC);
  set_int(env, c, "MS_REMOUNT", MS_REMOUNT);
  set_int(env, c, "MS_BIND", MS_BIND);
  set_int(env, c, "MS_REC", MS_REC);
  napi_set_named_property(env, exports, "constants", c);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
