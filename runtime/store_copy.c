/* store_copy.c: copying a run from one results store into another (store.h's
 * mb_store_copy_run, behind `moonbert results push`), between SQLite and
 * PostgreSQL either way. Part of the store (store_impl.h).
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

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
        db_stmt *to = db_cached(dst, insert_sql, err);
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
    mb_status status = db_begin(dst, err);
    if (status != MB_OK) { db_finalize(st); return status; }
    /* Already there (pushed before): nothing to do. */
    db_stmt *look = db_cached(dst, "SELECT id FROM runs WHERE uuid = ?1", err);
    if (!look) goto fail;
    db_bind_text(look, 1, uuid);
    rc = db_step(dst, look);
    if (rc == DB_ROW) {
        if (new_run) *new_run = db_int(look, 0);
        db_reset(look);
        db_rollback(dst);
        db_finalize(st);
        return MB_OK;
    }
    if (rc != DB_DONE) { db_fail(dst, err, "looking for the run"); goto fail; }
    db_stmt *ins = db_cached(dst, "INSERT INTO experiments(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", err);
    if (!ins) goto fail;
    db_bind_text(ins, 1, db_text(st, 0));
    db_bind_real(ins, 2, mb_store_now());
    if (db_step(dst, ins) != DB_DONE) { db_fail(dst, err, "recording the experiment"); goto fail; }
    ins = db_cached(dst,
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
            db_rollback(dst);
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
    if (db_commit(dst, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    if (new_run) *new_run = id;
    *copied = 1;
    return MB_OK;
fail:
    db_finalize(st);
    db_rollback(dst);
    return err ? err->code : MB_ERR_DB;
}

mb_status mb_store_copy_run(mb_store *src, int64_t run, mb_store *dst, int64_t *new_run, int *copied, mb_error *err) {
    int dummy;
    if (!copied) copied = &dummy;
    if (src == dst) return mb_fail(err, MB_ERR_ARG, "copy_run: source and destination are the same store");
    RETRYING(dst, err, copy_run_once(src, run, dst, new_run, copied, err));
}

