/* store_write.c: logging into a run of the results store (store.h): params
 * (written once), tags, metric series, confusion matrices, predictions and
 * artifacts. Each call is one transaction that also refreshes the run's
 * heartbeat when it is due. Part of the store (store_impl.h).
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing a run ---------------------------------------------------------- */

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

/* A param value at i; PostgreSQL also gets its type at i + 1 (see pg_migrations). */
void bind_value(db_stmt *st, int i, const mb_value *v) {
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
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = db_cached(s, DIALECT(s, "INSERT INTO params(run_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
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
        st = db_cached(s, DIALECT(s, "SELECT value, NULL, value IS ?3 FROM params WHERE run_id = ?1 AND key = ?2",
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
    return db_commit(s, err);
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static mb_status set_tag_once(mb_store *s, int64_t run, const char *key, const char *value, mb_error *err) {
    if (check_key(s, "tag", key, err) != MB_OK) return MB_ERR_ARG;
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = db_cached(s,
                              "INSERT INTO tags(run_id, key, value) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value",
                              err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, key);
    db_bind_text(st, 3, value);
    if (db_step(s, st) != DB_DONE) { write_fail(s, run, "set a tag", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return db_commit(s, err);
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
}

static mb_status log_metrics_once(mb_store *s, int64_t run, const mb_metric *m, size_t n, mb_error *err) {
    for (size_t i = 0; i < n; i++)
        if (check_key(s, "metric", m[i].key, err) != MB_OK) return MB_ERR_ARG;
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    double now = mb_store_now();
    for (size_t i = 0; i < n; i++) {
        db_stmt *st = db_cached(s,
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
    return db_commit(s, err);
fail:
    db_rollback(s);
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
    if (status == MB_OK && (status = db_begin(s, err)) == MB_OK) {
        db_stmt *st = db_cached(s,
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
        if (status == MB_OK) status = db_commit(s, err);
        else db_rollback(s);
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
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    mb_status status = MB_OK;
    size_t i = 0;
    while (s->pg && status == MB_OK && n - i >= PG_PREDICTION_ROWS &&
           !has_repeated_example(rows + i, PG_PREDICTION_ROWS)) {
        db_stmt *st = db_cached(s, pg_predictions_batch_sql(), err);
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
        db_stmt *st = db_cached(s,
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
    if (status == MB_OK) return db_commit(s, err);
    db_rollback(s);
    return status;
}

static mb_status log_artifact_once(mb_store *s, int64_t run, const char *kind, const char *path, const char *hash,
                                mb_error *err) {
    if (check_key(s, "artifact kind", kind, err) != MB_OK) return MB_ERR_ARG;
    if (!path || !*path) return mb_fail(err, MB_ERR_ARG, "log_artifact: path is empty");
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = db_cached(s, "INSERT INTO artifacts(run_id, kind, path, hash, time) VALUES (?1, ?2, ?3, ?4, ?5)", err);
    if (!st) goto fail;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, kind);
    db_bind_text(st, 3, path);
    db_bind_text(st, 4, hash);
    db_bind_real(st, 5, mb_store_now());
    if (db_step(s, st) != DB_DONE) { write_fail(s, run, "log an artifact", err); goto fail; }
    if (maybe_beat(s, run, err) != MB_OK) goto fail;
    return db_commit(s, err);
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
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
