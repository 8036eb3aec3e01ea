/* store_query.c: reading the results store (store.h): runs and their events,
 * params, tags, metric series, the best run, confusion matrices, predictions and
 * artifacts. Each read prepares its own statement so that a visitor may call back
 * into the store; each public call retries after a lost connection like a write.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_impl.h"

/* ---- reading ------------------------------------------------------------- */

#define RUN_COLUMNS                                                                                         \
    "SELECT r.id, e.name, r.name, r.status, r.error, r.start_time, r.end_time, r.heartbeat, r.seed,"       \
    " r.host, r.pid, r.git_commit, r.git_dirty, r.script_path, r.script_hash, r.dataset_hash,"             \
    " r.model_hash, r.device, r.uuid, r.pruned_rung FROM runs r JOIN experiments e ON e.id = r.experiment_id "

static const char *col_text(db_stmt *st, int i) { return db_text(st, i); }

static void read_run(db_stmt *st, mb_run_record *r) {
    memset(r, 0, sizeof *r);
    r->id = db_int(st, 0);
    r->experiment = col_text(st, 1);
    r->name = col_text(st, 2);
    r->status = col_text(st, 3);
    r->error = col_text(st, 4);
    r->start_time = db_real(st, 5);
    r->end_time = db_real(st, 6);
    r->heartbeat = db_real(st, 7);
    r->has_seed = !db_null(st, 8);
    r->seed = db_int(st, 8);
    r->host = col_text(st, 9);
    r->pid = db_int(st, 10);
    r->git_commit = col_text(st, 11);
    r->git_dirty = db_null(st, 12) ? -1 : (int)db_int(st, 12);
    r->script_path = col_text(st, 13);
    r->script_hash = col_text(st, 14);
    r->dataset_hash = col_text(st, 15);
    r->model_hash = col_text(st, 16);
    r->device = col_text(st, 17);
    r->uuid = col_text(st, 18);
    r->has_pruned_rung = !db_null(st, 19);
    r->pruned_rung = db_int(st, 19);
}

/* Step through st, handing each row to visit; finalizes st. */
typedef int (*row_fn)(db_stmt *st, void *fn, void *ctx);
static mb_status each_row(mb_store *s, db_stmt *st, row_fn row, void *fn, void *ctx, size_t *count,
                          mb_error *err) {
    int rc;
    size_t n = 0;
    while ((rc = db_step(s, st)) == DB_ROW) {
        n++;
        if (row(st, fn, ctx)) { rc = DB_DONE; break; }
    }
    db_finalize(st);
    if (count) *count = n;
    if (rc != DB_DONE) return db_fail(s, err, "reading");
    return MB_OK;
}

/* each_row over the rows of one run: st (NULL when preparing it failed) takes
   ?1 = run, and ?2 = filter when there is one (NULL: all rows). */
static mb_status each_run_row(mb_store *s, db_stmt *st, int64_t run, const char *filter, row_fn row, void *fn,
                              void *ctx, mb_error *err) {
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    if (filter) db_bind_text(st, 2, filter);
    return each_row(s, st, row, fn, ctx, NULL, err);
}

static int run_row(db_stmt *st, void *fn, void *ctx) {
    mb_run_record r;
    read_run(st, &r);
    return ((mb_run_visitor)fn)(&r, ctx);
}

static mb_status runs_once(mb_store *s, const mb_run_filter *f, mb_run_visitor fn, void *ctx, mb_error *err) {
    db_stmt *st = prepare(s, RUN_COLUMNS "WHERE (CAST(?1 AS TEXT) IS NULL OR e.name = ?1) AND (CAST(?2 AS TEXT) IS NULL OR r.status = ?2) ORDER BY r.id", err);
    if (!st) return MB_ERR_DB;
    db_bind_text(st, 1, f ? f->experiment : NULL);
    db_bind_text(st, 2, f ? f->status : NULL);
    return each_row(s, st, run_row, (void *)fn, ctx, NULL, err);
}

static mb_status get_run_once(mb_store *s, int64_t run, mb_run_visitor fn, void *ctx, mb_error *err) {
    db_stmt *st = prepare(s, RUN_COLUMNS "WHERE r.id = ?1", err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    size_t n = 0;
    if (each_row(s, st, run_row, (void *)fn, ctx, &n, err) != MB_OK) return MB_ERR_DB;
    if (n == 0) return mb_fail(err, MB_ERR_RANGE, "no run %lld in %s", (long long)run, s->path);
    return MB_OK;
}

mb_status find_uuid_once(mb_store *s, const char *uuid, int64_t *run, mb_error *err) {
    if (!uuid || !*uuid) return mb_fail(err, MB_ERR_ARG, "find_uuid: UUID is empty");
    db_stmt *st = prepare(s, "SELECT id FROM runs WHERE uuid = lower(?1)", err);
    if (!st) return MB_ERR_DB;
    db_bind_text(st, 1, uuid);
    int rc = db_step(s, st);
    if (rc == DB_ROW && run) *run = db_int(st, 0);
    db_finalize(st);
    if (rc == DB_ROW) return MB_OK;
    if (rc != DB_DONE) return db_fail(s, err, "finding a run by UUID");
    return mb_fail(err, MB_ERR_RANGE, "no run with UUID %s in %s", uuid, s->path);
}

static int event_row(db_stmt *st, void *fn, void *ctx) {
    mb_run_event e = {0};
    e.kind = col_text(st, 0);
    e.time = db_real(st, 1);
    e.host = col_text(st, 2);
    e.pid = db_int(st, 3);
    e.message = col_text(st, 4);
    return ((mb_run_event_visitor)fn)(&e, ctx);
}

static mb_status run_events_once(mb_store *s, int64_t run, mb_run_event_visitor fn, void *ctx, mb_error *err) {
    return each_run_row(s, prepare(s, "SELECT kind, time, host, pid, message FROM run_events WHERE run_id = ?1 ORDER BY id", err),
                        run, NULL, event_row, (void *)fn, ctx, err);
}

static int param_row(db_stmt *st, void *fn, void *ctx) {
    mb_value v;
    column_value(st, 1, &v);
    return ((mb_param_visitor)fn)(col_text(st, 0), &v, ctx);
}

static mb_status params_once(mb_store *s, int64_t run, mb_param_visitor fn, void *ctx, mb_error *err) {
    /* Keys in byte order on both: COLLATE BINARY (store_db.h). PostgreSQL also reads
       each value's type (column_value). */
    return each_run_row(s, prepare(s, DIALECT(s, "SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key COLLATE BINARY",
                                              "SELECT key, value, vtype FROM params WHERE run_id = ?1 ORDER BY key COLLATE BINARY"),
                                   err),
                        run, NULL, param_row, (void *)fn, ctx, err);
}

static int tag_row(db_stmt *st, void *fn, void *ctx) {
    return ((mb_tag_visitor)fn)(col_text(st, 0), col_text(st, 1), ctx);
}

static mb_status tags_once(mb_store *s, int64_t run, mb_tag_visitor fn, void *ctx, mb_error *err) {
    return each_run_row(s, prepare(s, "SELECT key, value FROM tags WHERE run_id = ?1 ORDER BY key COLLATE BINARY", err), run,
                        NULL, tag_row, (void *)fn, ctx, err);
}

static int metric_row(db_stmt *st, void *fn, void *ctx) {
    mb_metric m = {0};
    m.key = col_text(st, 0);
    m.value = db_null(st, 1) ? NAN : db_real(st, 1);
    m.has_step = !db_null(st, 2);
    m.step = db_int(st, 2);
    m.has_epoch = !db_null(st, 3);
    m.epoch = db_real(st, 3);
    m.split = col_text(st, 4);
    m.time = db_real(st, 5);
    return ((mb_metric_visitor)fn)(&m, ctx);
}

static mb_status metrics_once(mb_store *s, int64_t run, const char *key, mb_metric_visitor fn, void *ctx,
                           mb_error *err) {
    return each_run_row(s,
                        prepare(s,
                                "SELECT key, value, step, epoch, split, time FROM metrics"
                                " WHERE run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR key = ?2) ORDER BY id",
                                err),
                        run, key, metric_row, (void *)fn, ctx, err);
}

static mb_status final_metrics_once(mb_store *s, int64_t run, mb_metric_visitor fn, void *ctx, mb_error *err) {
    /* The last point of each key: the row with the largest id per key. */
    return each_run_row(s,
                        prepare(s,
                                "SELECT key, value, step, epoch, split, time FROM metrics WHERE id IN"
                                " (SELECT MAX(id) FROM metrics WHERE run_id = ?1 GROUP BY key) ORDER BY key COLLATE BINARY",
                                err),
                        run, NULL, metric_row, (void *)fn, ctx, err);
}

static mb_status best_once(mb_store *s, const char *experiment, const char *metric, int maximize, const char *status,
                        int64_t *run, double *value, mb_error *err) {
    if (!experiment || !metric) return mb_fail(err, MB_ERR_ARG, "best: experiment and metric are required");
    if (!status) status = "completed";
    db_stmt *st = prepare(s,
                               "SELECT m.run_id, m.value FROM metrics m WHERE m.id IN"
                               " (SELECT MAX(m2.id) FROM metrics m2"
                               "   JOIN runs r ON r.id = m2.run_id JOIN experiments e ON e.id = r.experiment_id"
                               "   WHERE e.name = ?1 AND r.status = ?3 AND m2.key = ?2 GROUP BY m2.run_id)"
                               " AND m.value IS NOT NULL"
                               " ORDER BY CASE WHEN ?4 = 1 THEN -m.value ELSE m.value END, m.run_id LIMIT 1",
                               err);
    if (!st) return MB_ERR_DB;
    db_bind_text(st, 1, experiment);
    db_bind_text(st, 2, metric);
    db_bind_text(st, 3, status);
    db_bind_int(st, 4, maximize ? 1 : 0);
    int rc = db_step(s, st);
    if (rc == DB_ROW) {
        if (run) *run = db_int(st, 0);
        if (value) *value = db_real(st, 1);
        db_finalize(st);
        return MB_OK;
    }
    db_finalize(st);
    if (rc != DB_DONE) return db_fail(s, err, "finding the best run");
    return mb_fail(err, MB_ERR_RANGE, "no %s run of experiment '%s' has metric '%s' in %s", status, experiment,
                   metric, s->path);
}

static int confusion_row(db_stmt *st, void *fn, void *ctx) {
    mb_confusion c = {0};
    c.split = col_text(st, 0);
    c.has_epoch = !db_null(st, 1);
    c.epoch = db_real(st, 1);
    c.time = db_real(st, 4);
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

static mb_status confusions_once(mb_store *s, int64_t run, const char *split, mb_confusion_visitor fn, void *ctx,
                              mb_error *err) {
    return each_run_row(s,
                        prepare(s,
                                "SELECT split, epoch, labels, matrix, time FROM confusion"
                                " WHERE run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR split = ?2) ORDER BY id",
                                err),
                        run, split, confusion_row, (void *)fn, ctx, err);
}

static int prediction_row(db_stmt *st, void *fn, void *ctx) {
    mb_prediction p = {0};
    p.index = db_int(st, 1);
    p.has_label = !db_null(st, 2);
    p.label = db_int(st, 2);
    p.predicted = db_int(st, 3);
    p.has_loss = !db_null(st, 4);
    p.loss = db_real(st, 4);
    double *probs = NULL;
    json_t *arr = db_null(st, 5) ? NULL : json_loads(col_text(st, 5), 0, NULL);
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

static mb_status predictions_once(mb_store *s, int64_t run, const char *split, int by_loss, int64_t limit,
                               mb_prediction_visitor fn, void *ctx, mb_error *err) {
    db_stmt *st = prepare(s,
                               by_loss ? "SELECT split, example, label, predicted, loss, probs FROM predictions"
                                         " WHERE run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR split = ?2)"
                                         " ORDER BY loss IS NULL, loss DESC, split, example LIMIT ?3"
                                       : "SELECT split, example, label, predicted, loss, probs FROM predictions"
                                         " WHERE run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR split = ?2)"
                                         " ORDER BY split, example LIMIT ?3",
                               err);
    if (!st) return MB_ERR_DB;
    db_bind_int(st, 1, run);
    db_bind_text(st, 2, split);
    db_bind_int(st, 3, limit > 0 ? limit : INT64_MAX);
    return each_row(s, st, prediction_row, (void *)fn, ctx, NULL, err);
}

static int artifact_row(db_stmt *st, void *fn, void *ctx) {
    return ((mb_artifact_visitor)fn)(col_text(st, 0), col_text(st, 1), col_text(st, 2), db_real(st, 3),
                                     ctx);
}

static mb_status artifacts_once(mb_store *s, int64_t run, mb_artifact_visitor fn, void *ctx, mb_error *err) {
    return each_run_row(s, prepare(s, "SELECT kind, path, hash, time FROM artifacts WHERE run_id = ?1 ORDER BY id", err),
                        run, NULL, artifact_row, (void *)fn, ctx, err);
}

/* ---- the public calls ---------------------------------------------------- */

mb_status mb_store_runs(mb_store *s, const mb_run_filter *f, mb_run_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, runs_once(s, f, fn, ctx, err));
}

mb_status mb_store_get_run(mb_store *s, int64_t run, mb_run_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, get_run_once(s, run, fn, ctx, err));
}

mb_status mb_store_find_uuid(mb_store *s, const char *uuid, int64_t *run, mb_error *err) {
    RETRYING(s, err, find_uuid_once(s, uuid, run, err));
}

mb_status mb_store_run_events(mb_store *s, int64_t run, mb_run_event_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, run_events_once(s, run, fn, ctx, err));
}

mb_status mb_store_params(mb_store *s, int64_t run, mb_param_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, params_once(s, run, fn, ctx, err));
}

mb_status mb_store_tags(mb_store *s, int64_t run, mb_tag_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, tags_once(s, run, fn, ctx, err));
}

mb_status mb_store_metrics(mb_store *s, int64_t run, const char *key, mb_metric_visitor fn, void *ctx,
                           mb_error *err) {
    RETRYING(s, err, metrics_once(s, run, key, fn, ctx, err));
}

mb_status mb_store_final_metrics(mb_store *s, int64_t run, mb_metric_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, final_metrics_once(s, run, fn, ctx, err));
}

mb_status mb_store_best(mb_store *s, const char *experiment, const char *metric, int maximize, const char *status,
                        int64_t *run, double *value, mb_error *err) {
    RETRYING(s, err, best_once(s, experiment, metric, maximize, status, run, value, err));
}

mb_status mb_store_confusions(mb_store *s, int64_t run, const char *split, mb_confusion_visitor fn, void *ctx,
                              mb_error *err) {
    RETRYING(s, err, confusions_once(s, run, split, fn, ctx, err));
}

mb_status mb_store_predictions(mb_store *s, int64_t run, const char *split, int by_loss, int64_t limit,
                               mb_prediction_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, predictions_once(s, run, split, by_loss, limit, fn, ctx, err));
}

mb_status mb_store_artifacts(mb_store *s, int64_t run, mb_artifact_visitor fn, void *ctx, mb_error *err) {
    RETRYING(s, err, artifacts_once(s, run, fn, ctx, err));
}
