/* store_schema.c: the results store's schema (store.h), as migrations for
 * SQLite and PostgreSQL, and bringing an opened store up to this build's
 * version. Part of the store (store_impl.h; store.c opens).
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

#include <sqlite3.h>
#include <stdio.h>

/* ---- schema and migrations ------------------------------------------------ */

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

static mb_status migrate_locked(mb_store *s, mb_error *err);

mb_status store_migrate(mb_store *s, mb_error *err) {
    if (s->pg) return migrate_locked(s, err);
    int version = 0;
    if (db_query_int(s, "PRAGMA user_version", &version) != SQLITE_OK)
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
    if (db_exec(s, "SELECT pg_advisory_xact_lock(1836019566)") != SQLITE_OK) return db_fail(s, err, "locking the schema");
    int has_table = 0, has_runs = 0;
    if (db_query_int(s, "SELECT count(*) FROM pg_tables WHERE tablename = 'moonbert_schema' AND schemaname = current_schema()",
                  &has_table) != SQLITE_OK ||
        db_query_int(s, "SELECT count(*) FROM pg_tables WHERE tablename = 'runs' AND schemaname = current_schema()",
                  &has_runs) != SQLITE_OK)
        return db_fail(s, err, "reading the schema version");
    if (!has_table) {
        if (has_runs)
            return mb_fail(err, MB_ERR_DB, "%s: the database has a 'runs' table that is not a moonbert results store",
                           s->path);
        return MB_OK;
    }
    if (db_query_int(s, "SELECT version FROM moonbert_schema", version) != SQLITE_OK)
        return db_fail(s, err, "reading the schema version");
    return MB_OK;
}

static mb_status migrate_locked(mb_store *s, mb_error *err) {
    int version = 0;
    if (db_begin(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    /* Another process may have migrated while we waited for the lock. */
    if (s->pg) {
        if (pg_version(s, &version, err) != MB_OK) { db_rollback(s); return err ? err->code : MB_ERR_DB; }
        if (version == MB_STORE_SCHEMA_VERSION) { db_rollback(s); return MB_OK; }
        if (version > MB_STORE_SCHEMA_VERSION) {
            db_rollback(s);
            return mb_fail(err, MB_ERR_DB,
                           "%s: written by a newer moonbert (schema version %d, this build knows up to %d)", s->path,
                           version, MB_STORE_SCHEMA_VERSION);
        }
    } else if (db_query_int(s, "PRAGMA user_version", &version) != SQLITE_OK) {
        db_rollback(s);
        return db_fail(s, err, "reading the schema version");
    }
    if (version == 0 && !s->pg) {
        int tables = 0, app = 0;
        db_query_int(s, "SELECT count(*) FROM sqlite_master", &tables);
        db_query_int(s, "PRAGMA application_id", &app);
        if (tables > 0 || (app != 0 && app != MB_STORE_APPLICATION_ID)) {
            db_rollback(s);
            return mb_fail(err, MB_ERR_DB, "%s: a SQLite database that is not a moonbert results store", s->path);
        }
    }
    if (version == 0 && s->pg && db_exec(s, "CREATE TABLE moonbert_schema (version INTEGER NOT NULL);"
                                                "INSERT INTO moonbert_schema VALUES (0)") != SQLITE_OK) {
        mb_status st = db_fail(s, err, "creating the schema");
        db_rollback(s);
        return st;
    }
    for (int v = version; v < MB_STORE_SCHEMA_VERSION; v++) {
        if (s->pg) {
            if (pg_exec(s->pg, pg_migrations[v]) != 0) {
                mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d: %s", s->path, v, v + 1,
                        pg_errmsg(s->pg));
                db_rollback(s);
                return MB_ERR_DB;
            }
            continue;
        }
        char *msg = NULL;
        if (sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
            mb_fail(err, MB_ERR_DB, "%s: migrating the schema from version %d to %d: %s", s->path, v, v + 1,
                    msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            db_rollback(s);
            return MB_ERR_DB;
        }
    }
    char sql[80];
    if (s->pg) {
        snprintf(sql, sizeof sql, "UPDATE moonbert_schema SET version = %d", MB_STORE_SCHEMA_VERSION);
    } else {
        int broken = 0;
        if (db_query_int(s, "SELECT count(*) FROM pragma_foreign_key_check", &broken) != SQLITE_OK || broken != 0) {
            db_rollback(s);
            return mb_fail(err, MB_ERR_DB,
                           "%s: migrating the schema from version %d to %d left %d broken references", s->path,
                           version, MB_STORE_SCHEMA_VERSION, broken);
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", MB_STORE_SCHEMA_VERSION);
    }
    if (db_exec(s, sql) != SQLITE_OK) {
        mb_status st = db_fail(s, err, "writing the schema version");
        db_rollback(s);
        return st;
    }
    return db_commit(s, err);
}

