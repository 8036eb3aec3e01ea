/* store.c: the results store over SQLite (see store.h for the model).
 *
 * Sections: schema and migrations; opening; statements, retries and
 * transactions; liveness (host, pid, heartbeat, reaping); writing a run;
 * reading. Writes go through a small cache of prepared statements; reads
 * prepare their own statement so that a visitor may call back into the store.
 */
#include "store.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
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

/* ---- the handle ------------------------------------------------------------ */

#define STMT_CACHE 24

struct mb_store {
    sqlite3 *db;
    char *path;
    mb_store_options opts;
    char host[256];
    int64_t proc_start;       /* this process's start time (/proc), -1 unknown */
    int64_t beat_run;         /* the run whose heartbeat was written last ... */
    double beat_time;         /* ... and when */
    struct {
        const char *sql;      /* static string: the cache key is its address */
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
};

double mb_store_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void mb_store_default_options(mb_store_options *o) {
    o->create = 1;
    o->busy_timeout_s = 30.0;
    o->heartbeat_interval_s = 5.0;
}

const char *mb_store_path(const mb_store *s) { return s->path; }

static mb_status db_fail(mb_store *s, mb_error *err, const char *what) {
    return mb_fail(err, MB_ERR_DB, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
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
    double deadline = mb_store_now() + s->opts.busy_timeout_s;
    double pause = 0.001;
    int rc;
    while (is_busy(rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) && mb_store_now() < deadline) {
        sleep_s(pause);
        if (pause < 0.05) pause *= 2;
    }
    return rc;
}

/* A cached statement for a static SQL string, reset and unbound. */
static sqlite3_stmt *cached(mb_store *s, const char *sql, mb_error *err) {
    int free_slot = -1;
    for (int i = 0; i < STMT_CACHE; i++) {
        if (s->cache[i].sql == sql) {
            sqlite3_reset(s->cache[i].stmt);
            sqlite3_clear_bindings(s->cache[i].stmt);
            return s->cache[i].stmt;
        }
        if (!s->cache[i].sql && free_slot < 0) free_slot = i;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, "preparing a statement");
        return NULL;
    }
    if (free_slot >= 0) {
        s->cache[free_slot].sql = sql;
        s->cache[free_slot].stmt = st;
    } else {
        /* Cannot happen with the fixed set of statements in this file. */
        sqlite3_finalize(st);
        mb_fail(err, MB_ERR_DB, "%s: statement cache full", s->path);
        return NULL;
    }
    return st;
}

/* A statement owned by the caller (reads: a visitor may re-enter the store). */
static sqlite3_stmt *prepare(mb_store *s, const char *sql, mb_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, "preparing a query");
        return NULL;
    }
    return st;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v) {
    if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

/* NaN would become NULL inside SQLite anyway; make that explicit. */
static void bind_real_or_null(sqlite3_stmt *st, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, v);
}

static mb_status begin(mb_store *s, mb_error *err) {
    /* IMMEDIATE takes the write lock up front: a deferred transaction that
       upgrades later can get SQLITE_BUSY without the busy handler running. */
    if (exec_retry(s, "BEGIN IMMEDIATE") != SQLITE_OK) return db_fail(s, err, "starting a transaction");
    return MB_OK;
}

static mb_status commit(mb_store *s, mb_error *err) {
    if (exec_retry(s, "COMMIT") != SQLITE_OK) {
        mb_status st = db_fail(s, err, "committing");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return MB_OK;
}

static void rollback(mb_store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int pragma_int(mb_store *s, const char *sql, int *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = step_retry(s, st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int mb_store_user_version(mb_store *s) {
    int v = -1;
    pragma_int(s, "PRAGMA user_version", &v);
    return v;
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

static mb_status migrate_locked(mb_store *s, mb_error *err) {
    int version = 0;
    if (begin(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    /* Another process may have migrated while we waited for the lock. */
    if (pragma_int(s, "PRAGMA user_version", &version) != SQLITE_OK) {
        rollback(s);
        return db_fail(s, err, "reading the schema version");
    }
    if (version == 0) {
        int tables = 0, app = 0;
        pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables);
        pragma_int(s, "PRAGMA application_id", &app);
        if (tables > 0 || (app != 0 && app != MB_STORE_APPLICATION_ID)) {
            rollback(s);
            return mb_fail(err, MB_ERR_DB, "%s: a SQLite database that is not a moonbert results store", s->path);
        }
    }
    for (int v = version; v < MB_STORE_SCHEMA_VERSION; v++) {
        char *msg = NULL;
        if (sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
            mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d: %s", s->path, v, v + 1,
                    msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            rollback(s);
            return MB_ERR_DB;
        }
    }
    int broken = 0;
    if (pragma_int(s, "SELECT count(*) FROM pragma_foreign_key_check", &broken) != SQLITE_OK || broken != 0) {
        rollback(s);
        return mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d left %d broken references",
                       s->path, version, MB_STORE_SCHEMA_VERSION, broken);
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", MB_STORE_SCHEMA_VERSION);
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        rollback(s);
        return db_fail(s, err, "writing the schema version");
    }
    return commit(s, err);
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
    s->beat_run = -1;
    if (gethostname(s->host, sizeof s->host - 1) != 0) snprintf(s->host, sizeof s->host, "unknown");
    s->proc_start = read_proc_start((long)getpid(), NULL);

    struct stat sb;
    if (!s->opts.create && stat(path, &sb) != 0) {
        mb_fail(err, MB_ERR_IO, "no results store at %s (experiment scripts create it with mb.store.open)", path);
        goto fail;
    }
    int flags = SQLITE_OPEN_READWRITE | (s->opts.create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        mb_fail(err, MB_ERR_IO, "%s: cannot open the results store: %s", path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, (int)(s->opts.busy_timeout_s * 1000));
    /* WAL: readers never block the writer and commits need no fsync of the
       main file; synchronous=NORMAL keeps the file consistent on power loss
       (the last commits may be lost) and loses nothing when a process dies. */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = step_retry(s, st);
    if (rc != SQLITE_ROW) {
        int code = rc & 0xff;
        if (code == SQLITE_NOTADB)
            mb_fail(err, MB_ERR_DB, "%s: not a moonbert results store (file is not a database)", path);
        else
            mb_fail(err, MB_ERR_DB, "%s: cannot switch to WAL mode: %s", path, sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        goto fail;
    }
    sqlite3_finalize(st);
    if (exec_retry(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON") != SQLITE_OK) {
        db_fail(s, err, "setting pragmas");
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
    for (int i = 0; i < STMT_CACHE; i++) sqlite3_finalize(s->cache[i].stmt);
    sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

mb_status mb_store_integrity_check(mb_store *s, mb_error *err) {
    sqlite3_stmt *st = prepare(s, "PRAGMA integrity_check", err);
    if (!st) return MB_ERR_DB;
    char report[MB_ERROR_MSG_MAX] = "";
    size_t used = 0;
    int rc, ok = 0, rows = 0;
    while ((rc = step_retry(s, st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (rows++ == 0 && line && strcmp(line, "ok") == 0) ok = 1;
        if (line && used < sizeof report - 2) used += snprintf(report + used, sizeof report - used, "%s; ", line);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(s, err, "integrity check");
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
    sqlite3_stmt *st = cached(s, SQL_BEAT, err);
    if (!st) return MB_ERR_DB;
    double now = mb_store_now();
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int64(st, 2, run);
    sqlite3_bind_int64(st, 3, (int64_t)getpid());
    sqlite3_bind_text(st, 4, s->host, -1, SQLITE_STATIC);
    if (step_retry(s, st) != SQLITE_DONE) return db_fail(s, err, "updating the heartbeat");
    s->beat_run = run;
    s->beat_time = now;
    return MB_OK;
}

/* Inside a logging transaction: refresh the heartbeat when it is due. */
static mb_status maybe_beat(mb_store *s, int64_t run, mb_error *err) {
    if (run == s->beat_run && mb_store_now() - s->beat_time < s->opts.heartbeat_interval_s) return MB_OK;
    return write_beat(s, run, err);
}

mb_status mb_store_heartbeat(mb_store *s, int64_t run, mb_error *err) {
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

mb_status mb_store_reap(mb_store *s, double stale_after_s, mb_reap_visitor on_reaped, void *ctx, size_t *n_reaped,
                        mb_error *err) {
    if (n_reaped) *n_reaped = 0;
    /* First look without the write lock: usually nothing is to be reaped. */
    sqlite3_stmt *st = prepare(s, "SELECT id, host, pid, proc_start, heartbeat FROM runs WHERE status = 'running'", err);
    if (!st) return MB_ERR_DB;
    reap_candidate *cand = NULL;
    size_t n = 0, cap = 0;
    double now = mb_store_now();
    int rc;
    while ((rc = step_retry(s, st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *host = (const char *)sqlite3_column_text(st, 1);
        int has_pid = sqlite3_column_type(st, 2) != SQLITE_NULL;
        int64_t pid = sqlite3_column_int64(st, 2);
        int64_t proc_start = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
        double beat = sqlite3_column_double(st, 4);
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
                sqlite3_finalize(st);
                return mb_fail(err, MB_ERR_NOMEM, "out of memory reaping runs");
            }
            cand = grown;
        }
        cand[n].id = id;
        cand[n].heartbeat = beat;
        snprintf(cand[n].reason, sizeof cand[n].reason, "%s", reason);
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(cand);
        return db_fail(s, err, "listing running runs");
    }
    if (n == 0) return MB_OK;
    mb_status status = begin(s, err);
    size_t done = 0;
    for (size_t i = 0; i < n && status == MB_OK; i++) {
        /* Only if nothing changed since we looked (no heartbeat came in). */
        sqlite3_stmt *up = cached(s,
                                  /* ended when it was last seen alive, not when someone looked */
                                  "UPDATE runs SET status = 'killed', end_time = heartbeat, error = ?1"
                                  " WHERE id = ?2 AND status = 'running' AND heartbeat = ?3",
                                  err);
        if (!up) { status = MB_ERR_DB; break; }
        sqlite3_bind_text(up, 1, cand[i].reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, cand[i].id);
        sqlite3_bind_double(up, 3, cand[i].heartbeat);
        if (step_retry(s, up) != SQLITE_DONE) { status = db_fail(s, err, "marking a run killed"); break; }
        if (sqlite3_changes(s->db) == 0) cand[i].id = -1;
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
    if ((sqlite3_extended_errcode(s->db)) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return mb_fail(err, MB_ERR_RANGE, "%s: no run %lld (cannot %s)", s->path, (long long)run, what);
    return db_fail(s, err, what);
}

mb_status mb_store_start_run(mb_store *s, const mb_run_start *r, int64_t *run_id, mb_error *err) {
    if (!r || !r->experiment || !*r->experiment)
        return mb_fail(err, MB_ERR_ARG, "start_run: experiment name is required");
    char uuid[MB_UUID_LEN + 1];
    if (r->uuid) snprintf(uuid, sizeof uuid, "%s", r->uuid);
    else if (mb_store_new_uuid(uuid, err) != MB_OK) return MB_ERR_IO;
    double now = mb_store_now();
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st = cached(s, "INSERT INTO experiments(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", err);
    if (!st) goto fail;
    sqlite3_bind_text(st, 1, r->experiment, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now);
    if (step_retry(s, st) != SQLITE_DONE) { db_fail(s, err, "recording the experiment"); goto fail; }
    st = cached(s,
                "INSERT INTO runs(experiment_id, name, status, start_time, seed, host, pid, proc_start,"
                "  git_commit, git_dirty, script_path, script_hash, dataset_hash, model_hash, device, heartbeat, uuid)"
                " VALUES ((SELECT id FROM experiments WHERE name = ?1), ?2, 'running', ?3, ?4, ?5, ?6, ?7,"
                "  ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?3, ?15)",
                err);
    if (!st) goto fail;
    sqlite3_bind_text(st, 1, r->experiment, -1, SQLITE_STATIC);
    bind_text_or_null(st, 2, r->name);
    sqlite3_bind_double(st, 3, now);
    if (r->has_seed) sqlite3_bind_int64(st, 4, r->seed);
    sqlite3_bind_text(st, 5, s->host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)getpid());
    if (s->proc_start >= 0) sqlite3_bind_int64(st, 7, s->proc_start);
    bind_text_or_null(st, 8, r->git_commit);
    if (r->git_dirty >= 0) sqlite3_bind_int(st, 9, r->git_dirty ? 1 : 0);
    bind_text_or_null(st, 10, r->script_path);
    bind_text_or_null(st, 11, r->script_hash);
    bind_text_or_null(st, 12, r->dataset_hash);
    bind_text_or_null(st, 13, r->model_hash);
    bind_text_or_null(st, 14, r->device);
    sqlite3_bind_text(st, 15, uuid, -1, SQLITE_TRANSIENT);
    if (step_retry(s, st) != SQLITE_DONE) {
        if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE)
            mb_fail(err, MB_ERR_STATE, "%s: a run with UUID %s is already in the store", s->path, uuid);
        else
            db_fail(s, err, "recording the run");
        goto fail;
    }
    int64_t id = sqlite3_last_insert_rowid(s->db);
    if (commit(s, err) != MB_OK) return MB_ERR_DB;
    s->beat_run = id;
    s->beat_time = now;
    if (run_id) *run_id = id;
    return MB_OK;
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static void bind_value(sqlite3_stmt *st, int i, const mb_value *v) {
    switch (v ? v->type : MB_VALUE_NULL) {
    case MB_VALUE_INT: sqlite3_bind_int64(st, i, v->i); break;
    case MB_VALUE_REAL: bind_real_or_null(st, i, v->r); break;
    case MB_VALUE_TEXT: sqlite3_bind_text(st, i, v->s ? v->s : "", -1, SQLITE_TRANSIENT); break;
    default: sqlite3_bind_null(st, i); break;
    }
}

static void column_value(sqlite3_stmt *st, int i, mb_value *v) {
    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: v->type = MB_VALUE_INT; v->i = sqlite3_column_int64(st, i); break;
    case SQLITE_FLOAT: v->type = MB_VALUE_REAL; v->r = sqlite3_column_double(st, i); break;
    case SQLITE_NULL: v->type = MB_VALUE_NULL; break;
    default: v->type = MB_VALUE_TEXT; v->s = (const char *)sqlite3_column_text(st, i); break;
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

mb_status mb_store_log_param(mb_store *s, int64_t run, const char *key, const mb_value *v, mb_error *err) {
    if (check_key(s, "param", key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st = cached(s, "INSERT INTO params(run_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", err);
    if (!st) goto fail;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    bind_value(st, 3, v);
    if (step_retry(s, st) != SQLITE_DONE) { write_fail(s, run, "log a param", err); goto fail; }
    if (sqlite3_changes(s->db) == 0) {
        /* Already there: the same value is fine, a different one is a mistake
           (a run's configuration must not change under its results). */
        st = cached(s, "SELECT value, value IS ?3 FROM params WHERE run_id = ?1 AND key = ?2", err);
        if (!st) goto fail;
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        bind_value(st, 3, v);
        if (step_retry(s, st) != SQLITE_ROW) { db_fail(s, err, "reading a param"); goto fail; }
        if (!sqlite3_column_int(st, 1)) {
            mb_value old;
            column_value(st, 0, &old);
            char was[200], now[200];
            format_value(&old, was, sizeof was);
            format_value(v, now, sizeof now);
            mb_fail(err, MB_ERR_STATE, "param '%s' of run %lld is already %s; params are written once (cannot change it to %s)",
                    key, (long long)run, was, now);
            sqlite3_reset(st);
            goto fail;
        }
        sqlite3_reset(st);
    }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_set_tag(mb_store *s, int64_t run, const char *key, const char *value, mb_error *err) {
    if (check_key(s, "tag", key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st = cached(s,
                              "INSERT INTO tags(run_id, key, value) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value",
                              err);
    if (!st) goto fail;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, value);
    if (step_retry(s, st) != SQLITE_DONE) { write_fail(s, run, "set a tag", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_log_metrics(mb_store *s, int64_t run, const mb_metric *m, size_t n, mb_error *err) {
    for (size_t i = 0; i < n; i++)
        if (check_key(s, "metric", m[i].key, err) != MB_OK) return MB_ERR_ARG;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    double now = mb_store_now();
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = cached(s,
                                  "INSERT INTO metrics(run_id, key, value, step, epoch, split, time)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  err);
        if (!st) goto fail;
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, m[i].key, -1, SQLITE_STATIC);
        bind_real_or_null(st, 3, m[i].value);
        if (m[i].has_step) sqlite3_bind_int64(st, 4, m[i].step);
        if (m[i].has_epoch) bind_real_or_null(st, 5, m[i].epoch);
        bind_text_or_null(st, 6, m[i].split);
        sqlite3_bind_double(st, 7, m[i].time > 0 ? m[i].time : now);
        if (step_retry(s, st) != SQLITE_DONE) { write_fail(s, run, "log a metric", err); goto fail; }
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

mb_status mb_store_log_confusion(mb_store *s, int64_t run, const mb_confusion *c, mb_error *err) {
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
        sqlite3_stmt *st = cached(s,
                                  "INSERT INTO confusion(run_id, split, epoch, labels, matrix, time)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                  err);
        if (!st) status = MB_ERR_DB;
        else {
            sqlite3_bind_int64(st, 1, run);
            bind_text_or_null(st, 2, c->split);
            if (c->has_epoch) bind_real_or_null(st, 3, c->epoch);
            sqlite3_bind_text(st, 4, labels_text, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, matrix_text, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 6, c->time > 0 ? c->time : mb_store_now());
            if (step_retry(s, st) != SQLITE_DONE) status = write_fail(s, run, "log a confusion matrix", err);
            sqlite3_reset(st); /* drop the references to the texts freed below */
        }
        if (status == MB_OK) status = maybe_beat(s, run, err);
        if (status == MB_OK) status = commit(s, err);
        else rollback(s);
    }
    free(labels_text);
    free(matrix_text);
    return status;
}

mb_status mb_store_log_predictions(mb_store *s, int64_t run, const char *split, const mb_prediction *rows,
                                   size_t n, mb_error *err) {
    if (!split || !*split) return mb_fail(err, MB_ERR_ARG, "log_predictions: split name is empty");
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    mb_status status = MB_OK;
    for (size_t i = 0; i < n && status == MB_OK; i++) {
        const mb_prediction *p = &rows[i];
        char *probs = NULL;
        if (p->probs && p->n_probs > 0) {
            json_t *arr = json_array();
            for (int k = 0; k < p->n_probs; k++) {
                json_t *x = isfinite(p->probs[k]) ? json_real(p->probs[k]) : json_null();
                json_array_append_new(arr, x);
            }
            /* 9 significant digits: exact for float32 probabilities. */
            probs = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(9));
            json_decref(arr);
            if (!probs) { status = mb_fail(err, MB_ERR_NOMEM, "out of memory encoding probabilities"); break; }
        }
        sqlite3_stmt *st = cached(s,
                                  "INSERT OR REPLACE INTO predictions(run_id, split, example, label, predicted, loss, probs)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  err);
        if (!st) status = MB_ERR_DB;
        else {
            sqlite3_bind_int64(st, 1, run);
            sqlite3_bind_text(st, 2, split, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, p->index);
            if (p->has_label) sqlite3_bind_int64(st, 4, p->label);
            sqlite3_bind_int64(st, 5, p->predicted);
            if (p->has_loss) bind_real_or_null(st, 6, p->loss);
            bind_text_or_null(st, 7, probs);
            if (step_retry(s, st) != SQLITE_DONE) status = write_fail(s, run, "log predictions", err);
        }
        free(probs);
    }
    if (status == MB_OK) status = maybe_beat(s, run, err);
    if (status == MB_OK) return commit(s, err);
    rollback(s);
    return status;
}

mb_status mb_store_log_artifact(mb_store *s, int64_t run, const char *kind, const char *path, const char *hash,
                                mb_error *err) {
    if (check_key(s, "artifact kind", kind, err) != MB_OK) return MB_ERR_ARG;
    if (!path || !*path) return mb_fail(err, MB_ERR_ARG, "log_artifact: path is empty");
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st = cached(s, "INSERT INTO artifacts(run_id, kind, path, hash, time) VALUES (?1, ?2, ?3, ?4, ?5)", err);
    if (!st) goto fail;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, path, -1, SQLITE_STATIC);
    bind_text_or_null(st, 4, hash);
    sqlite3_bind_double(st, 5, mb_store_now());
    if (step_retry(s, st) != SQLITE_DONE) { write_fail(s, run, "log an artifact", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* The status of a run, into buf; MB_ERR_RANGE when there is no such run. */
static mb_status run_status(mb_store *s, int64_t run, char *buf, size_t n, mb_error *err) {
    sqlite3_stmt *st = cached(s, "SELECT status FROM runs WHERE id = ?1", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    int rc = step_retry(s, st);
    if (rc == SQLITE_DONE) return mb_fail(err, MB_ERR_RANGE, "%s: no run %lld", s->path, (long long)run);
    if (rc != SQLITE_ROW) return db_fail(s, err, "reading a run's status");
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return MB_OK;
}

/* running/killed -> final status (a run marked killed by mistake can still end properly). */
static mb_status end_run(mb_store *s, int64_t run, const char *final, const char *error_text, int64_t rung,
                         int *changed, mb_error *err) {
    if (changed) *changed = 0;
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st = cached(s,
                              "UPDATE runs SET status = ?2, end_time = ?3, heartbeat = ?3, error = ?4, pruned_rung = ?5"
                              " WHERE id = ?1 AND status IN ('running', 'killed')",
                              err);
    if (!st) goto fail;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, final, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, mb_store_now());
    bind_text_or_null(st, 4, error_text);
    if (rung >= 0) sqlite3_bind_int64(st, 5, rung);
    if (step_retry(s, st) != SQLITE_DONE) { db_fail(s, err, "ending a run"); goto fail; }
    int n = sqlite3_changes(s->db);
    if (n == 0) {
        char status[32];
        if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
        rollback(s);
        if (changed) return MB_OK; /* fail(): ending an ended run is not an error */
        return mb_fail(err, MB_ERR_STATE, "run %lld is already %s", (long long)run, status);
    }
    if (changed) *changed = 1;
    return commit(s, err);
fail:
    rollback(s);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_finish(mb_store *s, int64_t run, mb_error *err) {
    return end_run(s, run, "completed", NULL, -1, NULL, err);
}

mb_status mb_store_prune(mb_store *s, int64_t run, int64_t rung, mb_error *err) {
    if (rung < 0) return mb_fail(err, MB_ERR_ARG, "prune: rung must be >= 0, got %lld", (long long)rung);
    return end_run(s, run, "pruned", NULL, rung, NULL, err);
}

mb_status mb_store_fail(mb_store *s, int64_t run, const char *error_text, int *changed, mb_error *err) {
    int dummy;
    return end_run(s, run, "failed", error_text ? error_text : "failed", -1, changed ? changed : &dummy, err);
}

static mb_status add_event(mb_store *s, int64_t run, const char *kind, double now, const char *message,
                           mb_error *err) {
    sqlite3_stmt *st = cached(s,
                              "INSERT INTO run_events(run_id, kind, time, host, pid, message)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now);
    sqlite3_bind_text(st, 4, s->host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)getpid());
    bind_text_or_null(st, 6, message);
    if (step_retry(s, st) != SQLITE_DONE) return db_fail(s, err, "recording a run event");
    return MB_OK;
}

/* The transition of interrupt and resume: UPDATE (bound ?1 run, ?2 now, then
   extra), an event, and a clear message when the run is in the wrong state. */
static mb_status pause_or_resume(mb_store *s, int64_t run, int resume, const char *message, mb_error *err) {
    double now = mb_store_now();
    if (begin(s, err) != MB_OK) return MB_ERR_DB;
    sqlite3_stmt *st;
    if (resume) {
        st = cached(s,
                    "UPDATE runs SET status = 'running', end_time = NULL, error = NULL, heartbeat = ?2,"
                    "  host = ?3, pid = ?4, proc_start = ?5"
                    " WHERE id = ?1 AND status IN ('interrupted', 'killed')",
                    err);
        if (!st) goto fail;
        sqlite3_bind_text(st, 3, s->host, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (int64_t)getpid());
        if (s->proc_start >= 0) sqlite3_bind_int64(st, 5, s->proc_start);
    } else {
        st = cached(s,
                    "UPDATE runs SET status = 'interrupted', error = ?3, heartbeat = ?2"
                    " WHERE id = ?1 AND status IN ('running', 'killed')",
                    err);
        if (!st) goto fail;
        bind_text_or_null(st, 3, message);
    }
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_double(st, 2, now);
    if (step_retry(s, st) != SQLITE_DONE) { db_fail(s, err, resume ? "resuming a run" : "interrupting a run"); goto fail; }
    if (sqlite3_changes(s->db) == 0) {
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

mb_status mb_store_interrupt(mb_store *s, int64_t run, const char *message, mb_error *err) {
    return pause_or_resume(s, run, 0, message, err);
}

mb_status mb_store_resume(mb_store *s, int64_t run, mb_error *err) {
    return pause_or_resume(s, run, 1, NULL, err);
}

/* ---- reading ------------------------------------------------------------- */

#define RUN_COLUMNS                                                                                         \
    "SELECT r.id, e.name, r.name, r.status, r.error, r.start_time, r.end_time, r.heartbeat, r.seed,"       \
    " r.host, r.pid, r.git_commit, r.git_dirty, r.script_path, r.script_hash, r.dataset_hash,"             \
    " r.model_hash, r.device, r.uuid, r.pruned_rung FROM runs r JOIN experiments e ON e.id = r.experiment_id "

static const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

static void read_run(sqlite3_stmt *st, mb_run_record *r) {
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->experiment = col_text(st, 1);
    r->name = col_text(st, 2);
    r->status = col_text(st, 3);
    r->error = col_text(st, 4);
    r->start_time = sqlite3_column_double(st, 5);
    r->end_time = sqlite3_column_double(st, 6);
    r->heartbeat = sqlite3_column_double(st, 7);
    r->has_seed = sqlite3_column_type(st, 8) != SQLITE_NULL;
    r->seed = sqlite3_column_int64(st, 8);
    r->host = col_text(st, 9);
    r->pid = sqlite3_column_int64(st, 10);
    r->git_commit = col_text(st, 11);
    r->git_dirty = sqlite3_column_type(st, 12) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 12);
    r->script_path = col_text(st, 13);
    r->script_hash = col_text(st, 14);
    r->dataset_hash = col_text(st, 15);
    r->model_hash = col_text(st, 16);
    r->device = col_text(st, 17);
    r->uuid = col_text(st, 18);
    r->has_pruned_rung = sqlite3_column_type(st, 19) != SQLITE_NULL;
    r->pruned_rung = sqlite3_column_int64(st, 19);
}

/* Step through st, handing each row to visit; finalizes st. */
typedef int (*row_fn)(sqlite3_stmt *st, void *fn, void *ctx);
static mb_status each_row(mb_store *s, sqlite3_stmt *st, row_fn row, void *fn, void *ctx, size_t *count,
                          mb_error *err) {
    int rc;
    size_t n = 0;
    while ((rc = step_retry(s, st)) == SQLITE_ROW) {
        n++;
        if (row(st, fn, ctx)) { rc = SQLITE_DONE; break; }
    }
    sqlite3_finalize(st);
    if (count) *count = n;
    if (rc != SQLITE_DONE) return db_fail(s, err, "reading");
    return MB_OK;
}

static int run_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_run_record r;
    read_run(st, &r);
    return ((mb_run_visitor)fn)(&r, ctx);
}

mb_status mb_store_runs(mb_store *s, const mb_run_filter *f, mb_run_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, RUN_COLUMNS "WHERE (?1 IS NULL OR e.name = ?1) AND (?2 IS NULL OR r.status = ?2) ORDER BY r.id", err);
    if (!st) return MB_ERR_DB;
    bind_text_or_null(st, 1, f ? f->experiment : NULL);
    bind_text_or_null(st, 2, f ? f->status : NULL);
    return each_row(s, st, run_row, (void *)fn, ctx, NULL, err);
}

mb_status mb_store_get_run(mb_store *s, int64_t run, mb_run_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, RUN_COLUMNS "WHERE r.id = ?1", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    size_t n = 0;
    if (each_row(s, st, run_row, (void *)fn, ctx, &n, err) != MB_OK) return MB_ERR_DB;
    if (n == 0) return mb_fail(err, MB_ERR_RANGE, "no run %lld in %s", (long long)run, s->path);
    return MB_OK;
}

mb_status mb_store_find_uuid(mb_store *s, const char *uuid, int64_t *run, mb_error *err) {
    if (!uuid || !*uuid) return mb_fail(err, MB_ERR_ARG, "find_uuid: UUID is empty");
    sqlite3_stmt *st = prepare(s, "SELECT id FROM runs WHERE uuid = lower(?1)", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    int rc = step_retry(s, st);
    if (rc == SQLITE_ROW && run) *run = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return MB_OK;
    if (rc != SQLITE_DONE) return db_fail(s, err, "finding a run by UUID");
    return mb_fail(err, MB_ERR_RANGE, "no run with UUID %s in %s", uuid, s->path);
}

static int event_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_run_event e = {0};
    e.kind = col_text(st, 0);
    e.time = sqlite3_column_double(st, 1);
    e.host = col_text(st, 2);
    e.pid = sqlite3_column_int64(st, 3);
    e.message = col_text(st, 4);
    return ((mb_run_event_visitor)fn)(&e, ctx);
}

mb_status mb_store_run_events(mb_store *s, int64_t run, mb_run_event_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, "SELECT kind, time, host, pid, message FROM run_events WHERE run_id = ?1 ORDER BY id", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    return each_row(s, st, event_row, (void *)fn, ctx, NULL, err);
}

static int param_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_value v;
    column_value(st, 1, &v);
    return ((mb_param_visitor)fn)(col_text(st, 0), &v, ctx);
}

mb_status mb_store_params(mb_store *s, int64_t run, mb_param_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, "SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    return each_row(s, st, param_row, (void *)fn, ctx, NULL, err);
}

static int tag_row(sqlite3_stmt *st, void *fn, void *ctx) {
    return ((mb_tag_visitor)fn)(col_text(st, 0), col_text(st, 1), ctx);
}

mb_status mb_store_tags(mb_store *s, int64_t run, mb_tag_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, "SELECT key, value FROM tags WHERE run_id = ?1 ORDER BY key", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    return each_row(s, st, tag_row, (void *)fn, ctx, NULL, err);
}

static int metric_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_metric m = {0};
    m.key = col_text(st, 0);
    m.value = sqlite3_column_type(st, 1) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 1);
    m.has_step = sqlite3_column_type(st, 2) != SQLITE_NULL;
    m.step = sqlite3_column_int64(st, 2);
    m.has_epoch = sqlite3_column_type(st, 3) != SQLITE_NULL;
    m.epoch = sqlite3_column_double(st, 3);
    m.split = col_text(st, 4);
    m.time = sqlite3_column_double(st, 5);
    return ((mb_metric_visitor)fn)(&m, ctx);
}

mb_status mb_store_metrics(mb_store *s, int64_t run, const char *key, mb_metric_visitor fn, void *ctx,
                           mb_error *err) {
    sqlite3_stmt *st = prepare(s,
                               "SELECT key, value, step, epoch, split, time FROM metrics"
                               " WHERE run_id = ?1 AND (?2 IS NULL OR key = ?2) ORDER BY id",
                               err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    bind_text_or_null(st, 2, key);
    return each_row(s, st, metric_row, (void *)fn, ctx, NULL, err);
}

mb_status mb_store_final_metrics(mb_store *s, int64_t run, mb_metric_visitor fn, void *ctx, mb_error *err) {
    /* SQLite takes the bare columns from the row holding MAX(id): the last point. */
    sqlite3_stmt *st = prepare(s,
                               "SELECT key, value, step, epoch, split, time, MAX(id) FROM metrics"
                               " WHERE run_id = ?1 GROUP BY key ORDER BY key",
                               err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    return each_row(s, st, metric_row, (void *)fn, ctx, NULL, err);
}

mb_status mb_store_best(mb_store *s, const char *experiment, const char *metric, int maximize, const char *status,
                        int64_t *run, double *value, mb_error *err) {
    if (!experiment || !metric) return mb_fail(err, MB_ERR_ARG, "best: experiment and metric are required");
    if (!status) status = "completed";
    sqlite3_stmt *st = prepare(s,
                               "SELECT f.run_id, f.value FROM"
                               " (SELECT m.run_id, m.value, MAX(m.id) FROM metrics m"
                               "   JOIN runs r ON r.id = m.run_id JOIN experiments e ON e.id = r.experiment_id"
                               "   WHERE e.name = ?1 AND r.status = ?3 AND m.key = ?2 GROUP BY m.run_id) f"
                               " WHERE f.value IS NOT NULL"
                               " ORDER BY CASE WHEN ?4 THEN -f.value ELSE f.value END, f.run_id LIMIT 1",
                               err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_text(st, 1, experiment, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, metric, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, maximize ? 1 : 0);
    int rc = step_retry(s, st);
    if (rc == SQLITE_ROW) {
        if (run) *run = sqlite3_column_int64(st, 0);
        if (value) *value = sqlite3_column_double(st, 1);
        sqlite3_finalize(st);
        return MB_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(s, err, "finding the best run");
    return mb_fail(err, MB_ERR_RANGE, "no %s run of experiment '%s' has metric '%s' in %s", status, experiment,
                   metric, s->path);
}

static int confusion_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_confusion c = {0};
    c.split = col_text(st, 0);
    c.has_epoch = sqlite3_column_type(st, 1) != SQLITE_NULL;
    c.epoch = sqlite3_column_double(st, 1);
    c.time = sqlite3_column_double(st, 4);
    json_t *labels = json_loads(col_text(st, 2), 0, NULL);
    json_t *matrix = json_loads(col_text(st, 3), 0, NULL);
    double *cells = NULL;
    const char **names = NULL;
    int stop = 0;
    if (json_is_array(labels) && json_is_array(matrix) && json_array_size(matrix) > 0 &&
        json_is_array(json_array_get(matrix, 0))) {
        c.n_rows = (int)json_array_size(matrix);
        c.n_cols = (int)json_array_size(json_array_get(matrix, 0));
        c.n_labels = (int)json_array_size(labels);
        cells = calloc((size_t)c.n_rows * c.n_cols + 1, sizeof *cells);
        names = calloc((size_t)c.n_labels + 1, sizeof *names);
        if (cells && names) {
            for (int i = 0; i < c.n_rows; i++) {
                json_t *row = json_array_get(matrix, i);
                for (int j = 0; j < c.n_cols; j++)
                    cells[(size_t)i * c.n_cols + j] = json_number_value(json_array_get(row, j));
            }
            for (int i = 0; i < c.n_labels; i++) names[i] = json_string_value(json_array_get(labels, i));
            c.matrix = cells;
            c.labels = names;
            stop = ((mb_confusion_visitor)fn)(&c, ctx);
        }
    }
    free(cells);
    free(names);
    json_decref(labels);
    json_decref(matrix);
    return stop;
}

mb_status mb_store_confusions(mb_store *s, int64_t run, const char *split, mb_confusion_visitor fn, void *ctx,
                              mb_error *err) {
    sqlite3_stmt *st = prepare(s,
                               "SELECT split, epoch, labels, matrix, time FROM confusion"
                               " WHERE run_id = ?1 AND (?2 IS NULL OR split = ?2) ORDER BY id",
                               err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    bind_text_or_null(st, 2, split);
    return each_row(s, st, confusion_row, (void *)fn, ctx, NULL, err);
}

static int prediction_row(sqlite3_stmt *st, void *fn, void *ctx) {
    mb_prediction p = {0};
    p.index = sqlite3_column_int64(st, 1);
    p.has_label = sqlite3_column_type(st, 2) != SQLITE_NULL;
    p.label = sqlite3_column_int64(st, 2);
    p.predicted = sqlite3_column_int64(st, 3);
    p.has_loss = sqlite3_column_type(st, 4) != SQLITE_NULL;
    p.loss = sqlite3_column_double(st, 4);
    double *probs = NULL;
    json_t *arr = sqlite3_column_type(st, 5) == SQLITE_NULL ? NULL : json_loads(col_text(st, 5), 0, NULL);
    if (json_is_array(arr) && json_array_size(arr) > 0) {
        probs = malloc(json_array_size(arr) * sizeof *probs);
        if (probs) {
            p.n_probs = (int)json_array_size(arr);
            for (int k = 0; k < p.n_probs; k++) {
                json_t *x = json_array_get(arr, k);
                probs[k] = json_is_number(x) ? json_number_value(x) : NAN;
            }
            p.probs = probs;
        }
    }
    int stop = ((mb_prediction_visitor)fn)(col_text(st, 0), &p, ctx);
    free(probs);
    json_decref(arr);
    return stop;
}

mb_status mb_store_predictions(mb_store *s, int64_t run, const char *split, int by_loss, int64_t limit,
                               mb_prediction_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s,
                               by_loss ? "SELECT split, example, label, predicted, loss, probs FROM predictions"
                                         " WHERE run_id = ?1 AND (?2 IS NULL OR split = ?2)"
                                         " ORDER BY loss IS NULL, loss DESC, split, example LIMIT ?3"
                                       : "SELECT split, example, label, predicted, loss, probs FROM predictions"
                                         " WHERE run_id = ?1 AND (?2 IS NULL OR split = ?2)"
                                         " ORDER BY split, example LIMIT ?3",
                               err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    bind_text_or_null(st, 2, split);
    sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
    return each_row(s, st, prediction_row, (void *)fn, ctx, NULL, err);
}

static int artifact_row(sqlite3_stmt *st, void *fn, void *ctx) {
    return ((mb_artifact_visitor)fn)(col_text(st, 0), col_text(st, 1), col_text(st, 2), sqlite3_column_double(st, 3),
                                     ctx);
}

mb_status mb_store_artifacts(mb_store *s, int64_t run, mb_artifact_visitor fn, void *ctx, mb_error *err) {
    sqlite3_stmt *st = prepare(s, "SELECT kind, path, hash, time FROM artifacts WHERE run_id = ?1 ORDER BY id", err);
    if (!st) return MB_ERR_DB;
    sqlite3_bind_int64(st, 1, run);
    return each_row(s, st, artifact_row, (void *)fn, ctx, NULL, err);
}
