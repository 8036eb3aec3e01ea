/* store.c: the results store over SQLite and PostgreSQL (see store.h for the model).
 *
 * This file: the handle; one statement interface over the two databases
 * (store_db.h), retries and transactions; opening and closing. The rest of the
 * store shares store_impl.h: store_schema.c (schema and migrations),
 * store_run.c (a run's life: start, heartbeat, reaping, end, interrupt and
 * resume, delete), store_write.c (params, tags, metrics, confusion matrices,
 * predictions, artifacts), store_query.c (reading), store_copy.c (copying a run
 * between stores) and store_pg.c (PostgreSQL over libpq). Writes go through a
 * small cache of prepared statements; reads prepare their own statement so
 * that a visitor may call back into the store.
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- the handle ------------------------------------------------------------ */

double mb_store_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void mb_store_default_options(mb_store_options *o) {
    o->create = 1;
    o->busy_timeout_s = 30.0;
    o->heartbeat_interval_s = 5.0;
    o->retry_timeout_s = 60.0;
}

const char *mb_store_path(const mb_store *s) { return s->path; }
int mb_store_is_server(const mb_store *s) { return s->pg != NULL; }
int64_t mb_store_reconnects(const mb_store *s) { return s->reconnects; }

int mb_store_is_url(const char *path) {
    return path && (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

/* 1 when the file system holding path has (almost) no room left: SQLite's
   SQLITE_FULL then means ENOSPC, not a page-count limit. */
static int no_space_left(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) return 0;
    unsigned long long blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
    return blocks * (unsigned long long)vfs.f_frsize < 1024 * 1024;
}

mb_status db_fail(mb_store *s, mb_error *err, const char *what) {
    int sys = errno; /* what the failing system call set, read before anything else can */
    if (s->pg) return mb_fail(err, MB_ERR_DB, "%s: %s: %s", s->path, what, pg_errmsg(s->pg));
    int code = sqlite3_errcode(s->db) & 0xff;
    int full = code == SQLITE_FULL;
    if (full) s->disk_full = 1;
    /* the cause: ENOSPC behind SQLITE_FULL; behind an I/O error, the errno its system call
       left when it is a disk's (SQLite's sqlite3_system_errno does not keep it for writes) */
    char cause[128] = "";
    if (full && no_space_left(s->path)) snprintf(cause, sizeof cause, " (%s)", strerror(ENOSPC));
    else if (code == SQLITE_IOERR && (sys == EIO || sys == ENOSPC || sys == EDQUOT || sys == EROFS))
        snprintf(cause, sizeof cause, " (%s)", strerror(sys));
    return mb_fail(err, MB_ERR_DB, "%s: %s: %s%s", s->path, what, sqlite3_errmsg(s->db), cause);
}

db_errkind db_error_kind(mb_store *s) {
    if (s->pg) return pg_errkind(s->pg);
    switch (sqlite3_extended_errcode(s->db)) {
    case SQLITE_CONSTRAINT_FOREIGNKEY: return DB_ERR_FOREIGN_KEY;
    case SQLITE_CONSTRAINT_UNIQUE: return DB_ERR_UNIQUE;
    default: return DB_ERR_OTHER;
    }
}

void sleep_s(double sec) {
    struct timespec ts = {(time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9)};
    nanosleep(&ts, NULL);
}

static int is_busy(int rc) {
    rc &= 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* sqlite3_busy_timeout already waits for locks; this outer retry covers the
   cases where SQLite returns BUSY without calling the busy handler (WAL
   recovery by another process, a snapshot that moved). */
static int step_retry(mb_store *s, sqlite3_stmt *st) {
    double deadline = mb_store_now() + s->opts.busy_timeout_s;
    double pause = 0.001;
    int rc;
    while (is_busy(rc = sqlite3_step(st)) && mb_store_now() < deadline) {
        sqlite3_reset(st);
        sleep_s(pause);
        if (pause < 0.05) pause *= 2;
    }
    return rc;
}

int db_exec(mb_store *s, const char *sql) {
    if (s->pg) return pg_exec(s->pg, sql) == 0 ? SQLITE_OK : SQLITE_ERROR;
    double deadline = mb_store_now() + s->opts.busy_timeout_s;
    double pause = 0.001;
    int rc;
    while (is_busy(rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) && mb_store_now() < deadline) {
        sleep_s(pause);
        if (pause < 0.05) pause *= 2;
    }
    return rc;
}

/* ---- statements: one interface over SQLite and PostgreSQL (store_db.h) ----- */

static db_stmt *db_prepare(mb_store *s, const char *sql, int persistent, mb_error *err) {
    db_stmt *st = calloc(1, sizeof *st);
    if (!st) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory preparing a statement");
        return NULL;
    }
    st->s = s;
    if (s->pg) {
        if (!(st->pg = pg_prepare(s->pg, sql, err))) { free(st); return NULL; }
        return st;
    }
    if (sqlite3_prepare_v3(s->db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &st->lite, NULL) != SQLITE_OK) {
        db_fail(s, err, "preparing a statement");
        free(st);
        return NULL;
    }
    return st;
}

void db_finalize(db_stmt *st) {
    if (!st) return;
    if (st->pg) pg_finalize(st->pg);
    else sqlite3_finalize(st->lite);
    free(st);
}

/* Forget the result (the bound values stay, as with sqlite3_reset). */
void db_reset(db_stmt *st) {
    if (st->pg) return; /* a PostgreSQL result is dropped by the next step's re-execution (pg_reset) */
    sqlite3_reset(st->lite);
}

static void db_clear(db_stmt *st) {
    if (st->pg) pg_reset(st->pg);
    else {
        sqlite3_reset(st->lite);
        sqlite3_clear_bindings(st->lite);
    }
}

void db_bind_null(db_stmt *st, int i) {
    if (st->pg) pg_bind(st->pg, i, NULL);
    else sqlite3_bind_null(st->lite, i);
}

void db_bind_int(db_stmt *st, int i, int64_t v) {
    if (st->pg) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        pg_bind(st->pg, i, buf);
    } else {
        sqlite3_bind_int64(st->lite, i, v);
    }
}

/* NaN is stored as NULL (SQLite has no NaN; PostgreSQL does, but the two
   stores must read back the same). Reals travel as the shortest exact text. */
void db_bind_real(db_stmt *st, int i, double v) {
    if (isnan(v)) db_bind_null(st, i);
    else if (st->pg) {
        char buf[40];
        snprintf(buf, sizeof buf, "%.17g", v);
        pg_bind(st->pg, i, buf);
    } else {
        sqlite3_bind_double(st->lite, i, v);
    }
}

void db_bind_text(db_stmt *st, int i, const char *v) {
    if (!v) db_bind_null(st, i);
    else if (st->pg) pg_bind(st->pg, i, v);
    else sqlite3_bind_text(st->lite, i, v, -1, SQLITE_TRANSIENT);
}

/* DB_ROW, DB_DONE, or DB_FAIL (the message via db_fail). */
int db_step(mb_store *s, db_stmt *st) {
    if (st->pg) {
        int rc = pg_step(st->pg);
        return rc;
    }
    int rc = step_retry(s, st->lite);
    return rc == SQLITE_ROW ? DB_ROW : rc == SQLITE_DONE ? DB_DONE : DB_FAIL;
}

int db_null(db_stmt *st, int c) {
    return st->pg ? pg_isnull(st->pg, c) : sqlite3_column_type(st->lite, c) == SQLITE_NULL;
}

int64_t db_int(db_stmt *st, int c) {
    if (!st->pg) return sqlite3_column_int64(st->lite, c);
    const char *v = pg_value(st->pg, c);
    return v ? strtoll(v, NULL, 10) : 0;
}

double db_real(db_stmt *st, int c) {
    if (!st->pg) return sqlite3_column_double(st->lite, c);
    const char *v = pg_value(st->pg, c);
    return v ? strtod(v, NULL) : 0.0;
}

const char *db_text(db_stmt *st, int c) {
    return st->pg ? pg_value(st->pg, c) : (const char *)sqlite3_column_text(st->lite, c);
}

int64_t db_changes(mb_store *s) { return s->pg ? pg_changes(s->pg) : sqlite3_changes(s->db); }

/* A cached statement for a static SQL string, reset and unbound. */
db_stmt *db_cached(mb_store *s, const char *sql, mb_error *err) {
    int free_slot = -1;
    for (int i = 0; i < STMT_CACHE; i++) {
        if (s->cache[i].sql == sql) {
            db_clear(s->cache[i].stmt);
            return s->cache[i].stmt;
        }
        if (!s->cache[i].sql && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) {
        /* Cannot happen with the fixed set of statements in the store's files. */
        mb_fail(err, MB_ERR_DB, "%s: statement cache full", s->path);
        return NULL;
    }
    db_stmt *st = db_prepare(s, sql, 1, err);
    if (!st) return NULL;
    s->cache[free_slot].sql = sql;
    s->cache[free_slot].stmt = st;
    return st;
}

/* A statement owned by the caller (reads: a visitor may re-enter the store). */
db_stmt *prepare(mb_store *s, const char *sql, mb_error *err) { return db_prepare(s, sql, 0, err); }

mb_status db_begin(mb_store *s, mb_error *err) {
    if (s->pg) {
        if (pg_begin(s->pg) != 0) return db_fail(s, err, "starting a transaction");
        return MB_OK;
    }
    /* IMMEDIATE takes the write lock up front: a deferred transaction that
       upgrades later can get SQLITE_BUSY without the busy handler running. */
    if (db_exec(s, "BEGIN IMMEDIATE") != SQLITE_OK) return db_fail(s, err, "starting a transaction");
    return MB_OK;
}

mb_status db_commit(mb_store *s, mb_error *err) {
    if (s->pg) {
        if (pg_commit(s->pg) != 0) return db_fail(s, err, "committing");
        return MB_OK;
    }
    if (db_exec(s, "COMMIT") != SQLITE_OK) {
        mb_status st = db_fail(s, err, "committing");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return MB_OK;
}

void db_rollback(mb_store *s) {
    if (s->pg) pg_rollback(s->pg);
    else if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* One integer from a query without parameters. */
int db_query_int(mb_store *s, const char *sql, int *out) {
    db_stmt *st = db_prepare(s, sql, 0, NULL);
    if (!st) return SQLITE_ERROR;
    int rc = db_step(s, st);
    if (rc == DB_ROW) *out = (int)db_int(st, 0);
    db_finalize(st);
    return rc == DB_ROW ? SQLITE_OK : SQLITE_ERROR;
}

int mb_store_user_version(mb_store *s) {
    int v = -1;
    if (s->pg) db_query_int(s, "SELECT version FROM moonbert_schema", &v);
    else db_query_int(s, "PRAGMA user_version", &v);
    return v;
}

/* ---- retrying after a lost connection (PostgreSQL) ---------------------------- */

/* A server restart breaks the connection under a writer. Every public call
   runs as an attempt: when it failed for want of a connection, reconnect with
   backoff (0.05 s doubling to 2 s) for at most opts.retry_timeout_s, then run
   the attempt again. A write is one transaction, so a failed attempt left
   nothing behind; an attempt whose COMMIT lost its answer is asked about
   (txid_status) and not run again when it did commit: no row lost, none twice. */
int retry_after(mb_store *s, retry_state *r, mb_status st, mb_error *err) {
    if (st == MB_OK || !s->pg || pg_errkind(s->pg) != DB_ERR_CONNECTION) return RETRY_NO;
    if (r->deadline == 0) {
        r->deadline = mb_store_now() + s->opts.retry_timeout_s;
        r->pause = 0.05;
    }
    for (;;) {
        if (mb_store_now() + r->pause > r->deadline) {
            mb_fail(err, MB_ERR_IO, "%s: lost the connection to the server and it did not come back within %.0f s (%s)",
                    s->path, s->opts.retry_timeout_s, pg_errmsg(s->pg));
            return RETRY_NO;
        }
        sleep_s(r->pause);
        r->pause = r->pause * 2 > 2.0 ? 2.0 : r->pause * 2;
        if (!pg_reconnect(s->pg)) continue;
        s->reconnects++;
        s->beat_run = -1; /* a heartbeat in the lost transaction is written again */
        if (!pg_commit_was_lost(s->pg)) return RETRY_AGAIN;
        int outcome = pg_commit_outcome(s->pg);
        if (outcome == 1) return RETRY_COMMITTED;
        if (outcome == 0) return RETRY_AGAIN;
    }
}

/* ---- opening ---------------------------------------------------------------- */

int64_t read_proc_start(long pid, char *state) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -2; /* no such process (or no /proc) */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and ')', so parse from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    char st = ' ';
    if (sscanf(p, " %c", &st) != 1) return -1;
    if (state) *state = st;
    /* starttime is field 22; after ')' we are at field 3. */
    char *save = NULL, *tok = strtok_r(p, " ", &save);
    for (int field = 3; tok && field < 22; field++) tok = strtok_r(NULL, " ", &save);
    return tok ? strtoll(tok, NULL, 10) : -1;
}

static mb_status open_sqlite(mb_store *s, const char *path, mb_error *err) {
    struct stat sb;
    if (!s->opts.create && stat(path, &sb) != 0)
        return mb_fail(err, MB_ERR_IO, "no results store at %s (experiment scripts create it with mb.store.open)", path);
    int flags = SQLITE_OPEN_READWRITE | (s->opts.create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK)
        return mb_fail(err, MB_ERR_IO, "%s: cannot open the results store: %s", path,
                       s->db ? sqlite3_errmsg(s->db) : "out of memory");
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, (int)(s->opts.busy_timeout_s * 1000));
    /* WAL: readers never block the writer and commits need no fsync of the
       main file; synchronous=NORMAL keeps the file consistent on power loss
       (the last commits may be lost) and loses nothing when a process dies. */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = step_retry(s, st);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            return mb_fail(err, MB_ERR_DB, "%s: not a moonbert results store (file is not a database)", path);
        return mb_fail(err, MB_ERR_DB, "%s: cannot switch to WAL mode: %s", path, sqlite3_errmsg(s->db));
    }
    if (db_exec(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON") != SQLITE_OK)
        return db_fail(s, err, "setting pragmas");
    return MB_OK;
}

mb_store *mb_store_open(const char *path, const mb_store_options *opts, mb_error *err) {
    if (!path || !*path) {
        mb_fail(err, MB_ERR_ARG, "results store path is empty");
        return NULL;
    }
    mb_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        mb_fail(err, MB_ERR_NOMEM, "out of memory opening %s", path);
        return NULL;
    }
    if (opts) s->opts = *opts;
    else mb_store_default_options(&s->opts);
    if (!(s->opts.retry_timeout_s > 0)) s->opts.retry_timeout_s = 60.0;
    s->beat_run = -1;
    if (gethostname(s->host, sizeof s->host - 1) != 0) snprintf(s->host, sizeof s->host, "unknown");
    s->proc_start = read_proc_start((long)getpid(), NULL);

    if (mb_store_is_url(path)) {
        char display[512];
        if (!(s->pg = pg_connect(path, display, sizeof display, err))) goto fail;
        free(s->path);
        if (!(s->path = strdup(display))) {
            mb_fail(err, MB_ERR_NOMEM, "out of memory opening %s", display);
            goto fail;
        }
    } else if (open_sqlite(s, path, err) != MB_OK) {
        goto fail;
    }
    if (store_migrate(s, err) != MB_OK) goto fail;
    return s;
fail:
    mb_store_close(s);
    return NULL;
}

void mb_store_close(mb_store *s) {
    if (!s) return;
    for (int i = 0; i < STMT_CACHE; i++) db_finalize(s->cache[i].stmt);
    if (s->db) sqlite3_close_v2(s->db);
    pg_disconnect(s->pg);
    free(s->path);
    free(s);
}

static mb_status integrity_check_once(mb_store *s, mb_error *err) {
    /* PostgreSQL checks its own pages; ask that the tables answer. */
    db_stmt *st = prepare(s, DIALECT(s, "PRAGMA integrity_check",
                                     "SELECT CASE WHEN count(*) >= 0 THEN 'ok' END FROM runs"), err);
    if (!st) return MB_ERR_DB;
    char report[MB_ERROR_MSG_MAX] = "";
    size_t used = 0;
    int rc, ok = 0, rows = 0;
    while ((rc = db_step(s, st)) == DB_ROW) {
        const char *line = db_text(st, 0);
        if (rows++ == 0 && line && strcmp(line, "ok") == 0) ok = 1;
        if (line && used < sizeof report - 2) used += snprintf(report + used, sizeof report - used, "%s; ", line);
    }
    db_finalize(st);
    if (rc != DB_DONE) return db_fail(s, err, "integrity check");
    if (!ok || rows != 1) return mb_fail(err, MB_ERR_DB, "%s: integrity check failed: %s", s->path, report);
    return MB_OK;
}


mb_status mb_store_integrity_check(mb_store *s, mb_error *err) {
    RETRYING(s, err, integrity_check_once(s, err));
}
