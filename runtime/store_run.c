/* store_run.c: a run's life in the results store (store.h): starting it (a
 * UUID, the reserve for its last status write), heartbeats and reaping the
 * dead, ending it (completed, pruned, failed), interrupting and resuming,
 * removing what a resume logs again, deleting. Part of the store (store_impl.h).
 */
#include "store.h"
#include "store_db.h"
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

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
    db_stmt *st = db_cached(s, SQL_BEAT, err);
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
mb_status maybe_beat(mb_store *s, int64_t run, mb_error *err) {
    if (run == s->beat_run && mb_store_now() - s->beat_time < s->opts.heartbeat_interval_s) return MB_OK;
    return write_beat(s, run, err);
}

static mb_status heartbeat_once(mb_store *s, int64_t run, mb_error *err) {
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    if (write_beat(s, run, err) != MB_OK) {
        db_rollback(s);
        return MB_ERR_DB;
    }
    return db_commit(s, err);
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
    mb_status status = db_begin(s, err);
    size_t done = 0;
    for (size_t i = 0; i < n && status == MB_OK; i++) {
        /* Only if nothing changed since we looked (no heartbeat came in). */
        db_stmt *up = db_cached(s,
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
    if (status == MB_OK) status = db_commit(s, err);
    else db_rollback(s);
    if (status == MB_OK) {
        for (size_t i = 0; i < n; i++)
            if (cand[i].id >= 0 && on_reaped) on_reaped(cand[i].id, cand[i].reason, ctx);
        if (n_reaped) *n_reaped = done;
    }
    free(cand);
    return status;
}

/* ---- starting a run ---------------------------------------------------------- */

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

static mb_status start_run_once(mb_store *s, const mb_run_start *r, int64_t *run_id, mb_error *err) {
    if (!r || !r->experiment || !*r->experiment)
        return mb_fail(err, MB_ERR_ARG, "start_run: experiment name is required");
    char uuid[MB_UUID_LEN + 1];
    if (r->uuid) snprintf(uuid, sizeof uuid, "%s", r->uuid);
    else if (mb_store_new_uuid(uuid, err) != MB_OK) return MB_ERR_IO;
    double now = mb_store_now();
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = db_cached(s, "INSERT INTO experiments(name, created) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", err);
    if (!st) goto fail;
    db_bind_text(st, 1, r->experiment);
    db_bind_real(st, 2, now);
    if (db_step(s, st) != DB_DONE) { db_fail(s, err, "recording the experiment"); goto fail; }
    st = db_cached(s,
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
    if (db_commit(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    s->beat_run = id;
    s->beat_time = now;
    if (run_id) *run_id = id;
    reserve_make(s);
    return MB_OK;
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* The status of a run, into buf; MB_ERR_RANGE when there is no such run. */
static mb_status run_status(mb_store *s, int64_t run, char *buf, size_t n, mb_error *err) {
    db_stmt *st = db_cached(s, "SELECT status FROM runs WHERE id = ?1", err);
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
    db_stmt *st = db_cached(s, "SELECT MAX(time) FROM run_events WHERE run_id = ?1 AND kind = 'resumed'", err);
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
        if (!(st = db_cached(s, sql[i], err))) return MB_ERR_DB;
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
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st = db_cached(s,
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
        db_rollback(s);
        if (changed) return MB_OK; /* fail(): ending an ended run is not an error */
        return mb_fail(err, MB_ERR_STATE, "run %lld is already %s", (long long)run, status);
    }
    if (changed) *changed = 1;
    if (drop_relogged_rows(s, run, err) != MB_OK) goto fail;
    return db_commit(s, err);
fail:
    db_rollback(s);
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
    db_stmt *st = db_cached(s,
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
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    db_stmt *st;
    if (resume) {
        st = db_cached(s,
                    "UPDATE runs SET status = 'running', end_time = NULL, error = NULL, heartbeat = ?2,"
                    "  host = ?3, pid = ?4, proc_start = ?5"
                    " WHERE id = ?1 AND status IN ('interrupted', 'killed')",
                    err);
        if (!st) goto fail;
        db_bind_text(st, 3, s->host);
        db_bind_int(st, 4, (int64_t)getpid());
        if (s->proc_start >= 0) db_bind_int(st, 5, s->proc_start);
    } else {
        st = db_cached(s,
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
        db_rollback(s);
        if (resume)
            return mb_fail(err, MB_ERR_STATE, "run %lld is %s; only an interrupted or killed run can be resumed",
                           (long long)run, status);
        return mb_fail(err, MB_ERR_STATE, "run %lld is already %s; only a running run can be interrupted",
                       (long long)run, status);
    }
    if (add_event(s, run, resume ? "resumed" : "interrupted", now, message, err) != MB_OK) goto fail;
    if (db_commit(s, err) != MB_OK) return MB_ERR_DB;
    if (resume) {
        s->beat_run = run;
        s->beat_time = now;
    }
    return MB_OK;
fail:
    db_rollback(s);
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
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
    char status[32];
    if (run_status(s, run, status, sizeof status, err) != MB_OK) goto fail;
    if (strcmp(status, "running") == 0) {
        db_rollback(s);
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
    return db_commit(s, err);
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* What a resumed run logs again: metric rows after step, confusion matrices
   after epoch (epoch < 0: none removed), of keys / splits starting with
   prefix (NULL: all). Rows without a step stay. */
static mb_status truncate_after_once(mb_store *s, int64_t run, int64_t step, double epoch, const char *prefix,
                                     int64_t *removed, mb_error *err) {
    if (removed) *removed = 0;
    if (db_begin(s, err) != MB_OK) return MB_ERR_DB;
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
    if (db_commit(s, err) != MB_OK) return err ? err->code : MB_ERR_DB;
    if (removed) *removed = n;
    return MB_OK;
fail:
    db_rollback(s);
    return err ? err->code : MB_ERR_DB;
}

/* ---- the public calls: each one attempt after another while the connection is being restored ---- */

mb_status mb_store_heartbeat(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, heartbeat_once(s, run, err));
}

mb_status mb_store_reap(mb_store *s, double stale_after_s, mb_reap_visitor on_reaped, void *ctx, size_t *n_reaped,
                        mb_error *err) {
    RETRYING(s, err, reap_once(s, stale_after_s, on_reaped, ctx, n_reaped, err));
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

mb_status mb_store_delete_run(mb_store *s, int64_t run, mb_error *err) {
    RETRYING(s, err, delete_run_once(s, run, err));
}

mb_status mb_store_truncate_after(mb_store *s, int64_t run, int64_t step, double epoch, const char *prefix,
                                  int64_t *removed, mb_error *err) {
    RETRYING(s, err, truncate_after_once(s, run, step, epoch, prefix, removed, err));
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
