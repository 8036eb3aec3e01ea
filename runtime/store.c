/* store.c: the results store over SQLite (see store.h for the model).
 *
 * Sections: schema and migrations; opening; statements, retries and
 * transactions; liveness (host, pid, heartbeat, reaping); writing a run;
 * deleting; copying between stores. Reading is store_query.c (the two share
 * store_impl.h). Writes go through a small cache of prepared statements; reads
 * prepare their own statement so that a visitor may call back into the store.
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- schema and migrations ------------------------------------------------ */

/* migrations[v] takes a file from user_version v to v + 1. Never edit a
   shipped step: add a new one and bump MB_STORE_SCHEMA_VERSION. */
static const char *const migrations[MB_STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: runs, params, metric series, tags, artifacts. */
    "PRAGMA application_id = 1836019566;"
    "CREATE TABLE experiments ("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(id),"
    "  name TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('running','completed','failed','killed')),"
    "  start_time REAL NOT NULL, end_time REAL,"
    "  seed INTEGER, host TEXT, git_commit TEXT, git_dirty INTEGER,"
    "  script_path TEXT, script_hash TEXT, dataset_hash TEXT, model_hash TEXT, device TEXT,"
    "  error TEXT);"
    "CREATE INDEX runs_by_experiment ON runs(experiment_id, status);"
    "CREATE TABLE params ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value, PRIMARY KEY (run_id, key));"
    "CREATE TABLE metrics ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value REAL, step INTEGER, epoch REAL, split TEXT, time REAL NOT NULL);"
    "CREATE INDEX metrics_by_run_key ON metrics(run_id, key, id);"
    "CREATE TABLE tags ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));"
    "CREATE TABLE artifacts ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL, path TEXT NOT NULL, hash TEXT, time REAL NOT NULL);",

    /* 1 -> 2: liveness (pid, process start time, heartbeat) and the tables
       for error analysis (confusion matrices, per-example predictions).
       Old running rows get their start time as heartbeat, so that reaping
       treats them by age. */
    "ALTER TABLE runs ADD COLUMN pid INTEGER;"
    "ALTER TABLE runs ADD COLUMN proc_start INTEGER;"
    "ALTER TABLE runs ADD COLUMN heartbeat REAL;"
    "UPDATE runs SET heartbeat = COALESCE(end_time, start_time);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE TABLE confusion ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  split TEXT, epoch REAL, labels TEXT NOT NULL, matrix TEXT NOT NULL, time REAL NOT NULL);"
    "CREATE TABLE predictions ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  split TEXT NOT NULL, example INTEGER NOT NULL,"
    "  label INTEGER, predicted INTEGER NOT NULL, loss REAL, probs TEXT,"
    "  PRIMARY KEY (run_id, split, example));",

    /* 2 -> 3: a UUID per run, so that runs of several stores can meet
       (`moonbert results push`). Existing runs get a random (version 4) one. */
    "ALTER TABLE runs ADD COLUMN uuid TEXT;"
    "UPDATE runs SET uuid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||"
    "  substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||"
    "  substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));"
    "CREATE UNIQUE INDEX runs_by_uuid ON runs(uuid);",

    /* 3 -> 4: status 'pruned' (a trial stopped early by a pruner such as
       ASHA) with the rung it reached. SQLite cannot change a CHECK in place:
       the table is rebuilt (foreign keys are off during migrations, see
       migrate()), keeping ids and the AUTOINCREMENT counter. */
    "CREATE TEMP TABLE mb_runs_seq AS SELECT seq FROM sqlite_sequence WHERE name = 'runs';"
    "CREATE TABLE runs_new ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(id),"
    "  name TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('running','completed','failed','killed','pruned')),"
    "  start_time REAL NOT NULL, end_time REAL,"
    "  seed INTEGER, host TEXT, git_commit TEXT, git_dirty INTEGER,"
    "  script_path TEXT, script_hash TEXT, dataset_hash TEXT, model_hash TEXT, device TEXT,"
    "  error TEXT, pid INTEGER, proc_start INTEGER, heartbeat REAL, uuid TEXT,"
    "  pruned_rung INTEGER);"
    "INSERT INTO runs_new (id, experiment_id, name, status, start_time, end_time, seed, host, git_commit,"
    "  git_dirty, script_path, script_hash, dataset_hash, model_hash, device, error, pid, proc_start,"
    "  heartbeat, uuid)"
    " SELECT id, experiment_id, name, status, start_time, end_time, seed, host, git_commit,"
    "  git_dirty, script_path, script_hash, dataset_hash, model_hash, device, error, pid, proc_start,"
    "  heartbeat, uuid FROM runs;"
    "DROP TABLE runs;"
    "ALTER TABLE runs_new RENAME TO runs;"
    "UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM mb_runs_seq), 0)) WHERE name = 'runs';"
    "DROP TABLE mb_runs_seq;"
    "CREATE INDEX runs_by_experiment ON runs(experiment_id, status);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE UNIQUE INDEX runs_by_uuid ON runs(uuid);",

    /* 4 -> 5: status 'interrupted' (a run stopped on purpose, e.g. preempted,
       that will be resumed: neither alive nor killed) and run_events, the
       times a run was interrupted and resumed. Rebuilt as in 3 -> 4. */
    "CREATE TEMP TABLE mb_runs_seq AS SELECT seq FROM sqlite_sequence WHERE name = 'runs';"
    "CREATE TABLE runs_new ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(id),"
    "  name TEXT,"
    "  status TEXT NOT NULL"
    "    CHECK (status IN ('running','completed','failed','killed','pruned','interrupted')),"
    "  start_time REAL NOT NULL, end_time REAL,"
    "  seed INTEGER, host TEXT, git_commit TEXT, git_dirty INTEGER,"
    "  script_path TEXT, script_hash TEXT, dataset_hash TEXT, model_hash TEXT, device TEXT,"
    "  error TEXT, pid INTEGER, proc_start INTEGER, heartbeat REAL, uuid TEXT,"
    "  pruned_rung INTEGER);"
    "INSERT INTO runs_new SELECT * FROM runs;"
    "DROP TABLE runs;"
    "ALTER TABLE runs_new RENAME TO runs;"
    "UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT seq FROM mb_runs_seq), 0)) WHERE name = 'runs';"
    "DROP TABLE mb_runs_seq;"
    "CREATE INDEX runs_by_experiment ON runs(experiment_id, status);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE UNIQUE INDEX runs_by_uuid ON runs(uuid);"
    "CREATE TABLE run_events ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('interrupted','resumed')),"
    "  time REAL NOT NULL, host TEXT, pid INTEGER, message TEXT);"
    "CREATE INDEX run_events_by_run ON run_events(run_id, id);",
};


/* The same steps for PostgreSQL (runtime/store_pg.c): the same tables and
   columns in its types; the version lives in moonbert_schema. A CHECK is
   replaced in place (no rebuild). Keep the two lists in step. */
static const char *const pg_migrations[MB_STORE_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE experiments ("
    "  id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL);"
    "CREATE TABLE runs ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  experiment_id BIGINT NOT NULL REFERENCES experiments(id),"
    "  name TEXT,"
    "  status TEXT NOT NULL CONSTRAINT runs_status_check"
    "    CHECK (status IN ('running','completed','failed','killed')),"
    "  start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION,"
    "  seed BIGINT, host TEXT, git_commit TEXT, git_dirty INTEGER,"
    "  script_path TEXT, script_hash TEXT, dataset_hash TEXT, model_hash TEXT, device TEXT,"
    "  error TEXT);"
    "CREATE INDEX runs_by_experiment ON runs(experiment_id, status);"
    /* A param's value keeps its type in vtype ('int', 'real', 'text'; reals as
       shortest exact text), as SQLite's dynamic typing does in one column. */
    "CREATE TABLE params ("
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT, vtype TEXT, PRIMARY KEY (run_id, key));"
    "CREATE TABLE metrics ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value DOUBLE PRECISION, step BIGINT, epoch DOUBLE PRECISION, split TEXT,"
    "  time DOUBLE PRECISION NOT NULL);"
    "CREATE INDEX metrics_by_run_key ON metrics(run_id, key, id);"
    "CREATE TABLE tags ("
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));"
    "CREATE TABLE artifacts ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL, path TEXT NOT NULL, hash TEXT, time DOUBLE PRECISION NOT NULL);",

    /* 1 -> 2 */
    "ALTER TABLE runs ADD COLUMN pid BIGINT, ADD COLUMN proc_start BIGINT, ADD COLUMN heartbeat DOUBLE PRECISION;"
    "UPDATE runs SET heartbeat = COALESCE(end_time, start_time);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE TABLE confusion ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  split TEXT, epoch DOUBLE PRECISION, labels TEXT NOT NULL, matrix TEXT NOT NULL,"
    "  time DOUBLE PRECISION NOT NULL);"
    "CREATE TABLE predictions ("
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  split TEXT NOT NULL, example BIGINT NOT NULL,"
    "  label BIGINT, predicted BIGINT NOT NULL, loss DOUBLE PRECISION, probs TEXT,"
    "  PRIMARY KEY (run_id, split, example));",

    /* 2 -> 3 */
    "ALTER TABLE runs ADD COLUMN uuid TEXT;"
    "UPDATE runs SET uuid = gen_random_uuid()::text;"
    "CREATE UNIQUE INDEX runs_by_uuid ON runs(uuid);",

    /* 3 -> 4 */
    "ALTER TABLE runs DROP CONSTRAINT runs_status_check,"
    "  ADD CONSTRAINT runs_status_check CHECK (status IN ('running','completed','failed','killed','pruned')),"
    "  ADD COLUMN pruned_rung BIGINT;",

    /* 4 -> 5 */
    "ALTER TABLE runs DROP CONSTRAINT runs_status_check,"
    "  ADD CONSTRAINT runs_status_check"
    "    CHECK (status IN ('running','completed','failed','killed','pruned','interrupted'));"
    "CREATE TABLE run_events ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('interrupted','resumed')),"
    "  time DOUBLE PRECISION NOT NULL, host TEXT, pid BIGINT, message TEXT);"
    "CREATE INDEX run_events_by_run ON run_events(run_id, id);",
};

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

/* ---- the reserve: room for the last status write on a full disk ------------

   A SQLite store on a disk that fills up could not mark its run failed: the
   UPDATE needs a few WAL frames too. So a writer keeps a ballast file beside
   the store, <store>-reserve (STORE_RESERVE bytes, incompressible), made when
   a run starts or resumes. When a run's final status write (finish, fail,
   prune, interrupt) fails with SQLITE_FULL, the reserve is deleted and the
   write tried once more: about 60 pages at SQLite's default 4 KiB, enough for
   the runs row, its index entries, an event row and a WAL-index block. The
   next run to start makes the reserve again when there is room. Processes of
   a sweep share one reserve. PostgreSQL stores have none: the server's disk
   is not ours (see mb_store_fail in store.h). */
#define STORE_RESERVE (256 * 1024)

static int reserve_path(const mb_store *s, char *buf, size_t n) {
    if (s->pg || !s->path[0] || strcmp(s->path, ":memory:") == 0 || strncmp(s->path, "file:", 5) == 0) return 0;
    return (size_t)snprintf(buf, n, "%s-reserve", s->path) < n;
}

/* Best effort: a disk already too full for it leaves no reserve (and no error). */
static void reserve_make(mb_store *s) {
    char path[4096];
    struct stat sb;
    if (!reserve_path(s, path, sizeof path)) return;
    if (stat(path, &sb) == 0 && sb.st_size >= STORE_RESERVE) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    /* random-looking bytes: a compressing file system must not shrink the reserve */
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    uint64_t chunk[2048];
    size_t done = 0;
    int ok = 1;
    while (ok && done < STORE_RESERVE) {
        for (size_t i = 0; i < sizeof chunk / sizeof chunk[0]; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk[i] = x;
        }
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w != (ssize_t)sizeof chunk) ok = 0;
        else done += sizeof chunk;
    }
    if (ok && fdatasync(fd) != 0) ok = 0;
    close(fd);
    if (!ok) unlink(path);
}

/* 1 when a reserve was there and is gone now (room for one more try). */
static int reserve_release(mb_store *s) {
    char path[4096];
    if (!reserve_path(s, path, sizeof path)) return 0;
    return unlink(path) == 0;
}

static db_errkind db_error_kind(mb_store *s) {
    if (s->pg) return pg_errkind(s->pg);
    switch (sqlite3_extended_errcode(s->db)) {
    case SQLITE_CONSTRAINT_FOREIGNKEY: return DB_ERR_FOREIGN_KEY;
    case SQLITE_CONSTRAINT_UNIQUE: return DB_ERR_UNIQUE;
    default: return DB_ERR_OTHER;
    }
}

static void sleep_s(double sec) {
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

static int exec_retry(mb_store *s, const char *sql) {
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
static void db_reset(db_stmt *st) {
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

static int64_t db_changes(mb_store *s) { return s->pg ? pg_changes(s->pg) : sqlite3_changes(s->db); }

/* A cached statement for a static SQL string, reset and unbound. */
static db_stmt *cached(mb_store *s, const char *sql, mb_error *err) {
    int free_slot = -1;
    for (int i = 0; i < STMT_CACHE; i++) {
        if (s->cache[i].sql == sql) {
            db_clear(s->cache[i].stmt);
            return s->cache[i].stmt;
        }
        if (!s->cache[i].sql && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) {
        /* Cannot happen with the fixed set of statements in this file. */
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

static mb_status begin(mb_store *s, mb_error *err) {
    if (s->pg) {
        if (pg_begin(s->pg) != 0) return db_fail(s, err, "starting a transaction");
        return MB_OK;
    }
    /* IMMEDIATE takes the write lock up front: a deferred transaction that
       upgrades later can get SQLITE_BUSY without the busy handler running. */
    if (exec_retry(s, "BEGIN IMMEDIATE") != SQLITE_OK) return db_fail(s, err, "starting a transaction");
    return MB_OK;
}

static mb_status commit(mb_store *s, mb_error *err) {
    if (s->pg) {
        if (pg_commit(s->pg) != 0) return db_fail(s, err, "committing");
        return MB_OK;
    }
    if (exec_retry(s, "COMMIT") != SQLITE_OK) {
        mb_status st = db_fail(s, err, "committing");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return MB_OK;
}

static void rollback(mb_store *s) {
    if (s->pg) pg_rollback(s->pg);
    else if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* One integer from a query without parameters. */
static int query_int(mb_store *s, const char *sql, int *out) {
    db_stmt *st = db_prepare(s, sql, 0, NULL);
    if (!st) return SQLITE_ERROR;
    int rc = db_step(s, st);
    if (rc == DB_ROW) *out = (int)db_int(st, 0);
    db_finalize(st);
    return rc == DB_ROW ? SQLITE_OK : SQLITE_ERROR;
}
#define pragma_int query_int

int mb_store_user_version(mb_store *s) {
    int v = -1;
    if (s->pg) query_int(s, "SELECT version FROM moonbert_schema", &v);
    else query_int(s, "PRAGMA user_version", &v);
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

static int64_t read_proc_start(long pid, char *state) {
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

static mb_status migrate_locked(mb_store *s, mb_error *err);

static mb_status migrate(mb_store *s, mb_error *err) {
    if (s->pg) return migrate_locked(s, err);
    int version = 0;
    if (pragma_int(s, "PRAGMA user_version", &version) != SQLITE_OK)
        return db_fail(s, err, "reading the schema version");
    if (version == MB_STORE_SCHEMA_VERSION) return MB_OK;
    if (version > MB_STORE_SCHEMA_VERSION)
        return mb_fail(err, MB_ERR_DB,
                       "%s: written by a newer moonbert (schema version %d, this build knows up to %d)", s->path,
                       version, MB_STORE_SCHEMA_VERSION);
    /* Foreign keys off while migrating: rebuilding the runs table (3 -> 4,
       4 -> 5) drops the old one, which would otherwise cascade to every row
       that refers to a run. The pragma is a no-op inside a transaction, hence
       here; foreign_key_check below verifies the result before committing. */
    sqlite3_exec(s->db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
    mb_status status = migrate_locked(s, err);
    sqlite3_exec(s->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    return status;
}

/* PostgreSQL: the version row, created with the first migration. Several
   processes opening a new database at once queue on an advisory lock. */
static mb_status pg_version(mb_store *s, int *version, mb_error *err) {
    *version = 0;
    if (exec_retry(s, "SELECT pg_advisory_xact_lock(1836019566)") != SQLITE_OK) return db_fail(s, err, "locking the schema");
    int has_table = 0, has_runs = 0;
    if (query_int(s, "SELECT count(*) FROM pg_tables WHERE tablename = 'moonbert_schema' AND schemaname = current_schema()",
                  &has_table) != SQLITE_OK ||
        query_int(s, "SELECT count(*) FROM pg_tables WHERE tablename = 'runs' AND schemaname = current_schema()",
                  &has_runs) != SQLITE_OK)
        return db_fail(s, err, "reading the schema version");
    if (!has_table) {
        if (has_runs)
            return mb_fail(err, MB_ERR_DB, "%s: the database has a 'runs' table that is not a moonbert results store",
                           s->path);
        return MB_OK;
    }
    if (query_int(s, "SELECT version FROM moonbert_schema", version) != SQLITE_OK)
        return db_fail(s, err, "reading the schema version");
    return MB_OK;
}

static mb_status migrate_locked(mb_store *s, mb_error *err) {
    int version = 0;
    if (begin(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    /* Another process may have migrated while we waited for the lock. */
    if (s->pg) {
        if (pg_version(s, &version, err) != MB_OK) { rollback(s); return err ? err->code : MB_ERR_DB; }
        if (version == MB_STORE_SCHEMA_VERSION) { rollback(s); return MB_OK; }
        if (version > MB_STORE_SCHEMA_VERSION) {
            rollback(s);
            return mb_fail(err, MB_ERR_DB,
                           "%s: written by a newer moonbert (schema version %d, this build knows up to %d)", s->path,
                           version, MB_STORE_SCHEMA_VERSION);
        }
    } else if (pragma_int(s, "PRAGMA user_version", &version) != SQLITE_OK) {
        rollback(s);
        return db_fail(s, err, "reading the schema version");
    }
    if (version == 0 && !s->pg) {
        int tables = 0, app = 0;
        pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables);
        pragma_int(s, "PRAGMA application_id", &app);
        if (tables > 0 || (app != 0 && app != MB_STORE_APPLICATION_ID)) {
            rollback(s);
            return mb_fail(err, MB_ERR_DB, "%s: a SQLite database that is not a moonbert results store", s->path);
        }
    }
    if (version == 0 && s->pg && exec_retry(s, "CREATE TABLE moonbert_schema (version INTEGER NOT NULL);"
                                                "INSERT INTO moonbert_schema VALUES (0)") != SQLITE_OK) {
        mb_status st = db_fail(s, err, "creating the schema");
        rollback(s);
        return st;
    }
    for (int v = version; v < MB_STORE_SCHEMA_VERSION; v++) {
        if (s->pg) {
            if (pg_exec(s->pg, pg_migrations[v]) != 0) {
                mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d: %s", s->path, v, v + 1,
                        pg_errmsg(s->pg));
                rollback(s);
                return MB_ERR_DB;
            }
            continue;
        }
        char *msg = NULL;
        if (sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
            mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d: %s", s->path, v, v + 1,
                    msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            rollback(s);
            return MB_ERR_DB;
        }
    }
    char sql[80];
    if (s->pg) {
        snprintf(sql, sizeof sql, "UPDATE moonbert_schema SET version = %d", MB_STORE_SCHEMA_VERSION);
    } else {
        int broken = 0;
        if (pragma_int(s, "SELECT count(*) FROM pragma_foreign_key_check", &broken) != SQLITE_OK || broken != 0) {
            rollback(s);
            return mb_fail(err, MB_ERR_DB,
                           "%s: migrating the schema from version %d to %d left %d broken references", s->path,
                           version, MB_STORE_SCHEMA_VERSION, broken);
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", MB_STORE_SCHEMA_VERSION);
    }
    if (exec_retry(s, sql) != SQLITE_OK) {
        mb_status st = db_fail(s, err, "writing the schema version");
        rollback(s);
        return st;
    }
    return commit(s, err);
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
    if (exec_retry(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON") != SQLITE_OK)
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
    if (migrate(s, err) != MB_OK) goto fail;
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

/* ---- liveness ------------------------------------------------------------- */

/* 1: the process that started a run on this host is alive; 0: it is gone
   (no such pid, a zombie, or another process reusing the pid). */
static int process_alive(int64_t pid, int64_t proc_start) {
    char state = '?';
    int64_t started = read_proc_start((long)pid, &state);
    if (started == -2) {
        struct stat sb;
        if (stat("/proc/self/stat", &sb) == 0) return 0; /* /proc works: the pid is gone */
        return kill((pid_t)pid, 0) == 0 || errno == EPERM;
    }
    if (state == 'Z' || state == 'X') return 0;
    if (proc_start >= 0 && started >= 0 && started != proc_start) return 0;
    return 1;
}

static const char SQL_BEAT[] =
    "UPDATE runs SET heartbeat = ?1,"
    "  error = CASE WHEN status = 'killed' THEN NULL ELSE error END,"
    "  end_time = CASE WHEN status = 'killed' THEN NULL ELSE end_time END,"
    "  status = CASE WHEN status = 'killed' THEN 'running' ELSE status END"
    " WHERE id = ?2 AND (status <> 'killed' OR (pid = ?3 AND host = ?4))";

static mb_status write_beat(mb_store *s, int64_t run, mb_error *err) {
    db_stmt *st = cached(s, SQL_BEAT, err);
    if (!st) return MB_ERR_DB;
    double now = mb_store_now();
    db_bind_real(st, 1, now);
    db_bind_int(st, 2, run);
    db_bind_int(st, 3, (int64_t)getpid());
    db_bind_text(st, 4, s->host);
    if (db_step(s, st) != DB_DONE) return db_fail(s, err, "updating the heartbeat");
    s->beat_run = run;
    s->beat_time = now;
    return MB_OK;
}

/* Inside a logging transaction: refresh the heartbeat when it is due. */
static mb_status maybe_beat(mb_store *s, int64_t run, mb_error *err) {
    if (run == s->beat_run && mb_store_now() - s->beat_time < s->opts.heartbeat_interval_s) return MB_OK;
    return write_beat(s, run, err);
}

static mb_status heartbeat_once(mb_store *s, int64_t run, mb_error *err) {
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    if (write_beat(s, run, err) != MB_OK) {
        rollback(s);
        return MB_ERR_DB;
    }
    return commit(s, err);
}

typedef struct reap_candidate {
    int64_t id;
    double heartbeat;
    char reason[200];
} reap_candidate;

static mb_status reap_once(mb_store *s, double stale_after_s, mb_reap_visitor on_reaped, void *ctx, size_t *n_reaped,
                        mb_error *err) {
    if (n_reaped) *n_reaped = 0;
    /* First look without the write lock: usually nothing is to be reaped. */
    db_stmt *st = prepare(s, "SELECT id, host, pid, proc_start, heartbeat FROM runs WHERE status = 'running'", err);
    if (!st) return MB_ERR_DB;
    reap_candidate *cand = NULL;
    size_t n = 0, cap = 0;
    double now = mb_store_now();
    int rc;
    while ((rc = db_step(s, st)) == DB_ROW) {
        int64_t id = db_int(st, 0);
        const char *host = db_text(st, 1);
        int has_pid = !db_null(st, 2);
        int64_t pid = db_int(st, 2);
        int64_t proc_start = db_null(st, 3) ? -1 : db_int(st, 3);
        double beat = db_real(st, 4);
        char reason[200] = "";
        if (host && has_pid && pid > 0 && strcmp(host, s->host) == 0) {
            /* Same host: the process table is the truth, whatever the heartbeat says. */
            if (!process_alive(pid, proc_start))
                snprintf(reason, sizeof reason, "process %lld on %s is gone (last heartbeat %.0f s before)",
                         (long long)pid, host, now - beat);
        } else if (now - beat > stale_after_s) {
            snprintf(reason, sizeof reason, "no heartbeat for %.0f s (process %lld on %s)", now - beat,
                     (long long)pid, host ? host : "unknown host");
        }
        if (!reason[0]) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            reap_candidate *grown = realloc(cand, cap * sizeof *cand);
            if (!grown) {
                free(cand);
                db_finalize(st);
                return mb_fail(err, MB_ERR_NOMEM, "out of memory reaping runs");
            }
            cand = grown;
        }
        cand[n].id = id;
        cand[n].heartbeat = beat;
        snprintf(cand[n].reason, sizeof cand[n].reason, "%s", reason);
        n++;
    }
    db_finalize(st);
    if (rc != DB_DONE) {
        free(cand);
        return db_fail(s, err, "listing running runs");
    }
    if (n == 0) return MB_OK;
    mb_status status = begin(s, err);
    size_t done = 0;
    for (size_t i = 0; i < n && status == MB_OK; i++) {
        /* Only if nothing changed since we looked (no heartbeat came in). */
        db_stmt *up = cached(s,
                                  /* ended when it was last seen alive, not when someone looked */
                                  "UPDATE runs SET status = 'killed', end_time = heartbeat, error = ?1"
                                  " WHERE id = ?2 AND status = 'running' AND heartbeat = ?3",
                                  err);
        if (!up) { status = MB_ERR_DB; break; }
        db_bind_text(up, 1, cand[i].reason);
        db_bind_int(up, 2, cand[i].id);
        db_bind_real(up, 3, cand[i].heartbeat);
        if (db_step(s, up) != DB_DONE) { status = db_fail(s, err, "marking a run killed"); break; }
        if (db_changes(s) == 0) cand[i].id = -1;
        else done++;
    }
    if (status == MB_OK) status = commit(s, err);
    else rollback(s);
    if (status == MB_OK) {
        for (size_t i = 0; i < n; i++)
            if (cand[i].id >= 0 && on_reaped) on_reaped(cand[i].id, cand[i].reason, ctx);
        if (n_reaped) *n_reaped = done;
    }
    free(cand);
    return status;
}

/* ---- writing a run ---------------------------------------------------------- */

mb_status mb_store_new_uuid(char out[MB_UUID_LEN + 1], mb_error *err) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return mb_fail(err, MB_ERR_IO, "cannot draw a random UUID: %s", strerror(errno));
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, MB_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return MB_OK;
}

static mb_status check_key(mb_store *s, const char *what, const char *key, mb_error *err) {
    if (!key || !*key) return mb_fail(err, MB_ERR_ARG, "%s: %s name is empty", s->path, what);
    return MB_OK;
}

/* A statement failure inside a write: name the run when it does not exist. */
static mb_status write_fail(mb_store *s, int64_t run, const char *what, mb_error *err) {
    if (db_error_kind(s) == DB_ERR_FOREIGN_KEY)
        return mb_fail(err, MB_ERR_RANGE, "%s: no run %lld (cannot %s)", s->path, (long long)run, what);
    return db_fail(s, err, what);
}

static mb_status start_run_once(mb_store *s, const mb_run_start *r, int64_t *run_id, mb_error *err) {
    if (!r || !r->experiment || !*r->experiment)
        return mb_fail(err, MB_ERR_ARG, "start_run: experiment name is required");
    char uuid[MB_UUID_LEN + 1];
    if (r->uuid) snprintf(uuid, sizeof uuid, "%s", r->uuid);
    else if (mb_store_new_uuid(uuid, err) != MB_OK) return MB_ERR_IO;
    double now = mb_store_now();
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = cached(s, "INSERT INTO experiments(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", err);
    if (!st) goto fail;
    db_bind_text(st, 1, r->experiment);
    db_bind_real(st, 2, now);
    if (db_step(s, st) != DB_DONE) { db_fail(s, err, "recording the experiment"); goto fail; }
    st = cached(s,
                "INSERT INTO runs(experiment_id, name, status, start_time, seed, host, pid, proc_start,"
                "  git_commit, git_dirty, script_path, script_hash, dataset_hash, model_hash, device, heartbeat, uuid)"
                " VALUES ((SELECT id FROM experiments WHERE name = ?1), ?2, 'running', ?3, ?4, ?5, ?6, ?7,"
                "  ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?3, ?15) RETURNING id",
                err);
    if (!st) goto fail;
    db_bind_text(st, 1, r->experiment);
    db_bind_text(st, 2, r->name);
    db_bind_real(st, 3, now);
    if (r->has_seed) db_bind_int(st, 4, r->seed);
    db_bind_text(st, 5, s->host);
    db_bind_int(st, 6, (int64_t)getpid());
    if (s->proc_start >= 0) db_bind_int(st, 7, s->proc_start);
    db_bind_text(st, 8, r->git_commit);
    if (r->git_dirty >= 0) db_bind_int(st, 9, r->git_dirty ? 1 : 0);
    db_bind_text(st, 10, r->script_path);
    db_bind_text(st, 11, r->script_hash);
    db_bind_text(st, 12, r->dataset_hash);
    db_bind_text(st, 13, r->model_hash);
    db_bind_text(st, 14, r->device);
    db_bind_text(st, 15, uuid);
    if (db_step(s, st) != DB_ROW) {
        if (db_error_kind(s) == DB_ERR_UNIQUE)
            mb_fail(err, MB_ERR_STATE, "%s: a run with UUID %s is already in the store", s->path, uuid);
        else
            db_fail(s, err, "recording the run");
        goto fail;
    }
    int64_t id = db_int(st, 0);
    if (db_step(s, st) != DB_DONE) { db_fail(s, err, "recording the run"); goto fail; }
    if (commit(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    s->beat_run = id;
    s->beat_time = now;
    if (run_id) *run_id = id;
    reserve_make(s);
    return MB_OK;
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* A param value at i; PostgreSQL also gets its type at i + 1 (see pg_migrations). */
static void bind_value(db_stmt *st, int i, const mb_value *v) {
    if (st->pg) {
        static const char *const names[] = {[MB_VALUE_INT] = "int", [MB_VALUE_REAL] = "real", [MB_VALUE_TEXT] = "text"};
        mb_value_type t = v ? v->type : MB_VALUE_NULL;
        db_bind_text(st, i + 1, t == MB_VALUE_NULL ? NULL : names[t]);
    }
    switch (v ? v->type : MB_VALUE_NULL) {
    case MB_VALUE_INT: db_bind_int(st, i, v->i); break;
    case MB_VALUE_REAL: db_bind_real(st, i, v->r); break;
    case MB_VALUE_TEXT: db_bind_text(st, i, v->s ? v->s : ""); break;
    default: db_bind_null(st, i); break;
    }
}

/* The param value in column i (PostgreSQL: its type in column i + 1). */
void column_value(db_stmt *st, int i, mb_value *v) {
    memset(v, 0, sizeof *v);
    if (st->pg) {
        const char *type = db_text(st, i + 1);
        if (db_null(st, i) || !type) v->type = MB_VALUE_NULL;
        else if (strcmp(type, "int") == 0) { v->type = MB_VALUE_INT; v->i = db_int(st, i); }
        else if (strcmp(type, "real") == 0) { v->type = MB_VALUE_REAL; v->r = db_real(st, i); }
        else { v->type = MB_VALUE_TEXT; v->s = db_text(st, i); }
        return;
    }
    switch (sqlite3_column_type(st->lite, i)) {
    case SQLITE_INTEGER: v->type = MB_VALUE_INT; v->i = db_int(st, i); break;
    case SQLITE_FLOAT: v->type = MB_VALUE_REAL; v->r = db_real(st, i); break;
    case SQLITE_NULL: v->type = MB_VALUE_NULL; break;
    default: v->type = MB_VALUE_TEXT; v->s = db_text(st, i); break;
    }
}

static void format_value(const mb_value *v, char *buf, size_t n) {
    switch (v->type) {
    case MB_VALUE_INT: snprintf(buf, n, "%lld", (long long)v->i); break;
    case MB_VALUE_REAL: /* the shortest of %.15g/%.17g that reads back exactly */
        snprintf(buf, n, "%.15g", v->r);
        if (strtod(buf, NULL) != v->r) snprintf(buf, n, "%.17g", v->r);
        break;
    case MB_VALUE_TEXT: snprintf(buf, n, "'%s'", v->s ? v->s : ""); break;
    default: snprintf(buf, n, "nil"); break;
    }
}

static mb_status log_param_once(mb_store *s, int64_t run, const char *key, const mb_value *v, mb_error *err) {
    if (check_key(s, "param", key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = cached(s, DIALECT(s, "INSERT INTO params(run_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                                    "INSERT INTO params(run_id, key, value, vtype) VALUES (?1, ?2, ?3, ?4)"
                                    " ON CONFLICT DO NOTHING"), err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, key);
    bind_value(st, 3, v);
    if (db_step(s, st) != DB_DONE) { write_fail(s, run, "log a param", err); goto fail; }
    if (db_changes(s) == 0) {
        /* Already there: the same value is fine, a different one is a mistake
           (a run's configuration must not change under its results). */
        st = cached(s, DIALECT(s, "SELECT value, NULL, value IS ?3 FROM params WHERE run_id = ?1 AND key = ?2",
                               "SELECT value, vtype, CASE WHEN value IS NOT DISTINCT FROM ?3"
                               " AND vtype IS NOT DISTINCT FROM ?4 THEN 1 ELSE 0 END"
                               " FROM params WHERE run_id = ?1 AND key = ?2"), err);
        if (!st) goto fail;
        db_bind_int(st, 1, run);
        db_bind_text(st, 2, key);
        bind_value(st, 3, v);
        if (db_step(s, st) != DB_ROW) { db_fail(s, err, "reading a param"); goto fail; }
        if (!(int)db_int(st, 2)) {
            mb_value old;
            column_value(st, 0, &old);
            char was[200], now[200];
            format_value(&old, was, sizeof was);
            format_value(v, now, sizeof now);
            mb_fail(err, MB_ERR_STATE, "param '%s' of run %lld is already %s; params are written once (cannot change it to %s)",
                    key, (long long)run, was, now);
            db_reset(st);
            goto fail;
        }
        db_reset(st);
    }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static mb_status set_tag_once(mb_store *s, int64_t run, const char *key, const char *value, mb_error *err) {
    if (check_key(s, "tag", key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = cached(s,
                              "INSERT INTO tags(run_id, key, value) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value",
                              err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, key);
    db_bind_text(st, 3, value);
    if (db_step(s, st) != DB_DONE) { write_fail(s, run, "set a tag", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static mb_status log_metrics_once(mb_store *s, int64_t run, const mb_metric *m, size_t n, mb_error *err) {
    for (size_t i = 0; i < n; i++)
        if (check_key(s, "metric", m[i].key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    double now = mb_store_now();
    for (size_t i = 0; i < n; i++) {
        db_stmt *st = cached(s,
                                  "INSERT INTO metrics(run_id, key, value, step, epoch, split, time)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  err);
        if (!st) goto fail;
        db_bind_int(st, 1, run);
        db_bind_text(st, 2, m[i].key);
        db_bind_real(st, 3, m[i].value);
        if (m[i].has_step) db_bind_int(st, 4, m[i].step);
        if (m[i].has_epoch) db_bind_real(st, 5, m[i].epoch);
        db_bind_text(st, 6, m[i].split);
        db_bind_real(st, 7, m[i].time > 0 ? m[i].time : now);
        if (db_step(s, st) != DB_DONE) { write_fail(s, run, "log a metric", err); goto fail; }
    }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_log_metric(mb_store *s, int64_t run, const mb_metric *m, mb_error *err) {
    return mb_store_log_metrics(s, run, m, 1, err);
}

/* Whole numbers as JSON integers (counts read back as counts), the rest as reals. */
static json_t *json_number(double v) {
    if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
    return json_real(v); /* NULL for NaN and Inf: the caller reports it */
}

static mb_status log_confusion_once(mb_store *s, int64_t run, const mb_confusion *c, mb_error *err) {
    if (c->n_rows <= 0 || c->n_cols <= 0 || !c->matrix)
        return mb_fail(err, MB_ERR_SHAPE, "confusion matrix is empty (%d x %d)", c->n_rows, c->n_cols);
    if (c->n_labels > 0 && c->n_labels != c->n_rows && c->n_labels != c->n_cols)
        return mb_fail(err, MB_ERR_SHAPE, "confusion matrix is %d x %d but has %d label names", c->n_rows,
                       c->n_cols, c->n_labels);
    json_t *labels = json_array(), *matrix = json_array();
    mb_status status = MB_OK;
    for (int i = 0; i < c->n_labels && status == MB_OK; i++)
        if (json_array_append_new(labels, json_string(c->labels[i] ? c->labels[i] : "")) != 0)
            status = mb_fail(err, MB_ERR_FORMAT, "confusion label %d is not valid UTF-8", i + 1);
    for (int i = 0; i < c->n_rows && status == MB_OK; i++) {
        json_t *row = json_array();
        for (int j = 0; j < c->n_cols; j++) {
            json_t *x = json_number(c->matrix[(size_t)i * c->n_cols + j]);
            if (!x) {
                status = mb_fail(err, MB_ERR_NUMERIC, "confusion matrix entry [%d][%d] is not finite", i + 1, j + 1);
                break;
            }
            json_array_append_new(row, x);
        }
        json_array_append_new(matrix, row);
    }
    char *labels_text = status == MB_OK ? json_dumps(labels, JSON_COMPACT) : NULL;
    char *matrix_text = status == MB_OK ? json_dumps(matrix, JSON_COMPACT) : NULL;
    json_decref(labels);
    json_decref(matrix);
    if (status == MB_OK && (!labels_text || !matrix_text))
        status = mb_fail(err, MB_ERR_NOMEM, "out of memory encoding a confusion matrix");
    if (status == MB_OK && (status = begin(s, err)) == MB_OK) {
        db_stmt *st = cached(s,
                                  "INSERT INTO confusion(run_id, split, epoch, labels, matrix, time)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                  err);
        if (!st) status = MB_ERR_DB;
        else {
            db_bind_int(st, 1, run);
            db_bind_text(st, 2, c->split);
            if (c->has_epoch) db_bind_real(st, 3, c->epoch);
            db_bind_text(st, 4, labels_text);
            db_bind_text(st, 5, matrix_text);
            db_bind_real(st, 6, c->time > 0 ? c->time : mb_store_now());
            if (db_step(s, st) != DB_DONE) status = write_fail(s, run, "log a confusion matrix", err);
            db_reset(st); /* drop the references to the texts freed below */
        }
        if (status == MB_OK) status = maybe_beat(s, run, err);
        if (status == MB_OK) status = commit(s, err);
        else rollback(s);
    }
    free(labels_text);
    free(matrix_text);
    return status;
}

/* The probabilities as JSON text (*out NULL when there are none). */
static mb_status encode_probs(const mb_prediction *p, char **out, mb_error *err) {
    *out = NULL;
    if (!p->probs || p->n_probs <= 0) return MB_OK;
    json_t *arr = json_array();
    for (int k = 0; k < p->n_probs; k++) {
        json_t *x = isfinite(p->probs[k]) ? json_real(p->probs[k]) : json_null();
        json_array_append_new(arr, x);
    }
    /* 9 significant digits: exact for float32 probabilities. */
    *out = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(arr);
    if (!*out) return mb_fail(err, MB_ERR_NOMEM, "out of memory encoding probabilities");
    return MB_OK;
}

/* Bind row p's five values from parameter first on (example, label, predicted, loss, probs). */
static void bind_prediction(db_stmt *st, int first, const mb_prediction *p, const char *probs) {
    db_bind_int(st, first, p->index);
    if (p->has_label) db_bind_int(st, first + 1, p->label);
    else db_bind_null(st, first + 1);
    db_bind_int(st, first + 2, p->predicted);
    if (p->has_loss) db_bind_real(st, first + 3, p->loss);
    else db_bind_null(st, first + 3);
    db_bind_text(st, first + 4, probs);
}

#define PREDICTIONS_UPSERT                                                                            \
    " ON CONFLICT (run_id, split, example) DO UPDATE SET label = excluded.label,"                     \
    " predicted = excluded.predicted, loss = excluded.loss, probs = excluded.probs"

/* PostgreSQL: one statement per PG_PREDICTION_ROWS rows, since each statement
   is a round trip to the server (5,000 single-row inserts took 5.5 s). */
#define PG_PREDICTION_ROWS 100
static const char *pg_predictions_batch_sql(void) {
    static char sql[PG_PREDICTION_ROWS * 48 + 512];
    if (!sql[0]) {
        size_t n = (size_t)snprintf(sql, sizeof sql,
                                    "INSERT INTO predictions(run_id, split, example, label, predicted, loss, probs) VALUES ");
        for (int r = 0; r < PG_PREDICTION_ROWS; r++) {
            int b = 3 + r * 5;
            n += (size_t)snprintf(sql + n, sizeof sql - n, "%s(?1, ?2, ?%d, ?%d, ?%d, ?%d, ?%d)", r ? ", " : "", b, b + 1,
                                  b + 2, b + 3, b + 4);
        }
        snprintf(sql + n, sizeof sql - n, "%s", PREDICTIONS_UPSERT);
    }
    return sql;
}

/* The same example twice in one multi-row statement is an error in PostgreSQL. */
static int has_repeated_example(const mb_prediction *rows, size_t n) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (rows[i].index == rows[j].index) return 1;
    return 0;
}

static mb_status log_predictions_once(mb_store *s, int64_t run, const char *split, const mb_prediction *rows,
                                      size_t n, mb_error *err) {
    if (!split || !*split) return mb_fail(err, MB_ERR_ARG, "log_predictions: split name is empty");
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    mb_status status = MB_OK;
    size_t i = 0;
    while (s->pg && status == MB_OK && n - i >= PG_PREDICTION_ROWS &&
           !has_repeated_example(rows + i, PG_PREDICTION_ROWS)) {
        db_stmt *st = cached(s, pg_predictions_batch_sql(), err);
        if (!st) { status = MB_ERR_DB; break; }
        db_bind_int(st, 1, run);
        db_bind_text(st, 2, split);
        for (int r = 0; r < PG_PREDICTION_ROWS && status == MB_OK; r++) {
            char *probs;
            status = encode_probs(&rows[i + r], &probs, err);
            if (status == MB_OK) bind_prediction(st, 3 + r * 5, &rows[i + r], probs);
            free(probs);
        }
        if (status == MB_OK && db_step(s, st) != DB_DONE) status = write_fail(s, run, "log predictions", err);
        i += PG_PREDICTION_ROWS;
    }
    for (; i < n && status == MB_OK; i++) {
        char *probs;
        if ((status = encode_probs(&rows[i], &probs, err)) != MB_OK) break;
        db_stmt *st = cached(s,
                             "INSERT INTO predictions(run_id, split, example, label, predicted, loss, probs)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)" PREDICTIONS_UPSERT,
                             err);
        if (!st) status = MB_ERR_DB;
        else {
            db_bind_int(st, 1, run);
            db_bind_text(st, 2, split);
            bind_prediction(st, 3, &rows[i], probs);
            if (db_step(s, st) != DB_DONE) status = write_fail(s, run, "log predictions", err);
        }
        free(probs);
    }
    if (status == MB_OK) status = maybe_beat(s, run, err);
    if (status == MB_OK) return commit(s, err);
    rollback(s);
    return status;
}

static mb_status log_artifact_once(mb_store *s, int64_t run, const char *kind, const char *path, const char *hash,
                                mb_error *err) {
    if (check_key(s, "artifact kind", kind, err) != MB_OK) return MB_ERR_ARG;
    if (!path || !*path) return mb_fail(err, MB_ERR_ARG, "log_artifact: path is empty");
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = cached(s, "INSERT INTO artifacts(run_id, kind, path, hash, time) VALUES (?1, ?2, ?3, ?4, ?5)", err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, kind);
    db_bind_text(st, 3, path);
    db_bind_text(st, 4, hash);
    db_bind_real(st, 5, mb_store_now());
    if (db_step(s, st) != DB_DONE) { write_fail(s, run, "log an artifact", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* The status of a run, into buf; MB_ERR_RANGE when there is no such run. */
static mb_status run_status(mb_store *s, int64_t run, char *buf, size_t n, mb_error *err) {
    db_stmt *st = cached(s, "SELECT status FROM runs WHERE id = ?1", err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    int rc = db_step(s, st);
    if (rc == DB_DONE) return mb_fail(err, MB_ERR_RANGE, "%s: no run %lld", s->path, (long long)run);
    if (rc != DB_ROW) return db_fail(s, err, "reading a run's status");
    snprintf(buf, n, "%s", db_text(st, 0));
    db_reset(st);
    return MB_OK;
}

/* A resumed run's script runs again from its start, so the rows it logs outside the
   training steps (metrics without a step, confusion matrices, artifacts: before fit,
   and after it when the process died between its last checkpoint and its end) come a
   second time. When the run ends, each such row logged before its latest resume that
   the resumed process logged again (same key, split and epoch; same split and epoch;
   same kind and path) is dropped: the run keeps the resumed process's copy. Rows with a
   step are the trainer's, cut at the checkpoint on resume (truncate_after_once). */
static mb_status drop_relogged_rows(mb_store *s, int64_t run, mb_error *err) {
    db_stmt *st = cached(s, "SELECT MAX(time) FROM run_events WHERE run_id = ?1 AND kind = 'resumed'", err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    if (db_step(s, st) != DB_ROW) return db_fail(s, err, "reading a run's resume time");
    int resumed = !db_null(st, 0);
    double since = resumed ? db_real(st, 0) : 0;
    db_reset(st);
    if (!resumed) return MB_OK;
    static const char *const sql[] = {
        "DELETE FROM metrics WHERE run_id = ?1 AND step IS NULL AND time < ?2 AND EXISTS ("
        " SELECT 1 FROM metrics n WHERE n.run_id = ?1 AND n.step IS NULL AND n.time >= ?2 AND n.key = metrics.key"
        " AND COALESCE(n.split, '') = COALESCE(metrics.split, '') AND COALESCE(n.epoch, -1) = COALESCE(metrics.epoch, -1))",
        "DELETE FROM confusion WHERE run_id = ?1 AND time < ?2 AND EXISTS ("
        " SELECT 1 FROM confusion n WHERE n.run_id = ?1 AND n.time >= ?2"
        " AND COALESCE(n.split, '') = COALESCE(confusion.split, '') AND COALESCE(n.epoch, -1) = COALESCE(confusion.epoch, -1))",
        "DELETE FROM artifacts WHERE run_id = ?1 AND time < ?2 AND EXISTS ("
        " SELECT 1 FROM artifacts n WHERE n.run_id = ?1 AND n.time >= ?2 AND n.kind = artifacts.kind AND n.path = artifacts.path)",
    };
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
        if (!(st = cached(s, sql[i], err))) return MB_ERR_DB;
        db_bind_int(st, 1, run);
        db_bind_real(st, 2, since);
        if (db_step(s, st) != DB_DONE) return db_fail(s, err, "dropping the rows a resumed run logged again");
    }
    return MB_OK;
}

/* running/killed -> final status (a run marked killed by mistake can still end properly). */
static mb_status end_run_attempt(mb_store *s, int64_t run, const char *final, const char *error_text, int64_t rung,
                                 int *changed, mb_error *err) {
    if (changed) *changed = 0;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = cached(s,
                              "UPDATE runs SET status = ?2, end_time = ?3, heartbeat = ?3, error = ?4, pruned_rung = ?5"
                              " WHERE id = ?1 AND status IN ('running', 'killed')",
                              err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, final);
    db_bind_real(st, 3, mb_store_now());
    db_bind_text(st, 4, error_text);
    if (rung >= 0) db_bind_int(st, 5, rung);
    if (db_step(s, st) != DB_DONE) { db_fail(s, err, "ending a run"); goto fail; }
    int n = db_changes(s);
    if (n == 0) {
        char status[32];
        if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
        rollback(s);
        if (changed) return MB_OK; /* fail(): ending an ended run is not an error */
        return mb_fail(err, MB_ERR_STATE, "run %lld is already %s", (long long)run, status);
    }
    if (changed) *changed = 1;
    if (drop_relogged_rows(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* A final status write that found the disk full gets the reserve's room and one more try. */
static mb_status end_run(mb_store *s, int64_t run, const char *final, const char *error_text, int64_t rung,
                         int *changed, mb_error *err) {
    s->disk_full = 0;
    mb_status st = end_run_attempt(s, run, final, error_text, rung, changed, err);
    if (st != MB_OK && s->disk_full && reserve_release(s)) {
        s->disk_full = 0;
        st = end_run_attempt(s, run, final, error_text, rung, changed, err);
    }
    return st;
}

static mb_status finish_once(mb_store *s, int64_t run, mb_error *err) {
    return end_run(s, run, "completed", NULL, -1, NULL, err);
}

static mb_status prune_once(mb_store *s, int64_t run, int64_t rung, mb_error *err) {
    if (rung < 0) return mb_fail(err, MB_ERR_ARG, "prune: rung must be >= 0, got %lld", (long long)rung);
    return end_run(s, run, "pruned", NULL, rung, NULL, err);
}

static mb_status fail_once(mb_store *s, int64_t run, const char *error_text, int *changed, mb_error *err) {
    int dummy;
    return end_run(s, run, "failed", error_text ? error_text : "failed", -1, changed ? changed : &dummy, err);
}

static mb_status add_event(mb_store *s, int64_t run, const char *kind, double now, const char *message,
                           mb_error *err) {
    db_stmt *st = cached(s,
                              "INSERT INTO run_events(run_id, kind, time, host, pid, message)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, kind);
    db_bind_real(st, 3, now);
    db_bind_text(st, 4, s->host);
    db_bind_int(st, 5, (int64_t)getpid());
    db_bind_text(st, 6, message);
    if (db_step(s, st) != DB_DONE) return db_fail(s, err, "recording a run event");
    return MB_OK;
}

/* The transition of interrupt and resume: UPDATE (bound ?1 run, ?2 now, then
   extra), an event, and a clear message when the run is in the wrong state. */
static mb_status pause_or_resume(mb_store *s, int64_t run, int resume, const char *message, mb_error *err) {
    double now = mb_store_now();
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st;
    if (resume) {
        st = cached(s,
                    "UPDATE runs SET status = 'running', end_time = NULL, error = NULL, heartbeat = ?2,"
                    "  host = ?3, pid = ?4, proc_start = ?5"
                    " WHERE id = ?1 AND status IN ('interrupted', 'killed')",
                    err);
        if (!st) goto fail;
        db_bind_text(st, 3, s->host);
        db_bind_int(st, 4, (int64_t)getpid());
        if (s->proc_start >= 0) db_bind_int(st, 5, s->proc_start);
    } else {
        st = cached(s,
                    "UPDATE runs SET status = 'interrupted', error = ?3, heartbeat = ?2"
                    " WHERE id = ?1 AND status IN ('running', 'killed')",
                    err);
        if (!st) goto fail;
        db_bind_text(st, 3, message);
    }
    db_bind_int(st, 1, run);
    db_bind_real(st, 2, now);
    if (db_step(s, st) != DB_DONE) { db_fail(s, err, resume ? "resuming a run" : "interrupting a run"); goto fail; }
    if (db_changes(s) == 0) {
        char status[32];
        if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
        rollback(s);
        if (resume)
            return mb_fail(err, MB_ERR_STATE, "run %lld is %s; only an interrupted or killed run can be resumed",
                           (long long)run, status);
        return mb_fail(err, MB_ERR_STATE, "run %lld is already %s; only a running run can be interrupted",
                       (long long)run, status);
    }
    if (add_event(s, run, resume ? "resumed" : "interrupted", now, message, err) != MB_OK) goto fail;
    if (commit(s, err) != MB_OK) return MB_ERR_DB;
    if (resume) {
        s->beat_run = run;
        s->beat_time = now;
    }
    return MB_OK;
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static mb_status interrupt_once(mb_store *s, int64_t run, const char *message, mb_error *err) {
    s->disk_full = 0;
    mb_status st = pause_or_resume(s, run, 0, message, err);
    if (st != MB_OK && s->disk_full && reserve_release(s)) {
        s->disk_full = 0;
        st = pause_or_resume(s, run, 0, message, err);
    }
    return st;
}

static mb_status resume_once(mb_store *s, int64_t run, mb_error *err) {
    mb_status st = pause_or_resume(s, run, 1, NULL, err);
    if (st == MB_OK) reserve_make(s);
    return st;
}

/* ---- deleting ------------------------------------------------------------ */

static mb_status delete_run_once(mb_store *s, int64_t run, mb_error *err) {
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    char status[32];
    if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
    if (strcmp(status, "running") == 0) {
        rollback(s);
        return mb_fail(err, MB_ERR_STATE, "run %lld is running: stop it first (or wait for it to end)", (long long)run);
    }
    /* prepared here, not cached: deleting is rare and the cache is sized for the hot statements */
    db_stmt *st = prepare(s, "DELETE FROM runs WHERE id = ?1", err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    int rc = db_step(s, st);
    if (rc != DB_DONE) db_fail(s, err, "deleting a run"); /* before finalize: the message is the step's */
    db_finalize(st);
    if (rc != DB_DONE) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* What a resumed run logs again: metric rows after step, confusion matrices
   after epoch (epoch < 0: none removed), of keys / splits starting with
   prefix (NULL: all). Rows without a step stay. */
static mb_status truncate_after_once(mb_store *s, int64_t run, int64_t step, double epoch, const char *prefix,
                                     int64_t *removed, mb_error *err) {
    if (removed) *removed = 0;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    char status[32];
    int64_t n = 0;
    if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
    static const char *const sql[2][2] = {
        {"DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
         "DELETE FROM confusion WHERE run_id = ?1 AND epoch > ?2"},
        {"DELETE FROM metrics WHERE run_id = ?1 AND step > ?2 AND substr(key, 1, ?4) = ?3",
         "DELETE FROM confusion WHERE run_id = ?1 AND epoch > ?2 AND substr(split, 1, ?4) = ?3"},
    };
    for (int i = 0; i < 2; i++) {
        if (i == 1 && epoch < 0) break;
        /* prepared here, not cached: once per resume */
        db_stmt *st = prepare(s, sql[prefix != NULL][i], err);
        if (!st) goto fail;
        db_bind_int(st, 1, run);
        if (i == 0) db_bind_int(st, 2, step);
        else db_bind_real(st, 2, epoch);
        if (prefix) {
            db_bind_text(st, 3, prefix);
            db_bind_int(st, 4, (int64_t)strlen(prefix));
        }
        int rc = db_step(s, st);
        if (rc != DB_DONE) db_fail(s, err, "removing the rows a resume logs again");
        else n += db_changes(s);
        db_finalize(st);
        if (rc != DB_DONE) goto fail;
    }
    if (commit(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    if (removed) *removed = n;
    return MB_OK;
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* ---- copying a run between stores (results push) ------------------------------ */

/* Copy the rows of one table that belong to run src_run into dst under
   dst_run. select_sql takes ?1 = the source run; its columns, typed by types
   ('i' integer, 'r' real, 't' text, 'v' a param value: see bind_value), go to
   insert_sql's ?2, ?3, ... (?1 = the new run). */
static mb_status copy_rows(mb_store *src, int64_t src_run, mb_store *dst, int64_t dst_run, const char *select_sql,
                           const char *insert_sql, const char *types, mb_error *err) {
    db_stmt *from = prepare(src, select_sql, err);
    if (!from) return MB_ERR_DB;
    db_bind_int(from, 1, src_run);
    int rc;
    mb_status status = MB_OK;
    while (status == MB_OK && (rc = db_step(src, from)) == DB_ROW) {
        db_stmt *to = cached(dst, insert_sql, err);
        if (!to) { status = MB_ERR_DB; break; }
        db_bind_int(to, 1, dst_run);
        int col = 0, param = 2;
        for (const char *t = types; *t; t++, col++) {
            if (*t == 'v') {
                mb_value v;
                column_value(from, col, &v);
                bind_value(to, param, &v);
                param += dst->pg ? 2 : 1;
                if (src->pg) col++; /* the source's vtype column */
                continue;
            }
            if (db_null(from, col)) db_bind_null(to, param);
            else if (*t == 'i') db_bind_int(to, param, db_int(from, col));
            else if (*t == 'r') db_bind_real(to, param, db_real(from, col));
            else db_bind_text(to, param, db_text(from, col));
            param++;
        }
        if (db_step(dst, to) != DB_DONE) status = db_fail(dst, err, "copying a run");
    }
    if (status == MB_OK && rc != DB_DONE) status = db_fail(src, err, "reading the run to copy");
    db_finalize(from);
    return status;
}

static mb_status copy_run_once(mb_store *src, int64_t run, mb_store *dst, int64_t *new_run, int *copied,
                               mb_error *err) {
    *copied = 0;
    db_stmt *st = prepare(src,
                          "SELECT e.name, r.name, r.status, r.start_time, r.end_time, r.seed, r.host, r.git_commit,"
                          " r.git_dirty, r.script_path, r.script_hash, r.dataset_hash, r.model_hash, r.device, r.error,"
                          " r.pid, r.proc_start, r.heartbeat, r.uuid, r.pruned_rung"
                          " FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?1",
                          err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    int rc = db_step(src, st);
    if (rc != DB_ROW) {
        db_finalize(st);
        if (rc == DB_DONE) return mb_fail(err, MB_ERR_RANGE, "no run %lld in %s", (long long)run, src->path);
        return db_fail(src, err, "reading the run to copy");
    }
    const char *uuid = db_text(st, 18);
    if (!uuid) {
        db_finalize(st);
        return mb_fail(err, MB_ERR_STATE, "run %lld of %s has no UUID", (long long)run, src->path);
    }
    mb_status status = begin(dst, err);
    if (status != MB_OK) { db_finalize(st); return status; }
    /* Already there (pushed before): nothing to do. */
    db_stmt *look = cached(dst, "SELECT id FROM runs WHERE uuid = ?1", err);
    if (!look) goto fail;
    db_bind_text(look, 1, uuid);
    rc = db_step(dst, look);
    if (rc == DB_ROW) {
        if (new_run) *new_run = db_int(look, 0);
        db_reset(look);
        rollback(dst);
        db_finalize(st);
        return MB_OK;
    }
    if (rc != DB_DONE) { db_fail(dst, err, "looking for the run"); goto fail; }
    db_stmt *ins = cached(dst, "INSERT INTO experiments(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", err);
    if (!ins) goto fail;
    db_bind_text(ins, 1, db_text(st, 0));
    db_bind_real(ins, 2, mb_store_now());
    if (db_step(dst, ins) != DB_DONE) { db_fail(dst, err, "recording the experiment"); goto fail; }
    ins = cached(dst,
                 "INSERT INTO runs(experiment_id, name, status, start_time, end_time, seed, host, git_commit, git_dirty,"
                 "  script_path, script_hash, dataset_hash, model_hash, device, error, pid, proc_start, heartbeat, uuid,"
                 "  pruned_rung)"
                 " VALUES ((SELECT id FROM experiments WHERE name = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                 "  ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) RETURNING id",
                 err);
    if (!ins) goto fail;
    static const char run_types[] = "tttrrittittttttiirti"; /* the columns above, in order */
    for (int c = 0; run_types[c]; c++) {
        if (db_null(st, c)) db_bind_null(ins, c + 1);
        else if (run_types[c] == 'i') db_bind_int(ins, c + 1, db_int(st, c));
        else if (run_types[c] == 'r') db_bind_real(ins, c + 1, db_real(st, c));
        else db_bind_text(ins, c + 1, db_text(st, c));
    }
    if (db_step(dst, ins) != DB_ROW) {
        if (db_error_kind(dst) == DB_ERR_UNIQUE) { /* another push got there first */
            rollback(dst);
            db_finalize(st);
            return MB_OK;
        }
        db_fail(dst, err, "copying the run");
        goto fail;
    }
    int64_t id = db_int(ins, 0);
    if (db_step(dst, ins) != DB_DONE) { db_fail(dst, err, "copying the run"); goto fail; }
    db_finalize(st);
    st = NULL;
    struct { const char *select_sql, *insert_sql, *types; } tables[] = {
        {DIALECT(src, "SELECT key, value FROM params WHERE run_id = ?1", "SELECT key, value, vtype FROM params WHERE run_id = ?1"),
         DIALECT(dst, "INSERT INTO params(run_id, key, value) VALUES (?1, ?2, ?3)",
                 "INSERT INTO params(run_id, key, value, vtype) VALUES (?1, ?2, ?3, ?4)"),
         "tv"},
        {"SELECT key, value FROM tags WHERE run_id = ?1", "INSERT INTO tags(run_id, key, value) VALUES (?1, ?2, ?3)", "tt"},
        {"SELECT key, value, step, epoch, split, time FROM metrics WHERE run_id = ?1 ORDER BY id",
         "INSERT INTO metrics(run_id, key, value, step, epoch, split, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", "trirtr"},
        {"SELECT kind, path, hash, time FROM artifacts WHERE run_id = ?1 ORDER BY id",
         "INSERT INTO artifacts(run_id, kind, path, hash, time) VALUES (?1, ?2, ?3, ?4, ?5)", "tttr"},
        {"SELECT split, epoch, labels, matrix, time FROM confusion WHERE run_id = ?1 ORDER BY id",
         "INSERT INTO confusion(run_id, split, epoch, labels, matrix, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", "trttr"},
        {"SELECT split, example, label, predicted, loss, probs FROM predictions WHERE run_id = ?1",
         "INSERT INTO predictions(run_id, split, example, label, predicted, loss, probs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
         "tiiirt"},
        {"SELECT kind, time, host, pid, message FROM run_events WHERE run_id = ?1 ORDER BY id",
         "INSERT INTO run_events(run_id, kind, time, host, pid, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", "trtit"},
    };
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        if (copy_rows(src, run, dst, id, tables[t].select_sql, tables[t].insert_sql, tables[t].types, err) != MB_OK)
            goto fail;
    if (commit(dst, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    if (new_run) *new_run = id;
    *copied = 1;
    return MB_OK;
fail:
    db_finalize(st);
    rollback(dst);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_copy_run(mb_store *src, int64_t run, mb_store *dst, int64_t *new_run, int *copied, mb_error *err) {
    int dummy;
    if (!copied) copied = &dummy;
    if (src == dst) return mb_fail(err, MB_ERR_ARG, "copy_run: source and destination are the same store");
    RETRYING(dst, err, copy_run_once(src, run, dst, new_run, copied, err));
}

/* ---- the public calls: each one attempt after another while the connection is being restored ---- */

mb_status mb_store_log_param(mb_store *s, int64_t run, const char *key, const mb_value *v, mb_error *err) {
    RETRYING(s, err, log_param_once(s, run, key, v, err));
}

mb_status mb_store_set_tag(mb_store *s, int64_t run, const char *key, const char *value, mb_error *err) {
    RETRYING(s, err, set_tag_once(s, run, key, value, err));
}

mb_status mb_store_log_metrics(mb_store *s, int64_t run, const mb_metric *m, size_t n, mb_error *err) {
    RETRYING(s, err, log_metrics_once(s, run, m, n, err));
}

mb_status mb_store_log_confusion(mb_store *s, int64_t run, const mb_confusion *c, mb_error *err) {
    RETRYING(s, err, log_confusion_once(s, run, c, err));
}

mb_status mb_store_log_predictions(mb_store *s, int64_t run, const char *split, const mb_prediction *rows,
                                   size_t n, mb_error *err) {
    RETRYING(s, err, log_predictions_once(s, run, split, rows, n, err));
}

mb_status mb_store_log_artifact(mb_store *s, int64_t run, const char *kind, const char *path, const char *hash,
                                mb_error *err) {
    RETRYING(s, err, log_artifact_once(s, run, kind, path, hash, err));
}

mb_status mb_store_heartbeat(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, heartbeat_once(s, run, err));
}

mb_status mb_store_finish(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, finish_once(s, run, err));
}

mb_status mb_store_prune(mb_store *s, int64_t run, int64_t rung, mb_error *err) {
    RETRYING(s, err, prune_once(s, run, rung, err));
}

mb_status mb_store_fail(mb_store *s, int64_t run, const char *error_text, int *changed, mb_error *err) {
    RETRYING(s, err, fail_once(s, run, error_text, changed, err));
}

mb_status mb_store_interrupt(mb_store *s, int64_t run, const char *message, mb_error *err) {
    RETRYING(s, err, interrupt_once(s, run, message, err));
}

mb_status mb_store_resume(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, resume_once(s, run, err));
}

mb_status mb_store_reap(mb_store *s, double stale_after_s, mb_reap_visitor on_reaped, void *ctx, size_t *n_reaped,
                        mb_error *err) {
    RETRYING(s, err, reap_once(s, stale_after_s, on_reaped, ctx, n_reaped, err));
}

mb_status mb_store_delete_run(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, delete_run_once(s, run, err));
}

mb_status mb_store_truncate_after(mb_store *s, int64_t run, int64_t step, double epoch, const char *prefix,
                                  int64_t *removed, mb_error *err) {
    RETRYING(s, err, truncate_after_once(s, run, step, epoch, prefix, removed, err));
}

mb_status mb_store_integrity_check(mb_store *s, mb_error *err) {
    RETRYING(s, err, integrity_check_once(s, err));
}

/* start_run draws the UUID once, so that after a COMMIT whose answer was lost
   the run it did create is found again by it (and not created twice). */
mb_status mb_store_start_run(mb_store *s, const mb_run_start *r, int64_t *run_id, mb_error *err) {
    if (!r || !r->experiment || !*r->experiment)
        return mb_fail(err, MB_ERR_ARG, "start_run: experiment name is required");
    char uuid[MB_UUID_LEN + 1];
    if (r->uuid) snprintf(uuid, sizeof uuid, "%s", r->uuid);
    else if (mb_store_new_uuid(uuid, err) != MB_OK) return MB_ERR_IO;
    mb_run_start with_uuid = *r;
    with_uuid.uuid = uuid;
    retry_state retry = {0, 0};
    for (;;) {
        if (s->pg) pg_clear_error(s->pg);
        mb_status st = start_run_once(s, &with_uuid, run_id, err);
        int again = retry_after(s, &retry, st, err);
        if (again == RETRY_AGAIN) continue;
        if (again != RETRY_COMMITTED) return st;
        int64_t id = 0;
        if (find_uuid_once(s, uuid, &id, err) != MB_OK) return err ? err->code : MB_ERR_DB;
        s->beat_run = id;
        s->beat_time = mb_store_now();
        if (run_id) *run_id = id;
        return MB_OK;
    }
}
