/* test_store.c: the results store (runtime/store.c) and SHA-256 (runtime/sha256.c).
 *
 * References: FIPS 180-2 test vectors and the system's sha256sum for hashing;
 * a second, raw SQLite connection to look at what the store wrote; a schema-v1
 * file written here by hand (as an old moonbert would have) for migrations;
 * fork()ed writer processes for concurrency; processes that exit for reaping.
 */
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
/* CHECK(cond) without a message expands to an empty format string. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"
#include "../../runtime/sha256.h"
#include "../../runtime/store.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void remove_db(const char *path) {
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static mb_store *fresh(const char *name) {
    const char *path = tmp_path(name);
    remove_db(path);
    mb_error err = {0};
    mb_store *s = mb_store_open(path, NULL, &err);
    CHECK(s != NULL, "%s", err.msg);
    return s;
}

/* One integer from a query on a separate raw connection. */
static long long raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    long long v = -999;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static mb_run_start start_of(const char *experiment) {
    mb_run_start r = {0};
    r.experiment = experiment;
    r.git_dirty = -1;
    return r;
}

/* ---- sha256 ------------------------------------------------------------------ */

TEST(sha256_matches_fips_vectors) {
    char hex[65];
    mb_sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "%s", hex);
    mb_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "%s", hex);
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mb_sha256_hex(m448, strlen(m448), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0, "%s", hex);
    /* One million 'a', fed in uneven pieces to exercise the partial-block path. */
    mb_sha256 h;
    mb_sha256_init(&h);
    char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, piece = 1;
    while (left) {
        size_t n = piece < left ? piece : left;
        mb_sha256_update(&h, a, n);
        left -= n;
        piece = piece % 987 + 13; /* 13..999: stays inside a[] */
    }
    uint8_t d[32];
    mb_sha256_final(&h, d);
    char got[65];
    for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
    CHECK(strcmp(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "%s", got);
}

TEST(sha256_file_matches_sha256sum) {
    const char *path = tmp_path("hash-me.bin");
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 200000; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    char hex[65];
    mb_error err = {0};
    CHECK(mb_sha256_file(path, hex, &err) == MB_OK, "%s", err.msg);
    char cmd[600], ref[65] = "";
    snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%64s", ref) != 1) {
        if (p) pclose(p);
        SKIP("sha256sum is not available");
    }
    pclose(p);
    CHECK(strcmp(hex, ref) == 0, "ours %s, sha256sum %s", hex, ref);
    CHECK(mb_sha256_file(tmp_path("missing.bin"), hex, &err) == MB_ERR_IO);
    CHECK(strstr(err.msg, "missing.bin") != NULL, "%s", err.msg);
}

/* ---- schema ------------------------------------------------------------------- */

TEST(new_store_has_current_schema_in_wal_mode) {
    mb_store *s = fresh("schema.db");
    if (!s) return;
    const char *path = tmp_path("schema.db");
    CHECK(mb_store_user_version(s) == MB_STORE_SCHEMA_VERSION);
    CHECK(raw_int(path, "PRAGMA user_version") == MB_STORE_SCHEMA_VERSION);
    CHECK(raw_int(path, "PRAGMA application_id") == MB_STORE_APPLICATION_ID);
    CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                        "('experiments','runs','params','metrics','tags','artifacts','confusion','predictions')") == 8);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    sqlite3_step(st);
    CHECK(strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    mb_error err = {0};
    CHECK(mb_store_integrity_check(s, &err) == MB_OK, "%s", err.msg);
    mb_store_close(s);
    /* Reopening does nothing to a current file. */
    s = mb_store_open(path, NULL, &err);
    CHECK(s && mb_store_user_version(s) == MB_STORE_SCHEMA_VERSION, "%s", err.msg);
    mb_store_close(s);
}

/* The schema as moonbert with schema version 1 wrote it (kept here verbatim:
   migrations must keep working on files like this). */
static const char *V1_FILE =
    "PRAGMA application_id = 1836019566;"
    "CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);"
    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(id), name TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('running','completed','failed','killed')),"
    "  start_time REAL NOT NULL, end_time REAL, seed INTEGER, host TEXT, git_commit TEXT, git_dirty INTEGER,"
    "  script_path TEXT, script_hash TEXT, dataset_hash TEXT, model_hash TEXT, device TEXT, error TEXT);"
    "CREATE INDEX runs_by_experiment ON runs(experiment_id, status);"
    "CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value, PRIMARY KEY (run_id, key));"
    "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value REAL, step INTEGER, epoch REAL, split TEXT, time REAL NOT NULL);"
    "CREATE INDEX metrics_by_run_key ON metrics(run_id, key, id);"
    "CREATE TABLE tags (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));"
    "CREATE TABLE artifacts (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL, path TEXT NOT NULL, hash TEXT, time REAL NOT NULL);"
    "INSERT INTO experiments VALUES (1, 'old', 1000.0);"
    "INSERT INTO runs (id, experiment_id, name, status, start_time, end_time, seed, host)"
    "  VALUES (1, 1, 'done', 'completed', 1000.0, 1100.0, 7, 'oldhost'),"
    "         (2, 1, 'stuck', 'running', 2000.0, NULL, 8, 'oldhost');"
    "INSERT INTO params VALUES (1, 'lr', 0.001);"
    "INSERT INTO metrics (run_id, key, value, epoch, time) VALUES (1, 'val/accuracy', 0.5, 1, 1050.0),"
    "  (1, 'val/accuracy', 0.75, 2, 1090.0);"
    "PRAGMA user_version = 1;";

static int count_metric(const mb_metric *m, void *ctx) {
    (*(int *)ctx)++;
    return 0;
}

static int remember_status(const mb_run_record *r, void *ctx) {
    snprintf(ctx, 64, "%s", r->status);
    return 0;
}

TEST(migrates_a_version_1_file_keeping_its_data) {
    const char *path = tmp_path("v1.db");
    remove_db(path);
    CHECK(raw_exec(path, V1_FILE) == SQLITE_OK);
    CHECK(raw_int(path, "PRAGMA user_version") == 1);
    /* A third run that was deleted: its id must not be handed out again after
       the runs table is rebuilt (migrations 3 -> 4 and 4 -> 5). */
    CHECK(raw_exec(path, "INSERT INTO runs (id, experiment_id, status, start_time) VALUES (3, 1, 'failed', 3000.0);"
                         "DELETE FROM runs WHERE id = 3;") == SQLITE_OK);
    mb_error err = {0};
    mb_store *s = mb_store_open(path, NULL, &err);
    CHECK(s != NULL, "%s", err.msg);
    if (!s) return;
    CHECK(mb_store_user_version(s) == MB_STORE_SCHEMA_VERSION);
    /* v3: every old run got a distinct version-4 UUID. */
    CHECK(raw_int(path, "SELECT count(DISTINCT uuid) FROM runs WHERE length(uuid) = 36 AND substr(uuid, 15, 1) = '4'"
                        " AND substr(uuid, 20, 1) IN ('8','9','a','b')") == 2);
    /* v4, v5: the rebuilt table kept the rows, the children and the constraints. */
    CHECK(raw_int(path, "SELECT count(*) FROM params") == 1);
    CHECK(raw_int(path, "SELECT count(*) FROM pragma_index_list('runs') WHERE name IN"
                        " ('runs_by_experiment','runs_by_status','runs_by_uuid')") == 3);
    CHECK(raw_exec(path, "UPDATE runs SET status = 'sleeping' WHERE id = 1") == SQLITE_CONSTRAINT);
    CHECK(raw_exec(path, "INSERT INTO metrics (run_id, key, time) VALUES (77, 'x', 1)") != SQLITE_OK ||
          raw_int(path, "SELECT count(*) FROM metrics WHERE run_id = 77") == 1); /* FKs off on a raw connection */
    {
        int64_t fresh_id = 0;
        mb_run_start r3 = start_of("old");
        CHECK(mb_store_start_run(s, &r3, &fresh_id, &err) == MB_OK, "%s", err.msg);
        CHECK(fresh_id == 4, "new run id %lld after the rebuild (3 was used and deleted)", (long long)fresh_id);
        mb_store_fail(s, fresh_id, "test", NULL, &err);
    }
    CHECK(raw_int(path, "SELECT count(*) FROM pragma_table_info('runs') WHERE name IN ('pid','proc_start','heartbeat')") == 3);
    /* Old rows survive, old running rows got their start time as heartbeat. */
    CHECK(raw_int(path, "SELECT heartbeat FROM runs WHERE id = 2") == 2000);
    CHECK(raw_int(path, "SELECT heartbeat FROM runs WHERE id = 1") == 1100);
    int n = 0;
    CHECK(mb_store_metrics(s, 1, "val/accuracy", count_metric, &n, &err) == MB_OK);
    CHECK(n == 2, "%d points", n);
    int64_t best = 0;
    double value = 0;
    CHECK(mb_store_best(s, "old", "val/accuracy", 1, NULL, &best, &value, &err) == MB_OK, "%s", err.msg);
    CHECK(best == 1 && value == 0.75);
    /* The new tables work on the old run. */
    double m[4] = {1, 2, 3, 4};
    mb_confusion c = {.split = "validation", .n_rows = 2, .n_cols = 2, .matrix = m};
    CHECK(mb_store_log_confusion(s, 1, &c, &err) == MB_OK, "%s", err.msg);
    /* The old "running" run has no pid: it is reaped by its age. */
    size_t reaped = 0;
    CHECK(mb_store_reap(s, 60, NULL, NULL, &reaped, &err) == MB_OK, "%s", err.msg);
    CHECK(reaped == 1, "%zu reaped", reaped);
    char status[64] = "";
    mb_store_get_run(s, 2, remember_status, status, &err);
    CHECK(strcmp(status, "killed") == 0, "%s", status);
    mb_store_close(s);
    CHECK(raw_int(path, "PRAGMA user_version") == MB_STORE_SCHEMA_VERSION);
}

TEST(refuses_newer_and_foreign_files) {
    mb_error err = {0};
    const char *path = tmp_path("newer.db");
    remove_db(path);
    mb_store *s = mb_store_open(path, NULL, &err);
    mb_store_close(s);
    raw_exec(path, "PRAGMA user_version = 99");
    CHECK(mb_store_open(path, NULL, &err) == NULL);
    CHECK(strstr(err.msg, "newer moonbert") && strstr(err.msg, "99"), "%s", err.msg);

    path = tmp_path("foreign.db");
    remove_db(path);
    raw_exec(path, "CREATE TABLE songs (title TEXT)");
    CHECK(mb_store_open(path, NULL, &err) == NULL);
    CHECK(strstr(err.msg, "not a moonbert results store"), "%s", err.msg);
    CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master") == 1); /* untouched */

    path = tmp_path("text.db");
    FILE *f = fopen(path, "w");
    fputs("this is a text file, not a database, but it is long enough to have a header ........\n", f);
    fclose(f);
    CHECK(mb_store_open(path, NULL, &err) == NULL);
    CHECK(strstr(err.msg, "not a") != NULL, "%s", err.msg);

    mb_store_options o;
    mb_store_default_options(&o);
    o.create = 0;
    CHECK(mb_store_open(tmp_path("absent.db"), &o, &err) == NULL);
    CHECK(strstr(err.msg, "no results store") != NULL, "%s", err.msg);
    CHECK(access(tmp_path("absent.db"), F_OK) != 0);
}

/* ---- writing ----------------------------------------------------------------- */

typedef struct param_seen {
    int n;
    mb_value v;
    char text[128];
} param_seen;

static int find_param(const char *key, const mb_value *v, void *ctx) {
    param_seen *p = ctx;
    p->n++;
    p->v = *v;
    if (v->type == MB_VALUE_TEXT) snprintf(p->text, sizeof p->text, "%s", v->s);
    return 0;
}

TEST(params_are_written_once) {
    mb_store *s = fresh("params.db");
    if (!s) return;
    mb_error err = {0};
    int64_t run;
    mb_run_start r = start_of("p");
    CHECK(mb_store_start_run(s, &r, &run, &err) == MB_OK, "%s", err.msg);
    mb_value lr = {.type = MB_VALUE_REAL, .r = 2e-5};
    CHECK(mb_store_log_param(s, run, "lr", &lr, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_log_param(s, run, "lr", &lr, &err) == MB_OK, "same value again: %s", err.msg);
    mb_value other = {.type = MB_VALUE_REAL, .r = 1e-3};
    CHECK(mb_store_log_param(s, run, "lr", &other, &err) == MB_ERR_STATE);
    CHECK(strstr(err.msg, "'lr'") && strstr(err.msg, "2e-05") && strstr(err.msg, "0.001"), "%s", err.msg);
    mb_value text = {.type = MB_VALUE_TEXT, .s = "2e-05"};
    CHECK(mb_store_log_param(s, run, "lr", &text, &err) == MB_ERR_STATE, "text is not the number");
    param_seen seen = {0};
    CHECK(mb_store_params(s, run, find_param, &seen, &err) == MB_OK);
    CHECK(seen.n == 1 && seen.v.type == MB_VALUE_REAL && seen.v.r == 2e-5);
    mb_value epochs = {.type = MB_VALUE_INT, .i = 3};
    CHECK(mb_store_log_param(s, run, "epochs", &epochs, &err) == MB_OK);
    CHECK(mb_store_log_param(s, 4242, "epochs", &epochs, &err) == MB_ERR_RANGE);
    CHECK(strstr(err.msg, "no run 4242") != NULL, "%s", err.msg);
    CHECK(mb_store_log_param(s, run, "", &epochs, &err) == MB_ERR_ARG);
    mb_store_close(s);
}

typedef struct series {
    int n;
    double value[16];
    int64_t step[16];
    double epoch[16];
    char split[16][16];
    char key[16][32];
} series;

static int collect_metric(const mb_metric *m, void *ctx) {
    series *se = ctx;
    if (se->n < 16) {
        se->value[se->n] = m->value;
        se->step[se->n] = m->has_step ? m->step : -1;
        se->epoch[se->n] = m->has_epoch ? m->epoch : -1;
        snprintf(se->split[se->n], 16, "%s", m->split ? m->split : "");
        snprintf(se->key[se->n], 32, "%s", m->key);
    }
    se->n++;
    return 0;
}

TEST(metric_series_are_kept_and_best_uses_final_values) {
    mb_store *s = fresh("series.db");
    if (!s) return;
    mb_error err = {0};
    int64_t a, b, c;
    mb_run_start r = start_of("sweep");
    mb_store_start_run(s, &r, &a, &err);
    mb_store_start_run(s, &r, &b, &err);
    mb_store_start_run(s, &r, &c, &err);
    /* a: rises to 0.9 then falls to 0.8 (final 0.8); b: final 0.85; c: failed with 0.99. */
    double va[] = {0.5, 0.9, 0.8}, vb[] = {0.6, 0.85}, vc[] = {0.99};
    for (int i = 0; i < 3; i++) {
        mb_metric m = {.key = "val/accuracy", .value = va[i], .has_step = 1, .step = 100 * (i + 1),
                       .has_epoch = 1, .epoch = i + 1, .split = "validation"};
        CHECK(mb_store_log_metric(s, a, &m, &err) == MB_OK, "%s", err.msg);
        mb_metric loss = {.key = "train/loss", .value = 1.0 / (i + 1)};
        mb_store_log_metric(s, a, &loss, &err);
    }
    for (int i = 0; i < 2; i++) {
        mb_metric m = {.key = "val/accuracy", .value = vb[i], .has_epoch = 1, .epoch = i + 1};
        mb_store_log_metric(s, b, &m, &err);
    }
    mb_metric mc = {.key = "val/accuracy", .value = vc[0]};
    mb_store_log_metric(s, c, &mc, &err);
    mb_store_finish(s, a, &err);
    mb_store_finish(s, b, &err);
    mb_store_fail(s, c, "diverged", NULL, &err);

    series se = {0};
    CHECK(mb_store_metrics(s, a, "val/accuracy", collect_metric, &se, &err) == MB_OK);
    CHECK(se.n == 3, "%d points", se.n);
    for (int i = 0; i < 3 && i < se.n; i++) {
        CHECK(se.value[i] == va[i] && se.step[i] == 100 * (i + 1) && se.epoch[i] == i + 1);
        CHECK(strcmp(se.split[i], "validation") == 0);
    }
    memset(&se, 0, sizeof se);
    CHECK(mb_store_final_metrics(s, a, collect_metric, &se, &err) == MB_OK);
    CHECK(se.n == 2 && strcmp(se.key[0], "train/loss") == 0 && strcmp(se.key[1], "val/accuracy") == 0);
    CHECK_NEAR(se.value[0], 1.0 / 3, 1e-15);
    CHECK(se.value[1] == 0.8);

    int64_t best;
    double value;
    CHECK(mb_store_best(s, "sweep", "val/accuracy", 1, NULL, &best, &value, &err) == MB_OK, "%s", err.msg);
    CHECK(best == b && value == 0.85, "best %lld %g", (long long)best, value);
    CHECK(mb_store_best(s, "sweep", "val/accuracy", 0, NULL, &best, &value, &err) == MB_OK);
    CHECK(best == a && value == 0.8);
    CHECK(mb_store_best(s, "sweep", "val/accuracy", 1, "failed", &best, &value, &err) == MB_OK);
    CHECK(best == c && value == 0.99);
    CHECK(mb_store_best(s, "sweep", "val/f1", 1, NULL, &best, &value, &err) == MB_ERR_RANGE);
    CHECK(strstr(err.msg, "val/f1") != NULL, "%s", err.msg);

    /* NaN goes in as NULL and comes back as NaN; best skips it. */
    int64_t d;
    mb_store_start_run(s, &r, &d, &err);
    mb_metric nan_point = {.key = "val/accuracy", .value = NAN};
    CHECK(mb_store_log_metric(s, d, &nan_point, &err) == MB_OK);
    mb_store_finish(s, d, &err);
    memset(&se, 0, sizeof se);
    mb_store_metrics(s, d, NULL, collect_metric, &se, &err);
    CHECK(se.n == 1 && isnan(se.value[0]));
    CHECK(mb_store_best(s, "sweep", "val/accuracy", 1, NULL, &best, &value, &err) == MB_OK && best == b);
    mb_store_close(s);
}

/* ---- nasty strings ----------------------------------------------------------- */

static const char *NASTY[] = {
    "'; DROP TABLE runs; --",
    "\"); DELETE FROM metrics; --",
    "Robert'); DROP TABLE params;--",
    "%s%s%n%x",
    "emoji 😀 and ünïcödé",
    "back\\slash\nnew line\ttab",
    "?1 ?2 :name @x $y",
};
#define N_NASTY (int)(sizeof NASTY / sizeof NASTY[0])

typedef struct run_seen {
    char experiment[128], name[128], device[128];
} run_seen;

static int copy_run(const mb_run_record *r, void *ctx) {
    run_seen *rs = ctx;
    snprintf(rs->experiment, sizeof rs->experiment, "%s", r->experiment);
    snprintf(rs->name, sizeof rs->name, "%s", r->name ? r->name : "");
    snprintf(rs->device, sizeof rs->device, "%s", r->device ? r->device : "");
    return 0;
}

typedef struct kv_find {
    const char *key;
    char value[128];
    int found;
} kv_find;

static int find_kv_param(const char *key, const mb_value *v, void *ctx) {
    kv_find *f = ctx;
    if (strcmp(key, f->key) == 0 && v->type == MB_VALUE_TEXT) {
        f->found = 1;
        snprintf(f->value, sizeof f->value, "%s", v->s);
    }
    return 0;
}

static int find_kv_tag(const char *key, const char *value, void *ctx) {
    kv_find *f = ctx;
    if (strcmp(key, f->key) == 0) {
        f->found = 1;
        snprintf(f->value, sizeof f->value, "%s", value);
    }
    return 0;
}

static int find_artifact(const char *kind, const char *path, const char *hash, double time, void *ctx) {
    kv_find *f = ctx;
    if (strcmp(kind, f->key) == 0) {
        f->found = 1;
        snprintf(f->value, sizeof f->value, "%s", path);
    }
    return 0;
}

TEST(nasty_strings_are_stored_verbatim) {
    mb_store *s = fresh("nasty.db");
    if (!s) return;
    const char *path = tmp_path("nasty.db");
    mb_error err = {0};
    for (int i = 0; i < N_NASTY; i++) {
        const char *x = NASTY[i];
        mb_run_start r = start_of(x);
        r.name = x;
        r.device = x;
        int64_t run;
        CHECK(mb_store_start_run(s, &r, &run, &err) == MB_OK, "%s", err.msg);
        mb_value v = {.type = MB_VALUE_TEXT, .s = x};
        CHECK(mb_store_log_param(s, run, x, &v, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_store_set_tag(s, run, x, x, &err) == MB_OK, "%s", err.msg);
        mb_metric m = {.key = x, .value = i, .split = x};
        CHECK(mb_store_log_metric(s, run, &m, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_store_log_artifact(s, run, x, x, NULL, &err) == MB_OK, "%s", err.msg);
        mb_store_fail(s, run, x, NULL, &err);

        run_seen rs = {0};
        CHECK(mb_store_get_run(s, run, copy_run, &rs, &err) == MB_OK);
        CHECK(strcmp(rs.experiment, x) == 0 && strcmp(rs.name, x) == 0 && strcmp(rs.device, x) == 0);
        kv_find f = {.key = x};
        mb_store_params(s, run, find_kv_param, &f, &err);
        CHECK(f.found && strcmp(f.value, x) == 0, "param %d", i);
        kv_find t = {.key = x};
        mb_store_tags(s, run, find_kv_tag, &t, &err);
        CHECK(t.found && strcmp(t.value, x) == 0, "tag %d", i);
        series se = {0};
        mb_store_metrics(s, run, x, collect_metric, &se, &err);
        CHECK(se.n == 1 && strcmp(se.key[0], x) == 0 && se.value[0] == i, "metric %d", i);
        kv_find a = {.key = x};
        mb_store_artifacts(s, run, find_artifact, &a, &err);
        CHECK(a.found && strcmp(a.value, x) == 0, "artifact %d", i);
    }
    CHECK(raw_int(path, "SELECT count(*) FROM runs") == N_NASTY);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics") == N_NASTY);
    CHECK(raw_int(path, "SELECT count(*) FROM params") == N_NASTY);
    CHECK(raw_int(path, "SELECT count(*) FROM experiments") == N_NASTY);
    CHECK(mb_store_integrity_check(s, &err) == MB_OK, "%s", err.msg);
    mb_store_close(s);
}

/* ---- run lifecycle ------------------------------------------------------------ */

TEST(finish_and_fail_transitions) {
    mb_store *s = fresh("life.db");
    if (!s) return;
    mb_error err = {0};
    int64_t a, b;
    mb_run_start r = start_of("life");
    mb_store_start_run(s, &r, &a, &err);
    mb_store_start_run(s, &r, &b, &err);
    CHECK(mb_store_finish(s, a, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_finish(s, a, &err) == MB_ERR_STATE);
    CHECK(strstr(err.msg, "already completed") != NULL, "%s", err.msg);
    int changed = -1;
    CHECK(mb_store_fail(s, a, "late", &changed, &err) == MB_OK && changed == 0);
    CHECK(mb_store_fail(s, b, "out of memory in step 7", &changed, &err) == MB_OK && changed == 1);
    CHECK(mb_store_finish(s, 999, &err) == MB_ERR_RANGE, "%s", err.msg);
    char status[64];
    mb_store_get_run(s, a, remember_status, status, &err);
    CHECK(strcmp(status, "completed") == 0);
    mb_store_get_run(s, b, remember_status, status, &err);
    CHECK(strcmp(status, "failed") == 0);
    CHECK(raw_int(tmp_path("life.db"), "SELECT count(*) FROM runs WHERE error = 'out of memory in step 7'") == 1);
    mb_store_close(s);
}

/* A pid that surely belongs to no process: a child that has exited and been waited for. */
static pid_t dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

TEST(reap_marks_dead_and_silent_runs_killed) {
    mb_store *s = fresh("reap.db");
    if (!s) return;
    const char *path = tmp_path("reap.db");
    mb_error err = {0};
    int64_t dead, other_stale, other_fresh, mine_stale, reused;
    mb_run_start r = start_of("reap");
    mb_store_start_run(s, &r, &dead, &err);
    mb_store_start_run(s, &r, &other_stale, &err);
    mb_store_start_run(s, &r, &other_fresh, &err);
    mb_store_start_run(s, &r, &mine_stale, &err);
    mb_store_start_run(s, &r, &reused, &err);
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE runs SET pid = %d WHERE id = %lld;"
             "UPDATE runs SET host = 'elsewhere', heartbeat = heartbeat - 600 WHERE id = %lld;"
             "UPDATE runs SET host = 'elsewhere' WHERE id = %lld;"
             "UPDATE runs SET heartbeat = heartbeat - 600 WHERE id = %lld;"
             "UPDATE runs SET proc_start = proc_start + 1 WHERE id = %lld;",
             (int)dead_pid(), (long long)dead, (long long)other_stale, (long long)other_fresh,
             (long long)mine_stale, (long long)reused);
    CHECK(raw_exec(path, sql) == SQLITE_OK);
    size_t n = 0;
    CHECK(mb_store_reap(s, 60, NULL, NULL, &n, &err) == MB_OK, "%s", err.msg);
    char status[64];
    mb_store_get_run(s, dead, remember_status, status, &err);
    CHECK(strcmp(status, "killed") == 0, "dead pid: %s", status);
    mb_store_get_run(s, other_stale, remember_status, status, &err);
    CHECK(strcmp(status, "killed") == 0, "stale other host: %s", status);
    mb_store_get_run(s, other_fresh, remember_status, status, &err);
    CHECK(strcmp(status, "running") == 0, "fresh other host: %s", status);
    mb_store_get_run(s, mine_stale, remember_status, status, &err);
    CHECK(strcmp(status, "running") == 0, "live pid on this host stays running: %s", status);
    if (raw_int(path, "SELECT proc_start FROM runs WHERE id = 1") >= 0) {
        mb_store_get_run(s, reused, remember_status, status, &err);
        CHECK(strcmp(status, "killed") == 0, "pid reused by another process: %s", status);
        CHECK(n == 3, "%zu reaped", n);
    }
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE status = 'killed' AND error LIKE '%is gone%'") >= 1);
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE status = 'killed' AND error LIKE 'no heartbeat for%'") == 1);
    /* A killed run ended when it was last seen alive, not when reaping noticed. */
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE status = 'killed' AND end_time IS NOT heartbeat") == 0);
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE status = 'killed' AND end_time < strftime('%s','now') - 500") == 1);
    /* Reaping again finds nothing new. */
    CHECK(mb_store_reap(s, 60, NULL, NULL, &n, &err) == MB_OK && n == 0);
    mb_store_close(s);
}

TEST(heartbeat_revives_a_run_reaped_by_mistake) {
    mb_store *s = fresh("revive.db");
    if (!s) return;
    const char *path = tmp_path("revive.db");
    mb_error err = {0};
    int64_t run;
    mb_run_start r = start_of("revive");
    mb_store_start_run(s, &r, &run, &err);
    /* Another host's reaper saw no heartbeat for a while and marked it killed. */
    raw_exec(path, "UPDATE runs SET status = 'killed', error = 'no heartbeat', end_time = 1 WHERE id = 1");
    CHECK(mb_store_heartbeat(s, run, &err) == MB_OK, "%s", err.msg);
    char status[64];
    mb_store_get_run(s, run, remember_status, status, &err);
    CHECK(strcmp(status, "running") == 0, "%s", status);
    CHECK(raw_int(path, "SELECT error IS NULL AND end_time IS NULL FROM runs WHERE id = 1") == 1);
    CHECK(mb_store_finish(s, run, &err) == MB_OK, "%s", err.msg);
    mb_store_close(s);
}

typedef struct life_seen {
    char status[32], uuid[64];
    int has_rung;
    int64_t rung, pid;
    double end_time, heartbeat;
} life_seen;

static int see_life(const mb_run_record *r, void *ctx) {
    life_seen *rs = ctx;
    snprintf(rs->status, sizeof rs->status, "%s", r->status);
    snprintf(rs->uuid, sizeof rs->uuid, "%s", r->uuid ? r->uuid : "");
    rs->has_rung = r->has_pruned_rung;
    rs->rung = r->pruned_rung;
    rs->pid = r->pid;
    rs->end_time = r->end_time;
    rs->heartbeat = r->heartbeat;
    return 0;
}

TEST(runs_have_uuids) {
    mb_store *s = fresh("uuid.db");
    if (!s) return;
    mb_error err = {0};
    int64_t a, b, found = 0;
    mb_run_start r = start_of("uuid");
    CHECK(mb_store_start_run(s, &r, &a, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_start_run(s, &r, &b, &err) == MB_OK, "%s", err.msg);
    life_seen ra = {0}, rb = {0};
    mb_store_get_run(s, a, see_life, &ra, &err);
    mb_store_get_run(s, b, see_life, &rb, &err);
    CHECK(strlen(ra.uuid) == 36 && ra.uuid[14] == '4' && strchr("89ab", ra.uuid[19]), "%s", ra.uuid);
    CHECK(strcmp(ra.uuid, rb.uuid) != 0, "%s twice", ra.uuid);
    CHECK(mb_store_find_uuid(s, rb.uuid, &found, &err) == MB_OK && found == b, "%s", err.msg);
    CHECK(mb_store_find_uuid(s, "00000000-0000-4000-8000-000000000000", &found, &err) == MB_ERR_RANGE);
    CHECK(strstr(err.msg, "no run with UUID") != NULL, "%s", err.msg);
    /* A given UUID is kept (a pushed run); the same one twice is refused. */
    r.uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    int64_t c;
    CHECK(mb_store_start_run(s, &r, &c, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_find_uuid(s, r.uuid, &found, &err) == MB_OK && found == c);
    CHECK(mb_store_start_run(s, &r, &c, &err) == MB_ERR_STATE, "%s", err.msg);
    CHECK(strstr(err.msg, "already in the store") != NULL, "%s", err.msg);
    mb_store_close(s);
}

TEST(pruned_runs_keep_their_rung) {
    mb_store *s = fresh("prune.db");
    if (!s) return;
    mb_error err = {0};
    int64_t a, b;
    mb_run_start r = start_of("asha");
    mb_store_start_run(s, &r, &a, &err);
    mb_store_start_run(s, &r, &b, &err);
    CHECK(mb_store_prune(s, a, 2, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_prune(s, b, -1, &err) == MB_ERR_ARG);
    life_seen ra = {0}, rb = {0};
    mb_store_get_run(s, a, see_life, &ra, &err);
    mb_store_get_run(s, b, see_life, &rb, &err);
    CHECK(strcmp(ra.status, "pruned") == 0 && ra.has_rung && ra.rung == 2, "%s rung %lld", ra.status, (long long)ra.rung);
    CHECK(ra.end_time > 0);
    CHECK(strcmp(rb.status, "running") == 0 && !rb.has_rung);
    CHECK(mb_store_finish(s, a, &err) == MB_ERR_STATE);
    CHECK(strstr(err.msg, "already pruned") != NULL, "%s", err.msg);
    CHECK(mb_store_prune(s, a, 3, &err) == MB_ERR_STATE);
    CHECK(raw_int(tmp_path("prune.db"), "SELECT pruned_rung FROM runs WHERE id = 1") == 2);
    mb_store_finish(s, b, &err);
    mb_store_close(s);
}

typedef struct events_seen {
    int n;
    char kinds[8][16];
    char message[64];
    double times[8];
} events_seen;

static int see_event(const mb_run_event *e, void *ctx) {
    events_seen *es = ctx;
    if (es->n < 8) {
        snprintf(es->kinds[es->n], 16, "%s", e->kind);
        es->times[es->n] = e->time;
    }
    if (e->message) snprintf(es->message, sizeof es->message, "%s", e->message);
    es->n++;
    return 0;
}

TEST(interrupted_runs_are_neither_alive_nor_killed_and_resume) {
    mb_store *s = fresh("interrupt.db");
    if (!s) return;
    const char *path = tmp_path("interrupt.db");
    mb_error err = {0};
    int64_t run, done;
    mb_run_start r = start_of("preempt");
    CHECK(mb_store_start_run(s, &r, &run, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_start_run(s, &r, &done, &err) == MB_OK, "%s", err.msg);
    mb_store_finish(s, done, &err);
    CHECK(mb_store_interrupt(s, run, "SIGTERM from SLURM (preempted)", &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_interrupt(s, run, "again", &err) == MB_ERR_STATE);
    CHECK(mb_store_interrupt(s, done, NULL, &err) == MB_ERR_STATE);
    CHECK(strstr(err.msg, "already completed") != NULL, "%s", err.msg);
    /* Its process is gone and its heartbeat is old: reaping still leaves it alone. */
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE runs SET pid = %d, heartbeat = heartbeat - 3600 WHERE id = %lld",
             (int)dead_pid(), (long long)run);
    CHECK(raw_exec(path, sql) == SQLITE_OK);
    size_t n = 9;
    CHECK(mb_store_reap(s, 60, NULL, NULL, &n, &err) == MB_OK && n == 0, "%zu reaped: %s", n, err.msg);
    life_seen rs = {0};
    mb_store_get_run(s, run, see_life, &rs, &err);
    CHECK(strcmp(rs.status, "interrupted") == 0, "%s", rs.status);
    /* Finishing needs a resume first; resuming a completed run is refused. */
    CHECK(mb_store_finish(s, run, &err) == MB_ERR_STATE);
    CHECK(mb_store_resume(s, done, &err) == MB_ERR_STATE);
    CHECK(strstr(err.msg, "only an interrupted or killed run") != NULL, "%s", err.msg);
    double before = mb_store_now();
    CHECK(mb_store_resume(s, run, &err) == MB_OK, "%s", err.msg);
    mb_store_get_run(s, run, see_life, &rs, &err);
    CHECK(strcmp(rs.status, "running") == 0 && rs.pid == getpid() && rs.heartbeat >= before - 1 && rs.end_time == 0,
          "%s pid %lld", rs.status, (long long)rs.pid);
    CHECK(mb_store_reap(s, 60, NULL, NULL, &n, &err) == MB_OK && n == 0, "resumed run reaped");
    mb_metric m = {.key = "loss", .value = 1};
    CHECK(mb_store_log_metric(s, run, &m, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_store_finish(s, run, &err) == MB_OK, "%s", err.msg);
    events_seen es = {0};
    CHECK(mb_store_run_events(s, run, see_event, &es, &err) == MB_OK, "%s", err.msg);
    CHECK(es.n == 2 && strcmp(es.kinds[0], "interrupted") == 0 && strcmp(es.kinds[1], "resumed") == 0, "%d events", es.n);
    CHECK(es.times[1] >= es.times[0] && strcmp(es.message, "SIGTERM from SLURM (preempted)") == 0, "%s", es.message);
    mb_store_close(s);
}

/* ---- confusion and predictions ----------------------------------------------- */

typedef struct conf_seen {
    int n, rows, cols, labels;
    double cells[9];
    char label[3][16];
    double epoch;
} conf_seen;

static int copy_confusion(const mb_confusion *c, void *ctx) {
    conf_seen *cs = ctx;
    cs->n++;
    cs->rows = c->n_rows;
    cs->cols = c->n_cols;
    cs->labels = c->n_labels;
    cs->epoch = c->has_epoch ? c->epoch : -1;
    for (int i = 0; i < c->n_rows * c->n_cols && i < 9; i++) cs->cells[i] = c->matrix[i];
    for (int i = 0; i < c->n_labels && i < 3; i++) snprintf(cs->label[i], 16, "%s", c->labels[i]);
    return 0;
}

TEST(confusion_matrices_round_trip_with_labels) {
    mb_store *s = fresh("conf.db");
    if (!s) return;
    mb_error err = {0};
    int64_t run;
    mb_run_start r = start_of("conf");
    mb_store_start_run(s, &r, &run, &err);
    double m[9] = {50, 2, 3, 4, 60, 0, 1, 0.5, 70};
    const char *labels[3] = {"sadness", "joy", "l\"o'v,e"};
    mb_confusion c = {.split = "validation", .has_epoch = 1, .epoch = 2, .n_rows = 3, .n_cols = 3, .matrix = m,
                      .labels = labels, .n_labels = 3};
    CHECK(mb_store_log_confusion(s, run, &c, &err) == MB_OK, "%s", err.msg);
    conf_seen cs = {0};
    CHECK(mb_store_confusions(s, run, "validation", copy_confusion, &cs, &err) == MB_OK);
    CHECK(cs.n == 1 && cs.rows == 3 && cs.cols == 3 && cs.labels == 3 && cs.epoch == 2);
    for (int i = 0; i < 9; i++) CHECK(cs.cells[i] == m[i], "cell %d: %g", i, cs.cells[i]);
    CHECK(strcmp(cs.label[2], "l\"o'v,e") == 0, "%s", cs.label[2]);
    CHECK(raw_int(tmp_path("conf.db"), "SELECT json_extract(matrix, '$[1][1]') FROM confusion") == 60);
    c.n_labels = 2;
    CHECK(mb_store_log_confusion(s, run, &c, &err) == MB_ERR_SHAPE, "%s", err.msg);
    c.n_labels = 3;
    m[4] = NAN;
    CHECK(mb_store_log_confusion(s, run, &c, &err) == MB_ERR_NUMERIC, "%s", err.msg);
    mb_store_close(s);
}

typedef struct pred_seen {
    int n;
    double last_loss;
    int ordered;
    int probs_ok;
} pred_seen;

static int check_prediction(const char *split, const mb_prediction *p, void *ctx) {
    pred_seen *ps = ctx;
    if (ps->n > 0 && p->loss > ps->last_loss) ps->ordered = 0;
    ps->last_loss = p->loss;
    /* Row i was written with probs {i/N, 1 - i/N} as float32 values. */
    float want = (float)((double)p->index / 10000.0);
    if (p->n_probs != 2 || (float)p->probs[0] != want || (float)p->probs[1] != 1.0f - want) ps->probs_ok = 0;
    ps->n++;
    return 0;
}

TEST(bulk_predictions_are_fast_and_exact) {
    mb_store *s = fresh("preds.db");
    if (!s) return;
    mb_error err = {0};
    int64_t run;
    mb_run_start r = start_of("preds");
    mb_store_start_run(s, &r, &run, &err);
    enum { N_MAX = 10000, BATCH = 2000 };
    /* Under valgrind (make valgrind sets VALGRIND=1) fewer rows and no speed bound. */
    const char *vg = getenv("VALGRIND");
    int under_valgrind = vg && strcmp(vg, "1") == 0;
    int N = under_valgrind ? 2000 : N_MAX;
    static mb_prediction rows[N_MAX];
    static double probs[N_MAX][2];
    for (int i = 0; i < N; i++) {
        float p = (float)(i / 10000.0);
        probs[i][0] = p;
        probs[i][1] = 1.0f - p;
        rows[i] = (mb_prediction){.index = i, .has_label = 1, .label = i % 6, .predicted = (i * 7) % 6,
                                  .has_loss = 1, .loss = (double)((i * 7919) % 10007), .probs = probs[i],
                                  .n_probs = 2};
    }
    double t0 = mb_store_now();
    for (int b = 0; b < N; b += BATCH)
        CHECK(mb_store_log_predictions(s, run, "test", rows + b, BATCH, &err) == MB_OK, "%s", err.msg);
    double dt = mb_store_now() - t0;
    fprintf(stderr, "predictions: %d rows in %.3f s (%.0f rows/s)\n", N, dt, N / dt);
    if (!under_valgrind) CHECK(dt < 5.0, "%.2f s for %d rows", dt, N);
    pred_seen ps = {.ordered = 1, .probs_ok = 1};
    CHECK(mb_store_predictions(s, run, "test", 1, 0, check_prediction, &ps, &err) == MB_OK);
    CHECK(ps.n == N && ps.ordered && ps.probs_ok, "n=%d ordered=%d probs=%d", ps.n, ps.ordered, ps.probs_ok);
    pred_seen top = {.ordered = 1, .probs_ok = 1};
    mb_store_predictions(s, run, "test", 1, 20, check_prediction, &top, &err);
    CHECK(top.n == 20 && top.ordered);
    /* Writing a split again replaces its rows. */
    CHECK(mb_store_log_predictions(s, run, "test", rows, 10, &err) == MB_OK);
    CHECK(raw_int(tmp_path("preds.db"), "SELECT count(*) FROM predictions") == N);
    mb_store_close(s);
}

/* ---- several processes ----------------------------------------------------------- */

TEST(four_processes_write_4000_metrics_without_loss) {
    const char *path = tmp_path("conc.db");
    remove_db(path);
    enum { PROCS = 4, POINTS = 1000 };
    pid_t kids[PROCS];
    for (int k = 0; k < PROCS; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            /* Each child opens its own connection (never share one across fork). */
            mb_error err = {0};
            mb_store *s = mb_store_open(path, NULL, &err);
            if (!s) { fprintf(stderr, "child open: %s\n", err.msg); _exit(2); }
            int64_t run;
            mb_run_start r = start_of("concurrency");
            if (mb_store_start_run(s, &r, &run, &err) != MB_OK) { fprintf(stderr, "%s\n", err.msg); _exit(3); }
            for (int i = 0; i < POINTS; i++) {
                mb_metric m = {.key = "train/loss", .value = i, .has_step = 1, .step = i};
                if (mb_store_log_metric(s, run, &m, &err) != MB_OK) { fprintf(stderr, "%s\n", err.msg); _exit(4); }
            }
            if (mb_store_finish(s, run, &err) != MB_OK) _exit(5);
            mb_store_close(s);
            _exit(0);
        }
    }
    for (int k = 0; k < PROCS; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", k, st);
    }
    CHECK(raw_int(path, "SELECT count(*) FROM metrics") == PROCS * POINTS);
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE status = 'completed'") == PROCS);
    CHECK(raw_int(path, "SELECT count(DISTINCT run_id || '/' || step) FROM metrics") == PROCS * POINTS);
    CHECK(raw_int(path, "PRAGMA user_version") == MB_STORE_SCHEMA_VERSION);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moonbert-test-store-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(sha256_matches_fips_vectors);
    RUN(sha256_file_matches_sha256sum);
    RUN(new_store_has_current_schema_in_wal_mode);
    RUN(migrates_a_version_1_file_keeping_its_data);
    RUN(refuses_newer_and_foreign_files);
    RUN(params_are_written_once);
    RUN(metric_series_are_kept_and_best_uses_final_values);
    RUN(nasty_strings_are_stored_verbatim);
    RUN(finish_and_fail_transitions);
    RUN(reap_marks_dead_and_silent_runs_killed);
    RUN(heartbeat_revives_a_run_reaped_by_mistake);
    RUN(runs_have_uuids);
    RUN(pruned_runs_keep_their_rung);
    RUN(interrupted_runs_are_neither_alive_nor_killed_and_resume);
    RUN(confusion_matrices_round_trip_with_labels);
    RUN(bulk_predictions_are_fast_and_exact);
    RUN(four_processes_write_4000_metrics_without_loss);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_end();
}
