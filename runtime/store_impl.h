/* store_impl.h: internals shared by the results store's files: store.c (the
 * handle, statements, transactions, opening), store_schema.c (migrations),
 * store_run.c (a run's life), store_write.c (logging), store_query.c
 * (reading) and store_copy.c (copying runs): the handle, one statement
 * interface over SQLite and PostgreSQL, and the retry of a call after a lost
 * connection. Not part of the runtime's API; its functions are hidden from the
 * shared module.
 */
#ifndef MB_STORE_IMPL_H
#define MB_STORE_IMPL_H

#include <sqlite3.h>

#include "store.h"
#include "store_db.h"

#pragma GCC visibility push(hidden)

#define STMT_CACHE 48

typedef struct db_stmt {
    mb_store *s;
    sqlite3_stmt *lite; /* SQLite, or ... */
    pg_stmt *pg;        /* ... PostgreSQL */
} db_stmt;

struct mb_store {
    sqlite3 *db;              /* a SQLite file, or ... */
    pg_conn *pg;              /* ... a PostgreSQL server */
    char *path;               /* the file, or the server's URL (no password) */
    mb_store_options opts;
    char host[256];
    int64_t proc_start;       /* this process's start time (/proc), -1 unknown */
    int64_t beat_run;         /* the run whose heartbeat was written last ... */
    double beat_time;         /* ... and when */
    int64_t reconnects;       /* PostgreSQL: connections lost and made again */
    int disk_full;            /* SQLite: the last failed statement found the disk full */
    struct {
        const char *sql;      /* static string: the cache key is its address */
        db_stmt *stmt;
    } cache[STMT_CACHE];
};

/* The query text of the open store's dialect. */
#define DIALECT(s, sqlite_sql, pg_sql) ((s)->pg ? (pg_sql) : (sqlite_sql))

/* Statements (store.c): DB_ROW, DB_DONE or DB_FAIL from db_step (the message via db_fail). */
mb_status db_fail(mb_store *s, mb_error *err, const char *what);
void db_finalize(db_stmt *st);
void db_bind_int(db_stmt *st, int i, int64_t v);
void db_bind_text(db_stmt *st, int i, const char *v);
void db_bind_real(db_stmt *st, int i, double v);
void db_bind_null(db_stmt *st, int i);
int db_step(mb_store *s, db_stmt *st);
int db_null(db_stmt *st, int c);
int64_t db_int(db_stmt *st, int c);
double db_real(db_stmt *st, int c);
const char *db_text(db_stmt *st, int c);
void db_reset(db_stmt *st); /* forget the result; the bound values stay */
int64_t db_changes(mb_store *s); /* rows changed by the last statement */
db_errkind db_error_kind(mb_store *s);
/* A statement owned by the caller (reads: a visitor may re-enter the store). */
db_stmt *prepare(mb_store *s, const char *sql, mb_error *err);
/* A cached statement for a static SQL string (the key is its address), reset and unbound. */
db_stmt *db_cached(mb_store *s, const char *sql, mb_error *err);
/* A command without parameters; SQLITE_OK or an error code (SQLite's, for both). */
int db_exec(mb_store *s, const char *sql);
/* One integer from a query without parameters: SQLITE_OK or SQLITE_ERROR. */
int db_query_int(mb_store *s, const char *sql, int *out);
/* Transactions: a SQLite one takes the write lock up front (BEGIN IMMEDIATE). */
mb_status db_begin(mb_store *s, mb_error *err);
mb_status db_commit(mb_store *s, mb_error *err);
void db_rollback(mb_store *s);
void sleep_s(double sec);
/* The start time of process pid in clock ticks (/proc/PID/stat), and its state
   letter into *state when not NULL: -2 no such process, -1 cannot tell. */
int64_t read_proc_start(long pid, char *state);

/* Params (store_write.c): a value at parameter i, and read back from column i
   (PostgreSQL also binds and reads its type at i + 1). */
void bind_value(db_stmt *st, int i, const mb_value *v);
void column_value(db_stmt *st, int i, mb_value *v);

/* Schema (store_schema.c): bring an opened store to MB_STORE_SCHEMA_VERSION. */
mb_status store_migrate(mb_store *s, mb_error *err);

/* Runs (store_run.c): inside a logging transaction, refresh the run's heartbeat when it is due. */
mb_status maybe_beat(mb_store *s, int64_t run, mb_error *err);

/* Reading (store_query.c): the run with this UUID, one attempt. */
mb_status find_uuid_once(mb_store *s, const char *uuid, int64_t *run, mb_error *err);

/* ---- retrying after a lost connection (PostgreSQL; store.c explains) ------ */

typedef struct retry_state {
    double deadline, pause;
} retry_state;

enum { RETRY_NO, RETRY_AGAIN, RETRY_COMMITTED };

int retry_after(mb_store *s, retry_state *r, mb_status st, mb_error *err);

#define RETRYING(s, err, call)                                                                \
    do {                                                                                      \
        retry_state retry_ = {0, 0};                                                          \
        for (;;) {                                                                            \
            if ((s)->pg) pg_clear_error((s)->pg);                                             \
            mb_status st_ = (call);                                                           \
            int again_ = retry_after((s), &retry_, st_, (err));                               \
            if (again_ == RETRY_AGAIN) continue;                                              \
            return again_ == RETRY_COMMITTED ? MB_OK : st_;                                   \
        }                                                                                     \
    } while (0)

#pragma GCC visibility pop

#endif
