/* store_impl.h: internals shared by store.c (opening, schema, writing) and
 * store_query.c (reading): the handle, one statement interface over SQLite and
 * PostgreSQL, and the retry of a call after a lost connection. Not part of the
 * runtime's API; its functions are hidden from the shared module.
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
db_stmt *prepare(mb_store *s, const char *sql, mb_error *err);
void column_value(db_stmt *st, int i, mb_value *v);

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
