/* store.h: the results store, one SQLite file of runs and what they logged.
 *
 * Borrowed from MLflow's tracking store and Sacred's run records. Tables:
 * experiments; runs (status running/completed/failed/killed, times, seed,
 * host + pid, git commit and dirty flag, script path and hash, dataset and
 * model hashes, device, heartbeat, error text); params (written once);
 * metrics (a series: key, value, step, epoch, split, time); tags; artifacts;
 * confusion (matrix + label names as JSON); predictions (per-example rows for
 * error analysis); run_events (when a run was interrupted and resumed).
 *
 * A run has an integer id (this store's) and a UUID (version 4, random), so
 * that runs copied between stores (`moonbert results push`) keep one identity.
 * Statuses: running; completed, failed, pruned (stopped early by a pruner, with
 * the rung it reached): ended; killed (its process died: set by reaping, end
 * time = its last heartbeat); interrupted (stopped on purpose to be resumed
 * later: neither alive nor killed, reaping leaves it alone).
 *
 * How it stays correct with several writers (a sweep runs processes in
 * parallel on one file): WAL journal, a busy timeout plus our own retry on
 * SQLITE_BUSY, BEGIN IMMEDIATE so that no transaction has to upgrade its lock,
 * and short transactions (one per logging call, one per batch of rows).
 * Every statement is prepared with bound parameters.
 *
 * How a dead run stops looking alive: a run records host, pid and the
 * process's start time; logging calls refresh its heartbeat at most every
 * heartbeat_interval_s. mb_store_reap() marks "killed" every running run whose
 * process is gone (same host) or whose heartbeat is older than stale_after_s
 * (another host). A heartbeat from the owning process revives a run that was
 * marked killed by mistake.
 *
 * Limits: times are Unix seconds (REAL); NaN metric values are stored as NULL
 * (SQLite has no NaN) and read back as NaN; SQLite over a network file system
 * is not safe for concurrent writers (SQLite's own limit).
 *
 * Beside a store file that runs were written to: <store>-reserve, 256 KiB of
 * ballast released on a full disk so that a run can still be marked failed
 * (see mb_store_fail).
 *
 * The schema version lives in PRAGMA user_version; opening a store migrates an
 * older file in place and refuses a newer one.
 */
#ifndef MB_STORE_H
#define MB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MB_STORE_SCHEMA_VERSION 5
#define MB_STORE_APPLICATION_ID 0x6d6f6f6e /* "moon" in PRAGMA application_id */

typedef struct mb_store mb_store;

typedef struct mb_store_options {
    int create;                  /* create the file when missing (1) */
    double busy_timeout_s;       /* how long a writer waits for the lock (30) */
    double heartbeat_interval_s; /* logging refreshes the heartbeat at most this often (5) */
    double retry_timeout_s;      /* PostgreSQL: how long to reconnect after losing the server (60) */
} mb_store_options;

void mb_store_default_options(mb_store_options *opts);

/* Open (and create or migrate) the store at path, a SQLite file or a
   PostgreSQL URL (postgresql://user@host:port/database; the password from
   PGPASSWORD or ~/.pgpass, never the URL); opts may be NULL. */
mb_store *mb_store_open(const char *path, const mb_store_options *opts, mb_error *err);
void mb_store_close(mb_store *s); /* NULL is fine */
/* The file, or the server's URL as user@host:port/database. */
const char *mb_store_path(const mb_store *s);
/* 1 for a postgresql:// or postgres:// URL. */
int mb_store_is_url(const char *path);
/* 1 when the store is a PostgreSQL server. */
int mb_store_is_server(const mb_store *s);
/* PostgreSQL: how many times the connection was lost and made again. */
int64_t mb_store_reconnects(const mb_store *s);
/* The schema version of the open file (MB_STORE_SCHEMA_VERSION after open). */
int mb_store_user_version(mb_store *s);
/* PRAGMA integrity_check: MB_OK when "ok", else MB_ERR_DB with SQLite's report. */
mb_status mb_store_integrity_check(mb_store *s, mb_error *err);
/* Unix time in seconds with sub-second precision (the store's clock). */
double mb_store_now(void);

/* ---- writing a run --------------------------------------------------------- */

typedef struct mb_run_start {
    const char *experiment; /* required */
    const char *name;       /* may be NULL */
    int has_seed;
    int64_t seed;
    const char *git_commit; /* NULL: unknown */
    int git_dirty;          /* 1 dirty, 0 clean, -1 unknown */
    const char *script_path, *script_hash, *dataset_hash, *model_hash, *device; /* NULL: unknown */
    const char *uuid;       /* NULL: a new random UUID */
} mb_run_start;

#define MB_UUID_LEN 36
/* A random (version 4) UUID in its 36-character text form. */
mb_status mb_store_new_uuid(char out[MB_UUID_LEN + 1], mb_error *err);

/* New run in status "running"; host, pid, process start time and heartbeat
   are filled from the calling process. */
mb_status mb_store_start_run(mb_store *s, const mb_run_start *start, int64_t *run_id, mb_error *err);

typedef enum mb_value_type { MB_VALUE_NULL, MB_VALUE_INT, MB_VALUE_REAL, MB_VALUE_TEXT } mb_value_type;
typedef struct mb_value {
    mb_value_type type;
    int64_t i;
    double r;
    const char *s;
} mb_value;

/* Params are written once: the same value again is accepted, a different one
   is MB_ERR_STATE naming the old and the new value. */
mb_status mb_store_log_param(mb_store *s, int64_t run, const char *key, const mb_value *v, mb_error *err);
/* Tags may be overwritten. */
mb_status mb_store_set_tag(mb_store *s, int64_t run, const char *key, const char *value, mb_error *err);

typedef struct mb_metric {
    const char *key;
    double value;
    int has_step;
    int64_t step;
    int has_epoch;
    double epoch;
    const char *split; /* NULL: none */
    double time;       /* 0 when logging: now */
} mb_metric;

/* One point of a metric's series (every call adds a row). */
mb_status mb_store_log_metric(mb_store *s, int64_t run, const mb_metric *m, mb_error *err);
/* Several points in one transaction. */
mb_status mb_store_log_metrics(mb_store *s, int64_t run, const mb_metric *m, size_t n, mb_error *err);

typedef struct mb_confusion {
    const char *split;
    int has_epoch;
    double epoch;
    int n_rows, n_cols;
    const double *matrix;       /* [n_rows, n_cols] row-major: rows true label, columns predicted */
    const char *const *labels;  /* n_labels names (may be NULL when n_labels = 0) */
    int n_labels;
    double time;
} mb_confusion;

/* Stored as JSON (matrix as an array of rows, labels as an array of names). */
mb_status mb_store_log_confusion(mb_store *s, int64_t run, const mb_confusion *c, mb_error *err);

typedef struct mb_prediction {
    int64_t index;  /* example index in its split */
    int has_label;
    int64_t label;  /* true label id */
    int64_t predicted;
    int has_loss;
    double loss;
    const double *probs; /* n_probs class probabilities (may be NULL) */
    int n_probs;
} mb_prediction;

/* n rows in one transaction (call it per batch of a few thousand rows). An
   example (run, split, index) logged again replaces the earlier row. */
mb_status mb_store_log_predictions(mb_store *s, int64_t run, const char *split, const mb_prediction *rows,
                                   size_t n, mb_error *err);
/* hash may be NULL (e.g. a directory). */
mb_status mb_store_log_artifact(mb_store *s, int64_t run, const char *kind, const char *path, const char *hash,
                                mb_error *err);

/* Refresh the heartbeat now (long steps without logging call this). */
mb_status mb_store_heartbeat(mb_store *s, int64_t run, mb_error *err);
/* running (or killed) -> completed; MB_ERR_STATE when already ended. */
mb_status mb_store_finish(mb_store *s, int64_t run, mb_error *err);
/* running (or killed) -> pruned at rung (>= 0); MB_ERR_STATE when already ended. */
mb_status mb_store_prune(mb_store *s, int64_t run, int64_t rung, mb_error *err);
/* running (or killed) -> interrupted, with message (may be NULL) as the run's
   error text and an 'interrupted' event; MB_ERR_STATE when not running. */
mb_status mb_store_interrupt(mb_store *s, int64_t run, const char *message, mb_error *err);
/* interrupted (or killed) -> running again, owned by the calling process
   (host, pid, heartbeat), with a 'resumed' event; MB_ERR_STATE otherwise. */
mb_status mb_store_resume(mb_store *s, int64_t run, mb_error *err);
/* running (or killed) -> failed with error_text; *changed = 0 when the run had already ended.
   On a full disk: a SQLite store gives the run its status from the room of
   <store>-reserve, a ballast file kept beside the store by writers (deleted
   then; remade when a run starts with room to spare); the same holds for
   finish, prune and interrupt. A PostgreSQL server whose own disk is full
   refuses the write (disk_full): the error comes back, the run stays
   running, and reaping marks it killed once its heartbeat is stale. */
mb_status mb_store_fail(mb_store *s, int64_t run, const char *error_text, int *changed, mb_error *err);

/* Mark killed (end time: its last heartbeat) every running run whose process is gone (same host: pid dead,
   a zombie, or a different process with that pid) or whose heartbeat is older
   than stale_after_s (any host). on_reaped (may be NULL) sees each one. */
typedef void (*mb_reap_visitor)(int64_t run, const char *reason, void *ctx);
mb_status mb_store_reap(mb_store *s, double stale_after_s, mb_reap_visitor on_reaped, void *ctx, size_t *n_reaped,
                        mb_error *err);

/* Copy run (of src) with everything it logged into dst in one transaction,
   keeping its UUID, status, times and provenance: *new_run is its id in dst.
   A run whose UUID dst already holds is not copied again (*copied = 0), so
   copying twice adds nothing. (moonbert results push) */
mb_status mb_store_copy_run(mb_store *src, int64_t run, mb_store *dst, int64_t *new_run, int *copied, mb_error *err);

/* ---- reading --------------------------------------------------------------- */
/* Visitors get pointers valid during the call only; returning non-zero stops. */

typedef struct mb_run_record {
    int64_t id;
    const char *experiment, *name, *status, *error;
    double start_time, end_time, heartbeat; /* end_time 0: not ended */
    int has_seed;
    int64_t seed;
    const char *host;
    int64_t pid;
    const char *git_commit;
    int git_dirty; /* -1 unknown */
    const char *script_path, *script_hash, *dataset_hash, *model_hash, *device;
    const char *uuid;
    int has_pruned_rung;
    int64_t pruned_rung;
} mb_run_record;
typedef int (*mb_run_visitor)(const mb_run_record *r, void *ctx);

typedef struct mb_run_filter {
    const char *experiment; /* NULL: any */
    const char *status;     /* NULL: any */
} mb_run_filter;

/* Runs in id order. */
mb_status mb_store_runs(mb_store *s, const mb_run_filter *f, mb_run_visitor fn, void *ctx, mb_error *err);
/* One run; MB_ERR_RANGE "no run N in PATH" when absent. */
mb_status mb_store_get_run(mb_store *s, int64_t run, mb_run_visitor fn, void *ctx, mb_error *err);
/* The id of the run with this UUID; MB_ERR_RANGE when absent. */
mb_status mb_store_find_uuid(mb_store *s, const char *uuid, int64_t *run, mb_error *err);

typedef struct mb_run_event {
    const char *kind; /* "interrupted" | "resumed" */
    double time;
    const char *host;
    int64_t pid;
    const char *message; /* may be NULL */
} mb_run_event;
typedef int (*mb_run_event_visitor)(const mb_run_event *e, void *ctx);
/* A run's interruptions and resumptions, oldest first. */
mb_status mb_store_run_events(mb_store *s, int64_t run, mb_run_event_visitor fn, void *ctx, mb_error *err);

typedef int (*mb_param_visitor)(const char *key, const mb_value *v, void *ctx);
mb_status mb_store_params(mb_store *s, int64_t run, mb_param_visitor fn, void *ctx, mb_error *err);
typedef int (*mb_tag_visitor)(const char *key, const char *value, void *ctx);
mb_status mb_store_tags(mb_store *s, int64_t run, mb_tag_visitor fn, void *ctx, mb_error *err);

typedef int (*mb_metric_visitor)(const mb_metric *m, void *ctx);
/* The series of key (NULL: every key) in logging order. */
mb_status mb_store_metrics(mb_store *s, int64_t run, const char *key, mb_metric_visitor fn, void *ctx,
                           mb_error *err);
/* The last logged point of each key, keys in alphabetical order. */
mb_status mb_store_final_metrics(mb_store *s, int64_t run, mb_metric_visitor fn, void *ctx, mb_error *err);

/* Among runs of experiment with the given status (NULL: "completed"), the one
   whose final value of metric is largest (maximize) or smallest; ties go to
   the earlier run. MB_ERR_RANGE when no such run has that metric. */
mb_status mb_store_best(mb_store *s, const char *experiment, const char *metric, int maximize, const char *status,
                        int64_t *run, double *value, mb_error *err);

typedef int (*mb_confusion_visitor)(const mb_confusion *c, void *ctx);
/* Matrices of a run (split NULL: all), in logging order. */
mb_status mb_store_confusions(mb_store *s, int64_t run, const char *split, mb_confusion_visitor fn, void *ctx,
                              mb_error *err);

typedef int (*mb_prediction_visitor)(const char *split, const mb_prediction *p, void *ctx);
/* Prediction rows of a run (split NULL: all); by_loss: highest loss first
   (error analysis), else by split and index; limit <= 0: all. */
mb_status mb_store_predictions(mb_store *s, int64_t run, const char *split, int by_loss, int64_t limit,
                               mb_prediction_visitor fn, void *ctx, mb_error *err);

typedef int (*mb_artifact_visitor)(const char *kind, const char *path, const char *hash, double time, void *ctx);
mb_status mb_store_artifacts(mb_store *s, int64_t run, mb_artifact_visitor fn, void *ctx, mb_error *err);

/* Delete a run and everything logged to it (params, metrics, tags, artifact
   rows, matrices, predictions: ON DELETE CASCADE). A running run is refused
   (MB_ERR_STATE: its process still writes to it); MB_ERR_RANGE when absent.
   The run's files (runs/<id>) stay until `moonbert results gc`. */
mb_status mb_store_delete_run(mb_store *s, int64_t run, mb_error *err);
/* Before a run resumes from its checkpoint at step (epoch position epoch):
   remove the rows it will log again, so that the resumed run's rows are the
   uninterrupted run's. Metric rows with step > step, confusion matrices with
   epoch > epoch (epoch < 0: leave them), only those whose key (split) starts
   with prefix when it is not NULL (one run holding several trainings under
   prefixes); rows without a step stay, and predictions need nothing (each
   evaluation replaces the split's rows). *removed (may be NULL) gets the
   number of rows removed. */
mb_status mb_store_truncate_after(mb_store *s, int64_t run, int64_t step, double epoch, const char *prefix,
                                  int64_t *removed, mb_error *err);

#endif
