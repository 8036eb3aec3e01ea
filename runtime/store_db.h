/* store_db.h: the results store's database interface (internal to runtime/store*.c).
 *
 * runtime/store.c holds the store's logic once, over a small statement
 * interface (prepare, bind, step, read columns) that it implements itself for
 * SQLite and that runtime/store_pg.c implements for PostgreSQL over libpq.
 * Query text is shared where the dialects agree; it is written with SQLite's
 * numbered parameters (?1, ?2, ...), which store_pg.c turns into $1, $2, and
 * byte order is written COLLATE BINARY (SQLite's), which it turns into
 * COLLATE "C" (PostgreSQL's default collation may order text otherwise).
 * Every value travels as a bound parameter (text format for PostgreSQL).
 */
#ifndef MB_STORE_DB_H
#define MB_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum { DB_ROW = 100, DB_DONE = 101, DB_FAIL = 1 };

typedef enum db_errkind {
    DB_ERR_OTHER,
    DB_ERR_FOREIGN_KEY, /* a row names a run that does not exist */
    DB_ERR_UNIQUE,      /* e.g. a UUID already there */
    DB_ERR_CONNECTION,  /* the server went away (PostgreSQL): worth a retry */
} db_errkind;

typedef struct pg_conn pg_conn;
typedef struct pg_stmt pg_stmt;

/* Connect to url (postgresql://user@host:port/db or a libpq conninfo
   string). display gets the URL as shown in messages (never a password).
   NULL with err filled (one line) when the server cannot be reached. */
pg_conn *pg_connect(const char *url, char *display, size_t n, mb_error *err);
void pg_disconnect(pg_conn *c);
/* Drop and reopen the connection: 1 when connected again. */
int pg_reconnect(pg_conn *c);
int pg_connected(pg_conn *c);
/* The last error: libpq's message on one line, and what kind it is. */
const char *pg_errmsg(pg_conn *c);
db_errkind pg_errkind(pg_conn *c);
void pg_clear_error(pg_conn *c);
/* A command without parameters or rows (simple query; may hold several). */
int pg_exec(pg_conn *c, const char *sql);
/* Rows changed by the last statement. */
int64_t pg_changes(pg_conn *c);
/* Transactions. pg_begin records the transaction id, so that after a
   connection lost during COMMIT pg_commit_outcome can ask the server whether
   it committed: 1 committed, 0 not, -1 cannot tell (still no connection). */
int pg_begin(pg_conn *c);
int pg_commit(pg_conn *c);
void pg_rollback(pg_conn *c);
int pg_in_transaction(pg_conn *c);
int pg_commit_was_lost(pg_conn *c);
int pg_commit_outcome(pg_conn *c);

pg_stmt *pg_prepare(pg_conn *c, const char *sql, mb_error *err);
void pg_finalize(pg_stmt *st);
void pg_reset(pg_stmt *st);   /* forget the result and the bound values */
void pg_bind(pg_stmt *st, int i, const char *text); /* 1-based; NULL: SQL NULL; copied */
int pg_step(pg_stmt *st);     /* DB_ROW, DB_DONE or DB_FAIL */
int pg_isnull(pg_stmt *st, int col);
const char *pg_value(pg_stmt *st, int col); /* NULL for SQL NULL */

#endif
